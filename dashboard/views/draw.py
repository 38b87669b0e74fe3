"""Draw page of `streamlit run dashboard`: draw on a canvas and see up to two models' guesses.

The canvas (streamlit-drawable-canvas 0.13) reports one Fabric.js `Path` object per stroke; those
strokes go through pipeline.predict (Google's simplification, then the run's own rendering) - never a
crop-and-resize of canvas pixels. Each model's top-5 is also written as an ordered list inside
`st.container(key="predictions-1")` / `"predictions-2"` for browser tests and scripts.

Tests inject a drawing with `st.session_state["draw_injected_objects"]` (Fabric objects or Google
strokes), used instead of the canvas.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from dashboard import common

INJECT_KEY = "draw_injected_objects"
CANVAS_SIZE = 280
NONE = "(none)"


def default_models(runs: list[dict]) -> list[str]:
    """web/models/index.json's default run first, then the best bitmap runs of different models."""
    names = [r["name"] for r in runs]
    picks: list[str] = []
    index = common.REPO / "web" / "models" / "index.json"
    try:
        default = json.loads(index.read_text(encoding="utf-8")).get("default")
    except (OSError, ValueError, AttributeError):
        default = None
    if isinstance(default, dict):
        default = default.get("run") or default.get("name")
    if isinstance(default, str) and default in names:
        picks.append(default)
    # More classes first: a 2-class run's perfect top-3 says little about drawing freely.
    ranked = sorted(runs, key=lambda r: (r.get("representation") == "bitmap28", r.get("classes") or 0,
                                         r.get("best_val_top3") or 0), reverse=True)
    models_taken = {next((r.get("model") for r in runs if r["name"] == p), None) for p in picks}
    for r in ranked:  # one per model family first (e.g. the CNN and the MobileNet)
        if len(picks) >= 2:
            break
        if r["name"] not in picks and r.get("model") not in models_taken:
            picks.append(r["name"])
            models_taken.add(r.get("model"))
    for r in ranked:
        if len(picks) >= 2:
            break
        if r["name"] not in picks:
            picks.append(r["name"])
    return picks


def has_ink(objects) -> bool:
    """True when the drawing holds at least one stroke with points."""
    if not objects:
        return False
    if isinstance(objects, list) and objects and isinstance(objects[0], dict):
        return any(str(o.get("type", "")).lower() == "path" and o.get("path") for o in objects)
    return len(objects) > 0


def _stroke_count(objects) -> int:
    if objects and isinstance(objects[0], dict):
        return sum(1 for o in objects if str(o.get("type", "")).lower() == "path")
    return len(objects or [])


def top_markdown(top: list[tuple[str, float]]) -> str:
    return "\n".join(f"{i}. {label} ({prob:.3f})" for i, (label, prob) in enumerate(top, start=1))


def _bars(top: list[tuple[str, float]]) -> go.Figure:
    labels = [label for label, _ in top][::-1]
    probs = [prob for _, prob in top][::-1]
    figure = go.Figure(go.Bar(x=probs, y=labels, orientation="h", text=[f"{p:.1%}" for p in probs],
                              textposition="auto", marker_color="#1f77b4"))
    figure.update_layout(height=220, margin={"l": 10, "r": 10, "t": 10, "b": 10}, xaxis={"range": [0, 1]})
    return figure


def _canvas_objects():
    """The Fabric objects of the canvas (or the injected drawing), or None before anything is drawn."""
    if INJECT_KEY in st.session_state:
        st.caption("Using a drawing injected through session_state.")
        return st.session_state[INJECT_KEY]
    from streamlit_drawable_canvas import st_canvas  # needs a Streamlit runtime: import here only

    stroke_width = st.session_state.get("draw_stroke_width", 6)
    result = st_canvas(
        fill_color="rgba(0, 0, 0, 0)", stroke_width=stroke_width, stroke_color="#000000",
        background_color="#ffffff", height=CANVAS_SIZE, width=CANVAS_SIZE, drawing_mode="freedraw",
        update_streamlit=True, key=f"draw_canvas_{st.session_state.get('draw_canvas_n', 0)}",
    )
    if result is None or result.json_data is None:
        return None
    return result.json_data.get("objects") or []


def _show_prediction(slot: int, run_name: str, run_dir: Path, objects) -> None:
    from pipeline.errors import DrawingError, QuickDrawError

    with st.container(key=f"model-{slot}"):  # the run shown in this slot, readable by browser tests
        st.subheader(run_name)
    try:
        predictor = common.load_predictor(run_dir)
    except QuickDrawError as exc:
        st.error(f"Cannot load {run_name}: {exc}")
        return
    try:
        prediction = predictor.predict_detailed(objects, top=5)
    except DrawingError as exc:
        st.warning(f"That drawing could not be read: {exc}")
        return
    with st.container(key=f"predictions-{slot}"):
        st.markdown(top_markdown(prediction.top))
    st.plotly_chart(_bars(prediction.top), width="stretch", key=f"draw_bars_{slot}",
                    config={"displayModeBar": False})
    image = np.asarray(prediction.image)
    left, right = st.columns(2)
    # The first channel is what the model sees (stroke-order intensity for the strokes representation).
    left.image(image[..., 0], caption=f"model input {image.shape[0]}x{image.shape[1]}", width=96, clamp=True)
    right.metric("latency", f"{prediction.seconds * 1000:.1f} ms")
    right.caption(f"{predictor.representation}, {len(predictor.classes)} classes")


def render() -> None:
    st.header("Draw")
    runs = common.runs_with_model(common.run_summaries())
    if not runs:
        st.info("No run has a trained model yet (runs/<name>/model/model.keras): train one on the **Train** page.")
        return
    names = [r["name"] for r in runs]
    defaults = default_models(runs)
    left, right = st.columns([1, 2])
    with left:
        objects = _canvas_objects()
        c1, c2 = st.columns(2)
        if c1.button("Clear", key="draw_clear"):
            st.session_state["draw_canvas_n"] = st.session_state.get("draw_canvas_n", 0) + 1
            st.session_state.pop(INJECT_KEY, None)
            st.rerun()
        c2.slider("Pen width", 2, 16, 6, key="draw_stroke_width",
                  help="stroke width in canvas pixels (the model sees Google's fixed line width either way)")
        st.caption("Draw one of the run's classes. Undo and clear are in the canvas toolbar.")
    with right:
        p1, p2 = st.columns(2)
        first = p1.selectbox("Model 1", names, index=names.index(defaults[0]) if defaults else 0, key="draw_model_1")
        second_options = [NONE, *names]
        second_default = defaults[1] if len(defaults) > 1 and defaults[1] != first else NONE
        second = p2.selectbox("Model 2", second_options, index=second_options.index(second_default),
                              key="draw_model_2")
        if not has_ink(objects):
            st.info("Draw something on the canvas - the guesses appear as you draw.")
            return
        with st.expander(f"Strokes the canvas reported ({_stroke_count(objects)})"):
            with st.container(key="draw-strokes"):
                st.code(json.dumps(objects, separators=(",", ":")), language="json", wrap_lines=True)
        chosen = [first] + ([second] if second != NONE else [])
        columns = st.columns(len(chosen))
        by_name = {r["name"]: Path(r["path"]) for r in runs}
        for slot, (column, name) in enumerate(zip(columns, chosen, strict=True), start=1):
            with column:
                _show_prediction(slot, name, by_name[name], objects)
