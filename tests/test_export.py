"""`python -m pipeline export`: TF.js graph models of real (small, trained-in-session) runs, their
labels/preprocess files, the web/models/index.json entry, and the in-browser verification.

preprocess.json is the page's only source of the pipeline's constants: the tests below hold it to
pipeline/strokes.py and pipeline/raster.py, hold the committed models' files to it, and run
web/preprocess.js under Node with it - reproducing Python, following a changed constant, refusing a
file that lacks one."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pipeline import raster, strokes
from pipeline.browser import find_chromium
from pipeline.errors import RunError
from pipeline.export import ExportError, compare, export_run, preprocess_for, read_index, rewrite_preprocess
from pipeline.predict import prepare_input
from pipeline.runs import read_classes
from pipeline.strokes import to_google, to_simplified

REPO = Path(__file__).resolve().parents[1]
WEB_FILES = ("index.html", "app.js", "preprocess.js", "style.css")
FIXTURE = REPO / "tests" / "fixtures" / "preprocess_cases.json"


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
    assert result.registered is True, result
    files = model_files(out)
    assert "model.json" in files and any(f.startswith("group1-shard") and f.endswith(".bin") for f in files)
    manifest = json.loads((out / "model.json").read_text())
    assert manifest["format"] == "graph-model"
    assert json.loads((out / "labels.json").read_text()) == read_classes(run)

    preprocess = json.loads((out / "preprocess.json").read_text())
    assert preprocess["representation"] == "bitmap28"
    assert preprocess["input"] == {"height": 28, "width": 28, "channels": 1, "dtype": "float32",
                                   "range": [0, 255], "layout": "NHWC"}
    assert preprocess == as_json(preprocess_for("bitmap28", 28))

    assert result.verified and result.verification == "passed"
    verification = result.verification_report
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
    print(f"\nfloat32 {full.size_bytes} bytes, uint8 {small.size_bytes} bytes: {small.verification_report}")
    assert small.registered is True
    verification = small.verification_report
    assert verification["status"] == "passed" and verification["top1_agreement"] >= 0.99
    assert "accuracy_change" in verification and abs(verification["accuracy_change"]) <= 0.05
    assert small.size_bytes < full.size_bytes / 3
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
    assert first.registered
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
    assert result.registered is False and not result.verified
    assert result.verification == "failed" and result.verification_report["status"] == "failed"
    assert "disagrees" in result.message and "not registered" in result.message
    assert result.path == str(web / "models" / f"{run.name}.rejected")
    # The registered model and the index are untouched; the rejected one is kept for inspection.
    assert (web / "models" / "index.json").read_text() == before
    assert (web / "models" / run.name / "group1-shard1of1.bin").read_bytes() == shard_before
    assert (web / "models" / f"{run.name}.rejected" / "model.json").exists()


@pytest.mark.slow
def test_no_verify_writes_the_model_and_marks_verification_skipped(trained_runs, tmp_path):
    run = trained_runs["mobilenet"]
    web = make_web_dir(tmp_path)
    result = export_run(run, web_dir=web, verify=False)
    assert result.registered is True and result.default == run.name
    assert result.verification == "skipped" and not result.verified
    assert "--no-verify" in result.verify_message and "skipped" in result.message
    from pipeline.export import ExportResult

    assert ExportResult.from_json(json.loads(json.dumps(result.to_json()))) == result  # as a result record
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


# ---------------------------------------------------------------- preprocess.json and web/preprocess.js
def as_json(data):
    """`data` as it reads back from a JSON file."""
    return json.loads(json.dumps(data))


def leaf_paths(data: dict, prefix: str = "") -> list[str]:
    """Dotted paths of the values of a nested dict ("geometry.line_width", ...)."""
    out = []
    for key, value in data.items():
        path = f"{prefix}{key}"
        out += leaf_paths(value, path + ".") if isinstance(value, dict) else [path]
    return out


def without(data: dict, path: str) -> dict:
    data = copy.deepcopy(data)
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    del node[last]
    return data


def changed(data: dict, path: str, value) -> dict:
    data = copy.deepcopy(data)
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    node[last] = value
    return data


def fixture_cases() -> list[dict]:
    return json.loads(FIXTURE.read_text())["cases"]


# Runs web/preprocess.js under Node: every config (a preprocess.json) on every drawing, or the error
# the config raised.
_NODE_PREPARE = r"""
const P = require(process.argv[1]);
let text = '';
process.stdin.on('data', chunk => { text += chunk; });
process.stdin.on('end', () => {
  const {drawings, configs} = JSON.parse(text);
  const out = configs.map(config => {
    try {
      return {results: drawings.map(d => {
        const r = P.prepare(d, config);
        return {image: Array.from(r.image), shape: r.shape, simplified: r.simplified};
      })};
    } catch (e) {
      return {error: {name: e.name, message: e.message}};
    }
  });
  process.stdout.write(JSON.stringify(out));
});
"""


def node_prepare(drawings: list, configs: list[dict]) -> list[dict]:
    if shutil.which("node") is None:
        pytest.skip("no node to run web/preprocess.js with")
    done = subprocess.run(["node", "-e", _NODE_PREPARE, str(REPO / "web" / "preprocess.js")],
                          input=json.dumps({"drawings": drawings, "configs": configs}),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def mean_abs_diff(js_result: dict, python: np.ndarray) -> float:
    return float(np.abs(np.asarray(js_result["image"], dtype=int) - python.astype(int).ravel()).mean())


def test_preprocess_json_reads_every_number_from_the_pipeline(monkeypatch):
    description = preprocess_for("strokes", 64, time_channel=True)
    assert description["input"] == {"height": 64, "width": 64, "channels": 2, "dtype": "float32",
                                     "range": [0, 255], "layout": "NHWC"}
    assert description["simplify"] | {"align": None, "round": None} == {
        "align": None, "round": None, "longer_side": strokes.SIMPLIFIED_SIDE,
        "resample_spacing": strokes.RESAMPLE_SPACING, "rdp_epsilon": strokes.RDP_EPSILON,
        "max_abs_coordinate": strokes.MAX_ABS_COORDINATE}
    assert description["geometry"] == raster.GEOMETRY
    assert description["stroke_intensity"] == {"first": raster.stroke_intensity(0), "step": raster.COLOUR_STEP,
                                               "floor": raster.COLOUR_FLOOR}
    # render_colour_coded's time ink `1.0 - 0.75 * t`, read from its source (it has no name there);
    # the time-channel parity below shows the page draws what Python draws with these.
    assert description["time_intensity"] == {"start": 1.0, "drop": 0.75}
    # Read when called, never copied: a changed constant reaches the next preprocess.json.
    monkeypatch.setattr(strokes, "RDP_EPSILON", 3.5)
    monkeypatch.setattr(raster, "COLOUR_FLOOR", 90)
    monkeypatch.setitem(raster.GEOMETRY, "line_width", 20.0)
    again = preprocess_for("strokes", 64, time_channel=True)
    assert again["simplify"]["rdp_epsilon"] == 3.5 and again["stroke_intensity"]["floor"] == 90
    assert again["geometry"]["line_width"] == 20.0


def test_committed_models_carry_the_current_preprocess_json():
    index = read_index(REPO / "web")
    assert index["models"], "web/models/index.json lists no models"
    for entry in index["models"]:
        on_disk = json.loads((REPO / "web" / entry["path"] / "preprocess.json").read_text())
        wanted = preprocess_for(on_disk["representation"], on_disk["image_size"], on_disk["time_channel"])
        assert on_disk == as_json(wanted), (
            f"{entry['path']}/preprocess.json is stale; update it with "
            f"pipeline.export.rewrite_preprocess('web/{entry['path']}')")


def test_rewrite_preprocess_completes_an_old_file_and_leaves_the_model_alone(tmp_path):
    source = REPO / "web" / read_index(REPO / "web")["models"][0]["path"]
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    shutil.copy(source / "model.json", model_dir / "model.json")
    current = json.loads((source / "preprocess.json").read_text())
    # What the exporter wrote before preprocess.json carried every constant.
    old = without(without(without(current, "stroke_intensity"), "time_intensity"), "simplify.max_abs_coordinate")
    (model_dir / "preprocess.json").write_text(json.dumps(old))
    new = rewrite_preprocess(model_dir)
    assert json.loads((model_dir / "preprocess.json").read_text()) == as_json(new) == current
    assert (model_dir / "model.json").read_bytes() == (source / "model.json").read_bytes()

    (model_dir / "preprocess.json").write_text(json.dumps(changed(old, "input.channels", 3)))
    with pytest.raises(ExportError, match="does not fit the current pipeline"):
        rewrite_preprocess(model_dir)


def test_preprocess_js_reproduces_python_with_the_exported_constants():
    """The shared fixture, and the colour-coded time channel it does not hold, under Node."""
    cases = fixture_cases()
    drawings = [case["drawing"] for case in cases]
    bitmap, coloured, timed = node_prepare(drawings, [preprocess_for("bitmap28", 28), preprocess_for("strokes", 32),
                                                      preprocess_for("strokes", 32, time_channel=True)])
    for i, case in enumerate(cases):
        assert bitmap["results"][i]["simplified"] == case["simplified"], case["name"]
        assert bitmap["results"][i]["shape"] == [28, 28, 1] and timed["results"][i]["shape"] == [32, 32, 2]
        assert mean_abs_diff(bitmap["results"][i], np.asarray(case["bitmap28"])) <= 0.5, case["name"]
        assert mean_abs_diff(coloured["results"][i], np.asarray(case["strokes32"])) <= 0.5, case["name"]
        python = prepare_input(case["drawing"], "strokes", 32, time_channel=True)
        assert mean_abs_diff(timed["results"][i], python) <= 0.5, case["name"]


def test_preprocess_js_follows_the_constants_of_preprocess_json(monkeypatch):
    """Other values of the simplification and intensity constants, in Python and hence in
    preprocess_for: the JavaScript output follows the file to Python's new output. The geometry
    and time ink, which Python cannot re-render with, must at least change what the page draws."""
    cases = fixture_cases()
    drawings = [case["drawing"] for case in cases]
    default = preprocess_for("strokes", 32, time_channel=True)
    monkeypatch.setattr(strokes, "SIMPLIFIED_SIDE", 127)
    monkeypatch.setattr(strokes, "RESAMPLE_SPACING", 3.0)
    monkeypatch.setattr(strokes, "RDP_EPSILON", 6.0)
    monkeypatch.setattr(raster, "COLOUR_STEP", 60)
    monkeypatch.setattr(raster, "COLOUR_FLOOR", 100)
    other = preprocess_for("strokes", 32, time_channel=True)
    python = [prepare_input(d, "strokes", 32, time_channel=True) for d in drawings]
    python_simplified = [to_google(to_simplified(d)) for d in drawings]
    monkeypatch.undo()

    wider = changed(default, "geometry.line_width", 2 * default["geometry"]["line_width"])
    slower = changed(default, "time_intensity.drop", 0.5)
    stricter = changed(default, "simplify.max_abs_coordinate", 5000.0)
    before, after, thick, faded, strict = node_prepare(drawings, [default, other, wider, slower, stricter])
    for i, case in enumerate(cases):
        assert after["results"][i]["simplified"] == python_simplified[i], case["name"]
        assert mean_abs_diff(after["results"][i], python[i]) <= 0.5, case["name"]
    assert sum(a["simplified"] != b["simplified"] for a, b in zip(before["results"], after["results"], strict=True)) >= 8
    images = {name: np.asarray([r["image"] for r in run["results"]]).reshape(len(cases), 32, 32, 2)
              for name, run in (("before", before), ("thick", thick), ("faded", faded))}
    # A wider pen inks more pixels (though less than twice as many: the line width is also padding).
    assert (images["thick"] > 0).sum() > (images["before"] > 0).sum()
    assert np.array_equal(images["faded"][..., 0], images["before"][..., 0])
    assert images["faded"][..., 1].astype(int).sum() > images["before"][..., 1].astype(int).sum()
    assert strict["error"]["name"] == "DrawingError" and "5e+3" in strict["error"]["message"]


def test_preprocess_js_refuses_a_file_that_lacks_or_contradicts_a_constant():
    complete = preprocess_for("strokes", 32, time_channel=True)
    paths = leaf_paths(complete)
    assert {"simplify.rdp_epsilon", "geometry.line_width", "stroke_intensity.floor", "time_intensity.drop"} <= set(paths)
    wrong = {"geometry.line_cap": "butt", "simplify.round": "half-up", "input.channels": 1,
             "geometry.padding": "16", "representation": "sketch"}
    configs = [without(complete, path) for path in paths] + [changed(complete, k, v) for k, v in wrong.items()]
    outcomes = node_prepare([fixture_cases()[0]["drawing"]], configs + [None])
    for path, outcome in zip(paths, outcomes, strict=False):
        assert outcome.get("error", {}).get("name") == "PreprocessConfigError", f"no error without {path}"
        assert outcome["error"]["message"] == f"preprocess.json lacks {path}"
    for (path, _), outcome in zip(wrong.items(), outcomes[len(paths):], strict=False):
        assert outcome.get("error", {}).get("name") == "PreprocessConfigError", f"{path} accepted"
        assert path in outcome["error"]["message"]
    assert outcomes[-1]["error"] == {"name": "PreprocessConfigError",
                                     "message": "preprocess.json is missing or not an object"}
