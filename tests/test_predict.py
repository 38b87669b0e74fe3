"""pipeline.predict: every drawing form goes through Google's simplification and the run's rendering."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline import strokes
from pipeline.errors import DrawingError
from pipeline.predict import DrawingTooSmall, Predictor, prepare_input


def pairs(shared, cls="cat", n=20):
    with open(shared / "pairs" / f"{cls}.ndjson") as fh:
        return [json.loads(line) for _, line in zip(range(n), fh, strict=False)]


def test_bitmap_input_is_googles_bitmap(shared):
    for record in pairs(shared):
        image = prepare_input(record["drawing"], "bitmap28")
        assert image.shape == (28, 28, 1) and image.dtype == np.uint8
        assert np.abs(image[..., 0].astype(int) - np.array(record["bitmap"]).reshape(28, 28)).mean() <= 0.1


def fabric_path(strokes, scale=1.5, offset=20):
    """A drawing as streamlit-drawable-canvas reports it: one Fabric Path per stroke, M/Q/L commands."""
    objects = []
    for xs, ys in strokes:
        pts = [(offset + x * scale, offset + y * scale) for x, y in zip(xs, ys, strict=True)]
        path = [["M", *pts[0]]] + [["Q", *pts[i], (pts[i][0] + pts[i + 1][0]) / 2, (pts[i][1] + pts[i + 1][1]) / 2]
                                   for i in range(len(pts) - 1)] + [["L", *pts[-1]]]
        objects.append({"type": "Path", "path": path, "left": 0, "top": 0, "stroke": "#000", "strokeWidth": 6})
    return {"version": "4.4.0", "objects": objects}


@pytest.mark.slow
def test_predictor_agrees_across_drawing_forms(trained_runs, shared):
    predictor = Predictor.from_run(trained_runs["cnn"])
    record = pairs(shared, "fish", 1)[0]
    google = predictor.predict(record["drawing"], top=3)
    assert len(google) == 3 and all(0 <= p <= 1 for _, p in google)
    assert google[0][1] >= google[1][1] >= google[2][1]
    canvas = predictor.predict_detailed(fabric_path(record["drawing"]), top=3)
    assert canvas.image.shape == (28, 28, 1) and canvas.seconds > 0
    # The same strokes as the canvas reports them (scaled, shifted, corners smoothed by the brush's
    # quadratic curves) land on nearly the same input, so the guesses agree closely.
    direct = predictor.prepare(record["drawing"]).astype(int)
    assert np.abs(canvas.image.astype(int) - direct).mean() < 12
    assert canvas.top[0][0] in [label for label, _ in google]


@pytest.mark.slow
def test_predict_cli_prints_one_json_line_per_drawing(trained_runs, shared, tmp_path):
    drawings = tmp_path / "d.ndjson"
    drawings.write_text("".join(json.dumps({"word": r["word"], "drawing": r["drawing"]}) + "\n"
                                for r in pairs(shared, "apple", 5)))
    run = trained_runs["cnn"]
    proc = subprocess.run([sys.executable, "-m", "pipeline", "predict", run.name, str(drawings), "--top", "3",
                           "--runs-dir", str(run.parent)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 5 and all(len(line["top"]) == 3 for line in lines)


@pytest.mark.parametrize("bad", [[], [[[], []]], [[[1, float("nan")], [2, 3]]], "cat", [[[1, 2]]]])
def test_unusable_drawings_are_drawing_errors(bad):
    with pytest.raises(DrawingError):
        prepare_input(bad, "bitmap28")


# ---------------------------------------------------------------- too small to guess (one rule, shared with web/)
TOO_SMALL_FIXTURE = Path(__file__).resolve().parent / "fixtures" / "too_small_cases.json"


def test_too_small_drawings_are_refused_by_the_shared_rule():
    """tests/fixtures/too_small_cases.json (tests/test_web.py holds web/preprocess.js to the same):
    taps and tiny scribbles are refused with a "draw a bit more" message, drawings at the limit and
    the smallest real ones are guessed."""
    doc = json.loads(TOO_SMALL_FIXTURE.read_text())
    assert doc["min_extent"] == strokes.MIN_EXTENT
    assert {case["too_small"] for case in doc["cases"]} == {True, False}
    for case in doc["cases"]:
        if case["too_small"]:
            with pytest.raises(DrawingTooSmall, match="too small to guess.*draw a bit more"):
                prepare_input(case["drawing"], "bitmap28")
            with pytest.raises(DrawingTooSmall):
                prepare_input(case["drawing"], "strokes", 32)
        else:
            assert prepare_input(case["drawing"], "bitmap28").max() > 0, case["name"]


def test_a_tap_on_the_draw_canvas_is_too_small_not_a_line():
    """The issue's tap: one or two points a pixel apart, as the Draw page's canvas reports them. Scaled
    to 255 the jittered one was a full-width line (guessed as a knife)."""
    tap = [{"type": "Path", "path": [["M", 131.5, 60.25]]}]
    jittered = [{"type": "Path", "path": [["M", 131.5, 60.25], ["L", 132.5, 60.75]]}]
    for objects in (tap, jittered, {"objects": jittered}):
        with pytest.raises(DrawingTooSmall):
            prepare_input(objects, "bitmap28")
        assert strokes.to_simplified(objects)  # simplifying alone (rendering data) still works
    # Canvas pixels are never taken for simplified strokes, even when integral and within 0..255.
    small = [{"type": "Path", "path": [["M", 100, 100], ["L", 110, 100], ["L", 110, 108]]}]
    assert np.concatenate(strokes.to_simplified(small)).max() == 255


# ---------------------------------------------------------------- files of drawings (`predict RUN FILE`)
def test_drawing_lines_are_counted_with_the_first_reason(tmp_path):
    import gzip

    from pipeline.predict import DrawingLines, iter_drawing_lines

    good = json.dumps({"word": "line", "drawing": [[[0, 50, 100], [0, 40, 80]]]})
    text = "\n".join(['{"word": "cat"}', good, "", "[1, 2]", "not json", '{"drawing": [[[1, 2], [3]]]}', good]) + "\n"
    for path in (tmp_path / "d.ndjson", tmp_path / "d.ndjson.gz"):
        if path.suffix == ".gz":
            path.write_bytes(gzip.compress(text.encode()))
        else:
            path.write_text(text)
        stats = DrawingLines()
        found = [(line, record["word"]) for line, record, _ in iter_drawing_lines(path, stats)]
        assert found == [(2, "line"), (7, "line")]
        assert (stats.lines, stats.drawings, stats.skipped) == (6, 2, 4)
        assert stats.first_problem == 'line 1 has no "drawing" field (its fields: word)'
        assert stats.summary() == '2 of 6 lines were drawings; first: line 1 has no "drawing" field (its fields: word)'
    stats.reject(7, "has an unusable \"drawing\": too small")
    assert stats.drawings == 1 and stats.skipped == 5


def test_a_file_predict_cannot_read_is_one_clear_error(tmp_path, shared):
    from pipeline.errors import QuickDrawError
    from pipeline.predict import check_drawings_file

    with pytest.raises(QuickDrawError, match=r"cat.npy is a \.npy bitmap file .*not a stroke file: predict takes an "
                                             r"\.ndjson file.*`python -m pipeline evaluate cnn --data "):
        check_drawings_file(shared / "bitmaps" / "cat.npy", run="cnn")
    disguised = tmp_path / "cat.ndjson"  # a .npy by its content, whatever its name
    disguised.write_bytes((shared / "bitmaps" / "cat.npy").read_bytes()[:4096])
    with pytest.raises(QuickDrawError, match="is a .npy bitmap file"):
        check_drawings_file(disguised)
    bad = tmp_path / "bad.ndjson"
    bad.write_text('{"word": "cat"}\n{"drawing": []}\n')
    with pytest.raises(QuickDrawError, match=r"0 of 2 lines were drawings; line 1 has no \"drawing\" field"):
        check_drawings_file(bad)
    bad.write_text("\n\n")
    with pytest.raises(QuickDrawError, match="0 of 0 lines were drawings: the file is empty"):
        check_drawings_file(bad)
    with pytest.raises(QuickDrawError, match="is a folder; predict takes"):
        check_drawings_file(tmp_path, run="cnn")
    with pytest.raises(QuickDrawError, match="no file .*nothing.ndjson; predict takes"):
        check_drawings_file(tmp_path / "nothing.ndjson")
    bad.write_text("junk\n" + json.dumps({"drawing": [[[0, 9], [0, 9]]]}) + "\n")
    check_drawings_file(bad)  # one drawing is enough
