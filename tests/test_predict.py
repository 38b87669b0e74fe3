"""pipeline.predict: every drawing form goes through Google's simplification and the run's rendering."""

import json
import subprocess
import sys

import numpy as np
import pytest

from pipeline.errors import DrawingError
from pipeline.predict import Predictor, prepare_input


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
