"""Rendering: identical to Google's numpy_bitmap on every stroke/bitmap pair of ../shared."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.errors import DrawingError
from pipeline.raster import (
    COLOUR_FLOOR,
    render,
    render_bitmap,
    render_colour_coded,
    render_colour_coded_cairo,
    render_many,
    render_pool,
    render_simplified_json,
    render_with_raw_time,
    stroke_intensity,
)
from pipeline.strokes import from_google, to_simplified


def load_pairs(shared):
    records = []
    for path in sorted((shared / "pairs").glob("*.ndjson")):
        records += [json.loads(line) for line in path.read_text().splitlines()]
    return records


def test_bitmaps_identical_to_google(shared):
    records = load_pairs(shared)
    assert len(records) >= 1000
    errors = np.array([np.abs(render_bitmap(from_google(r["drawing"])).astype(int).ravel()
                              - np.array(r["bitmap"])).mean() for r in records])
    print(f"renderer vs Google over {len(records)} pairs: mean {errors.mean():.4f}, max {errors.max():.4f}")
    assert errors.mean() <= 0.1
    assert errors.max() <= 1.0
    # Google's JSON as it is takes the bulk path (render_simplified_json): the same pixels exactly.
    fast = [render_simplified_json(r["drawing"]) for r in records]
    assert all(f is not None for f in fast), "every pair's drawing is plainly simplified JSON"
    assert all(np.array_equal(f, render_bitmap(from_google(r["drawing"]))) for f, r in zip(fast, records, strict=True))


def load_simplified(shared, per_class: int = 4) -> list:
    """Google-JSON drawings, a few from every class file of shared/simplified."""
    drawings = []
    for path in sorted((shared / "simplified").glob("*.ndjson")):
        drawings += [json.loads(line)["drawing"] for line in path.read_text().splitlines()[:per_class]]
    return drawings


def test_colour_coded_within_one_grey_level_of_cairo(shared):
    """The numba renderer (pipeline.paint) against cairo drawing the same colour-coded picture, on real
    drawings of every class: both channels, and the JSON fast path equal to parsed strokes."""
    drawings = load_simplified(shared)
    assert len(drawings) >= 1000
    errors, time_errors = [], []
    for drawing in drawings:
        strokes = to_simplified(drawing)
        ours, cairo = render_colour_coded(strokes, 64, True).astype(int), render_colour_coded_cairo(strokes, 64, True)
        errors.append(np.abs(ours[..., 0] - cairo[..., 0]).mean())
        time_errors.append(np.abs(ours[..., 1] - cairo[..., 1]).mean())
    for drawing in drawings[::50]:
        np.testing.assert_array_equal(render_colour_coded(drawing, 64), render_colour_coded(from_google(drawing), 64))
    print(f"colour-coded vs cairo over {len(drawings)} drawings: mean {np.mean(errors):.3f}, worst "
          f"{np.max(errors):.3f}; time channel mean {np.mean(time_errors):.3f}")
    assert np.mean(errors) <= 1.0 and np.mean(time_errors) <= 1.0
    assert np.max(errors) <= 4.0  # no drawing far off (a misplaced or missing stroke costs tens of levels)


def test_colour_coded_json_that_is_not_simplified_is_simplified_first():
    raw = [[[0.5, 100.25, 300.0], [0.0, 50.5, 10.0]]]  # floats beyond 255: raw canvas coordinates
    np.testing.assert_array_equal(render_colour_coded(raw, 48), render_colour_coded(to_simplified(raw), 48))
    np.testing.assert_array_equal(render_bitmap(raw, 28), render_bitmap(to_simplified(raw), 28))
    with pytest.raises(DrawingError):
        render_colour_coded([[[], []]], 48)


def test_render_many_keeps_order_and_matches_single(shared):
    records = load_pairs(shared)[:300]
    drawings = [r["drawing"] for r in records]
    many = render_many(drawings, 28, workers=2, chunk=50)
    assert many.shape == (300, 28, 28, 1) and many.dtype == np.uint8
    for i in (0, 77, 299):
        np.testing.assert_array_equal(many[i, ..., 0], render_bitmap(from_google(drawings[i])))


def test_render_many_takes_parsed_strokes_an_executor_and_an_out_array(shared):
    drawings = [r["drawing"] for r in load_pairs(shared)[:120]]
    expected = render_many(drawings, 32, colour_coded=True, workers=1)
    parsed = [from_google(d) for d in drawings]
    np.testing.assert_array_equal(render_many(parsed, 32, colour_coded=True, workers=1), expected)
    out = np.zeros((len(drawings), 32, 32, 1), np.uint8)
    with render_pool(2) as pool:
        for _ in range(2):  # one pool, many calls
            returned = render_many(parsed, 32, colour_coded=True, workers=2, chunk=7, executor=pool, out=out)
            assert returned is out
            np.testing.assert_array_equal(out, expected)
    # Simplified bitmaps take the JSON fast path; parsed strokes the full one: the same pixels.
    np.testing.assert_array_equal(render_many(parsed, 28, workers=1)[..., 0],
                                  [render_bitmap(to_simplified(p)) for p in parsed])
    with pytest.raises(ValueError, match="uint8"):
        render_many(parsed, 32, colour_coded=True, out=np.zeros((len(parsed), 28, 28, 1), np.uint8))


def test_render_many_time_channel_from_raw_and_simplified():
    raw = [[[0, 100, 200], [0, 50, 0], [0, 500, 1000]], [[40], [90], [1500]]]  # a one-point stroke too
    simplified = [[[0, 255], [0, 255]], [[10, 10], [200, 201]]]
    many = render_many([raw, simplified], 48, colour_coded=True, time_channel=True, workers=1)
    assert many.shape == (2, 48, 48, 2)
    np.testing.assert_array_equal(many[0], render_with_raw_time(from_google(raw), 48))
    np.testing.assert_array_equal(many[1], render(from_google(simplified), 48, True, True))
    # Without colour coding there is no time channel: the bitmap of the simplified drawing.
    bitmaps = render_many([raw], 28, time_channel=True, workers=1)
    np.testing.assert_array_equal(bitmaps[0, ..., 0], render_bitmap(to_simplified(from_google(raw))))


def test_empty_render_many():
    assert render_many([], 64, colour_coded=True, time_channel=True).shape == (0, 64, 64, 2)


def test_any_size_keeps_geometry(shared):
    drawing = from_google(load_pairs(shared)[0]["drawing"])
    small, large = render_bitmap(drawing, 28), render_bitmap(drawing, 256)
    assert large.shape == (256, 256)
    # Downsampled, the large rendering lands on the small one: same geometry, only finer.
    pooled = large[:252, :252].reshape(28, 9, 28, 9).mean(axis=(1, 3))
    assert np.abs(pooled - small).mean() < 12


def test_colour_coded_orders_strokes():
    first = [[0, 255], [0, 0]]
    second = [[0, 255], [255, 255]]
    image = render_colour_coded(from_google([first, second]), 64)
    assert image.shape == (64, 64, 1) and image.dtype == np.uint8
    top, bottom = image[:32].max(), image[32:].max()
    assert top == 255 and bottom == stroke_intensity(1) < 255
    assert stroke_intensity(100) == COLOUR_FLOOR


def test_time_channel():
    raw = from_google([[[0, 100, 200], [0, 50, 0], [0, 500, 1000]], [[0, 200], [200, 200], [3000, 4000]]])
    image = render_colour_coded(raw, 64, time_channel=True)
    assert image.shape == (64, 64, 2)
    assert image[..., 1].max() > 0


@pytest.mark.parametrize("size", [4, 1000])
def test_bad_sizes(size):
    with pytest.raises(DrawingError, match="out of range"):
        render_bitmap(from_google([[[0, 1], [0, 1]]]), size)


def test_empty_render_is_an_error():
    with pytest.raises(DrawingError):
        render_bitmap([], 28)
