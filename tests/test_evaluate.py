"""`python -m pipeline evaluate`: test split and folders of bitmaps or strokes, MAP@3, skipped classes."""

import json
import subprocess
import sys
from pathlib import Path

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


# ---------------------------------------------------------------- where evaluations are stored
def _result(data, top1, evaluated_at):
    return {"run": "r", "checkpoint": "best", "data": data, "top1": top1, "top3": 1.0, "map3": 0.9,
            "balanced_top1": top1, "n": 10, "evaluated_at": evaluated_at}


def test_folder_evaluations_live_beside_the_test_split_and_are_listed(tmp_path):
    from pipeline.evaluate import evaluation_path, folder_slug, list_evaluations
    from pipeline.files import atomic_write_json

    run = tmp_path / "run"
    (tmp_path / "a" / "bitmaps").mkdir(parents=True)
    (tmp_path / "b" / "bitmaps").mkdir(parents=True)
    assert evaluation_path(run) == run / "eval.json"
    first, second = evaluation_path(run, tmp_path / "a" / "bitmaps"), evaluation_path(run, tmp_path / "b" / "bitmaps")
    assert first.parent == run / "evals" and first.name.startswith("a-bitmaps-") and first != second
    # The same folder however it is spelt: one file.
    assert evaluation_path(run, tmp_path / "a" / "bitmaps" / ".." / "bitmaps") == first
    assert folder_slug(tmp_path / "a" / "bitmaps") == first.stem

    assert list_evaluations(run) == []
    atomic_write_json(run / "eval.json", _result("test split", 0.8, 100.0))
    atomic_write_json(first, _result(str((tmp_path / "a" / "bitmaps").resolve()), 0.6, 300.0))
    atomic_write_json(second, _result(str((tmp_path / "b" / "bitmaps").resolve()), 0.7, 200.0))
    (run / "evals" / "broken.json").write_text("{")
    listed = list_evaluations(run)
    assert [(e.kind, e.top1, e.path) for e in listed] == [("test", 0.8, run / "eval.json"), ("folder", 0.6, first),
                                                          ("folder", 0.7, second)]
    assert listed[0].label == "test split" and listed[0].data == "test split"
    assert listed[1].label == f"folder bitmaps ({(tmp_path / 'a' / 'bitmaps').resolve()})"


def test_an_old_folder_evaluation_in_eval_json_is_not_the_runs_test_result(tmp_path):
    """Before evals/, `evaluate RUN --data DIR` overwrote eval.json, and the Runs page showed the folder's
    top-1 as the run's "test top-1"."""
    from pipeline import runs
    from pipeline.evaluate import list_evaluations
    from pipeline.files import atomic_write_json

    config = runs.make_config(name="old", model="cnn", classes=("cat", "dog"), per_class=5, data_root=str(tmp_path))
    run = runs.create_run(config, tmp_path / "runs")
    atomic_write_json(run / "eval.json", _result("/somewhere/bitmaps", 0.5, 100.0))
    assert [(e.kind, e.data) for e in list_evaluations(run)] == [("folder", "/somewhere/bitmaps")]
    assert runs.summarize_run(run).test_top1 is None
    atomic_write_json(run / "eval.json", _result("test split", 0.9, 200.0))
    assert runs.summarize_run(run).test_top1 == 0.9


@pytest.mark.slow
def test_evaluating_a_folder_keeps_the_test_split_evaluation(tmp_path, shared):
    """`evaluate RUN --data DIR` writes evals/<folder>.json, never eval.json, and its --progress result
    record says which evaluation it wrote."""
    from pipeline import runs
    from pipeline.checkpoints import save_best_model
    from pipeline.evaluate import evaluation_path, list_evaluations
    from pipeline.files import atomic_write_json
    from pipeline.models import build_model

    config = runs.make_config(name="tiny", model="cnn", classes=("apple", "cat"), per_class=50, data_root=str(shared))
    run = runs.create_run(config, tmp_path / "runs")
    save_best_model(run, build_model("cnn", 2, (28, 28, 1)), {"epoch": 0})
    atomic_write_json(run / "eval.json", _result("test split", 0.75, 100.0))
    before = (run / "eval.json").read_bytes()
    folder = tmp_path / "folder"
    folder.mkdir()
    for name in ("apple", "cat", "dog"):
        np.save(folder / f"{name}.npy", np.ascontiguousarray(np.load(shared / "bitmaps" / f"{name}.npy", mmap_mode="r")[:30]))
    progress = tmp_path / "p.jsonl"
    proc = subprocess.run([sys.executable, "-m", "pipeline", "--progress", str(progress), "evaluate", "tiny",
                           "--runs-dir", str(run.parent), "--data", str(folder)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert (run / "eval.json").read_bytes() == before
    written = evaluation_path(run, folder)
    saved = json.loads(written.read_text())
    assert saved["data"] == str(folder.resolve()) and saved["kind"] == "folder" and saved["n"] == 60
    assert saved["skipped_classes"] == ["dog"]
    result = [json.loads(line) for line in progress.read_text().splitlines()][-1]
    assert result["type"] == "result" and result["result"]["kind"] == "folder"
    assert result["result"]["file"] == str(written.absolute()) and result["result"]["data"] == str(folder.resolve())
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == result["result"]
    assert [e.kind for e in list_evaluations(run)] == ["test", "folder"]


# ---------------------------------------------------------------- which classes changed (issue 12 §5)
REPO_RUNS = Path(__file__).resolve().parents[1] / "runs"


def _test_split(run, classes, labels, predicted):
    """A test-split evaluation as evaluate_run writes it, from labels and predicted classes."""
    probs = np.full((len(labels), len(classes)), 0.01)
    probs[np.arange(len(labels)), predicted] = 0.9
    return {**metrics_from_probabilities(probs, np.asarray(labels), classes), "run": run, "data": "test split"}


def test_compare_evaluations_by_hand_with_classes_in_another_order():
    from pipeline.evaluate import compare_evaluations

    # A: cat 2/3 right (one cat -> dog), dog 1/2 (dog -> cat), fish 2/2.
    a = _test_split("a", ["cat", "dog", "fish"], [0, 0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 0, 2, 2])
    # B, its classes in another order: cat 1/3 (cat -> fish twice), dog 2/2, fish 1/2 (fish -> dog).
    b = _test_split("b", ["fish", "cat", "dog"], [1, 1, 1, 2, 2, 0, 0], [1, 0, 0, 2, 2, 0, 2])
    compared = compare_evaluations(a, b)
    assert compared.classes == ["cat", "dog", "fish"] and compared.same_drawings
    # B reordered to A's classes: rows true, columns predicted.
    assert compared.confusion_b.tolist() == [[1, 0, 2], [0, 2, 0], [0, 1, 1]]
    assert compared.difference.tolist() == [[1, 1, -2], [1, -1, 0], [0, -1, 1]]
    assert [(r["class"], round(r["delta"], 4)) for r in compared.per_class] == [
        ("fish", 0.5), ("cat", round(2 / 3 - 1 / 3, 4)), ("dog", -0.5)]  # best delta first, worst last
    assert compared.per_class[1]["top1_a"] == pytest.approx(2 / 3) and compared.per_class[1]["n_b"] == 3
    changed = compared.changed_confusions
    assert changed[0] == {"true": "cat", "pred": "fish", "a": 0, "b": 2, "delta": -2}
    assert {(c["true"], c["pred"], c["delta"]) for c in changed[1:]} == {
        ("cat", "dog", 1), ("dog", "cat", 1), ("fish", "dog", -1)}
    assert compared.top1_a == pytest.approx(5 / 7) and compared.top1_b == pytest.approx(4 / 7)


def test_compare_evaluations_refuses_other_classes_and_folder_evaluations():
    from pipeline.errors import QuickDrawError
    from pipeline.evaluate import compare_evaluations

    a = _test_split("a", ["cat", "dog"], [0, 1], [0, 0])
    b = _test_split("b", ["cat", "fish"], [0, 1], [0, 1])
    with pytest.raises(QuickDrawError, match=r"different classes \(only in a: dog; only in b: fish\)"):
        compare_evaluations(a, b)
    folder = {**_test_split("b", ["cat", "dog"], [0, 1], [0, 1]), "data": "/drawings"}
    with pytest.raises(QuickDrawError, match="'b' is of the folder /drawings, not the test split"):
        compare_evaluations(a, folder)
    fewer = _test_split("b", ["cat", "dog"], [0, 1, 1], [0, 1, 1])  # another split: more dogs
    assert not compare_evaluations(a, fewer).same_drawings


def test_compare_test_splits_of_the_shipped_runs(tmp_path):
    from pipeline.errors import QuickDrawError
    from pipeline.evaluate import classes_of_test_split, compare_test_splits

    a, b = (json.loads((REPO_RUNS / name / "eval.json").read_text()) for name in ("cnn-56", "mobilenet-56"))
    compared = compare_test_splits(REPO_RUNS / "cnn-56", REPO_RUNS / "mobilenet-56")
    assert compared.run_a == "cnn-56" and len(compared.classes) == 56 and compared.same_drawings
    assert (compared.difference == np.asarray(a["confusion"]) - np.asarray(b["confusion"])).all()
    deltas = [row["delta"] for row in compared.per_class]
    assert deltas == sorted(deltas, reverse=True) and deltas[0] > 0 > deltas[-1]
    worst = compared.per_class[-1]
    assert worst["delta"] == pytest.approx(a["per_class"][worst["class"]]["top1"] - b["per_class"][worst["class"]]["top1"])
    top = compared.changed_confusions[0]
    i, j = a["classes"].index(top["true"]), a["classes"].index(top["pred"])
    off = np.abs(compared.difference)
    np.fill_diagonal(off, 0)
    assert abs(top["delta"]) == off.max() and top["a"] == a["confusion"][i][j] and top["b"] == b["confusion"][i][j]
    assert classes_of_test_split(REPO_RUNS / "qdnet-56") == a["classes"]
    assert len(classes_of_test_split(REPO_RUNS / "strokes-exp-bitmap28")) == 9
    assert classes_of_test_split(tmp_path) is None
    with pytest.raises(QuickDrawError, match=f"run '{tmp_path.name}' has no test-split evaluation"):
        compare_test_splits(REPO_RUNS / "cnn-56", tmp_path)
    with pytest.raises(QuickDrawError, match="only in cnn-56: .*airplane"):
        compare_test_splits(REPO_RUNS / "cnn-56", REPO_RUNS / "strokes-exp-bitmap28")


def _shipped_run_on(shared: Path, tmp_path: Path, name: str) -> Path:
    """A copy of a shipped run whose config reads its data from `shared` (wherever ../shared is here)."""
    import dataclasses
    import shutil

    from pipeline import runs

    run_dir = tmp_path / "runs" / name
    shutil.copytree(REPO_RUNS / name, run_dir, ignore=shutil.ignore_patterns("checkpoints", "tb", ".lock"))
    runs.write_config(run_dir, dataclasses.replace(runs.read_config(run_dir), data_root=str(shared)))
    return run_dir


def test_pair_drawings_of_the_shipped_cnn_are_every_drawing_its_confusion_matrix_counts(shared, cache_dir, tmp_path):
    """cat -> dog of cnn-56: exactly eval.json's count (so the same split, inputs and model), where
    eval.json keeps a sample of 48 mistakes; the sample's cat -> dog drawings are among them."""
    from pipeline.errors import QuickDrawError
    from pipeline.evaluate import MISCLASSIFIED_SAMPLES, pair_drawings, pair_drawings_inputs
    from pipeline.predict import Predictor

    run_dir = _shipped_run_on(shared, tmp_path, "cnn-56")
    result = json.loads((run_dir / "eval.json").read_text())
    classes, confusion = result["classes"], np.asarray(result["confusion"])
    cat, dog = classes.index("cat"), classes.index("dog")
    kept = [w for w in result["misclassified"] if (w["true"], w["pred"]) == ("cat", "dog")]
    assert len(result["misclassified"]) == MISCLASSIFIED_SAMPLES and len(kept) < confusion[cat, dog]

    found = pair_drawings(run_dir, "cat", "dog")
    assert (found.run, found.true, found.pred) == ("cnn-56", "cat", "dog")
    assert len(found.indices) == len(found.images) == len(found.top) == confusion[cat, dog] == 69
    assert found.class_drawings == confusion[cat].sum() == result["per_class"]["cat"]["n"]
    assert list(found.indices) == sorted(found.indices) and all(top[0][0] == "dog" for top in found.top)
    flat = {bytes(image.reshape(-1)) for image in found.images}
    assert all(bytes(np.asarray(w["image"], dtype=np.uint8)) in flat for w in kept)

    # Every cell of the cat row, with one model loaded: the whole row is the evaluation's.
    predictor = Predictor.from_run(run_dir)
    row = [len(pair_drawings(run_dir, "cat", name, predictor=predictor).indices) for name in classes]
    assert row == list(confusion[cat])

    inputs = pair_drawings_inputs(run_dir)
    assert inputs[0] == run_dir / "model" / "model.keras" and len(inputs) == 2 + len(classes)
    with pytest.raises(QuickDrawError, match="run 'cnn-56' has no class 'caat'"):
        pair_drawings(run_dir, "caat", "dog", predictor=predictor)
