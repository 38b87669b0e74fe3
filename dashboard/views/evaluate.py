"""Evaluate page of `streamlit run dashboard`: one evaluation of a run - the test split's
(runs/<run>/eval.json) or, once pipeline.evaluate lists them, a folder's - as top-1/top-3/MAP@3, the
confusion matrix as a heatmap with the top confusions, per-class accuracy and a gallery of
misclassified drawings. Without an evaluation a button runs `python -m pipeline evaluate RUN` in the
background (a pipeline.jobs job: its state, progress and error are read from its files).

"Compare with another run" (test split only) sets run A, the page's run, against a run B evaluated on
the same classes (pipeline.evaluate.compare_test_splits): per-class top-1 deltas sorted best first, the
confusion matrix difference A - B as a heatmap, and the pairs that changed most; clicking a cell or
picking a pair filters the misclassified gallery to that true -> predicted pair, for A and for B:
every test drawing of the pair, predicted again with each run's model (pipeline.evaluate.pair_drawings),
since eval.json keeps only a sample of the mistakes.
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
from pipeline.errors import QuickDrawError

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

    result_b = _compare_section(run) if label == TEST_SPLIT else None
    st.subheader("Misclassified drawings")
    _gallery({**result, "run": run}, result_b)  # named as the run is now, even if renamed


def _reset_gallery() -> None:
    for key in ("evaluate_gallery_limit", "evaluate_gallery_b_limit"):
        st.session_state.pop(key, None)


def _show_more(key: str = "evaluate_gallery_limit") -> None:
    st.session_state[key] = st.session_state.get(key, GALLERY_PAGE) + GALLERY_PAGE


def _gallery_filter_choice(key: str, kept_classes: set[str], classes: list[str]) -> list[str]:
    """The options of a gallery filter: the classes of the kept drawings, and the class chosen by a click
    on the difference heatmap or a picked pair even when the sample kept none of it (the count then says
    0 of n). A choice the evaluation does not know (another run's) goes back to (all)."""
    chosen = st.session_state.get(key)
    if chosen not in (None, "(all)") and chosen not in classes:
        st.session_state[key] = "(all)"
        chosen = None
    return ["(all)", *sorted(kept_classes | ({chosen} if chosen not in (None, "(all)") else set()))]


def _gallery(result: dict, result_b: dict | None = None) -> None:
    """The misclassified drawings the evaluation kept, by true and predicted class, a page at a time,
    saying how many mistakes there are in all (the confusion matrix counts them all); filtered to one
    true -> predicted pair of a test-split evaluation, every drawing of the pair (`pair_mistakes`).
    With a run B compared (its eval.json), B's drawings of the same true -> predicted filter follow."""
    wrong = result.get("misclassified") or []
    if not wrong:
        st.caption("None in the sample.")
        return
    c1, c2 = st.columns(2)
    classes = result["classes"]
    true = c1.selectbox("True class", _gallery_filter_choice("evaluate_gallery_class", {w["true"] for w in wrong}, classes),
                        key="evaluate_gallery_class", on_change=_reset_gallery)
    preds = {w["pred"] for w in wrong if true in ("(all)", w["true"])}
    pred = c2.selectbox("Predicted as", _gallery_filter_choice("evaluate_gallery_pred", preds, classes),
                        key="evaluate_gallery_pred", on_change=_reset_gallery)
    true_class, pred_class = (None if true == "(all)" else true), (None if pred == "(all)" else pred)
    _gallery_page(result, true_class, pred_class, "evaluate_gallery")
    if result_b is not None and (true_class or pred_class):
        st.markdown(f"**Run B, {result_b['run']}**: the same filter")
        _gallery_page(result_b, true_class, pred_class, "evaluate_gallery_b")


def _gallery_page(result: dict, true_class: str | None, pred_class: str | None, key: str) -> None:
    """One evaluation's gallery of the filter, `GALLERY_PAGE` more drawings at each "Show more"."""
    limit = st.session_state.get(f"{key}_limit", GALLERY_PAGE)
    shown, kept, every = _gallery_grid(result, true_class, pred_class, limit, f"{key}_count")
    if len(shown) < len(kept):
        more = f"{len(kept) - len(shown)} more" + ("" if every else " kept")
        st.button(f"Show more ({more})", key=f"{key}_more", on_click=_show_more, args=(f"{key}_limit",))


@st.cache_data(show_spinner="Predicting the test drawings of that class with the run's model...", max_entries=100)
def _pair_mistakes_cached(run_dir: str, true: str, pred: str, signature: tuple) -> list[dict]:
    found = evaluate_mod.pair_drawings(run_dir, true, pred, predictor=common.load_predictor(Path(run_dir)))
    return [{"true": true, "pred": pred, "top": top, "shape": list(image.shape), "image": image}
            for image, top in zip(found.images, found.top, strict=True)]


def pair_mistakes(result: dict, true: str | None, pred: str | None) -> tuple[list[dict] | None, str]:
    """(every drawing of the test split of `true` that the evaluated run's model predicts as `pred`, as
    gallery entries, ""), predicted again by pipeline.evaluate.pair_drawings with the run's model
    (cached until the model, config or data change); (None, why not) where the gallery keeps to the
    evaluation's sample: no single pair, a folder evaluation, no model of the checkpoint, no data."""
    if true is None or pred is None or true == pred:
        return None, ""
    if str(result.get("data") or TEST_SPLIT) != TEST_SPLIT or result.get("checkpoint", "best") != "best":
        return None, ""
    try:
        run_dir = common.run_dir_of(str(result["run"]))
        inputs = evaluate_mod.pair_drawings_inputs(run_dir)
        signature = tuple(path.stat().st_mtime_ns for path in inputs)
        return _pair_mistakes_cached(str(run_dir), true, pred, signature), ""
    except (QuickDrawError, OSError) as exc:
        return None, f"Its other drawings cannot be shown: {exc}"


def _gallery_grid(result: dict, true_class: str | None, pred_class: str | None, limit: int,
                  count_key: str) -> tuple[list[dict], list[dict], bool]:
    """"Showing k of n" and the first `limit` drawings of the filter: of one pair every drawing of the
    test split (`pair_mistakes`), else those the evaluation kept; (shown, kept, every one kept)."""
    wrong = result.get("misclassified") or []
    every, why_not = pair_mistakes(result, true_class, pred_class)
    kept = every if every is not None else [
        w for w in wrong if true_class in (None, w["true"]) and pred_class in (None, w["pred"])]
    shown = kept[:limit]
    which = " -> ".join(c or "any" for c in (true_class, pred_class)) + " " if true_class or pred_class else ""
    total = mistakes_count(result, true_class, pred_class)
    text = f"Showing {len(shown)} of {total:,} {which}mistakes."
    if every is not None and len(every) != total:
        text += (f" The run's model now predicts {len(every)} test drawings of {true_class} as {pred_class}: "
                 "its evaluation was made with another model; re-evaluate.")
    elif every is None and len(kept) < total:
        text += (f" The evaluation kept {len(kept)} of them: it stores a sample of {len(wrong)} of all its "
                 f"{mistakes_count(result):,} misclassified drawings, spread evenly over them. {why_not}")
    with st.container(key=count_key):
        st.caption(text.strip())
    for start in range(0, len(shown), GALLERY_COLUMNS):
        columns = st.columns(GALLERY_COLUMNS)
        for column, entry in zip(columns, shown[start:start + GALLERY_COLUMNS], strict=False):
            guesses = ", ".join(f"{label} {prob:.2f}" for label, prob in entry.get("top", []))
            column.image(misclassified_image(entry), width=84, clamp=True,
                         caption=f"{entry['true']} -> {entry['pred']}")
            column.caption(guesses)
    return shown, kept, every is not None


# ---------------------------------------------------------------- compare with another run
NO_RUN = "(none)"
NO_PAIR = "(pick a pair)"


@st.cache_data(show_spinner=False, max_entries=200)
def _test_split_classes_cached(run_dir: str, mtime: float) -> tuple[str, ...] | None:
    classes = evaluate_mod.classes_of_test_split(Path(run_dir))
    return tuple(classes) if classes is not None else None


def comparable_runs(run: str) -> list[str]:
    """The other runs with a test-split evaluation over the same classes as `run`'s (in any order)."""
    own = _test_split_classes_cached(str(common.run_dir_of(run)), _test_split_mtime(run))
    if own is None:
        return []
    names = []
    for summary in common.run_summaries():
        path = Path(summary["path"]) / "eval.json"
        if summary["name"] == run or summary["status"] == "damaged" or not path.is_file():
            continue
        theirs = _test_split_classes_cached(str(path.parent), path.stat().st_mtime)
        if theirs is not None and set(theirs) == set(own):
            names.append(summary["name"])
    return sorted(names)


@st.cache_data(show_spinner=False, max_entries=20)
def _comparison_cached(run_dir_a: str, run_dir_b: str, mtimes: tuple) -> evaluate_mod.EvaluationComparison:
    return evaluate_mod.compare_test_splits(run_dir_a, run_dir_b)


def comparison(run_a: str, run_b: str) -> evaluate_mod.EvaluationComparison:
    """pipeline.evaluate's comparison of the two runs' eval.json, re-read when either changes."""
    return _comparison_cached(str(common.run_dir_of(run_a)), str(common.run_dir_of(run_b)),
                              (_test_split_mtime(run_a), _test_split_mtime(run_b)))


def delta_figure(compared: evaluate_mod.EvaluationComparison) -> go.Figure:
    """Per-class top-1 of A minus B as horizontal bars, the best delta at the top, the worst at the bottom."""
    rows = compared.per_class
    deltas = [row["delta"] for row in rows]
    figure = go.Figure(go.Bar(
        x=deltas, y=[row["class"] for row in rows], orientation="h",
        marker_color=["#2a9d8f" if d >= 0 else "#e76f51" for d in deltas],
        customdata=[[row["top1_a"], row["top1_b"], row["n_a"]] for row in rows],
        hovertemplate="%{y}: A %{customdata[0]:.3f}, B %{customdata[1]:.3f}, A-B %{x:+.3f} "
                      "(%{customdata[2]} drawings)<extra></extra>"))
    figure.update_layout(height=max(300, 16 * len(rows) + 80), margin={"l": 10, "r": 10, "t": 30, "b": 10},
                         xaxis={"title": f"top-1 {compared.run_a} - {compared.run_b}", "zeroline": True},
                         yaxis={"autorange": "reversed", "tickfont": {"size": 10}, "dtick": 1})
    return figure


def difference_figure(compared: evaluate_mod.EvaluationComparison) -> go.Figure:
    """The confusion difference A - B over A's class order, diverging colours centred at 0 (red: A makes
    that mistake more often). The diagonal (drawings right) is left blank: the per-class deltas show it,
    and its counts would swamp the colour scale.

    Plotly cannot select a heatmap cell (heatmaps have no point selection, so Streamlit's on_select never
    hears of a click on one): an invisible marker on every off-diagonal cell carries the hover and is what
    a click selects."""
    classes = compared.classes
    difference = compared.difference.astype(float)
    np.fill_diagonal(difference, np.nan)
    reach = max(1.0, float(np.nanmax(np.abs(difference)))) if len(classes) > 1 else 1.0
    figure = go.Figure(go.Heatmap(z=difference, x=classes, y=classes, colorscale="RdBu_r", zmid=0, zmin=-reach,
                                  zmax=reach, hoverinfo="skip", xgap=1, ygap=1, colorbar={"title": "A - B"}))
    rows, columns = np.nonzero(~np.eye(len(classes), dtype=bool))
    figure.add_trace(go.Scatter(
        x=[classes[j] for j in columns], y=[classes[i] for i in rows], mode="markers", showlegend=False,
        marker={"symbol": "square", "size": 10, "color": "rgba(0,0,0,0)"},
        customdata=np.stack([compared.confusion_a[rows, columns], compared.confusion_b[rows, columns],
                             compared.difference[rows, columns]], axis=-1),
        hovertemplate="true %{y} -> predicted %{x}: A %{customdata[0]}, B %{customdata[1]}, "
                      "A-B %{customdata[2]:+d}<extra></extra>"))
    side = max(420, min(1600, 16 * len(classes) + 220))
    ticks = {"tickmode": "array", "tickvals": classes, "tickfont": {"size": 9}, "showgrid": False}
    figure.update_layout(height=side, margin={"l": 10, "r": 10, "t": 30, "b": 10}, plot_bgcolor="white",
                         xaxis={"title": "predicted", "tickangle": -60, **ticks},
                         yaxis={"title": "true", "autorange": "reversed", **ticks})
    return figure


def pair_of_selection(selection) -> tuple[str, str] | None:
    """(true, predicted) of a click on the difference heatmap (st.plotly_chart's selection event: its
    points carry the cell's x = predicted and y = true), None when nothing is selected."""
    points = (selection or {}).get("selection", {}).get("points") or []
    if not points or "x" not in points[0] or "y" not in points[0]:
        return None
    return str(points[0]["y"]), str(points[0]["x"])


def _filter_gallery(true: str, pred: str) -> None:
    st.session_state["evaluate_gallery_class"] = true
    st.session_state["evaluate_gallery_pred"] = pred
    _reset_gallery()


def _on_heatmap_click() -> None:
    pair = pair_of_selection(st.session_state.get("evaluate_compare_heatmap"))
    if pair is not None and pair[0] != pair[1]:
        _filter_gallery(*pair)


def pair_label(change: dict | None) -> str:
    if change is None:
        return NO_PAIR
    return f"{change['true']} -> {change['pred']} (A {change['a']}, B {change['b']}, A-B {change['delta']:+d})"


def _on_pair_pick() -> None:
    picked = st.session_state.get("evaluate_compare_pair")
    if picked is not None:
        _filter_gallery(picked["true"], picked["pred"])


def _compare_section(run: str) -> dict | None:
    """"Compare with another run": returns run B's eval.json when one is chosen (for the gallery)."""
    with st.container(key="evaluate_compare"):
        return _compare(run)


def _compare(run: str) -> dict | None:
    st.subheader("Compare with another run")
    others = comparable_runs(run)
    if not others:
        st.caption("No other run has a test-split evaluation over the same classes.")
        return None
    run_b = st.selectbox("Run B", [NO_RUN, *others], key="evaluate_compare_run",
                         help=f"A is {run}; B is any other run evaluated on its test split over the same classes")
    if run_b == NO_RUN:
        return None
    try:
        compared = comparison(run, run_b)
    except QuickDrawError as exc:
        st.error(str(exc))
        return None
    c1, c2, c3 = st.columns(3)
    c1.metric(f"top-1 A ({run})", f"{compared.top1_a:.4f}")
    c2.metric(f"top-1 B ({run_b})", f"{compared.top1_b:.4f}")
    c3.metric("A - B", f"{compared.top1_a - compared.top1_b:+.4f}")
    if not compared.same_drawings:
        st.warning(f"{run} and {run_b} were tested on different drawings (their test splits differ in size per "
                   "class: other data, per-class count or split); the deltas mix model and data.")
    rows = compared.per_class
    better = [f"{r['class']} {r['delta']:+.3f}" for r in rows[:3] if r["delta"] > 0]
    worse = [f"{r['class']} {r['delta']:+.3f}" for r in reversed(rows[-3:]) if r["delta"] < 0]
    with st.container(key="evaluate_compare_summary"):
        st.caption(f"A = **{run}**, B = **{run_b}**. A is better most on: {', '.join(better) or 'no class'}; "
                   f"worse most on: {', '.join(worse) or 'no class'}.")
    changes = compared.changed_confusions
    deltas, pairs = st.columns([2, 3])
    deltas.markdown("**Per-class top-1, A - B** (best first, worst last)")
    deltas.plotly_chart(delta_figure(compared), width="stretch", key="evaluate_compare_deltas")
    with pairs:
        st.markdown("**Top changed confusions** (pick one to see its drawings below)")
        if changes:
            st.selectbox("Show a pair in the gallery", [None, *changes], format_func=pair_label,
                         key="evaluate_compare_pair", on_change=_on_pair_pick)
            st.dataframe(pd.DataFrame(changes).rename(columns={"true": "true class", "pred": "predicted",
                                                               "a": f"A ({run})", "b": f"B ({run_b})", "delta": "A - B"}),
                         hide_index=True, key="evaluate_compare_table")
        else:
            st.caption("The two runs make the same mistakes.")
    st.markdown("**Confusion matrix difference, A - B** (red: A makes that mistake more often; click a cell to see "
                "its drawings below)")
    st.plotly_chart(difference_figure(compared), width="stretch", key="evaluate_compare_heatmap",
                    on_select=_on_heatmap_click, selection_mode="points")
    result_b = common.read_json_file(common.run_dir_of(run_b) / "eval.json")
    return {**result_b, "run": run_b} if result_b else None  # named as the run is now, even if renamed
