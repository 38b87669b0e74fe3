"""Evaluate page of `streamlit run dashboard`: a run's test metrics from runs/<run>/eval.json -
top-1/top-3/MAP@3, the confusion matrix as a heatmap with the top confusions, per-class accuracy and a
gallery of misclassified drawings. Without eval.json a button runs `python -m pipeline evaluate RUN`
in the background (a pipeline.jobs job: its state, progress and error are read from its files).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import common
from pipeline import jobs

GALLERY_COLUMNS = 8


def confusion_figure(result: dict) -> go.Figure:
    classes = result["classes"]
    matrix = np.asarray(result["confusion"], dtype=float)
    totals = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    figure = go.Figure(go.Heatmap(
        z=share, x=classes, y=classes, colorscale="Blues", zmin=0, zmax=1, customdata=matrix,
        hovertemplate="true %{y}<br>predicted %{x}<br>%{customdata:.0f} drawings (%{z:.1%} of the row)<extra></extra>",
        colorbar={"title": "share"}))
    side = max(420, min(1400, 18 * len(classes) + 160))
    figure.update_layout(height=side, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                         xaxis={"title": "predicted", "tickangle": -60}, yaxis={"title": "true", "autorange": "reversed"})
    return figure


def per_class_frame(result: dict) -> pd.DataFrame:
    rows = [{"class": name, "top-1": v.get("top1"), "top-3": v.get("top3"), "n": v.get("n")}
            for name, v in result.get("per_class", {}).items()]
    return pd.DataFrame(rows, columns=["class", "top-1", "top-3", "n"]).sort_values("top-1", kind="stable")


def misclassified_image(entry: dict) -> np.ndarray:
    """eval.json keeps each image as a flat list with its shape; the first channel is shown."""
    image = np.asarray(entry["image"], dtype=np.uint8).reshape(entry["shape"])
    return image[..., 0] if image.ndim == 3 else image


def job_id(run: str) -> str:
    return f"evaluate-{run}"


def _job_status(run: str) -> tuple[jobs.Job | None, jobs.JobStatus | None]:
    job = jobs.read_job(common.runs_dir(), job_id(run))
    return (job, jobs.job_status(job)) if job else (None, None)


def _evaluate_button(run: str) -> None:
    job, status = _job_status(run)
    if status is not None and status.state == "running":
        _job_progress(run)
        return
    if status is not None and status.state in ("failed", "stopped"):
        st.error(f"The last evaluation {status.state}: {status.message or 'see the log below'}")
        st.code(jobs.log_tail(job, 12), language=None)
    if st.button("Evaluate on the test split", key="evaluate_start", type="primary"):
        try:
            jobs.start(common.runs_dir(), job_id(run), "evaluate", [jobs.evaluate_step(run)], run=run)
        except Exception as exc:  # noqa: BLE001 - show any launch failure instead of breaking the page
            st.error(str(exc))
        else:
            st.rerun()


@st.fragment(run_every=2)
def _job_progress(run: str) -> None:
    """The running evaluation, re-read from its files every 2 s; the page reloads when it has ended."""
    job, status = _job_status(run)
    if status is None or status.state != "running":
        st.rerun(scope="app")
    st.info(f"Evaluating {run} in the background...")
    if status.fraction is not None:
        st.progress(status.fraction, text=status.stage or "evaluating")
    st.code(jobs.log_tail(job, 8) or "(starting)", language=None)


def render() -> None:
    st.header("Evaluate")
    runs = [r for r in common.run_summaries() if r["status"] != "damaged"]
    candidates = [r["name"] for r in runs if (Path(r["path"]) / "eval.json").exists()
                  or (Path(r["path"]) / "model" / "model.keras").exists()]
    if not candidates:
        st.info("No run has a trained model or an eval.json yet.")
        return
    run = st.selectbox("Run", candidates, key="evaluate_run")
    run_dir = common.run_dir_of(run)
    result = common.read_json_file(run_dir / "eval.json")
    if result is None:
        st.info(f"{run} has not been evaluated yet.")
        _evaluate_button(run)
        return
    c1, c2, c3, c4, c5 = st.columns(5)
    c1.metric("top-1", f"{result['top1']:.4f}")
    c2.metric("top-3", f"{result['top3']:.4f}")
    c3.metric("MAP@3", f"{result['map3']:.4f}")
    balanced = result.get("balanced_top1")  # absent from evaluations made before it existed
    c4.metric("class-balanced top-1", f"{balanced:.4f}" if balanced is not None else "-",
              help="the mean of per-class top-1: every class counts the same, whatever its number of drawings")
    c5.metric("drawings", f"{result['n']:,}")
    st.caption(f"data: {result.get('data')}, checkpoint {result.get('checkpoint')}"
               + (f"; skipped classes: {', '.join(result['skipped_classes'])}" if result.get("skipped_classes") else ""))
    with st.expander("Re-evaluate"):
        _evaluate_button(run)

    left, right = st.columns([3, 2])
    with left:
        st.subheader("Confusion matrix")
        st.plotly_chart(confusion_figure(result), width="stretch", key="evaluate_confusion")
    with right:
        st.subheader("Top confusions")
        confusions = result.get("top_confusions") or []
        if confusions:
            st.dataframe(pd.DataFrame(confusions).rename(columns={"true": "true class", "pred": "predicted"}),
                         hide_index=True, key="evaluate_confusions")
        else:
            st.caption("No confusions.")
        st.subheader("Per-class accuracy")
        frame = per_class_frame(result)
        figure = go.Figure(go.Bar(x=frame["top-1"], y=frame["class"], orientation="h", name="top-1",
                                  hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
        figure.add_trace(go.Bar(x=frame["top-3"], y=frame["class"], orientation="h", name="top-3", opacity=0.4,
                                hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
        figure.update_layout(barmode="overlay", height=max(300, 16 * len(frame) + 80), xaxis={"range": [0, 1]},
                             margin={"l": 10, "r": 10, "t": 10, "b": 10}, legend={"orientation": "h"})
        st.plotly_chart(figure, width="stretch", key="evaluate_per_class")

    st.subheader("Misclassified drawings")
    wrong = result.get("misclassified") or []
    if not wrong:
        st.caption("None in the sample.")
        return
    true_filter = st.selectbox("True class", ["(all)", *sorted({w["true"] for w in wrong})], key="evaluate_gallery_class")
    shown = [w for w in wrong if true_filter in ("(all)", w["true"])]
    for start in range(0, len(shown), GALLERY_COLUMNS):
        columns = st.columns(GALLERY_COLUMNS)
        for column, entry in zip(columns, shown[start:start + GALLERY_COLUMNS], strict=False):
            guesses = ", ".join(f"{label} {prob:.2f}" for label, prob in entry.get("top", []))
            column.image(misclassified_image(entry), width=84, clamp=True,
                         caption=f"{entry['true']} -> {entry['pred']}")
            column.caption(guesses)
