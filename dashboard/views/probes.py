"""Probes page of `streamlit run dashboard`: follow a few drawings through training (issue 12 §4).

A probe set (runs/probes/<set>.ndjson, pipeline.probes) is a few drawings with their intended labels,
made on the Draw page ("Save to probe set") or by `python -m pipeline probe-set NAME --from FILE`.
Runs trained with `--probes SET` score it at every epoch end into runs/<run>/probes.jsonl; for other
runs (the shipped ones) "Score with the saved models" does what `python -m pipeline probe RUN SET` does
(a few drawings through the cached model: milliseconds, so no background job).

Across runs: each run's latest top-1 on the set and every drawing's guess, side by side. Per run: each
drawing as a small picture (pipeline.raster's rendering) beside the probability of its label per epoch,
with the chunk boundaries marked (a dashed line where a resume started): when did it learn "cat", and
did a resume set it back.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import common
from pipeline import probes as probes_mod
from pipeline import runs as runs_mod
from pipeline.errors import QuickDrawError

PICTURE_SIZE = 64
COLUMNS = 4


@st.cache_data(show_spinner=False, max_entries=100)
def _set_cached(runs_dir: str, name: str, mtime: float) -> list[probes_mod.Probe]:
    return probes_mod.read_set(Path(runs_dir), name)


def read_set(name: str) -> list[probes_mod.Probe]:
    path = probes_mod.set_path(common.runs_dir(), name)
    return _set_cached(str(common.runs_dir()), name, path.stat().st_mtime_ns if path.exists() else 0)


@st.cache_data(show_spinner=False, max_entries=1000)
def _table_cached(run_dir: str, name: str, mtime: float) -> list[dict]:
    return probes_mod.probability_table(Path(run_dir), name)


def probability_table(run_dir: Path, name: str) -> pd.DataFrame:
    path = run_dir / "probes.jsonl"
    return pd.DataFrame(_table_cached(str(run_dir), name, path.stat().st_mtime_ns if path.exists() else 0))


@st.cache_data(show_spinner=False, max_entries=2000)
def picture(drawing_json: str) -> np.ndarray:
    """The drawing as the dataset's bitmaps draw it, dark ink on white, for people."""
    from pipeline.raster import render_bitmap
    from pipeline.strokes import from_google

    return 255 - render_bitmap(from_google(json.loads(drawing_json)), PICTURE_SIZE)


def drawing_picture(probe: probes_mod.Probe) -> np.ndarray:
    return picture(json.dumps(probe.drawing, separators=(",", ":")))


@st.cache_data(show_spinner=False, max_entries=2000)
def picture_url(drawing_json: str) -> str:
    """The picture as a PNG data URL, for the drawings column of a table (st.column_config.ImageColumn)."""
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(picture(drawing_json)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def resume_epochs(run_dir: Path) -> list[tuple[int, bool]]:
    """(first epoch of a chunk after the first, whether it resumed from a checkpoint) from events.jsonl."""
    marks = {int(event["epoch"]): bool(event.get("resumed_from")) for event in runs_mod.resumptions(common.events(run_dir))}
    return sorted(marks.items())


def probability_figure(rows: pd.DataFrame, marks: list[tuple[int, bool]]) -> go.Figure:
    figure = go.Figure()
    for source, style in (("train", dict(mode="lines+markers")), ("saved-model", dict(mode="markers"))):
        part = rows[rows["source"] == source]
        if len(part):
            figure.add_trace(go.Scatter(x=part["epoch"], y=part["prob"], name=source, marker=dict(size=6),
                                        customdata=part["top1"],
                                        hovertemplate="epoch %{x}: p=%{y:.3f}, guess %{customdata}<extra></extra>",
                                        **style))
    for epoch, resumed in marks:
        figure.add_vline(x=epoch - 0.5, line_dash="dash" if resumed else "dot", line_color="#999")
    figure.update_layout(height=160, margin=dict(l=10, r=10, t=10, b=10), showlegend=False,
                         yaxis=dict(range=[-0.05, 1.05], title=None), xaxis=dict(title=None, dtick=1))
    return figure


def score_saved_models(run_names: list[str], set_name: str) -> None:
    for name in run_names:
        run_dir = common.run_dir_of(name)
        try:
            probes_mod.score_saved_model(run_dir, set_name, predictor=common.load_predictor(run_dir),
                                         runs_dir=common.runs_dir())
        except QuickDrawError as exc:
            st.error(f"{name}: {exc}")


def show_across_runs(set_name: str, probes: list[probes_mod.Probe], run_dirs: dict[str, Path]) -> None:
    rows = probes_mod.top1_by_run(run_dirs, set_name)
    if not rows:
        st.info("None of these runs has scored this set yet: press **Score with the saved models**, or train "
                f"with `--probes {set_name}`.")
        return
    st.subheader("Across runs")
    with st.container(key="probes-top1"):
        st.dataframe(pd.DataFrame([{"run": r["run"], "epoch": r["epoch"], "scored by": r["source"],
                                    "top-1": r["top1"]} for r in rows]),
                     hide_index=True, column_config={"top-1": st.column_config.ProgressColumn(
                         "top-1", format="%.2f", min_value=0.0, max_value=1.0)})

    guesses = pd.DataFrame({"drawing": [picture_url(json.dumps(p.drawing, separators=(",", ":"))) for p in probes],
                            "label": [p.label for p in probes],
                            **{r["run"]: [r["guesses"].get(p.id, "-") for p in probes] for r in rows}})
    st.caption("Each drawing's top-1 guess per run (the latest score of each run).")
    st.dataframe(guesses, hide_index=True, column_config={"drawing": st.column_config.ImageColumn("drawing")})


def show_run(set_name: str, probes: list[probes_mod.Probe], run: str, run_dir: Path) -> None:
    table = probability_table(run_dir, set_name)
    if table.empty:
        st.info(f"{run} has no scores of this set yet.")
        return
    marks = resume_epochs(run_dir)
    st.caption("Probability of each drawing's label per epoch; lines: scored at the end of each epoch of "
               "training, dots: the saved model (`probe`); dashed: a resume from a checkpoint, dotted: a new chunk.")
    for start in range(0, len(probes), COLUMNS):
        columns = st.columns(COLUMNS)
        for column, (index, probe) in zip(columns, enumerate(probes[start:start + COLUMNS], start=start),
                                          strict=False):
            rows = table[table["id"] == probe.id]
            with column, st.container(border=True, key=f"probe-{run}-{index}"):
                st.image(drawing_picture(probe), width=PICTURE_SIZE)
                if rows.empty:
                    st.caption(f"{probe.label}: not scored yet")
                    continue
                last = rows.iloc[-1]
                prob = "not a class of this run" if pd.isna(last["prob"]) else f"p={last['prob']:.2f}"
                learned = probes_mod.learned_epoch(rows.to_dict("records"))
                since = f"; right since epoch {learned}" if learned is not None else ""
                st.caption(f"**{probe.label}** - epoch {last['epoch']}: {prob}, guess {last['top1']}{since}")
                st.plotly_chart(probability_figure(rows, marks), key=f"probe-chart-{run}-{index}",
                                config={"displayModeBar": False})


def render() -> None:
    st.header("Probes")
    runs_dir = common.runs_dir()
    sets = probes_mod.list_sets(runs_dir)
    if not sets:
        st.info("No probe sets yet: draw on the **Draw** page and use *Save to probe set*, or "
                "`python -m pipeline probe-set NAME --from DRAWINGS.ndjson --label LABEL`.")
        return
    set_name = st.selectbox("Probe set", sets, key="probes_set")
    probes = read_set(set_name)
    st.caption(f"{len(probes)} drawing(s) in {probes_mod.set_path(runs_dir, set_name)}")
    with_model = [r["name"] for r in common.runs_with_model(common.run_summaries())]
    scored = [name for name in with_model if set_name in probes_mod.sets_scored(common.run_dir_of(name))]
    chosen = st.multiselect("Runs", with_model, default=scored or with_model[:3], key="probes_runs")
    if st.button("Score with the saved models", key="probes_score", disabled=not chosen,
                 help="what `python -m pipeline probe RUN SET` does: a 'saved-model' line in runs/RUN/probes.jsonl"):
        score_saved_models(chosen, set_name)
    run_dirs = {name: common.run_dir_of(name) for name in chosen}
    show_across_runs(set_name, probes, run_dirs)
    if not chosen:
        return
    st.subheader("Per run")
    run = st.selectbox("Run", chosen, key="probes_run")
    show_run(set_name, probes, run, run_dirs[run])
