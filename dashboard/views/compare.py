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
from pipeline import runs as runs_mod
from pipeline.errors import QuickDrawError
from pipeline.runs import METRIC_COLUMNS, METRIC_LABELS

DEFAULT_METRIC = "val_top3"
# Marks of a run's events: legend name, line dash, symbol. A chunk start after the first is a resume.
MARKS = {
    "chunk_start": ("chunk start", "dot", "triangle-down"),
    "signal_stop": ("stopped", "dash", "square"),
    "crash_detected": ("crash", "dashdot", "x"),
    "lock_takeover": ("lock takeover", "longdash", "diamond"),
}
MARK_SIZE = 10
MARK_TOP, MARK_STEP = 0.96, 0.05  # heights of the marks' symbols (fractions of the plot's height)
MARK_NEAR = 0.02  # symbols closer than this fraction of the x span are staggered
# The x-axis choices: radio label -> build_figure's axis.
AXES = {"epoch": "epoch", "wall-clock time": "time", "time since start": "elapsed", "training time": "training"}
AXIS_TITLES = {"epoch": "global epoch", "time": "wall-clock time (UTC)", "elapsed": "time since the run started",
               "training": "training time (gaps between chunks removed)"}
AXIS_HELP = ("**epoch**: the global epoch. **wall-clock time**: the time of day each epoch ended, so runs trained "
             "at different times sit apart. **time since start**: each epoch's end minus the run's first start. "
             "**training time**: the epochs' durations (ended - started in history.csv) added up, so the gaps "
             "between chunks are removed.")
ACCURACY_METRICS = tuple(m for m in METRIC_COLUMNS if m != "lr" and not m.endswith("loss"))
ACCURACY_TOP = 1.02  # accuracy axes end here at most
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
# Seed groups (pipeline.runs.seed_groups): the band around a group's mean curve, radio label -> kind.
SPREADS = {"mean ± 1 sd": "sd", "min-max": "range"}
BAND_OPACITY = 0.18


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
    """One row per (run, epoch) with every history column plus `<metric>_smoothed` and the x of each
    time axis: `time` (the time of day the epoch ended), `elapsed_s` (seconds from the run's first
    start to the epoch's end) and `training_s` (the epochs' durations, ended - started, summed: the gaps
    between chunks removed)."""
    frames = []
    for name, run_dir in run_dirs.items():
        rows = common.history(run_dir)
        if not rows:
            continue
        frame = pd.DataFrame(rows)
        frame.insert(0, "run", name)
        values = frame[metric].tolist() if metric in frame else [None] * len(frame)
        frame[f"{metric}_smoothed"] = common.ema_smooth(values, smoothing)
        ended = pd.to_numeric(frame["ended"], errors="coerce") if "ended" in frame else pd.Series(float("nan"), frame.index)
        started = pd.to_numeric(frame["started"], errors="coerce") if "started" in frame else ended
        frame["time"] = pd.to_datetime(ended, unit="s", utc=True).dt.tz_convert(None)
        frame["elapsed_s"] = ended - started.min()
        frame["training_s"] = (ended - started).clip(lower=0).cumsum()
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=["run", "epoch", "chunk", metric])
    return pd.concat(frames, ignore_index=True)


def time_unit(seconds: pd.Series) -> tuple[str, float]:
    """Minutes, or hours when the longest run of the figure took more than two hours."""
    longest = seconds.max() if len(seconds) else None
    return ("hours", 3600.0) if longest is not None and pd.notna(longest) and longest > 2 * 3600 else ("minutes", 60.0)


def x_values(frame: pd.DataFrame, axis: str, scale: float) -> pd.Series:
    if axis == "epoch":
        return frame["epoch"]
    if axis == "time":
        return frame["time"]
    return frame[f"{axis}_s"] / scale


def training_seconds_at(moment: float, frame: pd.DataFrame) -> float:
    """Training time at a moment: the part of each epoch (started..ended) before it, added up."""
    started = pd.to_numeric(frame["started"], errors="coerce")
    ended = pd.to_numeric(frame["ended"], errors="coerce")
    return float((ended.clip(upper=moment) - started).clip(lower=0).sum())


def _event_x(event: dict, axis: str, frame: pd.DataFrame):
    """Where an event sits on the axis (seconds on the two elapsed-time axes), or None."""
    if axis == "epoch":
        epoch = event.get("epoch") or event.get("last_epoch")
        if epoch is None:
            return None
        # A chunk starts before its first epoch; a stop happens during `epoch`.
        return float(epoch) - 0.5 if event["event"] == "chunk_start" else float(epoch)
    moment = event.get("time")
    if not isinstance(moment, int | float) or isinstance(moment, bool):
        return None
    if axis == "time":
        return dt.datetime.fromtimestamp(moment, dt.UTC).replace(tzinfo=None)
    if "started" not in frame or frame["started"].isna().all():
        return None
    if axis == "elapsed":
        return moment - float(pd.to_numeric(frame["started"], errors="coerce").min())
    return training_seconds_at(moment, frame)


def event_marks(run_dir: Path, name: str, axis: str, frame: pd.DataFrame) -> list[dict]:
    """The run's chunk starts (after its first) and interruptions: {kind, x, text}, text naming the run."""
    marks = []
    events = common.events(run_dir)
    resumptions = runs_mod.resumptions(events)
    for event in events:
        kind = event.get("event")
        if kind not in MARKS or (kind == "chunk_start" and event not in resumptions):
            continue
        x = _event_x(event, axis, frame)
        if x is None:
            continue
        if kind == "chunk_start":
            text = f"chunk {event.get('chunk')} of {name} starts (epoch {event.get('epoch')})"
        else:
            where = f"epoch {event['epoch']}" if event.get("epoch") else (
                f"after epoch {event['last_epoch']}" if event.get("last_epoch") else "")
            detail = ", ".join(str(part) for part in (event.get("signal"), f"chunk {event['chunk']}"
                                                      if event.get("chunk") else None, where) if part)
            text = f"{MARKS[kind][0]} ({name})" + (f": {detail}" if detail else "")
        if isinstance(event.get("time"), int | float):
            text += "<br>" + dt.datetime.fromtimestamp(event["time"], dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        marks.append({"kind": kind, "x": x, "text": text})
    return marks


def _position(x) -> float:
    return pd.Timestamp(x).value / 1e9 if isinstance(x, dt.datetime | pd.Timestamp) else float(x)


def place_marks(marks: list[dict], xs: list) -> None:
    """Give each mark a `level` (the height of its symbol: 1 = the top of the plot): the highest free one,
    so two symbols closer than MARK_NEAR of the x axis's span (`xs`: every x of the figure) - two runs
    stopped at the same epoch, a crash and the resume after it - never sit on each other."""
    positions = [_position(m["x"]) for m in marks]
    everything = positions + [_position(x) for x in xs if x is not None and not pd.isna(x)]
    span = (max(everything) - min(everything)) if everything else 0.0
    near = MARK_NEAR * (span or 1.0)
    placed: list[tuple[float, int]] = []
    for mark, position in zip(marks, positions, strict=True):
        taken = {slot for other, slot in placed if abs(other - position) < near}
        slot = next(i for i in range(len(placed) + 1) if i not in taken)
        placed.append((position, slot))
        mark["level"] = MARK_TOP - MARK_STEP * slot


def mark_traces(name: str, colour: str, marks: list[dict]) -> list[go.Scatter]:
    """One trace per kind of mark of one run, on the hidden y2 axis (0 = bottom, 1 = top of the plot):
    vertical lines in the run's colour, dashed by kind, with the kind's symbol at the mark's `level`
    (place_marks) and the run's name in the hover of every point of the line. No text is drawn on the
    plot, so nothing can overlap, and the PNG shows the same lines, symbols and legend as the page."""
    traces = []
    for kind, (label, dash, symbol) in MARKS.items():
        xs, ys, sizes, texts = [], [], [], []
        for mark in (m for m in marks if m["kind"] == kind):
            heights = sorted({i / 10 for i in range(11)} | {mark["level"]})
            xs += [mark["x"]] * len(heights) + [None]
            ys += heights + [None]
            sizes += [MARK_SIZE if y == mark["level"] else 0 for y in heights] + [0]
            texts += [mark["text"]] * len(heights) + [""]
        if xs:
            traces.append(go.Scatter(
                x=xs, y=ys, yaxis="y2", mode="lines+markers", name=f"{label} ({name})", legendgroup=f"mark:{kind}",
                showlegend=False, line={"color": colour, "dash": dash, "width": 1.5}, opacity=0.9,
                marker={"symbol": symbol, "size": sizes, "color": colour, "line": {"color": "white", "width": 1}},
                hovertext=texts, hovertemplate="%{hovertext}<extra></extra>"))
    return traces


def mark_legend(kinds: set[str]) -> list[go.Scatter]:
    """A legend entry per kind of mark shown (grey: the lines take each run's colour); clicking one hides
    or shows that kind for every run."""
    return [go.Scatter(x=[None], y=[None], yaxis="y2", mode="lines+markers", name=label, legendgroup=f"mark:{kind}",
                       line={"color": "#555", "dash": dash, "width": 1.5},
                       marker={"symbol": symbol, "size": MARK_SIZE, "color": "#555"}, hoverinfo="skip")
            for kind, (label, dash, symbol) in MARKS.items() if kind in kinds]


def y_range(metric: str, values: pd.Series) -> list[float] | None:
    """Accuracy-type metrics: a range that includes 1 and never goes beyond ACCURACY_TOP (a 3-class
    run's val top-3 of 1.0 is not drawn on a 0-2 axis); None (autorange) for losses and the rate."""
    values = pd.to_numeric(values, errors="coerce").dropna()
    if metric not in ACCURACY_METRICS or values.empty:
        return None
    low, high = float(values.min()), float(values.max())
    pad = max(0.05 * (high - low), 0.01)
    return [max(0.0, low - pad), min(ACCURACY_TOP, max(high, 1.0) + pad)]


def branch_points(summaries: dict[str, dict], names) -> dict[str, tuple[str, int]]:
    """{run: (parent, epoch)} of the runs among `names` that branched from another run among them
    (`summaries`: run summaries by name): those are drawn from the branch point on."""
    points = {}
    for name in names:
        summary = summaries.get(name) or {}
        parent, epoch = summary.get("parent"), summary.get("parent_epoch")
        if parent in names and parent != name and isinstance(epoch, int):
            points[name] = (parent, epoch)
    return points


def build_figure(data: pd.DataFrame, run_dirs: dict[str, Path], metric: str, axis: str, smoothing: float,
                 show_events: bool = True, groups=(), spread: str = "sd", expanded=frozenset(),
                 branches: dict[str, tuple[str, int]] | None = None) -> go.Figure:
    """axis: "epoch", "time" (time of day), "elapsed" (time since the run started) or "training"
    (training time, the gaps between chunks removed). `groups` (pipeline.runs.SeedGroup, drawn on the
    epoch axis only): a mean curve and a `spread` band each; the members of a group whose label is not in
    `expanded` are not drawn on their own. `branches` ({run: (parent, epoch)}, `branch_points`): while its
    parent is drawn, a branch is drawn from the parent's epoch on, with a marker there - the epochs before
    it, which the branch copied from its parent, appear once, as the parent's. Its x on every axis comes
    from its own history (the copied rows included), so its training time continues from the parent's."""
    figure = go.Figure()
    groups = list(groups) if axis == "epoch" else []
    hidden = {name for group in groups if group.label not in expanded for name in group.members}
    for number, group in enumerate(groups):
        figure.add_traces(group_traces(data, group, metric, COLOURS[(len(run_dirs) + number) % len(COLOURS)], spread))
    unit, scale = time_unit(data[f"{axis}_s"]) if axis in ("elapsed", "training") and not data.empty else ("", 1.0)
    marks: list[dict] = []
    xs: list = []
    drawn_runs = {name for name in run_dirs if name not in hidden and not data.empty and metric in data
                  and data.loc[data["run"] == name, metric].notna().any()}
    for index, (name, run_dir) in enumerate(run_dirs.items()):
        whole = data[data["run"] == name] if not data.empty else data
        if name not in drawn_runs:
            continue
        colour = COLOURS[index % len(COLOURS)]
        x_whole = x_values(whole, axis, scale)
        parent, branch_epoch = (branches or {}).get(name, (None, None))
        frame = whole
        if parent in drawn_runs and (whole["epoch"] >= branch_epoch).any():
            frame = whole[whole["epoch"] >= branch_epoch]  # the copied epochs before it are the parent's
        else:
            parent = None
        x = x_whole.loc[frame.index]
        xs += list(x)
        custom = frame[["run", "chunk", "epoch", metric]].to_numpy()
        hover = "run %{customdata[0]}<br>chunk %{customdata[1]}<br>epoch %{customdata[2]}<br>" + \
            metric + " %{customdata[3]:.4f}<extra></extra>"
        if smoothing > 0:
            figure.add_trace(go.Scatter(x=x, y=frame[metric], mode="lines", line={"color": colour, "width": 1},
                                        opacity=0.3, name=f"{name} (raw)", legendgroup=name, showlegend=False,
                                        customdata=custom, hovertemplate=hover))
        figure.add_trace(go.Scatter(x=x, y=frame[f"{metric}_smoothed"], mode="lines+markers",
                                    marker={"size": 4}, line={"color": colour, "width": 2}, name=name,
                                    legendgroup=name, customdata=custom, hovertemplate=hover))
        if parent is not None:
            start = frame.index[0]
            label = f"{name} branches from {parent} at epoch {frame.loc[start, 'epoch']}"
            figure.add_trace(go.Scatter(
                x=[x.loc[start]], y=[frame.loc[start, f"{metric}_smoothed"]], mode="markers", name=label,
                legendgroup=name, marker={"symbol": "diamond", "size": 13, "color": colour,
                                          "line": {"color": "black", "width": 1.5}},
                hovertext=[label], hovertemplate="%{hovertext}<extra></extra>"))
        # Best epoch by the metric itself (min for losses).
        values = frame[metric].dropna()
        if len(values) and metric != "lr":
            best_index = values.idxmin() if lower_is_better(metric) else values.idxmax()
            best = frame.loc[best_index]
            figure.add_trace(go.Scatter(
                x=[x.loc[best_index]], y=[best[metric]], mode="markers", legendgroup=name, showlegend=False,
                marker={"symbol": "star", "size": 14, "color": colour, "line": {"color": "black", "width": 1}},
                customdata=[[name, best["chunk"], best["epoch"], best[metric]]],
                hovertemplate="best: " + hover))
        if show_events:
            for mark in event_marks(run_dir, name, axis, whole):
                x = mark["x"] / scale if axis in ("elapsed", "training") else mark["x"]
                marks.append({**mark, "x": x, "run": name, "colour": colour})
    place_marks(marks, xs)
    for name in run_dirs:
        mine = [m for m in marks if m["run"] == name]
        if mine:
            figure.add_traces(mark_traces(name, mine[0]["colour"], mine))
    figure.add_traces(mark_legend({m["kind"] for m in marks}))
    x_title = AXIS_TITLES[axis] + (f", in {unit}" if unit else "")
    figure.update_layout(
        height=500, margin={"l": 40, "r": 10, "t": 90, "b": 40}, hovermode="closest",
        title=f"{METRIC_LABELS.get(metric, metric)} vs {AXIS_TITLES[axis]}",
        xaxis_title=x_title, yaxis_title=METRIC_LABELS.get(metric, metric),
        yaxis2={"overlaying": "y", "range": [0, 1], "visible": False, "fixedrange": True},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.04, "x": 0}, title_y=0.97,
    )
    if metric == "lr":
        figure.update_layout(yaxis_type="log")
    limits = y_range(metric, data[metric] if metric in data else pd.Series(dtype=float))
    if limits is not None:
        figure.update_layout(yaxis_range=limits)
    return figure


def group_curve(data: pd.DataFrame, members, column: str) -> pd.DataFrame:
    """Per epoch, over the members' values of `column`: mean, sd (sample), min, max and n (members with
    a value at that epoch)."""
    frame = data[data["run"].isin(list(members))] if not data.empty and column in data else pd.DataFrame()
    if frame.empty:
        return pd.DataFrame(columns=["epoch", "mean", "sd", "min", "max", "n"])
    values = pd.to_numeric(frame[column], errors="coerce").groupby(frame["epoch"])
    curve = pd.DataFrame({"mean": values.mean(), "sd": values.std(ddof=1).fillna(0.0), "min": values.min(),
                          "max": values.max(), "n": values.count()}).dropna(subset=["mean"])
    return curve.reset_index()


def _rgba(colour: str, alpha: float) -> str:
    red, green, blue = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},{alpha})"


def group_traces(data: pd.DataFrame, group, metric: str, colour: str, spread: str) -> list[go.Scatter]:
    """A seed group on the epoch axis: the band's lower edge, its upper edge filled down to it
    (fill="tonexty"), and the mean curve named for the group (of the smoothed values)."""
    curve = group_curve(data, group.members, f"{metric}_smoothed")
    if curve.empty:
        return []
    low, high = ((curve["mean"] - curve["sd"], curve["mean"] + curve["sd"]) if spread == "sd"
                 else (curve["min"], curve["max"]))
    what = "mean ± 1 sd" if spread == "sd" else "min-max"
    custom = curve[["n", "mean", "sd", "min", "max"]].to_numpy()
    hover = (f"{group.label}<br>epoch %{{x}}<br>{metric} mean %{{customdata[1]:.4f}} ± %{{customdata[2]:.4f}}"
             "<br>min %{customdata[3]:.4f}, max %{customdata[4]:.4f}<br>%{customdata[0]} runs<extra></extra>")
    edge = {"color": colour, "width": 0}
    return [
        go.Scatter(x=curve["epoch"], y=low, mode="lines", line=edge, name=f"{group.label} {what} (low)",
                   legendgroup=f"group:{group.label}", showlegend=False, hoverinfo="skip"),
        go.Scatter(x=curve["epoch"], y=high, mode="lines", line=edge, fill="tonexty",
                   fillcolor=_rgba(colour, BAND_OPACITY), name=f"{group.label} {what}",
                   legendgroup=f"group:{group.label}", showlegend=False, hoverinfo="skip"),
        go.Scatter(x=curve["epoch"], y=curve["mean"], mode="lines", line={"color": colour, "width": 3},
                   name=group.label, legendgroup=f"group:{group.label}", customdata=custom, hovertemplate=hover),
    ]


def difference_table(rows: list[dict]) -> pd.DataFrame:
    """pipeline.runs.config_differences rows as text cells ("-": the run has no such field)."""
    return pd.DataFrame([{key: "-" if v is None else str(v) for key, v in row.items()} for row in rows])


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
    # Only the compared runs are read (a summary and a history each), so the page does not slow down as
    # runs pile up; every run's summary is needed only to pick the default pair.
    folders = {path.name: path for path in common.run_folders()}
    if not folders:
        st.info("No runs to compare yet: train one on the **Train** page.")
        return
    selected = [n for n in st.session_state.get(common.SELECTED_KEY, []) if n in folders]
    if not selected:
        selected = default_selection(common.run_summaries())
        st.caption("No runs selected on the Runs page: showing the most recent CNN and MobileNet runs.")
    names = st.multiselect("Runs", list(folders), default=selected, key="compare_runs")
    c1, c2, c3, c4 = st.columns([2, 5, 2, 2])
    metric = c1.selectbox("Metric", list(METRIC_COLUMNS), index=METRIC_COLUMNS.index(DEFAULT_METRIC),
                          format_func=lambda m: f"{m} ({METRIC_LABELS.get(m, m)})", key="compare_metric")
    axis = AXES[c2.radio("X axis", list(AXES), key="compare_axis", horizontal=True, help=AXIS_HELP)]
    smoothing = c3.slider("Smoothing", 0.0, 0.99, 0.0, 0.01, key="compare_smoothing",
                          help="Exponential moving average with debiasing, like TensorBoard's.")
    show_events = c4.checkbox("Chunks & interruptions", value=True, key="compare_events")
    if not names:
        st.info("Pick runs above, or tick them on the Runs page.")
        return
    by_name = {name: common.run_summary(folders[name]) for name in names}
    for name in [n for n in names if by_name[n]["status"] == "damaged"]:
        st.warning(f"**{name}** cannot be compared: {by_name[name].get('damaged')}")
    names = [n for n in names if by_name[n]["status"] != "damaged"]
    run_dirs = {name: folders[name] for name in names}
    configs = common.run_configs(run_dirs)
    data = merged_history(run_dirs, metric, smoothing)
    if data.empty:
        st.info("The selected runs have no finished epoch yet.")
        return
    groups = runs_mod.seed_groups(configs)
    spread, expanded = "sd", set()
    if groups:
        g1, g2, g3 = st.columns([2, 3, 5])
        grouping = g1.toggle("Group seeds", value=True, key="compare_group_seeds",
                             help="Runs whose configs differ only in their seed: a mean curve with a band.")
        spread = SPREADS[g2.radio("Band", list(SPREADS), key="compare_spread", horizontal=True,
                                  disabled=not grouping or axis != "epoch")]
        for group in groups:
            if g3.toggle(f"Show members of {group.label}", key=f"compare_members:{group.label}",
                         disabled=not grouping or axis != "epoch"):
                expanded.add(group.label)
        if not grouping:
            groups = []
        elif axis != "epoch":
            st.caption("Seed groups are drawn on the epoch axis only (their members' epochs line up, their times "
                       "do not): each run is drawn on its own here.")
        else:
            st.caption(f"Seed groups: {'; '.join(f'{g.label}: ' + ', '.join(g.members) for g in groups)}. The line "
                       f"is the members' mean, the band {'one standard deviation either side' if spread == 'sd' else 'their min to max'}.")
    branches = branch_points(by_name, names)
    figure = build_figure(data, run_dirs, metric, axis, smoothing, show_events, groups, spread, expanded, branches)
    st.plotly_chart(figure, width="stretch", key="compare_chart")
    if branches:
        st.caption("Branches start at their parent's epoch (the diamond): the epochs before it, which a branch "
                   "copied, are drawn once, as the parent's: " +
                   "; ".join(f"{name} from {parent} at epoch {epoch}" for name, (parent, epoch) in branches.items()) + ".")
    if axis != "epoch":
        untimed = sorted(set(data["run"]) - set(data.loc[data["time"].notna(), "run"]))
        if untimed:
            st.caption(f"Not on this axis (history.csv has no epoch times, e.g. imported logs): {', '.join(untimed)}.")
    if show_events:
        st.caption("Dashed lines mark chunk starts (resumes) and interruptions in the colour of their run's curve; "
                   "hover a line or its symbol for the run, chunk and epoch. Click a legend entry to hide that kind.")

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
    if len(configs) >= 2:
        every = st.toggle("All fields", key="compare_diff_all", help="Every field of config.json, not only those that differ.")
        differences = runs_mod.config_differences(configs, all_fields=every)
        st.caption("Every configuration field (config.json)" if every else "What differs between the compared runs (config.json)")
        if differences:
            st.dataframe(difference_table(differences), hide_index=True, key="compare_diff")
        else:
            st.caption("Their configurations are the same apart from names, dates and versions.")

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
