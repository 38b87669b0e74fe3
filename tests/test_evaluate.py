"""`python -m pipeline evaluate`: test split and folders of bitmaps or strokes, MAP@3, skipped classes."""

import json
import subprocess
import sys

import numpy as np
import pytest

from pipeline.evaluate import metrics_from_probabilities


def test_metrics_by_hand():
    probs = np.array([[0.7, 0.2, 0.1, 0.0], [0.1, 0.2, 0.6, 0.1], [0.3, 0.4, 0.2, 0.1], [0.05, 0.1, 0.15, 0.7]])
    labels = np.array([0, 1, 2, 0])
    m = metrics_from_probabilities(probs, labels, ["a", "b", "c", "d"])
    assert m["top1"] == pytest.approx(1 / 4)
    assert m["top3"] == pytest.approx(3 / 4)  # the last drawing's class is ranked 4th
    # MAP@3: 1 (rank 1) + 1/2 (b ranked 2nd) + 1/3 (c ranked 3rd) + 0
    assert m["map3"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 4)
    assert m["confusion"][1][2] == 1 and m["per_class"]["a"]["n"] == 2
    # Class-balanced: a 1/2, b 0, c 0 (d has no drawing, so it does not count).
    assert m["balanced_top1"] == pytest.approx((1 / 2) / 3)
    assert m["top_confusions"][0]["count"] == 1


def evaluate(run, *extra):
    proc = subprocess.run([sys.executable, "-m", "pipeline", "evaluate", run.name, "--runs-dir", str(run.parent),
                           *extra], capture_output=True, text=True, timeout=600)
    return proc


@pytest.mark.slow
def test_evaluate_test_split_writes_eval_json(trained_runs):
    run = trained_runs["cnn"]
    proc = evaluate(run)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"top1", "top3", "map3", "n"} <= set(summary)
    assert summary["top1"] > 0.3 and summary["top3"] >= summary["map3"] >= summary["top1"]
    saved = json.loads((run / "eval.json").read_text())
    assert saved["n"] == summary["n"] and len(saved["confusion"]) == 10
    assert saved["misclassified"] and len(saved["misclassified"][0]["image"]) == 784


@pytest.mark.slow
def test_evaluate_folders_names_skipped_classes(trained_runs, shared):
    run = trained_runs["cnn"]
    proc = evaluate(run, "--data", str(shared / "bitmaps"))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "dog" in summary["skipped_classes"] and "cat" not in summary["skipped_classes"]
    assert summary["n"] > 10_000
    proc = evaluate(run, "--data", str(shared / "simplified"))
    assert proc.returncode == 0, proc.stderr
    strokes = json.loads(proc.stdout.strip().splitlines()[-1])
    assert strokes["n"] > 500 and strokes["top1"] > 0.3
    proc = evaluate(run, "--data", str(shared / "nowhere"))
    assert proc.returncode == 2 and "is not a folder" in proc.stderr


def test_bitmap_folder_for_a_stroke_model_is_a_clear_error(shared):
    from pipeline.errors import QuickDrawError
    from pipeline.evaluate import _evaluate_folder
    from pipeline.models import build_model
    from pipeline.predict import Predictor

    # The check comes before any prediction, so an untrained model of the strokes kind is enough.
    predictor = Predictor(build_model("cnn", 2, (32, 32, 1)), ["cat", "apple"], "strokes", 32, name="colour")
    with pytest.raises(QuickDrawError, match="holds numpy_bitmap files but run 'colour'.*needs strokes"):
        _evaluate_folder(predictor, shared / "bitmaps")
    images, labels, _ = _evaluate_folder(predictor, shared / "simplified")
    assert images.shape[1:] == (32, 32, 1) and images.dtype == np.uint8 and set(labels) == {0, 1}
