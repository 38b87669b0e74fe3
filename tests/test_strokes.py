"""Stroke parsing and Google's simplification, checked on the raw/simplified pairs of ../shared."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.errors import DrawingError
from pipeline.raster import render_bitmap
from pipeline.strokes import (
    MIN_EXTENT,
    check_big_enough,
    extent,
    from_fabric,
    from_google,
    is_simplified,
    simplify,
    to_google,
    to_simplified,
)


def raw_simplified_pairs(shared):
    simplified = {}
    for path in sorted((shared / "simplified").glob("*.ndjson")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record.get("key_id"):
                simplified[record["key_id"]] = record["drawing"]
    pairs = []
    for path in sorted((shared / "raw").glob("*.ndjson")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record.get("key_id") in simplified:
                pairs.append((record["drawing"], simplified[record["key_id"]]))
    return pairs


@pytest.mark.slow
def test_simplification_reproduces_google(shared):
    pairs = raw_simplified_pairs(shared)
    assert len(pairs) > 5000
    exact, differences = 0, []
    for raw, expected in pairs:
        ours = to_google(simplify(from_google(raw)))
        if ours == expected:
            exact += 1
        else:
            a = render_bitmap(from_google(ours)).astype(int)
            b = render_bitmap(from_google(expected)).astype(int)
            differences.append(np.abs(a - b).mean())
    share = exact / len(pairs)
    print(f"simplification: {exact}/{len(pairs)} = {share:.2%} point for point; the rest differ by "
          f"{np.mean(differences):.3f} grey levels on average when rendered")
    assert share >= 0.85
    assert np.mean(differences) <= 0.5


def test_simplified_output_is_integer_and_in_range():
    raw = [[[10.5, 500.2, 900.9], [40.1, 41.7, 300.3], [0, 10, 20]], [[300.0], [200.0], [30]]]
    strokes = simplify(from_google(raw))
    everything = np.concatenate(strokes)
    assert everything.min() == 0 and everything.max() == 255
    assert np.all(everything == np.round(everything))
    assert all(s.shape[1] == 2 for s in strokes)
    assert is_simplified(strokes)
    again = to_simplified(to_google(strokes))  # already simplified: kept as it is
    assert all(np.array_equal(a, b) for a, b in zip(again, strokes, strict=True))


@pytest.mark.parametrize("bad", [
    [[[1, float("nan")], [2, 3]]],
    [[[1, 2], [2, float("inf")]]],
    [[[1e9, 2], [2, 3]]],
    [[[1, 2], [2]]],
    [[[1, 2]]],
    "not a drawing",
    [["a", "b"]],
])
def test_bad_strokes_are_drawing_errors(bad):
    with pytest.raises(DrawingError):
        to_simplified(bad)


def test_empty_drawings_are_drawing_errors():
    for empty in ([], [[[], []]], {"objects": []}):
        with pytest.raises(DrawingError, match="empty"):
            to_simplified(empty)


def test_single_point_and_single_stroke():
    dot = to_simplified([[[50], [60]]], form="raw")
    assert len(dot) == 1 and dot[0].tolist() == [[0, 0], [0, 0]]  # Google: a dot is two equal points
    assert render_bitmap(dot).max() > 0  # a dot is drawn, not dropped


def test_huge_canvas_drawing_is_scaled_down():
    rng = np.random.default_rng(0)
    strokes = [[list(rng.uniform(0, 4000, 30)), list(rng.uniform(0, 4000, 30))] for _ in range(5)]
    simplified = to_simplified(strokes)
    assert np.concatenate(simplified).max() <= 255


def test_fabric_paths_follow_the_brush():
    objects = [
        {"type": "Path", "path": [["M", 10, 10], ["Q", 20, 10, 30, 15], ["Q", 40, 20, 50, 30], ["L", 60, 40]]},
        {"type": "rect", "left": 0},  # not a stroke: ignored
        {"type": "Path", "path": [["M", 100, 100], ["L", 100, 100]]},
    ]
    strokes = from_fabric({"objects": objects})
    assert len(strokes) == 2
    assert strokes[0][0].tolist() == [10, 10] and strokes[0][-1].tolist() == [60, 40]
    assert len(strokes[0]) > 4  # quadratic curves are sampled, not just their end points
    assert to_simplified({"objects": objects})  # the canvas json_data form works end to end
    assert to_simplified(objects)


@pytest.mark.slow
def test_no_real_drawing_is_too_small_to_guess(shared):
    """The "too small to guess" rule (MIN_EXTENT) on every raw drawing of ../shared (8185, 295 classes:
    their original canvas pixels) and every simplified one (24216, 297 classes): none is refused, and
    the smallest real drawing keeps a margin over the limit."""
    smallest = {}
    for form in ("raw", "simplified"):
        count, spans = 0, []
        for path in sorted((shared / form).glob("*.ndjson")):
            for line in path.read_text().splitlines():
                drawing = from_google(json.loads(line)["drawing"])
                check_big_enough(drawing)  # raises DrawingTooSmall for a refused one
                spans.append(extent(drawing))
                count += 1
        smallest[form] = min(spans)
        print(f"\n{form}: {count} real drawings, none too small; the smallest spans {min(spans):.1f} px "
              f"(limit {MIN_EXTENT:g})")
        assert count >= 5000
    assert smallest["raw"] >= MIN_EXTENT * 1.2 and smallest["simplified"] > 200
