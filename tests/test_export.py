"""`python -m pipeline export`: TF.js graph models of real (small, trained-in-session) runs, their
labels/preprocess files, the web/models/index.json entry, and the in-browser verification."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.browser import find_chromium
from pipeline.errors import RunError
from pipeline.export import compare, export_run, read_index
from pipeline.runs import read_classes

REPO = Path(__file__).resolve().parents[1]
WEB_FILES = ("index.html", "app.js", "preprocess.js", "style.css")


def make_web_dir(root: Path) -> Path:
    """A copy of web/ (page + TF.js bundle, no models) so tests never touch the repo's index.json."""
    web = root / "web"
    (web / "models").mkdir(parents=True)
    for name in WEB_FILES:
        shutil.copy(REPO / "web" / name, web / name)
    if (REPO / "web" / "vendor" / "tf.min.js").exists():
        shutil.copytree(REPO / "web" / "vendor", web / "vendor")
    return web


def require_browser() -> None:
    if find_chromium() is None:
        pytest.skip("no Chromium found (install Debian's chromium or `python -m playwright install chromium`)")
    if not (REPO / "web" / "vendor" / "tf.min.js").exists():
        pytest.skip("web/vendor/tf.min.js is missing: run `make web`")


def model_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.parametrize("kind", ["cnn", "mobilenet"])
def test_export_writes_verified_graph_model_and_registers_it(kind, trained_runs, tmp_path):
    require_browser()
    run = trained_runs[kind]
    web = make_web_dir(tmp_path)
    result = export_run(run, web_dir=web)

    out = web / "models" / run.name
    assert result["registered"] is True, result
    files = model_files(out)
    assert "model.json" in files and any(f.startswith("group1-shard") and f.endswith(".bin") for f in files)
    manifest = json.loads((out / "model.json").read_text())
    assert manifest["format"] == "graph-model"
    assert json.loads((out / "labels.json").read_text()) == read_classes(run)

    from pipeline import raster
    preprocess = json.loads((out / "preprocess.json").read_text())
    assert preprocess["representation"] == "bitmap28"
    assert preprocess["input"] == {"height": 28, "width": 28, "channels": 1, "dtype": "float32",
                                   "range": [0, 255], "layout": "NHWC"}
    assert preprocess["geometry"] == json.loads(json.dumps(raster.GEOMETRY))
    assert preprocess["simplify"]["rdp_epsilon"] == 2.0

    verification = result["verification"]
    print(f"\n{kind}: {verification}")
    assert verification["status"] == "passed"
    assert verification["n"] >= 50  # real drawings of the run's test split
    assert verification["max_abs_diff"] <= 1e-4 and verification["top1_agreement"] == 1.0

    index = read_index(web)
    entry = next(m for m in index["models"] if m["name"] == run.name)
    assert entry["path"] == f"models/{run.name}" and entry["model"] == kind
    assert entry["classes"] == len(read_classes(run)) and entry["quantize"] == "none"
    assert entry["size_bytes"] == sum((out / f).stat().st_size for f in files
                                      if f == "model.json" or f.endswith(".bin"))
    assert entry["verification"]["status"] == "passed"
    assert index["default"] == run.name


@pytest.mark.slow
@pytest.mark.browser
def test_quantized_export_reports_agreement_accuracy_change_and_size(trained_runs, tmp_path):
    require_browser()
    run = trained_runs["cnn"]
    web = make_web_dir(tmp_path)
    full = export_run(run, web_dir=web)
    small = export_run(run, web_dir=web, quantize="uint8", out_dir=web / "models" / f"{run.name}-uint8")
    print(f"\nfloat32 {full['size_bytes']} bytes, uint8 {small['size_bytes']} bytes: {small['verification']}")
    assert small["registered"] is True
    verification = small["verification"]
    assert verification["status"] == "passed" and verification["top1_agreement"] >= 0.99
    assert "accuracy_change" in verification and abs(verification["accuracy_change"]) <= 0.05
    assert small["size_bytes"] < full["size_bytes"] / 3
    names = {m["name"]: m for m in read_index(web)["models"]}
    assert names[f"{run.name}-uint8"]["quantize"] == "uint8" and names[run.name]["quantize"] == "none"
    assert read_index(web)["default"] == run.name  # a later export does not steal the default


@pytest.mark.slow
@pytest.mark.browser
def test_export_refuses_a_model_that_disagrees_with_keras(trained_runs, tmp_path, monkeypatch):
    """A conversion that changes the weights (a converter bug) must not reach the page."""
    require_browser()
    import pipeline.export as export

    run = trained_runs["cnn"]
    web = make_web_dir(tmp_path)
    first = export_run(run, web_dir=web)
    assert first["registered"]
    before = (web / "models" / "index.json").read_text()
    shard_before = (web / "models" / run.name / "group1-shard1of1.bin").read_bytes()

    real_convert = export.convert_model

    def corrupting_convert(model, input_shape, out_dir, quantize="none"):
        import keras

        damaged = keras.models.clone_model(model)
        damaged.set_weights([w * 1.5 for w in model.get_weights()])
        return real_convert(damaged, input_shape, out_dir, quantize)

    monkeypatch.setattr(export, "convert_model", corrupting_convert)
    result = export_run(run, web_dir=web)
    assert result["registered"] is False
    assert result["verification"]["status"] == "failed"
    assert "disagrees" in result["reason"] and "not registered" in result["reason"]
    # The registered model and the index are untouched; the rejected one is kept for inspection.
    assert (web / "models" / "index.json").read_text() == before
    assert (web / "models" / run.name / "group1-shard1of1.bin").read_bytes() == shard_before
    assert (web / "models" / f"{run.name}.rejected" / "model.json").exists()


@pytest.mark.slow
def test_no_verify_writes_the_model_and_marks_verification_skipped(trained_runs, tmp_path):
    run = trained_runs["mobilenet"]
    web = make_web_dir(tmp_path)
    result = export_run(run, web_dir=web, verify=False)
    assert result["registered"] is True
    assert result["verification"]["status"] == "skipped"
    assert "--no-verify" in result["verification"]["reason"] and "skipped" in result["note"]
    entry = read_index(web)["models"][0]
    assert entry["verification"] == {"status": "skipped", "reason": "--no-verify was given"}
    assert (web / "models" / run.name / "model.json").exists()


def test_bad_run_name_is_a_clear_error(tmp_path, capsys):
    from pipeline.cli import main

    runs = tmp_path / "runs"
    runs.mkdir()
    assert main(["export", "no-such-run", "--runs-dir", str(runs), "--no-verify"]) == 2
    err = capsys.readouterr().err
    assert "no run 'no-such-run'" in err and err.startswith("error:")
    with pytest.raises(RunError, match="not a run"):
        export_run(runs / "no-such-run", web_dir=tmp_path / "web")


def test_broken_index_is_a_clear_error(tmp_path):
    web = tmp_path / "web"
    (web / "models").mkdir(parents=True)
    (web / "models" / "index.json").write_text('["not", "an", "index"]')
    with pytest.raises(Exception, match="not a model index"):
        read_index(web)


def test_compare_applies_the_float32_and_quantized_rules():
    rng = np.random.default_rng(0)
    keras_probs = rng.dirichlet(np.ones(10), size=200).astype(np.float32)
    labels = keras_probs.argmax(1)
    same = compare(keras_probs, keras_probs + 5e-5, labels, "none")
    assert same["status"] == "passed" and same["accuracy_change"] == 0.0
    off = compare(keras_probs, keras_probs + 2e-4, labels, "none")
    assert off["status"] == "failed" and "max difference" in off["reason"]
    flipped = keras_probs.copy()
    flipped[:3] = flipped[:3, ::-1]  # 3 of 200 change their top-1: 98.5% agreement
    assert compare(keras_probs, flipped, labels, "uint8")["status"] == "failed"
    assert compare(keras_probs, np.concatenate([flipped[:2], keras_probs[2:]]), labels, "uint8")["status"] == "passed"
