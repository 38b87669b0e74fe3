"""The colour-coded renderer's pixel loop, compiled with numba: anti-aliased round-capped polylines.

`pipeline.raster.render_colour_coded` (and so `render_many`, the dataset cache and
`python -m pipeline rasterize --colour-coded`) calls these; nothing else should.

Why our own loop rather than cairo: cairo's per-call overhead (a path per stroke, a surface read back
per drawing) made the colour-coded renderer 0.22x as fast as a per-segment cv2.line renderer, and at a
million drawings rendering is the whole wait. Here, for each stroke (last first, so the first stroke
ends on top), every pixel near it gets the distance from its centre to the stroke's polyline (the
nearest of its segments, so a stroke crossing itself is inked once, as cairo fills one path), and the
coverage of a round-capped, round-joined line of half-width w is taken as clamp(w + 1/2 - distance,
0, 1) - a box filter across the edge - then the stroke's grey is laid over with that coverage, as
cairo's OVER operator does. tests/test_raster.py holds the result against cairo's rendering of the
real drawings (mean absolute error at most 1 grey level); bench/bench_render.py measures the speed.
The Google-exact 28 px bitmaps stay cairo's (they must match Google's bytes, which this does not).

Coordinates are the raster's: drawing units (0..255) shifted by `shift` and scaled by `scale` to
pixels, pixel (r, c) covering [c, c+1) x [r, r+1).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

FAR = 1e30


@njit(cache=True, nogil=True)
def _paint_path(xs, ys, a, b, grey, shift_x, shift_y, scale, half_width, canvas, distance):
    """Lay one path (points a..b-1; one point is a dot) of grey 0..1 over `canvas` (float32)."""
    size = canvas.shape[0]
    reach = half_width + 0.5
    lo_x = lo_y = FAR
    hi_x = hi_y = -FAR
    for i in range(a, b):
        px = (xs[i] + shift_x) * scale
        py = (ys[i] + shift_y) * scale
        lo_x, hi_x = min(lo_x, px), max(hi_x, px)
        lo_y, hi_y = min(lo_y, py), max(hi_y, py)
    c0, c1 = max(0, int(math.floor(lo_x - reach))), min(size - 1, int(math.ceil(hi_x + reach)))
    r0, r1 = max(0, int(math.floor(lo_y - reach))), min(size - 1, int(math.ceil(hi_y + reach)))
    if c0 > c1 or r0 > r1:
        return
    distance[r0:r1 + 1, c0:c1 + 1] = FAR  # squared distances: one square root per pixel, not per segment
    for i in range(a, max(a + 1, b - 1)):
        j = i + 1 if b - a > 1 else i
        ax, ay = (xs[i] + shift_x) * scale, (ys[i] + shift_y) * scale
        dx, dy = (xs[j] + shift_x) * scale - ax, (ys[j] + shift_y) * scale - ay
        length2 = dx * dx + dy * dy
        inverse = 1.0 / length2 if length2 > 0.0 else 0.0
        s0 = max(c0, int(math.floor(min(ax, ax + dx) - reach)))
        s1 = min(c1, int(math.ceil(max(ax, ax + dx) + reach)))
        t0 = max(r0, int(math.floor(min(ay, ay + dy) - reach)))
        t1 = min(r1, int(math.ceil(max(ay, ay + dy) + reach)))
        for r in range(t0, t1 + 1):
            qy = r + 0.5 - ay
            for c in range(s0, s1 + 1):
                qx = c + 0.5 - ax
                u = min(1.0, max(0.0, (qx * dx + qy * dy) * inverse))
                ex, ey = qx - u * dx, qy - u * dy
                d2 = ex * ex + ey * ey
                if d2 < distance[r, c]:
                    distance[r, c] = d2
    reach2 = reach * reach
    for r in range(r0, r1 + 1):
        for c in range(c0, c1 + 1):
            d2 = distance[r, c]
            if d2 < reach2:
                cover = min(reach - math.sqrt(d2), 1.0)
                canvas[r, c] = canvas[r, c] * (1.0 - cover) + grey * cover


@njit(cache=True, nogil=True)
def _to_bytes(canvas, out):
    size = canvas.shape[0]
    for r in range(size):
        for c in range(size):
            out[r, c] = np.uint8(min(255.0, canvas[r, c] * 255.0 + 0.5))


@njit(cache=True, nogil=True)
def _centring(xs, ys, side):
    """The offsets that centre the drawing: (side - max) / 2 on each axis."""
    max_x, max_y = -FAR, -FAR
    for i in range(len(xs)):
        max_x, max_y = max(max_x, xs[i]), max(max_y, ys[i])
    return (side - max_x) / 2.0, (side - max_y) / 2.0


@njit(cache=True, nogil=True)
def paint_strokes(xs, ys, starts, first, step, floor, side, margin, scale, half_width, out):
    """Colour-coded strokes into `out` (uint8, size x size): stroke k of the points
    starts[k]..starts[k+1]-1 at grey max(first - step * k, floor) / 255, the first stroke on top; the
    drawing centred in `side` and moved by `margin` (drawing units) before `scale` to pixels."""
    size = out.shape[0]
    canvas = np.zeros((size, size), np.float32)
    distance = np.empty((size, size), np.float32)
    shift_x, shift_y = _centring(xs, ys, side)
    for k in range(len(starts) - 2, -1, -1):
        grey = max(first - step * k, floor) / 255.0
        _paint_path(xs, ys, starts[k], starts[k + 1], grey, shift_x + margin, shift_y + margin, scale,
                    half_width, canvas, distance)
    _to_bytes(canvas, out)


@njit(cache=True, nogil=True)
def paint_timed(xs, ys, starts, inks, side, margin, scale, half_width, out):
    """The time channel into `out`: every segment (and every one-point stroke) a path of its own, at the
    ink of its first point (`inks`, 0..1, one per point), the last stroke drawn first."""
    size = out.shape[0]
    canvas = np.zeros((size, size), np.float32)
    distance = np.empty((size, size), np.float32)
    shift_x, shift_y = _centring(xs, ys, side)
    for k in range(len(starts) - 2, -1, -1):
        a, b = starts[k], starts[k + 1]
        if b - a == 1:
            _paint_path(xs, ys, a, b, inks[a], shift_x + margin, shift_y + margin, scale, half_width,
                        canvas, distance)
        for j in range(a, b - 1):  # within a stroke, later segments over earlier ones (as cairo drew them)
            _paint_path(xs, ys, j, j + 2, inks[j], shift_x + margin, shift_y + margin, scale, half_width,
                        canvas, distance)
    _to_bytes(canvas, out)


def warm_up() -> None:
    """Compile (or load from numba's cache) both entry points for the argument types raster uses."""
    xs = np.zeros(2, np.float64)
    starts = np.array([0, 2], np.int64)
    out = np.zeros((8, 8), np.uint8)
    paint_strokes(xs, xs, starts, 255.0, 24.0, 64.0, 256.0, 24.0, 0.1, 0.8, out)
    paint_timed(xs, xs, starts, xs, 256.0, 24.0, 0.1, 0.8, out)
