"""Export page of `streamlit run dashboard`: export a run to a TensorFlow.js model under web/models/
through `python -m pipeline export RUN --checkpoint ... --quantize ...` (a pipeline.jobs background
job: the export and its headless-Chromium verification take a minute), then show its result - the
pipeline.export.ExportResult of the job's result record: verification status or why it was skipped,
size - and the command that serves web/.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard import common
from pipeline import jobs
from pipeline.export import ExportResult
from pipeline.files import human_size

QUANTIZE = ("none", "float16", "uint8")


def size_text(size) -> str:
    return human_size(size) if isinstance(size, (int, float)) else "-"


def show_result(result: ExportResult) -> None:
    c1, c2, c3 = st.columns(3)
    c1.metric("size", size_text(result.size_bytes))
    c2.metric("verification", result.verification)
    c3.metric("registered in index.json", "yes" if result.registered else "no")
    if result.verified:
        st.success("TF.js output matches Keras" + (f": {result.verify_message}" if result.verify_message else "."))
    elif result.verification == "skipped":
        st.warning(f"Verification skipped: {result.verify_message or 'no reason given'}")
    else:
        st.error(f"Verification {result.verification}: {result.verify_message}")
    if result.message:
        st.caption(result.message)
    st.caption(f"written to `{result.path}`")
    st.json(result.to_json(), expanded=False)


@st.fragment(run_every=2)
def job_panel(run: str) -> None:
    """The export job of `run` and the models on the web page, re-read from their files every 2 s, so a
    finished export shows its result and its row within seconds."""
    job = jobs.read_job(common.runs_dir(), f"export-{run}")
    status = jobs.job_status(job) if job else None
    if status is not None:
        show_job(run, job, status)
    show_exported(*web_index(common.web_dir()))


def show_job(run: str, job: jobs.Job, status: jobs.JobStatus) -> None:
    if status.state == "running":
        st.info(f"Exporting {run}: {status.stage or 'starting'}... (started {int(max(0, time.time() - job.started))} s ago)")
        st.code(jobs.log_tail(job, 10) or "(starting)", language=None)
        return
    if status.result:
        try:
            show_result(ExportResult.from_json(status.result))
        except TypeError as exc:
            st.warning(f"The export's result record could not be read ({exc}).")
    if status.state != "done":
        st.error(f"Export {status.state}: {status.message or 'see the log'}")
        st.code(jobs.log_tail(job, 15), language=None)


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
            "quantize": entry.get("quantize"), "size": size_text(entry.get("size_bytes")),
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
    names = [m.get("name") for m in index["models"]]
    c1, c2 = st.columns([3, 1])
    choice = c1.selectbox("The page opens on", names, index=names.index(index["default"])
                          if index.get("default") in names else 0, key="export_default")
    if c2.button("Make default", key="export_make_default", disabled=choice == index.get("default")):
        from pipeline.export import set_default

        try:
            set_default(common.web_dir(), choice)
        except Exception as exc:  # noqa: BLE001 - an unwritable folder is shown, not a crash
            st.error(str(exc))
        else:
            st.rerun(scope="fragment")


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
    web = common.web_dir()
    index, _problem = web_index(web)
    c1, c2, c3, c4 = st.columns([3, 2, 2, 2])
    run = c1.selectbox("Run", names, index=_preselect(names, index), key="export_run")
    checkpoint = c2.selectbox("Checkpoint", ["best", "last"], key="export_checkpoint")
    quantize = c3.selectbox("Quantize", QUANTIZE, key="export_quantize")
    verify = c4.checkbox("Verify in Chromium", value=True, key="export_verify")
    make_default = st.checkbox("Make it the page's default model", key="export_as_default")
    step = jobs.export_step(run, checkpoint=checkpoint, quantize=quantize, verify=verify, make_default=make_default,
                            web=web)
    st.caption(f"Runs `{jobs.display_command(step)}`")
    if st.button("Export", key="export_start", type="primary"):
        try:
            common.run_dir_of(run)
            jobs.start(common.runs_dir(), f"export-{run}", "export", [step], run=run)
        except Exception as exc:  # noqa: BLE001 - show any launch failure instead of breaking the page
            st.error(str(exc))
    job_panel(run)
    st.subheader("Try it in the browser")
    st.code(f"python -m http.server -d {Path('web') if Path.cwd() == common.REPO else web} 8000", language="bash")
    st.caption("then open http://localhost:8000 - the page lists the models of web/models/index.json.")
