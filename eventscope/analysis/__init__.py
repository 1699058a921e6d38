"""Pure analysis: frames in, frames (or dicts) out. No broker calls, no Streamlit."""
