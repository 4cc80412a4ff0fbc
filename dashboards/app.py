"""Voxwatch's Streamlit dashboard: one app, six pages, every number read through the query API.

Run by `voxwatch serve --dashboard` (or `streamlit run dashboards/app.py` with VOXWATCH_API_URL and
VOXWATCH_API_TOKEN set to the API and a read token).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboards.common import range_picker

VIEWS = Path(__file__).resolve().parent / "views"  # not "pages/": that name turns on Streamlit's legacy page list

st.set_page_config(page_title="Voxwatch", page_icon="📞", layout="wide")
st.session_state["vx_nav"] = True  # pages read the range picked here instead of drawing their own
nav = st.navigation([
    st.Page(str(VIEWS / "overview.py"), title="Overview", url_path="overview", default=True),
    st.Page(str(VIEWS / "metrics.py"), title="Metrics", url_path="metrics"),
    st.Page(str(VIEWS / "incidents.py"), title="Incidents", url_path="incidents"),
    st.Page(str(VIEWS / "calls.py"), title="Calls", url_path="calls"),
    st.Page(str(VIEWS / "anomalies.py"), title="Anomalies", url_path="anomalies"),
    st.Page(str(VIEWS / "sql.py"), title="SQL", url_path="sql"),
])
range_picker()
nav.run()
