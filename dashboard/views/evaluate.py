"""Evaluate page of `streamlit run dashboard`: one evaluation of a run - the test split's
(runs/<run>/eval.json) or, once pipeline.evaluate lists them, a folder's - as top-1/top-3/MAP@3, the
confusion matrix as a heatmap with the top confusions, per-class accuracy and a gallery of
misclassified drawings. Without an evaluation a button runs `python -m pipeline evaluate RUN` in the
background (a pipeline.jobs job: its state, progress and error are read from its files).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import common
from pipeline import evaluate as evaluate_mod
from pipeline import jobs

GALLERY_COLUMNS = 8
GALLERY_PAGE = 24  # drawings shown at first and added by each "Show more"
TEST_SPLIT = "test split"  # the label of runs/<run>/eval.json
# pipeline.evaluate's function listing a run's evaluations (eval.json and evals/<folder>.json); without
# it the picker offers the test split alone.
EVALUATION_LISTING = "list_evaluations"


def evaluation_files(run_dir: Path) -> list[Path]:
    """The files a run's evaluations are stored in (the cache key of its listing)."""
    folder = run_dir / "evals"
    return [p for p in [run_dir / "eval.json", *(sorted(folder.glob("*.json")) if folder.is_dir() else [])]
            if p.is_file()]


@st.cache_data(show_spinner=False, max_entries=200)
def _evaluations_cached(run_dir: str, signature: tuple) -> dict[str, str]:
    listing = getattr(evaluate_mod, EVALUATION_LISTING, None)
    if listing is None:
        path = Path(run_dir) / "eval.json"
        return {TEST_SPLIT: str(path)} if path.exists() else {}
    return {item.label: str(item.path) for item in listing(Path(run_dir))}


def evaluations(run_dir: Path) -> dict[str, Path]:
    """{label: evaluation file} of a run for the Evaluation picker, the test split first:
    pipeline.evaluate's listing (its items have .label and .path), else the test split's eval.json.
    Re-read when one of the files changes."""
    signature = tuple((p.name, p.stat().st_mtime_ns) for p in evaluation_files(run_dir))
    return {label: Path(path) for label, path in _evaluations_cached(str(run_dir), signature).items()}


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


def mistakes_count(result: dict, true: str | None = None, pred: str | None = None) -> int:
    """How many drawings of the evaluation were misclassified (of a true class, as a predicted class),
    from its confusion matrix: the gallery only holds a sample of them."""
    classes = result["classes"]
    matrix = np.asarray(result["confusion"], dtype=np.int64)
    np.fill_diagonal(matrix, 0)
    rows = [classes.index(true)] if true is not None else slice(None)
    columns = [classes.index(pred)] if pred is not None else slice(None)
    return int(matrix[rows][:, columns].sum())


def job_id(run: str) -> str:
    return f"evaluate-{run}"


def _job_status(run: str) -> tuple[jobs.Job | None, jobs.JobStatus | None]:
    job = jobs.read_job(common.runs_dir(), job_id(run))
    return (job, jobs.job_status(job)) if job else (None, None)


def _test_split_mtime(run: str) -> float:
    path = common.run_dir_of(run) / "eval.json"
    return path.stat().st_mtime if path.exists() else 0.0


def _evaluate_button(run: str) -> None:
    job, status = _job_status(run)
    if status is not None and status.state == "running":
        _job_progress(run, _test_split_mtime(run))
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


@st.fragment(run_every=1)
def _job_progress(run: str, shown_mtime: float) -> None:
    """The running evaluation, re-read from its files every second; the page reloads as soon as the job
    wrote a new eval.json (the process takes a moment longer to exit) or ended."""
    job, status = _job_status(run)
    if status is None or status.state != "running" or _test_split_mtime(run) != shown_mtime:
        st.rerun(scope="app")
    st.info(f"Evaluating {run} in the background...")
    if status.fraction is not None:
        st.progress(status.fraction, text=status.stage or "evaluating")
    st.code(jobs.log_tail(job, 8) or "(starting)", language=None)


def render() -> None:
    st.header("Evaluate")
    runs = [r for r in common.run_summaries() if r["status"] != "damaged"]
    candidates = [r["name"] for r in runs if evaluation_files(Path(r["path"]))
                  or (Path(r["path"]) / "model" / "model.keras").exists()]
    if not candidates:
        st.info("No run has a trained model or an eval.json yet.")
        return
    left, right = st.columns([2, 2])
    run = left.selectbox("Run", candidates, key="evaluate_run")
    run_dir = common.run_dir_of(run)
    available = evaluations(run_dir)
    label = right.selectbox("Evaluation", list(available) or [TEST_SPLIT], key="evaluate_which",
                            help="which drawings the model was evaluated on: the run's held-out test split, "
                                 "or a folder of drawings")
    result = common.read_json_file(available[label]) if label in available else None
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
    path = available[label]
    where = path.relative_to(run_dir) if path.is_relative_to(run_dir) else path
    when = result.get("evaluated_at")
    with st.container(key="evaluate_which_caption"):
        st.caption(f"Evaluation on the **{label}** (`{where}`), checkpoint {result.get('checkpoint')}"
                   + (f", evaluated {dt.datetime.fromtimestamp(when):%Y-%m-%d %H:%M}" if isinstance(when, int | float) else "")
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
    _gallery(result)


def _reset_gallery() -> None:
    st.session_state.pop("evaluate_gallery_limit", None)


def _show_more() -> None:
    st.session_state["evaluate_gallery_limit"] = st.session_state.get("evaluate_gallery_limit", GALLERY_PAGE) + GALLERY_PAGE


def _gallery(result: dict) -> None:
    """The misclassified drawings the evaluation kept, by true and predicted class, a page at a time,
    saying how many mistakes there are in all (the confusion matrix counts them all)."""
    wrong = result.get("misclassified") or []
    if not wrong:
        st.caption("None in the sample.")
        return
    c1, c2 = st.columns(2)
    true = c1.selectbox("True class", ["(all)", *sorted({w["true"] for w in wrong})], key="evaluate_gallery_class",
                        on_change=_reset_gallery)
    preds = sorted({w["pred"] for w in wrong if true in ("(all)", w["true"])})
    pred = c2.selectbox("Predicted as", ["(all)", *preds], key="evaluate_gallery_pred", on_change=_reset_gallery)
    true_class, pred_class = (None if true == "(all)" else true), (None if pred == "(all)" else pred)
    kept = [w for w in wrong if true_class in (None, w["true"]) and pred_class in (None, w["pred"])]
    limit = st.session_state.get("evaluate_gallery_limit", GALLERY_PAGE)
    shown = kept[:limit]
    which = " -> ".join(c or "any" for c in (true_class, pred_class)) + " " if true_class or pred_class else ""
    total = mistakes_count(result, true_class, pred_class)
    text = f"Showing {len(shown)} of {total:,} {which}mistakes."
    if len(kept) < total:
        text += (f" The evaluation kept {len(kept)} of them: it stores a sample of {len(wrong)} of all its "
                 f"{mistakes_count(result):,} misclassified drawings, spread evenly over them.")
    with st.container(key="evaluate_gallery_count"):
        st.caption(text)
    for start in range(0, len(shown), GALLERY_COLUMNS):
        columns = st.columns(GALLERY_COLUMNS)
        for column, entry in zip(columns, shown[start:start + GALLERY_COLUMNS], strict=False):
            guesses = ", ".join(f"{label} {prob:.2f}" for label, prob in entry.get("top", []))
            column.image(misclassified_image(entry), width=84, clamp=True,
                         caption=f"{entry['true']} -> {entry['pred']}")
            column.caption(guesses)
    if len(shown) < len(kept):
        st.button(f"Show more ({len(kept) - len(shown)} more kept)", key="evaluate_gallery_more", on_click=_show_more)
