"""Stroke data in every form a drawing arrives in, and Google's simplification of raw drawings.

`python -m pipeline simplify RAW.ndjson OUT.ndjson` applies `simplify` to a file; `pipeline.predict`
calls `to_simplified` on whatever the user drew (Google's JSON, raw strokes, or the Fabric.js `Path`
objects of streamlit-drawable-canvas). The JavaScript twin is `web/preprocess.js`; the web tests hold
the two to the same outputs.

`Strokes` is a list of float64 arrays, one per stroke, of shape (n, 2) - x, y - or (n, 3) - x, y and
t in milliseconds (raw data).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from pipeline.errors import DrawingError

Strokes = list  # list[np.ndarray], each (n, 2) or (n, 3) float64

# Google's simplification (quickdraw-dataset README): align to the top-left, scale the longer side
# to 255, resample at 1 px spacing, Ramer-Douglas-Peucker with epsilon 2.0, integer coordinates.
SIMPLIFIED_SIDE = 255
RESAMPLE_SPACING = 1.0
RDP_EPSILON = 2.0
# Coordinates beyond this are not a drawing but a bug or an attack (and overflow float maths).
MAX_ABS_COORDINATE = 1e6
# Points per quadratic Bezier segment of a Fabric.js path (the brush emits short curves).
BEZIER_SAMPLES = 8
# Too small to guess: a drawing whose bounding box, in the coordinates it was drawn in (canvas pixels,
# before the simplification scales its longer side to 255), is narrower than this in both directions.
# Scaled up, a tap's jitter of a pixel or two became a full-width line that models guessed confidently
# (a tap was "knife 0.94"). Measured on ../shared: the smallest of 8185 raw drawings spans 6.4 px (an
# unrecognised squiggle; the smallest recognised one, peas, 10 px) and simplified drawings span at
# least 231 of 255, so none is refused. A drawing of one point spans 0 px, so no separate count of
# points is needed (and any count above 2 would refuse real drawings: a straight line is 2 points).
# pipeline.predict refuses such drawings (DrawingTooSmall); web/preprocess.js reads this number from
# preprocess.json and refuses the same ones.
MIN_EXTENT = 5.0


class DrawingTooSmall(DrawingError):
    """A drawing too small to guess (see MIN_EXTENT): the user should draw a bit more."""


def _as_stroke(stroke, index: int) -> np.ndarray | None:
    try:
        rows = [np.asarray(axis, dtype=np.float64) for axis in stroke]
    except (TypeError, ValueError):
        raise DrawingError(f"stroke {index} is not a list of numeric coordinate lists "
                           "(expected [[x...], [y...]] or [[x...], [y...], [t...]]).") from None
    if len(rows) not in (2, 3) or any(r.ndim != 1 for r in rows):
        raise DrawingError(f"stroke {index} has {len(rows)} coordinate lists; expected [[x...], [y...]] "
                           "or [[x...], [y...], [t...]].")
    if len({len(r) for r in rows}) != 1:
        raise DrawingError(f"stroke {index} has x, y (and t) lists of different lengths.")
    if len(rows[0]) == 0:
        return None
    points = np.stack(rows, axis=1)
    _check_finite(points, index)
    return points


def _check_finite(points: np.ndarray, index: int) -> None:
    if not np.all(np.isfinite(points)):
        raise DrawingError(f"stroke {index} contains NaN or infinite coordinates.")
    if np.abs(points[:, :2]).max() > MAX_ABS_COORDINATE:
        raise DrawingError(f"stroke {index} has coordinates beyond +-{MAX_ABS_COORDINATE:g}: not a drawing.")


def from_google(drawing) -> Strokes:
    """Parse Google's JSON form (list of [[x...], [y...](, [t...])]); empty strokes are dropped."""
    if isinstance(drawing, (str, bytes)) or not isinstance(drawing, Sequence):
        raise DrawingError("a drawing must be a list of strokes, each [[x...], [y...]].")
    strokes = []
    for i, stroke in enumerate(drawing):
        if isinstance(stroke, np.ndarray) and stroke.ndim == 2 and stroke.shape[1] in (2, 3):
            points = stroke.astype(np.float64)
            if len(points) == 0:
                continue
            _check_finite(points, i)
        else:
            points = _as_stroke(stroke, i)
        if points is not None:
            strokes.append(points)
    return strokes


def to_google(strokes: Strokes) -> list:
    """Back to Google's JSON form; integral values become ints."""
    out = []
    for points in strokes:
        axes = []
        for column in points.T:
            if np.all(column == np.round(column)):
                axes.append([int(v) for v in column])
            else:
                axes.append([float(v) for v in column])
        out.append(axes)
    return out


def _quadratic(p0, p1, p2, samples: int) -> list:
    ts = np.linspace(0.0, 1.0, samples + 1)[1:]
    return [((1 - t) ** 2 * p0[0] + 2 * (1 - t) * t * p1[0] + t ** 2 * p2[0],
             (1 - t) ** 2 * p0[1] + 2 * (1 - t) * t * p1[1] + t ** 2 * p2[1]) for t in ts]


def _fabric_path_points(path) -> list:
    points: list[tuple[float, float]] = []
    for command in path:
        if not command:
            continue
        op, args = str(command[0]).upper(), [float(v) for v in command[1:]]
        if op in ("M", "L") and len(args) >= 2:
            points.append((args[0], args[1]))
        elif op == "Q" and len(args) >= 4:
            start = points[-1] if points else (args[0], args[1])
            points.extend(_quadratic(start, (args[0], args[1]), (args[2], args[3]), BEZIER_SAMPLES))
        elif op == "C" and len(args) >= 6:
            # Cubic curves are not emitted by the pencil brush; the end point keeps the shape close.
            points.append((args[4], args[5]))
    return points


def from_fabric(objects) -> Strokes:
    """Strokes from streamlit-drawable-canvas 0.13 `json_data` (or its `objects` list): one `Path`
    per stroke, in drawing order. Path coordinates are canvas pixels; only relative positions matter
    because simplification aligns and scales the drawing."""
    if isinstance(objects, dict):
        objects = objects.get("objects") or []
    strokes = []
    for i, obj in enumerate(objects):
        if not isinstance(obj, dict) or str(obj.get("type", "")).lower() != "path":
            continue
        points = _fabric_path_points(obj.get("path") or [])
        if not points:
            continue
        array = np.asarray(points, dtype=np.float64)
        array[:, 0] *= float(obj.get("scaleX", 1) or 1)
        array[:, 1] *= float(obj.get("scaleY", 1) or 1)
        _check_finite(array, i)
        strokes.append(array)
    return strokes


def _resample(points: np.ndarray, spacing: float) -> np.ndarray:
    """Points every `spacing` pixels of arc length along the whole polyline, plus its last point.

    Measured on the raw/simplified pairs of ../shared: spacing along the whole stroke (not restarting
    at each vertex, not keeping the original vertices) is what reproduces Google's output.
    """
    if len(points) < 2:
        return np.repeat(points, 2, axis=0)  # Google writes a one-point stroke as two equal points
    lengths = np.hypot(*np.diff(points, axis=0).T)
    arc = np.concatenate([[0.0], np.cumsum(lengths)])
    if arc[-1] == 0.0:
        return points[[0, -1]]  # a dot drawn as a press and release: Google keeps both points
    positions = np.arange(0.0, arc[-1], spacing)
    if positions[-1] != arc[-1]:
        positions = np.append(positions, arc[-1])
    return np.stack([np.interp(positions, arc, points[:, 0]), np.interp(positions, arc, points[:, 1])], axis=1)


def rdp(points: np.ndarray, epsilon: float) -> np.ndarray:
    """Ramer-Douglas-Peucker on one polyline (iterative, so long strokes cannot hit recursion limits)."""
    n = len(points)
    if n < 3:
        return points
    keep = np.zeros(n, dtype=bool)
    keep[0] = keep[-1] = True
    stack = [(0, n - 1)]
    while stack:
        first, last = stack.pop()
        if last - first < 2:
            continue
        a, b = points[first], points[last]
        segment = points[first + 1:last]
        dx, dy = b[0] - a[0], b[1] - a[1]
        norm = math.hypot(dx, dy)
        if norm == 0.0:
            distances = np.hypot(segment[:, 0] - a[0], segment[:, 1] - a[1])
        else:
            distances = np.abs(dy * (segment[:, 0] - a[0]) - dx * (segment[:, 1] - a[1])) / norm
        index = int(np.argmax(distances))
        if distances[index] > epsilon:
            split = first + 1 + index
            keep[split] = True
            stack.append((first, split))
            stack.append((split, last))
    return points[keep]


def simplify(strokes: Strokes) -> Strokes:
    """Google's simplification of raw strokes; output (n, 2) float64 arrays of integers in 0..255."""
    strokes = [s[:, :2].astype(np.float64) for s in strokes if len(s)]
    if not strokes:
        raise DrawingError("the drawing has no points: draw something first.")
    everything = np.concatenate(strokes)
    low = everything.min(axis=0)
    extent = float((everything.max(axis=0) - low).max())
    out = []
    for points in strokes:
        scaled = (points - low) / extent * SIMPLIFIED_SIDE if extent > 0 else points - low
        simplified = rdp(_resample(scaled, RESAMPLE_SPACING), RDP_EPSILON)
        out.append(np.round(simplified))
    return out


def is_simplified(strokes: Strokes) -> bool:
    """True for strokes in Google's simplified form: integers in 0..255 and no time column.
    (Google's own simplified files do not always touch the edges, so nothing stricter holds.)"""
    if not strokes:
        return False
    for points in strokes:
        if points.shape[1] != 2:
            return False
        if points.min() < 0 or points.max() > SIMPLIFIED_SIDE or not np.all(points == np.round(points)):
            return False
    return True


def parse_any(drawing) -> Strokes:
    """Strokes from Google's JSON, Fabric.js objects / canvas json_data, or already-parsed Strokes."""
    if is_fabric(drawing):
        return from_fabric(drawing if isinstance(drawing, dict) else list(drawing))
    if isinstance(drawing, dict):
        if "drawing" in drawing:
            return from_google(drawing["drawing"])
        raise DrawingError("a drawing dict needs 'drawing' (Google's JSON) or 'objects' (canvas json_data).")
    return from_google(drawing)


def extent(strokes: Strokes) -> float:
    """The longer side of the drawing's bounding box, in its own coordinates (0 for no points)."""
    points = [s[:, :2] for s in strokes if len(s)]
    if not points:
        return 0.0
    everything = np.concatenate(points)
    return float((everything.max(axis=0) - everything.min(axis=0)).max())


def check_big_enough(strokes: Strokes) -> None:
    """DrawingTooSmall when the drawing spans less than MIN_EXTENT in both directions (the one rule
    for "too small to guess"; web/preprocess.js applies the same with preprocess.json's min_extent)."""
    span = extent(strokes)
    if span < MIN_EXTENT:
        raise DrawingTooSmall(f"the drawing is too small to guess (it spans {span:.1f} px; at least "
                              f"{MIN_EXTENT:g} px are needed): draw a bit more.")


def is_fabric(drawing) -> bool:
    """True for Fabric.js objects or canvas json_data: canvas pixels, never already simplified."""
    if isinstance(drawing, dict):
        return "objects" in drawing
    return isinstance(drawing, (list, tuple)) and bool(drawing) and all(isinstance(o, dict) for o in drawing)


def to_simplified(drawing, form: str = "auto", refuse_too_small: bool = False) -> Strokes:
    """Simplified strokes for a drawing in any supported form; DrawingError when there is nothing,
    DrawingTooSmall (a DrawingError) when `refuse_too_small` and the drawing fails `check_big_enough`.

    `form="auto"` keeps strokes that already look simplified (integers 0..255, no time) as they are,
    except Fabric.js objects, which are canvas pixels and always simplified; `form="raw"` always
    simplifies (canvas strokes, whose pixel coordinates can look simplified); `form="simplified"`
    trusts the caller."""
    if form not in ("auto", "raw", "simplified"):
        raise DrawingError(f"unknown drawing form '{form}'; use auto, raw or simplified.")
    if form == "auto" and is_fabric(drawing):
        form = "raw"
    strokes = parse_any(drawing)
    if not strokes:
        raise DrawingError("the drawing is empty: draw at least one stroke.")
    if refuse_too_small:
        check_big_enough(strokes)
    if form == "simplified" or (form == "auto" and is_simplified(strokes)):
        return [s[:, :2].astype(np.float64) for s in strokes]
    return simplify(strokes)
