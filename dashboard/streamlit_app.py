"""Quick Draw Lab dashboard: `streamlit run dashboard`. (Pages arrive with the dashboard issue.)"""

import streamlit as st

st.set_page_config(page_title="Quick Draw Lab", page_icon="✏️", layout="wide")
st.title("Quick Draw Lab")
st.write("Runs, comparisons, live drawing tests, training and export arrive with the dashboard pages.")
