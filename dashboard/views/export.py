"""Export page of `streamlit run dashboard`: export a run to a TensorFlow.js model under web/models/
through `python -m pipeline export RUN --checkpoint ... --quantize ...` (a background job: the export
and its headless-Chromium verification take a minute), then show the result - verification status or
why it was skipped, size - and the command that serves web/.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard import common

QUANTIZE = ("none", "float16", "uint8")


def human_size(size) -> str:
    if not isinstance(size, (int, float)):
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"


def export_command(run: str, checkpoint: str, quantize: str, verify: bool) -> list[str]:
    command = common.pipeline_command("export", run, "--checkpoint", checkpoint, "--quantize", quantize,
                                      "--runs-dir", str(common.runs_dir()))
    return command + ([] if verify else ["--no-verify"])


def show_result(result: dict) -> None:
    verification = result.get("verification") or {}
    status = verification.get("status") if isinstance(verification, dict) else str(verification)
    c1, c2, c3 = st.columns(3)
    c1.metric("size", human_size(result.get("size_bytes")))
    c2.metric("verification", status or "-")
    c3.metric("registered in index.json", "yes" if result.get("registered") else "no")
    if isinstance(verification, dict):
        reason = verification.get("reason") or verification.get("message") or verification.get("error")
        if status in ("passed", "ok", "verified"):
            st.success("TF.js output matches Keras" + (f": {reason}" if reason else "."))
        elif status == "skipped":
            st.warning(f"Verification skipped: {reason or 'no reason given'}")
        elif status:
            st.error(f"Verification {status}: {reason or ''}")
    for key in ("reason", "note"):
        if result.get(key):
            st.caption(result[key])
    if result.get("out_dir"):
        st.caption(f"written to `{result['out_dir']}`")
    st.json(result, expanded=False)


@st.fragment(run_every=2)
def job_panel(run: str) -> None:
    job = common.read_job(f"export-{run}")
    if not job:
        return
    state = common.job_state(job)
    log = common.job_log(job)
    if state == "running":
        st.info(f"Exporting {run}... (started {int(max(0, time.time() - job['started']))} s ago)")
        st.code("\n".join(log.strip().splitlines()[-10:]) or "(starting)", language=None)
        return
    result = common.last_json_object(log)
    if result:
        show_result(result)
    if state != "done":
        errors = common.log_errors(log)
        st.error(f"Export {state}: " + ("; ".join(errors) if errors else "see the log"))
        st.code("\n".join(log.strip().splitlines()[-15:]), language=None)


def exported_table(index: dict) -> pd.DataFrame:
    """One row per model registered in web/models/index.json, the page's default marked."""
    rows = []
    for entry in index.get("models", []):
        verification = entry.get("verification") or {}
        if not isinstance(verification, dict):
            verification = {"status": str(verification)}
        rows.append({
            "model": entry.get("name"), "default": entry.get("name") == index.get("default"),
            "run": entry.get("run"), "architecture": entry.get("model"),
            "representation": entry.get("representation"), "classes": entry.get("classes"),
            "quantize": entry.get("quantize"), "size": human_size(entry.get("size_bytes")),
            "verification": verification.get("status", "-"),
            "top-1 agreement": verification.get("top1_agreement"),
            "max prob. diff": verification.get("max_abs_diff"), "exported": entry.get("exported"),
        })
    return pd.DataFrame(rows)


def web_index(web: Path) -> tuple[dict, str | None]:
    """web/models/index.json, or an empty index and the reason it could not be read."""
    from pipeline.errors import QuickDrawError
    from pipeline.export import read_index

    try:
        return read_index(web), None
    except QuickDrawError as exc:
        return {"default": None, "models": []}, str(exc)


def show_exported(index: dict, problem: str | None) -> None:
    st.subheader("On the web page now")
    if problem:
        st.error(problem)
        return
    if not index.get("models"):
        st.info("No model is exported to web/models yet.")
        return
    st.dataframe(exported_table(index), hide_index=True, key="export_models",
                 column_config={"top-1 agreement": st.column_config.NumberColumn(format="%.3f"),
                                "max prob. diff": st.column_config.NumberColumn(format="%.1e")})
    st.caption(f"The page opens on **{index.get('default')}**; `python -m pipeline export RUN --make-default` "
               "changes that.")


def _preselect(names: list[str], index: dict) -> int:
    """The newest run not on the web page yet (what one usually wants to export next), else the first."""
    exported = {m.get("run") for m in index.get("models", [])}
    return next((i for i, name in enumerate(names) if name not in exported), 0)


def render() -> None:
    st.header("Export")
    runs = [r for r in common.runs_with_model(common.run_summaries())]
    if not runs:
        st.info("No run has a trained model to export yet.")
        return
    names = [r["name"] for r in runs]
    web = common.REPO / "web"
    index, problem = web_index(web)
    c1, c2, c3, c4 = st.columns([3, 2, 2, 2])
    run = c1.selectbox("Run", names, index=_preselect(names, index), key="export_run")
    checkpoint = c2.selectbox("Checkpoint", ["best", "last"], key="export_checkpoint")
    quantize = c3.selectbox("Quantize", QUANTIZE, key="export_quantize")
    verify = c4.checkbox("Verify in Chromium", value=True, key="export_verify")
    command = export_command(run, checkpoint, quantize, verify)
    st.caption("Runs `" + " ".join(["python", *command[1:]]) + "`")
    if st.button("Export", key="export_start", type="primary"):
        try:
            common.run_dir_of(run)
            common.start_job(f"export-{run}", "export", [command], run=run)
        except Exception as exc:  # noqa: BLE001 - show any launch failure instead of breaking the page
            st.error(str(exc))
    job_panel(run)
    show_exported(index, problem)
    st.subheader("Try it in the browser")
    st.code(f"python -m http.server -d {Path('web') if Path.cwd() == common.REPO else web} 8000", language="bash")
    st.caption("then open http://localhost:8000 - the page lists the models of web/models/index.json.")
