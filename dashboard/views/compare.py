"""Compare page of `streamlit run dashboard`: learning curves of the selected runs (plotly) against
global epoch or wall-clock time, with chunk boundaries, interruptions, best-epoch markers and
TensorBoard-style smoothing; download the figure (PNG) and the merged data (CSV).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import common
from pipeline.runs import METRIC_COLUMNS, METRIC_LABELS

DEFAULT_METRIC = "val_top3"
INTERRUPTIONS = {"signal_stop": "stopped", "crash_detected": "crash", "lock_takeover": "lock takeover"}
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def default_selection(summaries: list[dict]) -> list[str]:
    """The most recent mobilenet run and the most recent cnn run comparable with it (same
    representation and class count, so a small side experiment is not paired with the main one),
    else the most recent of each, else the two most recent runs."""
    usable = [r for r in summaries if r["status"] != "damaged" and r.get("epochs")]  # newest first
    mobilenet = next((r for r in usable if r.get("model") == "mobilenet"), None)
    cnns = [r for r in usable if r.get("model") == "cnn"]
    if mobilenet is not None:
        comparable = [r for r in cnns if r.get("representation") == mobilenet.get("representation")
                      and r.get("classes") == mobilenet.get("classes")]
        cnns = comparable or cnns
    picks = [r["name"] for r in (cnns[:1] + ([mobilenet] if mobilenet else []))]
    if len(picks) < 2:
        picks += [r["name"] for r in usable if r["name"] not in picks][: 2 - len(picks)]
    return picks


def recipe_rows(run_dirs: dict[str, Path]) -> list[dict]:
    """One row per run: model, data and every recipe choice recorded in its config.json."""
    from pipeline.errors import QuickDrawError
    from pipeline.recipe import describe
    from pipeline.runs import read_config

    rows = []
    for name, run_dir in run_dirs.items():
        try:
            rows.append({"run": name, **describe(read_config(run_dir))})
        except QuickDrawError as exc:
            rows.append({"run": name, "model": f"unreadable config: {exc}"})
    return rows


def lower_is_better(metric: str) -> bool:
    return metric.endswith("loss")


def merged_history(run_dirs: dict[str, Path], metric: str, smoothing: float) -> pd.DataFrame:
    """One row per (run, epoch) with every history column plus `<metric>_smoothed`."""
    frames = []
    for name, run_dir in run_dirs.items():
        rows = common.history(run_dir)
        if not rows:
            continue
        frame = pd.DataFrame(rows)
        frame.insert(0, "run", name)
        values = frame[metric].tolist() if metric in frame else [None] * len(frame)
        frame[f"{metric}_smoothed"] = common.ema_smooth(values, smoothing)
        if "ended" in frame:
            frame["time"] = pd.to_datetime(frame["ended"], unit="s", utc=True).dt.tz_convert(None)
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=["run", "epoch", "chunk", metric])
    return pd.concat(frames, ignore_index=True)


def _event_x(event: dict, axis: str, frame: pd.DataFrame):
    if axis == "epoch":
        epoch = event.get("epoch") or event.get("last_epoch")
        if epoch is None:
            return None
        # A chunk starts before its first epoch; a stop happens during `epoch`.
        return float(epoch) - 0.5 if event["event"] == "chunk_start" else float(epoch)
    return dt.datetime.fromtimestamp(event["time"], dt.UTC).replace(tzinfo=None)


def _event_marks(run_dir: Path, name: str, colour: str, axis: str, frame: pd.DataFrame, shapes: list,
                 annotations: list) -> None:
    """Vertical lines for chunk starts (dotted, run colour) and interruptions (dashed red)."""
    for event in common.events(run_dir):
        kind = event.get("event")
        if kind != "chunk_start" and kind not in INTERRUPTIONS:
            continue
        x = _event_x(event, axis, frame)
        if x is None:
            continue
        if kind == "chunk_start":
            if event.get("chunk", 1) == 1:
                continue
            line, text = {"color": colour, "dash": "dot", "width": 1}, f"chunk {event.get('chunk')}"
            label = {"y": 1.0, "yanchor": "top", "xanchor": "right", "font": {"size": 9, "color": colour}}
        else:
            line, text = {"color": "#d62728", "dash": "dash", "width": 1.5}, f"{INTERRUPTIONS[kind]} ({name})"
            label = {"y": 0.0, "yanchor": "bottom", "xanchor": "left", "font": {"size": 9, "color": "#d62728"}}
        shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": x, "x1": x, "y0": 0, "y1": 1,
                       "line": line, "opacity": 0.7})
        annotations.append({"x": x, "yref": "paper", "text": text, "showarrow": False, "textangle": -90, **label})


def build_figure(data: pd.DataFrame, run_dirs: dict[str, Path], metric: str, axis: str, smoothing: float,
                 show_events: bool = True) -> go.Figure:
    figure = go.Figure()
    x_column = "epoch" if axis == "epoch" else "time"
    # Shapes are collected and set once: figure.add_vline copies the layout on every call (slow).
    shapes: list[dict] = []
    annotations: list[dict] = []
    for index, (name, run_dir) in enumerate(run_dirs.items()):
        frame = data[data["run"] == name] if not data.empty else data
        if frame.empty or metric not in frame or frame[metric].isna().all():
            continue
        colour = COLOURS[index % len(COLOURS)]
        custom = frame[["run", "chunk", "epoch", metric]].to_numpy()
        hover = "run %{customdata[0]}<br>chunk %{customdata[1]}<br>epoch %{customdata[2]}<br>" + \
            metric + " %{customdata[3]:.4f}<extra></extra>"
        if smoothing > 0:
            figure.add_trace(go.Scatter(x=frame[x_column], y=frame[metric], mode="lines", line={"color": colour, "width": 1},
                                        opacity=0.3, name=f"{name} (raw)", legendgroup=name, showlegend=False,
                                        customdata=custom, hovertemplate=hover))
        figure.add_trace(go.Scatter(x=frame[x_column], y=frame[f"{metric}_smoothed"], mode="lines+markers",
                                    marker={"size": 4}, line={"color": colour, "width": 2}, name=name,
                                    legendgroup=name, customdata=custom, hovertemplate=hover))
        # Best epoch by the metric itself (min for losses).
        values = frame[metric].dropna()
        if len(values) and metric != "lr":
            best_index = values.idxmin() if lower_is_better(metric) else values.idxmax()
            best = frame.loc[best_index]
            figure.add_trace(go.Scatter(
                x=[best[x_column]], y=[best[metric]], mode="markers", legendgroup=name, showlegend=False,
                marker={"symbol": "star", "size": 14, "color": colour, "line": {"color": "black", "width": 1}},
                customdata=[[name, best["chunk"], best["epoch"], best[metric]]],
                hovertemplate="best: " + hover))
        if show_events:
            _event_marks(run_dir, name, colour, axis, frame, shapes, annotations)
    figure.update_layout(
        height=500, margin={"l": 40, "r": 10, "t": 90, "b": 40}, hovermode="closest",
        title=f"{METRIC_LABELS.get(metric, metric)} vs {'global epoch' if axis == 'epoch' else 'wall-clock time'}",
        xaxis_title="epoch" if axis == "epoch" else "time", yaxis_title=metric,
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.04, "x": 0}, title_y=0.97,
        shapes=shapes, annotations=annotations,
    )
    if metric == "lr":
        figure.update_yaxes(type="log")
    return figure


def figure_png(figure: go.Figure) -> bytes:
    """PNG through kaleido (needs a Chrome: the system Chromium is used when kaleido finds none)."""
    import os

    from pipeline.browser import find_chromium

    chromium = find_chromium()
    if chromium and not os.environ.get("BROWSER_PATH"):
        os.environ["BROWSER_PATH"] = chromium  # where kaleido/choreographer look for a browser
    return figure.to_image(format="png", width=1200, height=600, scale=1)


def render() -> None:
    st.header("Compare")
    summaries = common.run_summaries()
    by_name = {r["name"]: r for r in summaries if r["status"] != "damaged"}
    if not by_name:
        st.info("No runs to compare yet: train one on the **Train** page.")
        return
    selected = [n for n in st.session_state.get(common.SELECTED_KEY, []) if n in by_name]
    if not selected:
        selected = default_selection(summaries)
        st.caption("No runs selected on the Runs page: showing the most recent CNN and MobileNet runs.")
    names = st.multiselect("Runs", list(by_name), default=selected, key="compare_runs")
    c1, c2, c3, c4 = st.columns([2, 2, 3, 2])
    metric = c1.selectbox("Metric", list(METRIC_COLUMNS), index=METRIC_COLUMNS.index(DEFAULT_METRIC),
                          format_func=lambda m: f"{m} ({METRIC_LABELS.get(m, m)})", key="compare_metric")
    axis = c2.radio("X axis", ["epoch", "wall-clock time"], key="compare_axis", horizontal=True)
    smoothing = c3.slider("Smoothing", 0.0, 0.99, 0.0, 0.01, key="compare_smoothing",
                          help="Exponential moving average with debiasing, like TensorBoard's.")
    show_events = c4.checkbox("Chunks & interruptions", value=True, key="compare_events")
    if not names:
        st.info("Pick runs above, or tick them on the Runs page.")
        return
    run_dirs = {name: Path(by_name[name]["path"]) for name in names}
    data = merged_history(run_dirs, metric, smoothing)
    if data.empty:
        st.info("The selected runs have no finished epoch yet.")
        return
    figure = build_figure(data, run_dirs, metric, "epoch" if axis == "epoch" else "time", smoothing, show_events)
    st.plotly_chart(figure, width="stretch", key="compare_chart")

    best_rows = []
    for name in names:
        frame = data[data["run"] == name]
        values = frame[metric].dropna() if metric in frame else pd.Series(dtype=float)
        if values.empty:
            continue
        index = values.idxmin() if lower_is_better(metric) else values.idxmax()
        best_rows.append({"run": name, "model": by_name[name].get("model"), "epochs": len(frame),
                          "chunks": int(frame["chunk"].max()) if "chunk" in frame else None,
                          f"best {metric}": float(frame.loc[index, metric]), "at epoch": int(frame.loc[index, "epoch"]),
                          f"last {metric}": float(values.iloc[-1])})
    st.dataframe(pd.DataFrame(best_rows), hide_index=True, key="compare_best")
    st.caption("Recipe of each run (config.json)")
    st.dataframe(pd.DataFrame(recipe_rows(run_dirs)), hide_index=True, key="compare_recipe")

    c1, c2 = st.columns(2)
    export_columns = [c for c in ["run", "epoch", "chunk", "started", "ended", *METRIC_COLUMNS, f"{metric}_smoothed"]
                      if c in data]
    c1.download_button("Download merged CSV", data[export_columns].to_csv(index=False).encode(),
                       file_name="compare.csv", mime="text/csv", key="compare_csv")
    if c2.button("Make PNG", key="compare_make_png"):
        try:
            with st.spinner("Rendering PNG with kaleido..."):
                st.session_state["compare_png"] = figure_png(figure)
        except Exception as exc:  # noqa: BLE001 - kaleido fails in many ways (no browser, timeouts); say why
            st.session_state.pop("compare_png", None)
            c2.error(f"PNG export failed ({type(exc).__name__}: {exc}). Kaleido needs a Chrome/Chromium: "
                     "install `chromium` or set BROWSER_PATH; the plotly toolbar's camera icon also saves a PNG.")
    if st.session_state.get("compare_png"):
        c2.download_button("Download PNG", st.session_state["compare_png"], file_name="compare.png",
                           mime="image/png", key="compare_png_download")
