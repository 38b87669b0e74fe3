"""Draw page of `streamlit run dashboard`: draw on a canvas and see up to two models' guesses.

The canvas is a small purpose-built Streamlit component (`st.components.v2`, the JavaScript below):
a plain 2D `<canvas class="upper-canvas">` that records every pointer position of every stroke and
sends the whole drawing to Python when a stroke ends. It reports each stroke as a Fabric.js `Path`
object (`M` then `L` commands in canvas pixels, the shape streamlit-drawable-canvas 0.13 reports),
so the strokes go through `pipeline.strokes.from_fabric` and pipeline.predict (Google's
simplification, then the run's own rendering) - never a crop-and-resize of canvas pixels.

Why not streamlit-drawable-canvas (which this page used until issue 9): its frontend puts its
toolbar over the drawing surface. The toolbar (`.dc-toolbar`, undo/redo/reset buttons) is
`position: absolute; top: -1rem` on the canvas's own box, 141 x 46 px at its top-right corner,
with `opacity: 0` but still hit-testable; it only slides away 100 ms after the pointer starts
hovering the canvas (a 100 ms transition after a 100 ms delay) and comes back whenever the pointer
leaves. Measured in Chromium with a brisk replay of real drawings on a freshly opened page, a stroke
touching the canvas's top 30 px (right half) in that window loses either its start (the press lands
on the toolbar, so Fabric never starts a path) or its end (the release lands on the *disabled* undo
button; Chromium dispatches no mouse events to disabled form controls, so Fabric never sees the
mouse-up and the next stroke's mouse-down discards the unfinished one). No `st_canvas` argument
removes the toolbar (`update_streamlit=False` pins it but then nothing reaches Python until a click
on its send button; `disabled=True` disables drawing), and the page cannot restyle a component's
shadow DOM without injecting script into it. (Its Fabric pencil brush also reports smoothed
quadratic curves, not the positions drawn.) Nothing of that is Streamlit's: the reruns lose nothing,
since every report carries the whole drawing and the latest one wins.

What makes this canvas loss-free: nothing covers the drawing surface (Undo and Clear sit below
it); the `<canvas>` is created by the script with its listeners already attached, so it cannot
appear before it can draw; pointer capture keeps a stroke that leaves the canvas; coalesced pointer
events keep every position; the canvas never reloads from Python (its arguments are the same every
run, its key is fixed, so reruns never re-create it) and each report is the whole drawing. Mouse
events dispatched directly on the canvas (harnesses that synthesise `MouseEvent`s) draw too. A
stroke's guess shows about 0.1 s after it ends (`_load_predictor` and `_GUESSER` say what made it
slow).

Browser tests and scripts read: each model's top-5 as an ordered list inside
`st.container(key="predictions-1")` / `"predictions-2"`, with a caption saying for how many strokes;
the strokes that reached Python as JSON in a hidden `<code>` inside `st.container(key="draw-strokes")`
(people see the stroke count, a picture of the strokes and a download of the JSON); "Save to probe set"
(pipeline.probes: set name and label, the label defaulting to Model 1's guess); the page's own
timings of its last run in `st.session_state["draw_timings"]` (bench/bench_draw.py).

A drawing too small to guess (a tap: `pipeline.strokes.check_big_enough`, the rule web/ shares) gets
"draw a bit more" instead of a guess. The time shown beside each guess is the page's own path, measured
in that run: from the run starting with the new strokes to that model's top-5 handed to the browser
(`bench/bench_draw.py` measures it on real drawings beside the bare model call).
Tests inject a drawing with `st.session_state["draw_injected_objects"]` (Fabric objects or Google
strokes), used instead of the canvas.
"""

from __future__ import annotations

import gc
import html
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import streamlit as st

from dashboard import common
from pipeline.errors import QuickDrawError
from pipeline.export import read_index

INJECT_KEY = "draw_injected_objects"
TIMINGS_KEY = "draw_timings"  # {slot: {run, path_ms, predict_ms, model_ms}} of the last run, for bench_draw.py
PATH_LABEL = "strokes in → top-5"
PATH_HELP = ("Measured in this run of the page, in Python: from the moment it started with the new strokes "
             "to this model's top-5 being handed to the browser (parsing, Google's simplification, "
             "rendering, the model call and the elements above; for Model 2 also Model 1's). The model "
             "call alone took {model_ms:.1f} ms. Sending to the browser and drawing there come on top. "
             "`python bench/bench_draw.py` measures it on real drawings.")
CANVAS_SIZE = 280
CANVAS_KEY = "draw_canvas"
NONE = "(none)"

# ---------------------------------------------------------------- the canvas component
# The template reserves the component's final size, so nothing moves when the script adds the canvas.
_CANVAS_HTML = """
<div class="qd-root">
  <div class="qd-box"></div>
  <div class="qd-tools">
    <button type="button" class="qd-undo" disabled>Undo</button>
    <button type="button" class="qd-clear" disabled>Clear</button>
  </div>
</div>
"""

_CANVAS_CSS = """
.qd-root { width: 280px; }
.qd-box { position: relative; width: 280px; height: 280px; background: #ffffff;
  outline: 1px solid var(--st-border-color, #d6d6d9); outline-offset: -1px; }
.qd-box canvas { position: absolute; left: 0; top: 0; width: 280px; height: 280px; display: block;
  touch-action: none; user-select: none; -webkit-user-select: none; cursor: crosshair;
  outline: 1px solid var(--st-border-color, #d6d6d9); outline-offset: -1px; }
.qd-tools { display: flex; gap: 0.5rem; height: 2rem; margin-top: 0.5rem; }
.qd-tools button { font: inherit; font-size: 0.875rem; padding: 0 0.75rem; cursor: pointer;
  border-radius: var(--st-button-radius, 0.5rem); border: 1px solid var(--st-border-color, #d6d6d9);
  background: var(--st-background-color, #ffffff); color: var(--st-text-color, #31333f); }
.qd-tools button:disabled { opacity: 0.45; cursor: not-allowed; }
"""

_CANVAS_JS = r"""
const STATES = new WeakMap();  // one drawing per mounted component (its shadow root)
const SIZE = 280;
const round2 = (v) => Math.round(v * 100) / 100;

// One stroke as the Fabric.js Path object streamlit-drawable-canvas 0.13 reported.
function toFabric(stroke) {
  let minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
  for (const [x, y] of stroke.points) {
    minX = Math.min(minX, x); minY = Math.min(minY, y); maxX = Math.max(maxX, x); maxY = Math.max(maxY, y);
  }
  const half = stroke.width / 2;
  return {
    type: "Path", originX: "left", originY: "top",
    left: round2(minX - half), top: round2(minY - half),
    width: round2(maxX - minX), height: round2(maxY - minY),
    fill: null, stroke: stroke.color, strokeWidth: stroke.width,
    strokeLineCap: "round", strokeLineJoin: "round", scaleX: 1, scaleY: 1, angle: 0,
    pathOffset: {x: round2((minX + maxX) / 2), y: round2((minY + maxY) / 2)},
    path: stroke.points.map(([x, y], i) => [i ? "L" : "M", x, y]),
  };
}

function create(root, data) {
  const box = root.querySelector(".qd-box");
  const undoButton = root.querySelector(".qd-undo");
  const clearButton = root.querySelector(".qd-clear");
  const canvas = document.createElement("canvas");
  canvas.className = "upper-canvas";
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.round(SIZE * ratio);
  canvas.height = Math.round(SIZE * ratio);
  const ctx = canvas.getContext("2d");
  const s = {
    strokes: [], current: null, pointerId: null, mouse: false,
    width: data.strokeWidth || 6, color: data.strokeColor || "#000000",
    setStateValue: () => {}, cleanup: [],
  };

  function paintStroke(stroke) {
    const pts = stroke.points;
    ctx.strokeStyle = stroke.color; ctx.fillStyle = stroke.color; ctx.lineWidth = stroke.width;
    ctx.lineCap = "round"; ctx.lineJoin = "round";
    if (pts.length === 1) {
      ctx.beginPath(); ctx.arc(pts[0][0], pts[0][1], stroke.width / 2, 0, 2 * Math.PI); ctx.fill();
      return;
    }
    ctx.beginPath(); ctx.moveTo(pts[0][0], pts[0][1]);
    for (let i = 1; i < pts.length; i++) ctx.lineTo(pts[i][0], pts[i][1]);
    ctx.stroke();
  }
  function redraw() {
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#ffffff"; ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    for (const stroke of s.strokes) paintStroke(stroke);
    if (s.current) paintStroke(s.current);
  }
  function report() {
    undoButton.disabled = clearButton.disabled = s.strokes.length === 0;
    canvas.dataset.strokes = String(s.strokes.length);
    // The whole drawing every time: a report that a rerun supersedes loses nothing.
    s.setStateValue("drawing", {objects: s.strokes.map(toFabric)});
  }
  function position(event) {
    const r = canvas.getBoundingClientRect();
    return [round2((event.clientX - r.left) * SIZE / (r.width || SIZE)),
            round2((event.clientY - r.top) * SIZE / (r.height || SIZE))];
  }
  function begin(point) {
    s.current = {points: [point], width: s.width, color: s.color};
    redraw();
  }
  function extend(point) {
    const pts = s.current.points, last = pts[pts.length - 1];
    pts.push(point);
    ctx.strokeStyle = s.current.color; ctx.lineWidth = s.current.width; ctx.lineCap = "round";
    ctx.beginPath(); ctx.moveTo(last[0], last[1]); ctx.lineTo(point[0], point[1]); ctx.stroke();
  }
  function end(point) {
    const stroke = s.current;
    s.current = null;
    if (!stroke) return;
    const last = stroke.points[stroke.points.length - 1];
    if (point && (point[0] !== last[0] || point[1] !== last[1])) stroke.points.push(point);
    s.strokes.push(stroke);
    redraw();
    report();
  }

  // Pointer events (mouse, pen, touch). preventDefault on pointerdown also suppresses the
  // compatibility mouse events, so a real mouse is never handled twice.
  canvas.addEventListener("pointerdown", (e) => {
    if (s.current || (e.pointerType === "mouse" && e.button !== 0)) return;
    e.preventDefault();
    s.pointerId = e.pointerId;
    try { canvas.setPointerCapture(e.pointerId); } catch (err) { /* capture is a nicety */ }
    begin(position(e));
  });
  canvas.addEventListener("pointermove", (e) => {
    if (e.pointerId !== s.pointerId || !s.current) return;
    e.preventDefault();
    let events = e.getCoalescedEvents ? e.getCoalescedEvents() : [];
    if (!events.length) events = [e];
    for (const c of events) extend(position(c));
  });
  const pointerEnd = (keepPoint) => (e) => {
    if (e.pointerId !== s.pointerId) return;
    s.pointerId = null;
    end(keepPoint ? position(e) : null);
  };
  canvas.addEventListener("pointerup", pointerEnd(true));
  canvas.addEventListener("pointercancel", pointerEnd(false));
  canvas.addEventListener("lostpointercapture", pointerEnd(false));

  // Mouse events that come without pointer events: synthesised by scripts on the canvas.
  const seen = new WeakSet();
  const mouseMove = (e) => {
    if (!s.mouse || seen.has(e)) return;
    seen.add(e);
    extend(position(e));
  };
  const mouseUp = (e) => {
    if (!s.mouse || seen.has(e) || e.button !== 0) return;
    seen.add(e);
    s.mouse = false;
    end(position(e));
  };
  canvas.addEventListener("mousedown", (e) => {
    if (s.current || e.button !== 0) return;
    e.preventDefault();
    s.mouse = true;
    begin(position(e));
  });
  for (const target of [canvas, window]) {
    target.addEventListener("mousemove", mouseMove, true);
    target.addEventListener("mouseup", mouseUp, true);
  }
  s.cleanup.push(() => {
    window.removeEventListener("mousemove", mouseMove, true);
    window.removeEventListener("mouseup", mouseUp, true);
  });

  undoButton.addEventListener("click", () => { if (s.strokes.length) { s.strokes.pop(); redraw(); report(); } });
  clearButton.addEventListener("click", () => { if (s.strokes.length) { s.strokes = []; redraw(); report(); } });
  s.root = root;
  redraw();
  canvas.dataset.strokes = "0";
  box.appendChild(canvas);  // only now, with every listener attached, can the canvas be seen
  return s;
}

export default function (component) {
  const { data, parentElement, setStateValue } = component;
  const root = parentElement.querySelector(".qd-root");
  if (!root) throw new Error("quickdraw canvas: .qd-root not found");
  let s = STATES.get(parentElement);
  if (!s) {
    s = create(root, data || {});
    STATES.set(parentElement, s);
  } else if (root !== s.root) {
    root.replaceWith(s.root);  // the template was inserted again: keep the drawing's own elements
  }
  // Reruns only update what the next stroke uses; the drawing itself is never reloaded.
  s.setStateValue = setStateValue;
  if (data && data.strokeWidth) s.width = data.strokeWidth;
  if (data && data.strokeColor) s.color = data.strokeColor;
  return () => {
    for (const f of s.cleanup) f();
    STATES.delete(parentElement);
  };
}
"""

_canvas_mount = None


def _stroke_canvas(key: str, stroke_width: int) -> list[dict] | None:
    """The canvas; returns its strokes as Fabric `Path` objects ([] after Clear), None before any."""
    global _canvas_mount
    if _canvas_mount is None:
        _canvas_mount = st.components.v2.component(
            "quickdraw_lab.stroke_canvas", html=_CANVAS_HTML, css=_CANVAS_CSS, js=_CANVAS_JS,
            isolate_styles=True)
    result = _canvas_mount(
        key=key, data={"strokeWidth": stroke_width, "strokeColor": "#000000"},
        default={"drawing": None}, on_drawing_change=lambda: None, width="content", height="content")
    drawing = result.get("drawing") if result is not None else None
    objects = drawing.get("objects") if isinstance(drawing, dict) else None
    return objects if isinstance(objects, list) else None


# ---------------------------------------------------------------- the page
def default_models(runs: list[dict]) -> list[str]:
    """web/models/index.json's default run first, then the best bitmap runs of different models."""
    names = [r["name"] for r in runs]
    picks: list[str] = []
    try:
        index = read_index(common.REPO / "web")
    except QuickDrawError:  # an unreadable index only loses the preference
        index = {"default": None, "models": []}
    entry = next((m for m in index["models"] if isinstance(m, dict) and m.get("name") == index["default"]), {})
    default = entry.get("run") or index["default"]
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


def _canvas_objects():
    """The Fabric objects of the canvas (or the injected drawing), or None before anything is drawn."""
    if INJECT_KEY in st.session_state:
        st.caption("Using a drawing injected through session_state.")
        return st.session_state[INJECT_KEY]
    return _stroke_canvas(CANVAS_KEY, st.session_state.get("draw_stroke_width", 6))


_FROZEN: set[int] = set()  # id() of the predictors loaded before the last gc.freeze()


def _load_predictor(run_dir: Path):
    """common.load_predictor, then - once per model loaded - everything alive moved out of the
    garbage collector's reach (`gc.freeze()`). Why: after every script run Streamlit calls
    `gc.collect(2)` and `keras.backend.clear_session()` (which collects again); with TensorFlow's
    ~450,000 objects each pass took about 0.45 s here, so a stroke's guess waited a second for the
    previous run's clean-up. Frozen, both take a few milliseconds. The models stay cached anyway."""
    predictor = common.load_predictor(run_dir)
    if id(predictor) not in _FROZEN:
        gc.collect()  # what is garbage now is freed, not frozen
        gc.freeze()
        _FROZEN.add(id(predictor))
    return predictor


# Every run of a Streamlit script is a new thread, and after every run Streamlit calls
# `keras.backend.clear_session()`, which clears TensorFlow's kernel cache: the first TensorFlow operation
# of a new thread after that took 8-14 ms here (turning a numpy image into a tensor), against 0.5 ms in
# a thread that has run one before. So every guess runs in this one long-lived thread (the page's
# thread waits for it). The model call itself is XLA-compiled (`Predictor._compiled_one` says why).
_GUESSER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="draw-guess")


def _show_prediction(slot: int, run_name: str, run_dir: Path, objects, arrived: float) -> str | None:
    """One model's guess (its top-1 is returned). `arrived` is `time.perf_counter()` when this run of the
    page started with the strokes: the time shown is from then until this model's top-5 is handed to the
    browser."""
    from pipeline.errors import DrawingError
    from pipeline.strokes import DrawingTooSmall

    with st.container(key=f"model-{slot}"):  # the run shown in this slot, readable by browser tests
        st.subheader(run_name)
    try:
        predictor = _load_predictor(run_dir)
    except QuickDrawError as exc:
        st.error(f"Cannot load {run_name}: {exc}")
        return None
    try:
        prediction = _GUESSER.submit(predictor.predict_detailed, objects, 5).result()
    except DrawingTooSmall:
        st.info("Too small to guess: draw a bit more.")
        return None
    except DrawingError as exc:
        st.warning(f"That drawing could not be read: {exc}")
        return None
    with st.container(key=f"predictions-{slot}"):
        st.markdown(top_markdown(prediction.top))
        count = _stroke_count(objects)
        st.caption(f"guess for {count} stroke{'s' if count != 1 else ''}")
    for label, prob in prediction.top:  # plain elements: a Plotly chart per model per stroke slows the page
        st.progress(min(max(prob, 0.0), 1.0), text=f"{label} {prob:.1%}")
    ready = time.perf_counter()
    timing = {"run": run_name, "path_ms": (ready - arrived) * 1000, "predict_ms": prediction.seconds * 1000,
              "model_ms": prediction.model_seconds * 1000}
    st.session_state.setdefault(TIMINGS_KEY, {})[slot] = timing  # read by bench/bench_draw.py
    image = np.asarray(prediction.image)
    left, right = st.columns(2)
    # The first channel is what the model sees (stroke-order intensity for the strokes representation).
    left.image(image[..., 0], caption=f"model input {image.shape[0]}x{image.shape[1]}", width=96, clamp=True)
    with right.container(key=f"timing-{slot}"):  # read by bench/bench_draw.py --browser
        st.metric(PATH_LABEL, f"{timing['path_ms']:.1f} ms", help=PATH_HELP.format(**timing))
        st.caption(f"model call {timing['model_ms']:.1f} ms; {predictor.representation}, "
                   f"{len(predictor.classes)} classes")
    return prediction.top[0][0]


def strokes_svg(strokes, size: int = CANVAS_SIZE) -> str:
    """The strokes as received, as a small SVG: stroke i from dark to light blue, numbered at its start,
    in the canvas's own coordinates (a one-point stroke is a dot)."""
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" width="{size // 2}" '
             f'height="{size // 2}"><rect width="{size}" height="{size}" fill="#fff" stroke="#d6d6d9"/>']
    last = max(len(strokes) - 1, 1)
    for i, points in enumerate(strokes):
        colour = f"hsl(215, 80%, {25 + 45 * i / last:.0f}%)"
        xy = [(float(x), float(y)) for x, y in np.asarray(points)[:, :2]]
        if len(set(xy)) == 1:
            parts.append(f'<circle cx="{xy[0][0]:.1f}" cy="{xy[0][1]:.1f}" r="3" fill="{colour}"/>')
        else:
            line = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
            parts.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="3" '
                         'stroke-linecap="round" stroke-linejoin="round"/>')
        parts.append(f'<text x="{xy[0][0] + 4:.1f}" y="{xy[0][1] - 4:.1f}" font-size="14" '
                     f'font-family="sans-serif" fill="#c0392b">{i + 1}</text>')
    return "".join(parts) + "</svg>"


def _show_strokes(objects) -> None:
    """What reached Python, for people: the stroke count and a picture of the strokes as received; the
    JSON is a download (scripts read it from `_strokes_for_scripts`)."""
    from pipeline.errors import DrawingError
    from pipeline.strokes import parse_any

    text = json.dumps(objects, separators=(",", ":"))
    count = _stroke_count(objects)
    with st.expander(f"Strokes that reached Python ({count})"):
        try:
            strokes = parse_any(objects)
        except DrawingError as exc:
            strokes = []
            st.caption(f"They cannot be drawn: {exc}")
        if strokes:
            points = sum(len(s) for s in strokes)
            st.image(strokes_svg(strokes), caption=f"{count} stroke{'s' if count != 1 else ''}, {points} points, "
                     "as received (canvas pixels; numbered in drawing order)")
        st.download_button("Download the strokes (JSON)", text, file_name="strokes.json", mime="application/json",
                           key="draw_strokes_download", on_click="ignore")


def _save_to_probe_set(objects, guess: str | None) -> None:
    """Save the drawing into a probe set (pipeline.probes) with its intended label - Model 1's guess
    unless changed - to follow it through training on the Probes page."""
    from pipeline import probes
    from pipeline.categories import all_categories

    with st.expander("Save to probe set"), st.container(key="draw-probe"):
        classes = list(all_categories())
        name = st.text_input("Probe set", value="my-drawings", key="draw_probe_set",
                             help="runs/probes/<name>.ndjson; train with `--probes <name>` to score it every epoch")
        # No key: a new guess makes a new widget, so the label follows the guess until the user picks one.
        label = st.selectbox("Label (the class you meant)", classes,
                             index=classes.index(guess) if guess in classes else 0)
        if st.button("Save to probe set", key="draw_probe_save"):
            try:
                probe = probes.add_drawing(common.runs_dir(), name.strip(), objects, label)
            except QuickDrawError as exc:
                st.error(str(exc))
            else:
                count = len(probes.read_set(common.runs_dir(), name.strip()))
                st.success(f"Saved as '{probe.label}' ({probe.id}) in probe set {name.strip()}: {count} drawing(s). "
                           "The **Probes** page scores it.")


def _strokes_for_scripts(objects) -> None:
    """The strokes that reached Python as JSON in a hidden element, before the guesses: a script that
    sees the guess for N strokes then reads the N strokes it was made from, never the previous run's."""
    with st.container(key="draw-strokes"):
        st.html(f'<code hidden class="draw-strokes-json">{html.escape(json.dumps(objects, separators=(",", ":")))}</code>')


def render() -> None:
    arrived = time.perf_counter()  # this run of the page starts with the strokes as they are now
    st.header("Draw")
    runs = common.runs_with_model(common.run_summaries())
    if not runs:
        st.info("No run has a trained model yet (runs/<name>/model/model.keras): train one on the **Train** page.")
        return
    # Not an st.fragment: a stroke's rerun then interrupts a run still guessing the drawing without
    # it, where a fragment's rerun would queue behind it (measured: worst final guess 1.0 s against 0.7 s).
    # The canvas is the first element of the left column in every run, drawn or not: never re-created.
    names = [r["name"] for r in runs]
    defaults = default_models(runs)
    left, right = st.columns([1, 2])
    with left:
        objects = _canvas_objects()
        st.slider("Pen width", 2, 16, 6, key="draw_stroke_width",
                  help="stroke width in canvas pixels (the model sees Google's fixed line width either way)")
        st.caption("Draw one of the run's classes. Undo and Clear are under the canvas.")
    with right:
        p1, p2 = st.columns(2)
        first = p1.selectbox("Model 1", names, index=names.index(defaults[0]) if defaults else 0, key="draw_model_1")
        second_options = [NONE, *names]
        second_default = defaults[1] if len(defaults) > 1 and defaults[1] != first else NONE
        second = p2.selectbox("Model 2", second_options, index=second_options.index(second_default),
                              key="draw_model_2")
        st.session_state[TIMINGS_KEY] = {}
        if not has_ink(objects):
            st.info("Draw something on the canvas - the guesses appear as you draw.")
            return
        _strokes_for_scripts(objects)
        chosen = [first] + ([second] if second != NONE else [])
        columns = st.columns(len(chosen))
        by_name = {r["name"]: Path(r["path"]) for r in runs}
        guesses = []
        for slot, (column, name) in enumerate(zip(columns, chosen, strict=True), start=1):
            with column:
                guesses.append(_show_prediction(slot, name, by_name[name], objects, arrived))
        _show_strokes(objects)  # after the guesses: nothing delays them
        _save_to_probe_set(objects, guesses[0])
