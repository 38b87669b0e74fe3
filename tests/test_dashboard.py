"""AppTest of every dashboard page (`streamlit run dashboard`) over fixture runs built with pipeline.runs:
a finished CNN run with eval.json, an interrupted MobileNet run, a running run (this process holds its
lock), a crashed one, a damaged one and an imported seed-log run. The Draw page uses small models
trained for real (the `trained_runs` fixture of conftest.py)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from pipeline import runs as runs_mod

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 60
if str(REPO) not in sys.path:  # `dashboard` is not an installed package: import it from the checkout
    sys.path.insert(0, str(REPO))


def page_test(page: str) -> AppTest:
    """An AppTest running one page module's render()."""
    script = (f"import sys\nsys.path.insert(0, {str(REPO)!r})\n"
              f"from dashboard.views import {page}\n{page}.render()\n")
    return AppTest.from_string(script, default_timeout=TIMEOUT)


# ---------------------------------------------------------------- fixture runs
def _history(epochs: int, chunk_size: int, start: float, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows, t = [], start
    for epoch in range(1, epochs + 1):
        acc = 0.9 - 0.6 * math.exp(-epoch / 4) + rng.normal(0, 0.01)
        rows.append({"epoch": epoch, "chunk": (epoch - 1) // chunk_size + 1, "started": t, "ended": t + 30,
                     "loss": 2.0 * math.exp(-epoch / 5), "accuracy": acc, "top3": min(acc + 0.08, 1.0),
                     "val_loss": 2.1 * math.exp(-epoch / 5) + 0.05, "val_accuracy": acc - 0.03,
                     "val_top3": min(acc + 0.05, 1.0), "lr": 0.002 if epoch < 8 else 0.001})
        t += 31
    return rows


def _make_run(runs_dir: Path, name: str, model: str, epochs: int, chunk_size: int, state: str, *,
              stop_at: int | None = None, seed: int = 0, checkpoints: bool = True, **status) -> Path:
    from pipeline.runs import create_run, make_config

    config = make_config(name=name, model=model, classes=("cat", "dog", "fish"), per_class=100,
                         epochs_per_chunk=chunk_size, data_root=str(runs_dir.parent / "data"))
    run_dir = create_run(config, runs_dir)
    start = time.time() - 5000
    rows = _history(epochs, chunk_size, start, seed)
    runs_mod.write_history(run_dir, rows)
    for chunk in sorted({r["chunk"] for r in rows}):
        first = min(r["epoch"] for r in rows if r["chunk"] == chunk)
        last = max(r["epoch"] for r in rows if r["chunk"] == chunk)
        runs_mod.append_event(run_dir, "chunk_start", chunk=chunk, epoch=first, batch=0)
        if stop_at is not None and chunk == rows[-1]["chunk"]:
            runs_mod.append_event(run_dir, "signal_stop", signal="SIGTERM", chunk=chunk, epoch=stop_at, batch=3)
            # The trainer closes a chunk it was stopped in (exit code 143); only a killed one stays open.
            runs_mod.append_event(run_dir, "chunk_end", chunk=chunk, epoch=stop_at - 1, batch=3, exit_code=143)
        else:
            runs_mod.append_event(run_dir, "chunk_end", chunk=chunk, epoch=last, batch=0)
    runs_mod.write_status(run_dir, state, chunk=rows[-1]["chunk"], epoch=epochs, **status)
    if checkpoints:  # the page only needs to see that they exist (which runs can train on)
        (run_dir / "checkpoints").mkdir(exist_ok=True)
        np.savez(run_dir / "checkpoints" / f"epoch-{epochs:04d}.npz", m00000=np.zeros(1))
    return run_dir


def _eval_json(run_dir: Path) -> dict:
    """eval.json as pipeline.evaluate writes it, from model-like probabilities."""
    from pipeline.evaluate import metrics_from_probabilities

    classes = ["cat", "dog", "fish"]
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(3), 20)
    logits = rng.normal(0, 1, (60, 3))
    logits[np.arange(60), labels] += 1.5
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    result = metrics_from_probabilities(probs, labels, classes)
    predicted = probs.argmax(1)
    wrong = np.flatnonzero(predicted != labels)[:5]
    result.update({"run": run_dir.name, "checkpoint": "best", "data": "test split", "skipped_classes": [],
                   "misclassified": [{"true": classes[labels[i]], "pred": classes[predicted[i]],
                                      "top": [[classes[j], float(probs[i, j])] for j in np.argsort(-probs[i])],
                                      "shape": [28, 28, 1], "image": rng.integers(0, 256, 784).tolist()}
                                     for i in wrong]})
    runs_mod.atomic_write_json(run_dir / "eval.json", result)
    return result


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture(scope="module")
def fixture_runs(tmp_path_factory):
    from pipeline.seedlogs import import_logs

    root = tmp_path_factory.mktemp("dashboard")
    runs_dir = root / "runs"
    runs_dir.mkdir()
    made = {}
    made["cnn"] = _make_run(runs_dir, "cnn-finished", "cnn", 12, 6, "finished", seed=1)
    made["eval"] = _eval_json(made["cnn"])
    made["mobilenet"] = _make_run(runs_dir, "mobilenet-stopped", "mobilenet", 7, 4, "interrupted", stop_at=7, seed=2,
                                  message="stopped by SIGTERM")
    running = _make_run(runs_dir, "cnn-running", "cnn", 3, 10, "running", pid=os.getpid(), batch=5,
                        batches_per_epoch=20, eta_seconds=125, epochs_target=10,
                        metrics={"loss": 0.5, "accuracy": 0.8, "top3": 0.9})
    runs_mod.atomic_write_json(running / ".lock", {"pid": os.getpid(), "host": "test", "since": time.time()})
    made["running"] = running
    made["crashed"] = _make_run(runs_dir, "qdnet-crashed", "qdnet", 2, 10, "running", pid=_dead_pid())
    made["cloned"] = _make_run(runs_dir, "cnn-cloned", "cnn", 5, 5, "finished", checkpoints=False)
    damaged = runs_dir / "broken-run"
    damaged.mkdir()
    (damaged / "config.json").write_text("{ this is not json", encoding="utf-8")
    made["damaged"] = damaged
    logs = root / "seed_logs"
    logs.mkdir()
    header = "epoch,accuracy,loss,lr,top_3_accuracy,val_accuracy,val_loss,val_top_3_accuracy\n"
    for index, suffix in enumerate(("", "_1")):
        lines = [f"{e},{0.5 + 0.03 * e + index * 0.1},{1.5 - 0.1 * e},0.001,{0.7 + 0.02 * e},"
                 f"{0.48 + 0.03 * e},{1.6 - 0.1 * e},{0.68 + 0.02 * e}" for e in range(5)]
        (logs / f"train_log{suffix}.csv").write_text(header + "\n".join(lines) + "\n", encoding="utf-8")
    made["imported"] = import_logs(logs, runs_dir, name="seed-notebook", model="cnn")
    made["runs_dir"] = runs_dir
    return made


@pytest.fixture
def runs_env(fixture_runs, monkeypatch):
    monkeypatch.setenv("QUICKDRAW_RUNS", str(fixture_runs["runs_dir"]))
    return fixture_runs


def _dataframe(at: AppTest, key: str):
    frames = [df for df in at.dataframe if getattr(df, "key", None) == key] or list(at.dataframe)
    return frames[0].value


# ---------------------------------------------------------------- pure helpers
def test_ema_smooth_is_tensorboard_debiased_ema():
    from dashboard.common import ema_smooth

    values = [1.0, 3.0, None, 5.0]
    assert ema_smooth(values, 0.0) == [1.0, 3.0, None, 5.0]
    # Worked by hand for weight w = 0.5: s_n = w * s_(n-1) + (1 - w) * x_n from s_0 = 0, shown as
    # s_n / (1 - w**n), where n counts the values seen so far (the None is not a step):
    #   x=1: s_1 = 0.5*0    + 0.5*1 = 0.5    -> 0.5   / (1 - 0.5)   = 1
    #   x=3: s_2 = 0.5*0.5  + 0.5*3 = 1.75   -> 1.75  / (1 - 0.25)  = 7/3  = 2.3333...
    #   None: stays None, s unchanged
    #   x=5: s_3 = 0.5*1.75 + 0.5*5 = 3.375  -> 3.375 / (1 - 0.125) = 27/7 = 3.8571...
    # The same as pandas' ewm(alpha=1 - w, adjust=True, ignore_na=True).mean(), a weighted average with
    # weights w**age: x=5 gives (5 + 0.5*3 + 0.25*1) / (1 + 0.5 + 0.25) = 6.75 / 1.75 = 27/7. (Counting
    # the None as a step, ignore_na=False, would give (5 + 0.25*3 + 0.125*1) / 1.375 = 4.2727... instead.)
    # Debiasing makes the first point its own value, not (1 - w) * value = 0.5.
    smoothed = ema_smooth(values, 0.5)
    assert smoothed[2] is None
    assert smoothed == pytest.approx([1.0, 7 / 3, None, 27 / 7])
    assert ema_smooth([5.0] * 10, 0.95) == pytest.approx([5.0] * 10)  # a constant stays constant
    assert ema_smooth([0.0, 1.0, 1.0, 1.0], 0.9)[-1] < 1.0  # lags behind a jump
    assert ema_smooth([float("nan"), 2.0], 0.5) == [None, pytest.approx(2.0)]
    with pytest.raises(ValueError):
        ema_smooth([1.0], 1.0)


def test_train_steps_download_missing_classes_first(tmp_path, monkeypatch):
    from dashboard.views.train import train_steps

    monkeypatch.setenv("QUICKDRAW_RUNS", str(tmp_path / "runs"))
    steps = train_steps(name="r1", model="cnn", classes=["cat", "dog"], per_class=500,
                        representation="strokes", epochs_per_chunk=2, chunks=1, missing=["dog"],
                        data_root=tmp_path / "data")
    assert steps[0] == ["download", "dog", "--format", "simplified", "--per-class", "500", "--data",
                        str(tmp_path / "data")]
    assert steps[1][0] == "train" and steps[1][steps[1].index("--name") + 1] == "r1"
    assert steps[1][steps[1].index("--classes") + 1:steps[1].index("--classes") + 3] == ["cat", "dog"]
    assert len(train_steps(name="r1", model="cnn", classes=["cat", "dog"], per_class=5, representation="bitmap28",
                           epochs_per_chunk=2, chunks=1, missing=[], data_root=tmp_path)) == 1


# ---------------------------------------------------------------- Runs
def test_runs_page_lists_every_run_with_status(runs_env):
    at = page_test("runs").run()
    assert not at.exception, at.exception
    table = _dataframe(at, "runs_table")
    status = dict(zip(table["name"], table["status"], strict=True))
    assert status == {"cnn-finished": "finished", "mobilenet-stopped": "stopped", "cnn-running": "running",
                      "qdnet-crashed": "crashed", "broken-run": "damaged", "seed-notebook": "finished",
                      "cnn-cloned": "finished"}
    row = table.set_index("name").loc["cnn-finished"]
    assert row["epochs"] == 12 and row["chunks"] == 2 and row["classes"] == 3
    assert row["test top-1"] == pytest.approx(runs_env["eval"]["top1"])
    assert row["best val top-3"] == pytest.approx(max(r["val_top3"] for r in runs_mod.read_history(runs_env["cnn"])))
    note = table.set_index("name").loc["broken-run", "note"]
    assert "config.json" in note and "not valid JSON" in note
    assert table.set_index("name").loc["seed-notebook", "chunks"] == 2
    assert any("broken-run" in w.value for w in at.warning)


def test_runs_page_filters_search_and_selection(runs_env):
    at = page_test("runs").run()
    at.multiselect(key="runs_status_filter").set_value(["running", "crashed"]).run()
    assert sorted(_dataframe(at, "runs_table")["name"]) == ["cnn-running", "qdnet-crashed"]
    at.multiselect(key="runs_status_filter").set_value([]).run()
    at.text_input(key="runs_search").set_value("mobile").run()
    assert list(_dataframe(at, "runs_table")["name"]) == ["mobilenet-stopped"]
    at.text_input(key="runs_search").set_value("").run()
    at.multiselect(key="runs_model_filter").set_value(["cnn"]).run()
    assert set(_dataframe(at, "runs_table")["name"]) == {"cnn-finished", "cnn-running", "seed-notebook", "cnn-cloned"}
    at.selectbox(key="runs_sort").set_value("name").run()
    at.toggle(key="runs_descending").set_value(False).run()
    assert list(_dataframe(at, "runs_table")["name"]) == ["cnn-cloned", "cnn-finished", "cnn-running", "seed-notebook"]
    compare = at.multiselect(key="runs_compare_widget")
    assert "broken-run" not in compare.options
    compare.set_value(["cnn-finished", "mobilenet-stopped"]).run()
    assert at.session_state["selected_runs"] == ["cnn-finished", "mobilenet-stopped"]
    assert not at.exception


def test_runs_page_rename_refuses_bad_names_and_delete_needs_confirmation(tmp_path, monkeypatch):
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    _make_run(runs_dir, "first", "cnn", 3, 3, "finished")
    _make_run(runs_dir, "second", "cnn", 2, 3, "finished")
    monkeypatch.setenv("QUICKDRAW_RUNS", str(runs_dir))
    at = page_test("runs").run()
    at.selectbox(key="runs_manage_target").set_value("first").run()
    at.text_input(key="runs_new_name").set_value("../escaped").run()
    at.button(key="runs_rename").click().run()
    assert any("not a valid run name" in e.value for e in at.error)
    assert (runs_dir / "first").is_dir() and not (tmp_path / "escaped").exists()
    at.text_input(key="runs_new_name").set_value("renamed").run()
    at.button(key="runs_rename").click().run()
    assert not at.exception
    assert (runs_dir / "renamed" / "config.json").exists() and not (runs_dir / "first").exists()
    assert runs_mod.read_config(runs_dir / "renamed").name == "renamed"

    at.selectbox(key="runs_manage_target").set_value("second").run()
    assert at.button(key="runs_delete").disabled
    at.text_input(key="runs_delete_confirm").set_value("second").run()
    assert at.button(key="runs_delete").disabled  # the tick is needed too
    at.checkbox(key="runs_delete_tick").check().run()
    assert not at.button(key="runs_delete").disabled
    at.button(key="runs_delete").click().run()
    assert not at.exception
    assert not (runs_dir / "second").exists()
    assert list(_dataframe(at, "runs_table")["name"]) == ["renamed"]


def test_runs_page_with_no_runs_shows_how_to_start(tmp_path, monkeypatch):
    monkeypatch.setenv("QUICKDRAW_RUNS", str(tmp_path / "nothing"))
    at = page_test("runs").run()
    assert not at.exception
    assert "No runs yet" in at.info[0].value


# ---------------------------------------------------------------- Compare
def test_compare_defaults_to_latest_cnn_and_mobilenet(runs_env):
    at = page_test("compare").run()
    assert not at.exception, at.exception
    chosen = at.multiselect(key="compare_runs").value
    assert len(chosen) == 2
    models = {runs_mod.read_config(runs_env["runs_dir"] / n).model for n in chosen}
    assert models == {"cnn", "mobilenet"}
    assert "mobilenet-stopped" in chosen
    assert at.get("plotly_chart")


def test_compare_figure_has_chunks_interruptions_and_best_markers(runs_env):
    from dashboard.views.compare import build_figure, merged_history

    run_dirs = {"cnn-finished": runs_env["cnn"], "mobilenet-stopped": runs_env["mobilenet"]}
    data = merged_history(run_dirs, "val_top3", 0.6)
    assert len(data) == 12 + 7 and "val_top3_smoothed" in data
    figure = build_figure(data, run_dirs, "val_top3", "epoch", 0.6)
    names = [t.name for t in figure.data]
    assert "cnn-finished" in names and "mobilenet-stopped" in names
    stars = [t for t in figure.data if t.marker is not None and t.marker.symbol == "star"]
    cnn_rows = runs_mod.read_history(runs_env["cnn"])
    best = max(cnn_rows, key=lambda r: r["val_top3"])
    assert any(s.x[0] == best["epoch"] and s.y[0] == pytest.approx(best["val_top3"]) for s in stars)
    lines = [shape.x0 for shape in figure.layout.shapes]
    assert 6.5 in lines  # cnn chunk 2 starts at epoch 7
    assert 4.5 in lines  # mobilenet chunk 2 starts at epoch 5
    assert 7.0 in lines  # mobilenet stopped by a signal during epoch 7
    hover = next(t for t in figure.data if t.name == "cnn-finished")
    assert list(hover.customdata[0][:3]) == ["cnn-finished", 1, 1]
    loss = build_figure(merged_history(run_dirs, "val_loss", 0.0), run_dirs, "val_loss", "time", 0.0)
    loss_stars = [t for t in loss.data if t.marker is not None and t.marker.symbol == "star"]
    assert any(s.y[0] == pytest.approx(min(r["val_loss"] for r in cnn_rows)) for s in loss_stars)


def test_compare_uses_selection_and_offers_downloads(runs_env):
    at = page_test("compare")
    at.session_state["selected_runs"] = ["cnn-finished", "seed-notebook", "cnn-running"]
    at.run()
    assert not at.exception, at.exception
    assert at.multiselect(key="compare_runs").value == ["cnn-finished", "seed-notebook", "cnn-running"]
    at.selectbox(key="compare_metric").set_value("lr").run()
    at.radio(key="compare_axis").set_value("wall-clock time").run()
    at.slider(key="compare_smoothing").set_value(0.8).run()
    assert not at.exception
    best = _dataframe(at, "compare_best")
    assert set(best["run"]) == {"cnn-finished", "seed-notebook", "cnn-running"}
    recipe = next(df.value for df in at.dataframe if "schedule" in df.value.columns).set_index("run")
    assert recipe.loc["cnn-finished", "schedule"] == "plateau" and recipe.loc["cnn-finished", "resume"] == "exact"
    assert {"label smoothing", "weight decay", "augment", "init from", "options"} <= set(recipe.columns)
    assert at.get("download_button")


def test_compare_png_export_never_crashes(runs_env):
    from unittest import mock

    at = page_test("compare")
    at.session_state["selected_runs"] = ["cnn-finished"]
    at.run()
    with mock.patch.dict(os.environ):  # figure_png sets $BROWSER_PATH for kaleido: restored afterwards
        at.button(key="compare_make_png").click().run(timeout=180)
    assert not at.exception
    from pipeline.browser import find_chromium

    png = at.session_state["compare_png"] if "compare_png" in at.session_state else None
    if png is None:  # kaleido could not run: the page must say why
        assert find_chromium() is None, "a Chromium is installed, so the PNG export should have worked"
        assert any("PNG export failed" in e.value for e in at.error)
    else:
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert at.get("download_button")[-1].proto.label == "Download PNG"


# ---------------------------------------------------------------- Train
def test_train_page_shows_categories_models_and_live_progress(runs_env):
    at = page_test("train").run()
    assert not at.exception, at.exception
    classes = at.multiselect(key="train_classes")
    assert len(classes.options) == 345
    assert {"cnn", "mobilenet"} <= set(at.selectbox(key="train_model").options)
    text = " ".join(m.value for m in at.markdown)
    assert "cnn-running" in text and "running" in text and "epoch 3/10" in text
    assert "qdnet-crashed" not in text  # its trainer is gone: not shown as training
    assert at.selectbox(key="stop_run").options == ["cnn-running"]
    assert "cnn-running" not in at.selectbox(key="resume_run").options
    # Records without checkpoints (a clone of the repo, imported logs) are not offered for training.
    assert {"cnn-finished", "mobilenet-stopped"} <= set(at.selectbox(key="resume_run").options)
    assert "cnn-cloned" not in at.selectbox(key="resume_run").options
    assert "cnn-cloned" not in at.selectbox(key="branch_parent").options
    assert any("Without training checkpoints" in c.value and "cnn-cloned" in c.value for c in at.caption)
    at.text_input(key="train_name").set_value("../outside").run()
    at.multiselect(key="train_classes").set_value(["cat", "dog"]).run()
    at.button(key="train_start").click().run()
    assert any("not a valid run name" in e.value for e in at.error)
    assert not (runs_env["runs_dir"].parent / "outside").exists()


def test_train_page_shows_a_jobs_progress_and_error_from_its_files(tmp_path, monkeypatch):
    from pipeline import jobs

    logs = tmp_path / "runs" / ".logs"
    logs.mkdir(parents=True)
    monkeypatch.setenv("QUICKDRAW_RUNS", str(tmp_path / "runs"))
    steps = [["download", "cat", "--format", "numpy_bitmap"], ["train", "--name", "r1"]]
    running = {"id": "train-r1", "kind": "train", "run": "r1", "runs_dir": str(tmp_path / "runs"), "steps": steps,
               "commands": [], "started": time.time(), "pid": os.getpid(), "step": 0, "returncodes": []}
    runs_mod.atomic_write_json(logs / "train-r1.json", running)
    progress = jobs.ProgressFile(logs / "train-r1.progress.jsonl", "download")
    progress.start()
    progress.progress("downloading cat", done=30, total=100, force=True)
    at = page_test("train").run()
    assert not at.exception, at.exception
    assert any(e.proto.label == "job train-r1: running" for e in at.expander)
    bar = at.get("progress")[0].proto
    assert (bar.value, bar.text) == (30, "downloading cat")

    progress.error("cannot reach https://example.test (timed out); are you offline?")
    runs_mod.atomic_write_json(logs / "train-r1.json", {**running, "returncodes": [2], "returncode": 2})
    at.run()
    assert not at.exception, at.exception
    assert any(e.proto.label == "job train-r1: failed" for e in at.expander)
    error = next(e.value for e in at.error if "cannot reach" in e.value)
    assert "are you offline?" in error and "--base-url" in error  # the message and the offline hint


def test_train_page_marks_local_classes(runs_env, shared, monkeypatch):
    monkeypatch.setenv("QUICKDRAW_DATA", str(shared))
    at = page_test("train").run()
    assert not at.exception, at.exception
    label = at.multiselect(key="train_classes").label
    assert "56 of 345 on disk" in label
    at.multiselect(key="train_classes").set_value(["cat", "The Great Wall of China"]).run()
    assert any("Will download 1 class" in c.value and "The Great Wall of China" in c.value for c in at.caption)


# ---------------------------------------------------------------- Evaluate and Export
def test_evaluate_page_shows_metrics_confusions_and_gallery(runs_env):
    at = page_test("evaluate").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="evaluate_run").options == ["cnn-finished"]
    values = {m.label: m.value for m in at.metric}
    assert values["top-1"] == f"{runs_env['eval']['top1']:.4f}"
    assert values["MAP@3"] == f"{runs_env['eval']['map3']:.4f}"
    assert len(at.get("plotly_chart")) == 2
    assert len(at.get("image")) == len(runs_env["eval"]["misclassified"])
    assert at.get("image")[0].proto.imgs[0].caption.startswith(runs_env["eval"]["misclassified"][0]["true"] + " -> ")
    confusions = _dataframe(at, "evaluate_confusions")
    assert confusions.iloc[0]["count"] == runs_env["eval"]["top_confusions"][0]["count"]


def test_export_page_shows_the_export_jobs_result_and_error_records(tmp_path, monkeypatch):
    """The Export page reads an export job's ExportResult and failure from its files, by field name."""
    from pipeline import jobs
    from pipeline.export import ExportResult

    logs = tmp_path / "runs" / ".logs"
    logs.mkdir(parents=True)
    monkeypatch.setenv("QUICKDRAW_RUNS", str(tmp_path / "runs"))
    result = ExportResult(run="r1", name="r1", checkpoint="best", quantize="uint8", path="web/models/r1",
                          size_bytes=1_234_567, verification="skipped", verified=False,
                          verify_message="--no-verify was given", verification_report={"status": "skipped"},
                          registered=True, default="r1", message="verification skipped: --no-verify was given")
    progress = jobs.ProgressFile(logs / "export-r1.progress.jsonl", "export")
    progress.start()
    progress.result(result.to_json())
    record = {"id": "export-r1", "kind": "export", "run": "r1", "steps": [["export", "r1"]], "commands": [],
              "started": time.time(), "pid": os.getpid(), "step": 0, "returncodes": [0], "returncode": 0,
              "ended": time.time()}
    runs_mod.atomic_write_json(logs / "export-r1.json", record)
    script = f"import sys\nsys.path.insert(0, {str(REPO)!r})\nfrom dashboard.views import export\nexport.job_panel('r1')\n"
    at = AppTest.from_string(script, default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    assert {m.label: m.value for m in at.metric} == {"size": "1.2 MB", "verification": "skipped",
                                                     "registered in index.json": "yes"}
    assert "Verification skipped: --no-verify was given" in at.warning[0].value and not at.error

    progress.error("TF.js disagrees with Keras; the model was not registered")
    runs_mod.atomic_write_json(logs / "export-r1.json", {**record, "returncodes": [1], "returncode": 1})
    at.run()
    assert not at.exception, at.exception
    assert any(e.value == "Export failed: TF.js disagrees with Keras; the model was not registered" for e in at.error)


def test_export_page_without_models_explains(runs_env):
    at = page_test("export").run()
    assert not at.exception
    assert "No run has a trained model" in at.info[0].value


# ---------------------------------------------------------------- the whole app
def test_app_navigation_runs_every_page(runs_env):
    at = AppTest.from_file(str(REPO / "dashboard" / "streamlit_app.py"), default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    assert at.header[0].value == "Runs"


# ---------------------------------------------------------------- Draw (real trained models)
@pytest.fixture(scope="module")
def draw_runs(request):
    pytest.importorskip("pipeline.datasets", reason="pipeline.datasets is needed to train the fixture models")
    return request.getfixturevalue("trained_runs")


def _shared_drawing(shared, cls: str, index: int = 0) -> list:
    path = shared / "simplified" / f"{cls}.ndjson"
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i == index:
                return json.loads(line)["drawing"]
    raise AssertionError(f"{path} has fewer than {index + 1} drawings")


def _as_fabric(drawing: list) -> list[dict]:
    """Google strokes as streamlit-drawable-canvas Path objects (M then L commands, canvas pixels)."""
    objects = []
    for xs, ys in (stroke[:2] for stroke in drawing):
        path = [["M", xs[0] + 10, ys[0] + 10]] + [["L", x + 10, y + 10] for x, y in zip(xs[1:], ys[1:], strict=True)]
        objects.append({"type": "path", "left": 0, "top": 0, "path": path, "pathOffset": {"x": 0, "y": 0}})
    return objects


@pytest.mark.slow
def test_draw_page_predicts_injected_drawing_with_two_models(draw_runs, shared, monkeypatch):
    from pipeline.predict import Predictor

    runs_dir = Path(draw_runs["cnn"]).parent
    monkeypatch.setenv("QUICKDRAW_RUNS", str(runs_dir))
    drawing = _shared_drawing(shared, "cat", 3)
    objects = _as_fabric(drawing)
    at = page_test("draw")
    at.session_state["draw_injected_objects"] = objects
    at.run(timeout=180)
    assert not at.exception, at.exception
    assert at.selectbox(key="draw_model_1").value != at.selectbox(key="draw_model_2").value
    for slot, key in ((1, "draw_model_1"), (2, "draw_model_2")):
        run = at.selectbox(key=key).value
        expected = Predictor.from_run(runs_dir / run).predict(objects, top=5)
        container = at.get("flex_container") or []
        texts = [m.value for m in at.markdown if m.value.startswith("1. ")]
        wanted = "\n".join(f"{i}. {label} ({prob:.3f})" for i, (label, prob) in enumerate(expected, start=1))
        assert wanted in texts, (slot, texts, container)
    assert any(m.label == "latency" for m in at.metric)


@pytest.mark.slow
def test_draw_page_empty_canvas_and_bad_drawing(draw_runs, monkeypatch):
    runs_dir = Path(draw_runs["cnn"]).parent
    monkeypatch.setenv("QUICKDRAW_RUNS", str(runs_dir))
    at = page_test("draw")
    at.session_state["draw_injected_objects"] = []
    at.run(timeout=180)
    assert not at.exception
    assert any("Draw something" in i.value for i in at.info)
    at.session_state["draw_injected_objects"] = [[[0, float("nan")], [0, 1]]]
    at.run(timeout=180)
    assert not at.exception
    assert any("could not be read" in w.value for w in at.warning)


@pytest.mark.slow
def test_evaluate_and_export_pages_with_a_trained_run(draw_runs, monkeypatch, tmp_path):
    import shutil

    runs_dir = tmp_path / "runs"
    shutil.copytree(Path(draw_runs["cnn"]).parent, runs_dir)
    monkeypatch.setenv("QUICKDRAW_RUNS", str(runs_dir))
    at = page_test("export").run(timeout=120)
    assert not at.exception, at.exception
    assert set(at.selectbox(key="export_run").options) >= {"cnn-small", "mobilenet-small"}
    assert any("http.server -d" in c.value for c in at.code)

    # Evaluate: no eval.json yet, so the page offers to run `python -m pipeline evaluate` in the background.
    at = page_test("evaluate")
    at.run(timeout=120)
    assert not at.exception, at.exception
    at.selectbox(key="evaluate_run").set_value("cnn-small").run()
    assert not (runs_dir / "cnn-small" / "eval.json").exists()
    at.button(key="evaluate_start").click().run(timeout=120)
    assert not at.exception, at.exception
    from pipeline import jobs

    job = jobs.wait(jobs.read_job(runs_dir, "evaluate-cnn-small"), timeout=300)
    status = jobs.job_status(job)
    assert status.state == "done", jobs.log_tail(job, 40)
    assert status.result["top1"] == pytest.approx(json.loads((runs_dir / "cnn-small" / "eval.json").read_text())["top1"])
    result = json.loads((runs_dir / "cnn-small" / "eval.json").read_text())
    at.run(timeout=120)
    assert not at.exception, at.exception
    values = {m.label: m.value for m in at.metric}
    assert values["top-1"] == f"{result['top1']:.4f}" and values["top-3"] == f"{result['top3']:.4f}"
    assert len(at.get("image")) == len(result["misclassified"])


def test_compare_default_pairs_a_cnn_with_the_mobilenet_it_compares_with():
    from dashboard.views.compare import default_selection

    def run(name, model, classes, representation="bitmap28"):
        return {"name": name, "model": model, "classes": classes, "representation": representation,
                "status": "finished", "epochs": 5}

    newest_first = [run("side-cnn", "cnn", 9, "strokes"), run("mobile", "mobilenet", 56), run("main-cnn", "cnn", 56),
                    run("old-cnn", "cnn", 56)]
    assert default_selection(newest_first) == ["main-cnn", "mobile"]
    assert default_selection([run("only-cnn", "cnn", 3)]) == ["only-cnn"]
