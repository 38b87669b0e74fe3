"""Quick Draw Lab dashboard: `streamlit run dashboard` runs dashboard/streamlit_app.py."""
