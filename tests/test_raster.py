"""Rendering: identical to Google's numpy_bitmap on every stroke/bitmap pair of ../shared."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.errors import DrawingError
from pipeline.raster import COLOUR_FLOOR, render_bitmap, render_colour_coded, render_many, stroke_intensity
from pipeline.strokes import from_google


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


def test_render_many_keeps_order_and_matches_single(shared):
    records = load_pairs(shared)[:300]
    drawings = [r["drawing"] for r in records]
    many = render_many(drawings, 28, workers=2, chunk=50)
    assert many.shape == (300, 28, 28, 1) and many.dtype == np.uint8
    for i in (0, 77, 299):
        np.testing.assert_array_equal(many[i, ..., 0], render_bitmap(from_google(drawings[i])))


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
