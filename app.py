"""The dashboard, from a checkout: ``streamlit run app.py``. The script itself is
``eventscope/app.py`` (what ``eventscope dashboard`` runs), so a checkout and an installed
eventscope run the same code."""
from eventscope.app import main

main()
