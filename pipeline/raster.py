"""Strokes to pixels, exactly as Google rendered `numpy_bitmap`, plus the colour-coded variant.

`python -m pipeline rasterize IN.ndjson OUT.npy [--size 28] [--colour-coded]` and the dataset cache
use `render_many`; `pipeline.predict` uses `render_bitmap` / `render_colour_coded` per drawing.

Google's bitmaps are cairo output. With cairo (through cairocffi, which only needs the system's
libcairo) and Google's geometry - 256 px drawing space, line width 16, padding 16 (so the scale is
size / 304), the drawing centred by an offset of (256 - max) / 2, round caps and joins,
ANTIALIAS_BEST - every stroke/bitmap pair in ../shared/quickdraw/pairs comes out identical.
The web page repeats this geometry from `GEOMETRY` (written into each export's preprocess.json).
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from pipeline.errors import DrawingError
from pipeline.strokes import from_google, simplify, to_simplified

GEOMETRY = {
    "drawing_side": 256.0,   # simplified coordinates live in 0..255
    "line_width": 16.0,      # in drawing units, before scaling
    "padding": 16.0,         # each side, in drawing units
    "line_cap": "round",
    "line_join": "round",
    "centre": True,          # offset (drawing_side - max) / 2 on each axis
}
# The colour-coded rendering: stroke i is drawn with intensity max(255 - STEP * i, FLOOR); the first
# strokes of a doodle say most about it, so they are the strongest and are drawn on top.
COLOUR_STEP = 24
COLOUR_FLOOR = 64
COLOUR_FIRST = 255  # the first stroke's intensity; each later one COLOUR_STEP fainter
# The time channel's ink, TIME_INK_START - TIME_INK_DROP * t for t in 0..1 over the drawing (fractions
# of full ink): early points bright, the last ones a quarter.
TIME_INK_START = 1.0
TIME_INK_DROP = 0.75
MIN_SIZE, MAX_SIZE = 8, 512
# render_many renders fewer drawings than this in the calling process unless given an executor: starting
# a pool costs more than it saves.
SERIAL_BELOW = 200


def _cairo():
    try:
        import cairocffi
    except OSError as exc:  # cairocffi imports, but dlopen of libcairo fails
        raise DrawingError(f"the system's cairo library is missing ({exc}); install it, e.g. "
                           "`apt-get install libcairo2`.") from None
    return cairocffi


class _Canvas:
    """One cairo surface per size, reused across drawings (creating one costs more than drawing)."""

    _cache: dict[int, _Canvas] = {}

    def __init__(self, size: int):
        cairo = _cairo()
        self.size = size
        self.surface = cairo.ImageSurface(cairo.FORMAT_ARGB32, size, size)
        self.ctx = cairo.Context(self.surface)
        self.ctx.set_antialias(cairo.ANTIALIAS_BEST)
        self.ctx.set_line_cap(cairo.LINE_CAP_ROUND)
        self.ctx.set_line_join(cairo.LINE_JOIN_ROUND)
        self.ctx.set_line_width(GEOMETRY["line_width"])
        total_padding = GEOMETRY["padding"] * 2 + GEOMETRY["line_width"]
        self.ctx.scale(size / (GEOMETRY["drawing_side"] + total_padding),
                       size / (GEOMETRY["drawing_side"] + total_padding))
        self.ctx.translate(total_padding / 2, total_padding / 2)
        self.lib = cairo.cairo

    @classmethod
    def get(cls, size: int) -> _Canvas:
        canvas = cls._cache.get(size)
        if canvas is None:
            canvas = cls._cache[size] = _Canvas(size)
        return canvas

    def clear(self) -> None:
        self.ctx.set_source_rgb(0, 0, 0)
        self.ctx.paint()

    def polyline(self, xs, ys, grey: float) -> None:
        # Straight to libcairo through cffi: the Context methods check the status after every call,
        # which is half the cost of a drawing; the status is checked once per image in pixels().
        lib, pointer = self.lib, self.ctx._pointer
        lib.cairo_set_source_rgb(pointer, grey, grey, grey)
        lib.cairo_move_to(pointer, float(xs[0]), float(ys[0]))
        for x, y in zip(xs.tolist() if hasattr(xs, "tolist") else xs, ys.tolist() if hasattr(ys, "tolist") else ys,
                        strict=True):
            lib.cairo_line_to(pointer, x, y)  # the first repeats the start: a one-point stroke is a dot
        lib.cairo_stroke(pointer)

    def pixels(self) -> np.ndarray:
        self.ctx._check_status()
        self.surface.flush()
        data = np.frombuffer(self.surface.get_data(), dtype=np.uint8)
        stride = self.surface.get_stride()
        # ARGB32 is stored little-endian as B, G, R, A: grey ink means any colour byte is the value.
        return data.reshape(self.size, stride)[:, 0:self.size * 4:4].copy()


def _check(strokes, size: int) -> None:
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise DrawingError(f"image size {size} is out of range; use {MIN_SIZE}-{MAX_SIZE} pixels.")
    if not strokes:
        raise DrawingError("the drawing is empty: nothing to render.")


def _centred(strokes):
    everything = np.concatenate([s[:, :2] for s in strokes])
    offset = (GEOMETRY["drawing_side"] - everything.max(axis=0)) / 2.0
    return [s[:, :2] + offset for s in strokes]


def render_bitmap(strokes, size: int = 28) -> np.ndarray:
    """Google-exact uint8 (size, size) rendering of *simplified* strokes (white ink on black); Google's
    JSON of a simplified drawing is taken as it is (any other JSON is simplified first)."""
    if not _is_parsed(strokes):
        fast = render_simplified_json(strokes, size)
        if fast is not None:
            return fast
        strokes = to_simplified(strokes)
    _check(strokes, size)
    canvas = _Canvas.get(size)
    canvas.clear()
    for points in _centred(strokes):
        canvas.polyline(points[:, 0], points[:, 1], 1.0)
    return canvas.pixels()


def stroke_intensity(index: int) -> int:
    return max(COLOUR_FIRST - COLOUR_STEP * index, COLOUR_FLOOR)


def _pixel_geometry(size: int) -> tuple[float, float, float]:
    """(margin in drawing units, scale to pixels, half line width in pixels) of GEOMETRY at `size`."""
    total_padding = GEOMETRY["padding"] * 2 + GEOMETRY["line_width"]
    scale = size / (GEOMETRY["drawing_side"] + total_padding)
    return total_padding / 2, scale, GEOMETRY["line_width"] / 2 * scale


def _flat_points(drawing):
    """(xs, ys, starts) float64, float64, int64 of all points, stroke k being starts[k]..starts[k+1]-1:
    of parsed Strokes as they are, of Google's JSON only when it is plainly simplified (integers
    0..255, x and y lists of one length, no empty stroke), else None (the caller simplifies first,
    through the validating path). The one test of "plainly simplified" for both renderers."""
    if _is_parsed(drawing):
        starts = np.zeros(len(drawing) + 1, np.int64)
        np.cumsum([len(s) for s in drawing], out=starts[1:])
        return (np.concatenate([s[:, 0] for s in drawing]).astype(np.float64),
                np.concatenate([s[:, 1] for s in drawing]).astype(np.float64), starts)
    xs: list = []
    ys: list = []
    starts = [0]
    try:
        for stroke in drawing:
            if len(stroke) != 2:
                return None
            x, y = stroke
            if not x or len(x) != len(y):
                return None
            xs += x
            ys += y
            starts.append(len(xs))
        if not xs:
            return None
        x_array, y_array = np.array(xs), np.array(ys)
    except (TypeError, ValueError):
        return None
    # Integer dtypes only: floats, strings and mixtures are not Google's simplified form (booleans mixed
    # with integers read as 0 and 1, as the validating path reads them too).
    if x_array.dtype.kind != "i" or y_array.dtype.kind != "i":
        return None
    if min(x_array.min(), y_array.min()) < 0 or max(x_array.max(), y_array.max()) > 255:
        return None
    return x_array.astype(np.float64), y_array.astype(np.float64), np.array(starts, np.int64)


def render_colour_coded(strokes, size: int = 64, time_channel: bool = False) -> np.ndarray:
    """uint8 (size, size, 1 or 2): the same geometry with stroke order as intensity (first stroke 255,
    each later one COLOUR_STEP fainter down to COLOUR_FLOOR, earlier strokes on top). The optional
    second channel encodes when each point was drawn (raw data's t, else point order): early bright.

    `strokes` are simplified Strokes, or Google's JSON (a simplified drawing is taken as it is, any
    other simplified first). Painted by pipeline.paint (numba), within 1 grey level of cairo's
    rendering (`render_colour_coded_cairo`) on average and several times faster."""
    from pipeline import paint

    _check(strokes, size)
    flat = _flat_points(strokes)
    if flat is None or (time_channel and not _is_parsed(strokes)):
        strokes = to_simplified(strokes)
        flat = _flat_points(strokes)
    xs, ys, starts = flat
    margin, scale, half_width = _pixel_geometry(size)
    order = np.empty((size, size), np.uint8)
    paint.paint_strokes(xs, ys, starts, float(COLOUR_FIRST), float(COLOUR_STEP), float(COLOUR_FLOOR),
                        GEOMETRY["drawing_side"], margin, scale, half_width, order)
    if not time_channel:
        return order[..., None]
    inks = TIME_INK_START - TIME_INK_DROP * np.concatenate(_point_times(strokes))
    timed = np.empty((size, size), np.uint8)
    paint.paint_timed(xs, ys, starts, inks.astype(np.float64), GEOMETRY["drawing_side"], margin, scale,
                      half_width, timed)
    return np.stack([order, timed], axis=-1)


def render_colour_coded_cairo(strokes, size: int = 64, time_channel: bool = False) -> np.ndarray:
    """The colour-coded rendering drawn by cairo, a path per stroke (per segment for the time channel):
    the reference `render_colour_coded` is held against (tests/test_raster.py, bench/bench_render.py)."""
    if not _is_parsed(strokes):
        strokes = to_simplified(strokes)
    _check(strokes, size)
    canvas = _Canvas.get(size)
    centred = _centred(strokes)
    canvas.clear()
    for index in reversed(range(len(centred))):
        points = centred[index]
        canvas.polyline(points[:, 0], points[:, 1], stroke_intensity(index) / 255.0)
    order = canvas.pixels()
    if not time_channel:
        return order[..., None]
    times = _point_times(strokes)
    canvas.clear()
    for index in reversed(range(len(centred))):
        points, t = centred[index], times[index]
        if len(points) == 1:
            canvas.polyline(points[:, 0], points[:, 1], TIME_INK_START - TIME_INK_DROP * t[0])
            continue
        for j in range(len(points) - 1):
            canvas.polyline(points[j:j + 2, 0], points[j:j + 2, 1], TIME_INK_START - TIME_INK_DROP * t[j])
    return np.stack([order, canvas.pixels()], axis=-1)


def _point_times(strokes) -> list[np.ndarray]:
    """Each point's time scaled to 0..1 over the drawing (t column when present, else point order)."""
    if all(s.shape[1] >= 3 for s in strokes):
        raw = [s[:, 2] for s in strokes]
    else:
        counts = np.cumsum([0] + [len(s) for s in strokes])
        raw = [np.arange(counts[i], counts[i + 1], dtype=np.float64) for i in range(len(strokes))]
    everything = np.concatenate(raw)
    low, span = everything.min(), everything.max() - everything.min()
    return [(r - low) / span if span > 0 else np.zeros_like(r) for r in raw]


def render(strokes, size: int, colour_coded: bool, time_channel: bool = False) -> np.ndarray:
    """(size, size, C) uint8 for one simplified drawing, in either representation."""
    if colour_coded:
        return render_colour_coded(strokes, size, time_channel)
    return render_bitmap(strokes, size)[..., None]


def render_simplified_json(drawing, size: int = 28) -> np.ndarray | None:
    """Google-exact bitmap straight from simplified JSON lists (the dataset's bulk path), or None
    when the drawing is not plainly simplified (`_flat_points`; the caller then takes the full,
    validating path)."""
    flat = None if _is_parsed(drawing) else _flat_points(drawing)
    if flat is None:
        return None
    xs, ys, starts = flat
    canvas = _Canvas.get(size)
    canvas.clear()
    xs = (xs + (GEOMETRY["drawing_side"] - xs.max()) / 2.0).tolist()
    ys = (ys + (GEOMETRY["drawing_side"] - ys.max()) / 2.0).tolist()
    for first, end in itertools.pairwise(starts.tolist()):
        canvas.polyline(xs[first:end], ys[first:end], 1.0)
    return canvas.pixels()


def render_with_raw_time(raw_strokes, size: int) -> np.ndarray:
    """uint8 (size, size, 2) colour-coded rendering of *raw* strokes ((n, 3): x, y, t in ms) whose second
    channel is the time each point was drawn: the strokes are simplified as Google does, and each kept
    point takes the time at its place along the raw stroke."""
    simplified = simplify(raw_strokes)
    # Simplification drops t; give each kept point the time of the nearest raw point of its stroke.
    timed = []
    for raw, simple in zip(raw_strokes, simplified, strict=True):
        fractions = np.linspace(0, 1, len(simple)) if len(simple) > 1 else np.zeros(1)
        if len(raw) > 1:
            t = np.interp(fractions, np.linspace(0, 1, len(raw)), raw[:, 2])
        else:  # a one-point stroke simplifies to a dot of two equal points
            t = np.repeat(raw[:1, 2], len(simple))
        timed.append(np.column_stack([simple, t]))
    return render_colour_coded(timed, size, time_channel=True)


def _is_parsed(drawing) -> bool:
    return bool(drawing) and isinstance(drawing[0], np.ndarray)


def _render_one(drawing, size: int, colour_coded: bool, time_channel: bool) -> np.ndarray:
    if _is_parsed(drawing):
        strokes = drawing
    else:
        if not colour_coded:
            fast = render_simplified_json(drawing, size)
            if fast is not None:
                return fast[..., None]
        elif not time_channel:
            return render_colour_coded(drawing, size)  # simplified JSON is painted as it is
        strokes = from_google(drawing)
    if colour_coded and time_channel and strokes and all(s.shape[1] == 3 for s in strokes):
        return render_with_raw_time(strokes, size)
    return render(to_simplified(strokes), size, colour_coded, time_channel)


def _channels(colour_coded: bool, time_channel: bool) -> int:
    return 2 if (colour_coded and time_channel) else 1


def _render_chunk(args) -> np.ndarray:
    drawings, size, colour_coded, time_channel = args
    out = np.empty((len(drawings), size, size, _channels(colour_coded, time_channel)), np.uint8)
    for i, drawing in enumerate(drawings):
        out[i] = _render_one(drawing, size, colour_coded, time_channel)
    return out


def render_pool(workers: int | None = None) -> ProcessPoolExecutor:
    """A pool of `workers` (default: all cores) rendering processes for `render_many(executor=...)`, to
    start once for many calls (the dataset cache renders class by class). Use it as a context manager.

    fork: workers only run cairo and numpy (never TensorFlow, whose threads may exist in the parent),
    and unlike spawn it does not require callers' scripts to guard their main module."""
    from pipeline import paint

    _cairo()  # loaded once here rather than in every worker
    paint.warm_up()  # numba's compiled (or cached) renderer too
    return ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1,
                               mp_context=multiprocessing.get_context("fork"))


def render_many(drawings, size: int = 28, colour_coded: bool = False, time_channel: bool = False,
                workers: int | None = None, chunk: int = 2000, executor=None, out=None) -> np.ndarray:
    """uint8 (N, size, size, C) for drawings in Google's JSON form (simplified or raw) or parsed
    `Strokes` (as pipeline.strokes.from_google returns them), rows in input order, over all cores.

    C is 2 with `colour_coded` and `time_channel` (raw drawings' t, else point order), else 1.
    Simplified JSON bitmaps take the fast path (`render_simplified_json`); anything else is parsed and
    simplified first. Bad drawings raise DrawingError; filter them before (see datasets).
    `workers` processes (default: all cores) each take up to `chunk` drawings at a time, from `executor`
    when given (a `render_pool()` kept across calls) or from a pool started for this call.
    `out`, when given, is a uint8 (N, size, size, C) array (a memmap slice) written in place and returned."""
    drawings = drawings if isinstance(drawings, list) else list(drawings)
    n = len(drawings)
    shape = (n, size, size, _channels(colour_coded, time_channel))
    if out is None:
        out = np.empty(shape, np.uint8)
    elif out.shape != shape or out.dtype != np.uint8:
        raise ValueError(f"out is {out.dtype} {out.shape}; render_many needs uint8 {shape}.")
    workers = workers or os.cpu_count() or 1
    # Balanced: jobs of at most `chunk` drawings, as many as a multiple of the workers, all the same size.
    count = -(-max(1, -(-n // chunk)) // workers) * workers
    step = max(1, -(-n // count))
    jobs = [(drawings[i:i + step], size, colour_coded, time_channel) for i in range(0, n, step)]
    if workers == 1 or len(jobs) < 2 or (executor is None and n < SERIAL_BELOW):
        for i, drawing in enumerate(drawings):
            out[i] = _render_one(drawing, size, colour_coded, time_channel)
        return out
    if executor is None:
        with render_pool(min(workers, len(jobs))) as pool:
            _collect(pool.map(_render_chunk, jobs), out)
    else:
        _collect(executor.map(_render_chunk, jobs), out)
    return out


def _collect(blocks, out: np.ndarray) -> None:
    position = 0
    for block in blocks:
        out[position:position + len(block)] = block
        position += len(block)
