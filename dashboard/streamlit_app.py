"""Quick Draw Lab dashboard: `streamlit run dashboard` (from the repository root).

Pages (one module each under dashboard/views/): Runs, Compare, Draw, Train, Evaluate, Probes, Export. Runs
are read from $QUICKDRAW_RUNS or the repository's runs/; everything goes through pipeline functions
or background `python -m pipeline ...` processes.
"""

import sys
from pathlib import Path

# `streamlit run dashboard` puts dashboard/ on sys.path, not the repository: make `dashboard.*` importable.
_REPO = str(Path(__file__).resolve().parents[1])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

import streamlit as st  # noqa: E402

from dashboard.views import compare, draw, evaluate, export, probes, runs, train  # noqa: E402

st.set_page_config(page_title="Quick Draw Lab", page_icon="✏️", layout="wide")

# Every page is reachable by its URL path (/runs, /compare, ...). Streamlit serves the default page at the
# root only, so /runs is a second, hidden entry for the Runs page (the default page's own url_path is
# reserved but never served).
PAGES = [
    st.Page(runs.render, title="Runs", icon=":material/table_chart:", url_path="home", default=True),
    st.Page(runs.render, title="Runs", icon=":material/table_chart:", url_path="runs", visibility="hidden"),
    st.Page(compare.render, title="Compare", icon=":material/show_chart:", url_path="compare"),
    st.Page(draw.render, title="Draw", icon=":material/draw:", url_path="draw"),
    st.Page(train.render, title="Train", icon=":material/model_training:", url_path="train"),
    st.Page(evaluate.render, title="Evaluate", icon=":material/target:", url_path="evaluate"),
    st.Page(probes.render, title="Probes", icon=":material/timeline:", url_path="probes"),
    st.Page(export.render, title="Export", icon=":material/deployed_code:", url_path="export"),
]

page = st.navigation(PAGES)
st.sidebar.caption("Quick Draw Lab")
page.run()
