"""The dashboard's pages, one Streamlit script each (listed in ``eventscope.app.PAGES``); they only render."""
