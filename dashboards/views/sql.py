"""SQL: a read-only console for analysts (one statement; rows and time bounded by the API)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboards.client import ApiError
from dashboards.common import client

EXAMPLE = ("SELECT region, outcome, count() AS calls, round(avg(latency_p95_ms)) AS p95_ms\n"
           "FROM calls\nGROUP BY region, outcome\nORDER BY calls DESC")

st.title("SQL")
st.caption("Read-only: SELECT, WITH, SHOW, DESCRIBE, EXPLAIN. Tables: calls, spans, metric_series, metric_samples, "
           "metric_rollups_1m, anomaly_findings, alert_events, notifications, silences, degradation_actions.")
with st.form("vx_sql"):
    sql = st.text_area("Query", value=EXAMPLE, height=160, key="vx_sql_text")
    max_rows = st.number_input("Max rows", min_value=1, max_value=10_000, value=1000, step=100, key="vx_sql_rows")
    run = st.form_submit_button("Run")
if run or "vx_sql_result" not in st.session_state:
    try:
        st.session_state["vx_sql_result"] = client().post("/sql", {"sql": sql, "max_rows": int(max_rows)})
        st.session_state["vx_sql_error"] = None
    except ApiError as exc:
        st.session_state["vx_sql_result"] = None
        st.session_state["vx_sql_error"] = str(exc)
if st.session_state.get("vx_sql_error"):
    st.error(st.session_state["vx_sql_error"])
res = st.session_state.get("vx_sql_result")
if res:
    df = pd.DataFrame(res["rows"], columns=res["columns"])
    st.caption(f"{res['row_count']} rows in {res['elapsed_ms']:.0f} ms" + (" (truncated)" if res["truncated"] else ""))
    st.dataframe(df, hide_index=True, width="stretch")
    st.download_button("Export CSV", df.to_csv(index=False).encode(), file_name="voxwatch-query.csv", mime="text/csv",
                       key="vx_sql_csv")
