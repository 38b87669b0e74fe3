"""AppTest of every dashboard page (`streamlit run dashboard`) over fixture runs built with pipeline.runs:
a finished CNN run with eval.json, an interrupted MobileNet run, a running run (this process holds its
lock), a crashed one, a damaged one and an imported seed-log run. The Draw page uses small models
trained for real (the `trained_runs` fixture of conftest.py)."""

from __future__ import annotations

import dataclasses
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


def _eval_json(run_dir: Path, per_class: int = 20, signal: float = 1.5, seed: int = 1, kept: int = 5) -> dict:
    """eval.json as pipeline.evaluate writes it, from model-like probabilities (`signal`: how far the true
    class stands out), keeping `kept` of the misclassified drawings spread over all of them."""
    from pipeline.evaluate import metrics_from_probabilities

    classes = ["cat", "dog", "fish"]
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), per_class)
    logits = rng.normal(0, 1, (3 * per_class, 3))
    logits[np.arange(3 * per_class), labels] += signal
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    result = metrics_from_probabilities(probs, labels, classes)
    predicted = probs.argmax(1)
    wrong = np.flatnonzero(predicted != labels)
    assert len(wrong) >= kept
    result.update({"run": run_dir.name, "checkpoint": "best", "data": "test split", "skipped_classes": [],
                   "evaluated_at": time.time(),
                   "misclassified": [{"true": classes[labels[i]], "pred": classes[predicted[i]],
                                      "top": [[classes[j], float(probs[i, j])] for j in np.argsort(-probs[i])],
                                      "shape": [28, 28, 1], "image": rng.integers(0, 256, 784).tolist()}
                                     for i in wrong[np.linspace(0, len(wrong) - 1, kept).astype(int)]]})
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


def test_runs_page_shows_a_dash_for_missing_values_and_counts_what_the_filters_show(runs_env):
    at = page_test("runs").run()
    assert not at.exception, at.exception
    table = _dataframe(at, "runs_table").set_index("name")
    # Missing values are empty cells (not the text "None"), which the table shows as "-"; numbers stay
    # numbers (they sort as numbers).
    assert table.loc["mobilenet-stopped", ["test top-1", "test top-3"]].isna().all()  # not evaluated
    assert table.loc["broken-run", ["best epoch", "model epoch"]].isna().all()
    assert at.dataframe[0].proto.placeholder == "-"
    assert not (table.astype(str) == "None").any().any()
    assert any(c.value.startswith("7 runs in ") for c in at.caption)
    assert any("**test split**" in c.value for c in at.caption)  # which evaluation the test columns show
    at.text_input(key="runs_search").set_value("mobile").run()
    assert any(c.value.startswith("1 of 7 runs in ") for c in at.caption)
    widths = json.loads(at.dataframe[0].proto.columns)
    assert widths["parent"]["width"] == "medium" and widths["name"]["width"] == "medium"


def test_runs_page_shows_the_model_epoch_and_explains_when_it_is_not_the_best(tmp_path, monkeypatch):
    runs_dir = tmp_path / "runs"
    for name in ("agrees", "older-rule"):
        run_dir = _make_run(runs_dir, name, "cnn", 6, 6, "finished")
        best = runs_mod.best_row(runs_mod.read_history(run_dir))["epoch"]
        (run_dir / "model").mkdir()
        runs_mod.atomic_write_json(run_dir / "model" / "meta.json", {"epoch": best if name == "agrees" else 2, "chunk": 1})
    monkeypatch.setenv("QUICKDRAW_RUNS", str(runs_dir))
    at = page_test("runs").run()
    assert not at.exception, at.exception
    table = _dataframe(at, "runs_table").set_index("name")
    assert table.loc["agrees", "model epoch"] == table.loc["agrees", "best epoch"] == best
    assert table.loc["older-rule", "model epoch"] == 2 and table.loc["older-rule", "best epoch"] == best
    notes = [c.value for c in at.caption if "model/ holds epoch" in c.value]
    assert notes == [f"**older-rule**: model/ holds epoch 2, the best epoch by val top-3 is {best} "
                     "(its model was kept under an older rule of the trainer)."]


def test_runs_page_with_no_runs_shows_how_to_start(tmp_path, monkeypatch):
    monkeypatch.setenv("QUICKDRAW_RUNS", str(tmp_path / "nothing"))
    at = page_test("runs").run()
    assert not at.exception
    assert "No runs yet" in at.info[0].value


# ---------------------------------------------------------------- Compare
def _marks(figure) -> list[dict]:
    """The event marks of a Compare figure, one per symbol drawn: run (by the colour of its curve), kind,
    x, height (0-1 of the plot), hover text."""
    curves = {t.line.color: t.name for t in figure.data if t.legendgroup == t.name and t.showlegend is not False}
    marks = []
    for trace in figure.data:
        if not (trace.legendgroup or "").startswith("mark:") or trace.showlegend is not False:
            continue
        for x, y, size, text in zip(trace.x, trace.y, trace.marker.size, trace.hovertext, strict=True):
            if size:
                marks.append({"run": curves[trace.line.color], "kind": trace.legendgroup[5:], "x": x, "y": y,
                              "text": text})
    return marks


def _overlapping_symbols(figure, width: int = 1200) -> list[tuple[str, str]]:
    """Pairs of mark symbols (hover texts) closer than their size, in pixels of a `width`-wide figure."""
    import pandas as pd

    from dashboard.views.compare import MARK_SIZE

    def position(x) -> float:
        return pd.Timestamp(x).value / 1e9 if not isinstance(x, int | float) else float(x)

    xs = [position(x) for t in figure.data for x in (t.x if t.x is not None else ()) if x is not None]
    span = (max(xs) - min(xs)) or 1.0
    layout = figure.layout
    plot_w = width - layout.margin.l - layout.margin.r
    plot_h = layout.height - layout.margin.t - layout.margin.b
    marks = _marks(figure)
    pixels = [(position(m["x"]) / span * plot_w, m["y"] * plot_h, m["text"]) for m in marks]
    return [(a[2], b[2]) for i, a in enumerate(pixels) for b in pixels[i + 1:]
            if abs(a[0] - b[0]) < MARK_SIZE and abs(a[1] - b[1]) < MARK_SIZE]


def _twin_runs(runs_dir: Path) -> dict[str, Path]:
    """Two runs (cnn, mobilenet) resumed at epoch 5 and stopped by a signal during epoch 7: their marks
    fall at the same epochs."""
    return {name: _make_run(runs_dir, name, model, 7, 4, "interrupted", stop_at=7, seed=seed)
            for seed, (name, model) in enumerate((("cnn-twin", "cnn"), ("mobilenet-twin", "mobilenet")))}


def test_compare_marks_of_two_runs_at_the_same_epoch_stay_apart_and_name_their_run(tmp_path):
    from dashboard.views.compare import build_figure, merged_history

    run_dirs = _twin_runs(tmp_path / "runs")
    for axis in ("epoch", "time", "elapsed", "training"):
        figure = build_figure(merged_history(run_dirs, "val_top3", 0.0), run_dirs, "val_top3", axis, 0.0)
        marks = _marks(figure)
        assert sorted((m["run"], m["kind"]) for m in marks) == sorted(
            (run, kind) for run in run_dirs for kind in ("chunk_start", "signal_stop")), axis
        for mark in marks:  # the run's name, and only its own, in the hover of its mark
            other = next(n for n in run_dirs if n != mark["run"])
            assert f"({mark['run']})" in mark["text"] or f"of {mark['run']} " in mark["text"]
            assert other not in mark["text"]
        assert not figure.layout.annotations, "marks carry no text on the plot (their labels are in the hover)"
        assert not any("text" in (t.mode or "") for t in figure.data)
        assert _overlapping_symbols(figure) == [], axis
        legend = {t.name for t in figure.data if t.showlegend is not False}
        assert {"chunk start", "stopped"} <= legend  # one legend entry per kind of mark
    epoch_marks = {(m["run"], m["kind"]): m["x"] for m in _marks(build_figure(
        merged_history(run_dirs, "val_top3", 0.0), run_dirs, "val_top3", "epoch", 0.0))}
    assert epoch_marks[("cnn-twin", "signal_stop")] == epoch_marks[("mobilenet-twin", "signal_stop")] == 7.0


def test_compare_time_axes_since_start_and_training_time(tmp_path):
    """x = ended - the run's first start, and the cumulative sum of (ended - started): gaps between
    chunks removed; marks sit at the same clock."""
    from dashboard.views.compare import build_figure, merged_history

    run_dir = _make_run(tmp_path / "runs", "gappy", "cnn", 3, 2, "finished")
    rows = runs_mod.read_history(run_dir)
    t0 = 1_700_000_000.0
    for row, (start, end) in zip(rows, ((0, 60), (60, 120), (3600, 3690)), strict=True):
        row["started"], row["ended"] = t0 + start, t0 + end  # a 58-minute gap before epoch 3 (chunk 2)
    runs_mod.write_history(run_dir, rows)
    (run_dir / "events.jsonl").unlink()
    runs_mod.append_event(run_dir, "chunk_start", chunk=2, epoch=3, batch=0, time=t0 + 3600)
    runs_mod.append_event(run_dir, "signal_stop", chunk=2, epoch=3, batch=1, signal="SIGTERM", time=t0 + 3630)
    run_dirs = {"gappy": run_dir}
    data = merged_history(run_dirs, "val_top3", 0.0)
    assert list(data["elapsed_s"]) == [60, 120, 3690]
    assert list(data["training_s"]) == [60, 120, 210]
    since = build_figure(data, run_dirs, "val_top3", "elapsed", 0.0)
    training = build_figure(data, run_dirs, "val_top3", "training", 0.0)
    curve = next(t for t in since.data if t.name == "gappy")
    assert list(curve.x) == pytest.approx([1, 2, 61.5]) and "minutes" in since.layout.xaxis.title.text
    assert list(next(t for t in training.data if t.name == "gappy").x) == pytest.approx([1, 2, 3.5])
    assert "gaps between chunks removed" in training.layout.xaxis.title.text
    assert {m["kind"]: m["x"] for m in _marks(since)} == pytest.approx({"chunk_start": 60, "signal_stop": 60.5})
    assert {m["kind"]: m["x"] for m in _marks(training)} == pytest.approx({"chunk_start": 2, "signal_stop": 2.5})


def test_compare_accuracy_axes_stay_near_one(tmp_path):
    """A 3-class run's val top-3 is 1.0 at every epoch: drawn on an axis that ends just above 1, not 0-2."""
    from dashboard.views.compare import build_figure, merged_history

    run_dir = _make_run(tmp_path / "runs", "three-classes", "cnn", 4, 4, "finished")
    runs_mod.write_history(run_dir, [{**row, "val_top3": 1.0} for row in runs_mod.read_history(run_dir)])
    run_dirs = {"three-classes": run_dir}
    for metric in ("val_top3", "val_accuracy", "top3", "accuracy"):
        low, high = build_figure(merged_history(run_dirs, metric, 0.0), run_dirs, metric, "epoch", 0.0).layout.yaxis.range
        assert 0 <= low < 1 and 1.0 <= high <= 1.05, (metric, low, high)
    assert build_figure(merged_history(run_dirs, "val_loss", 0.0), run_dirs, "val_loss", "epoch", 0.0).layout.yaxis.range is None


def test_compare_page_offers_the_time_axes(tmp_path, monkeypatch):
    monkeypatch.setenv("QUICKDRAW_RUNS", str(tmp_path / "runs"))
    _twin_runs(tmp_path / "runs")
    at = page_test("compare").run()
    assert not at.exception, at.exception
    axis = at.radio(key="compare_axis")
    assert axis.options == ["epoch", "wall-clock time", "time since start", "training time"]
    for choice in axis.options:
        at.radio(key="compare_axis").set_value(choice).run()
        assert not at.exception, (choice, at.exception)
    assert any("hover a line or its symbol for the run" in c.value for c in at.caption)


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
    lines = {(m["run"], m["kind"], m["x"]) for m in _marks(figure)}
    assert ("cnn-finished", "chunk_start", 6.5) in lines  # cnn chunk 2 starts at epoch 7
    assert ("mobilenet-stopped", "chunk_start", 4.5) in lines  # mobilenet chunk 2 starts at epoch 5
    assert ("mobilenet-stopped", "signal_stop", 7.0) in lines  # mobilenet stopped by a signal during epoch 7
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


def _gallery_run(runs_dir: Path, sample: int = 30) -> Path:
    """A run whose eval.json keeps `sample` of its misclassified drawings (as pipeline.evaluate keeps a
    sample), and a folder evaluation beside it (evals/)."""
    run_dir = _make_run(runs_dir, "gallery", "cnn", 3, 3, "finished")
    result = _eval_json(run_dir, per_class=100, signal=0.8, seed=2, kept=sample)
    assert result["n"] - round(result["top1"] * result["n"]) > sample  # more mistakes than eval.json keeps
    folder = {**result, "data": str(runs_dir.parent / "drawings"), "top1": 0.5}
    (run_dir / "evals").mkdir()
    runs_mod.atomic_write_json(run_dir / "evals" / "drawings.json", folder)
    return run_dir


def test_evaluate_page_says_which_evaluation_and_how_many_mistakes_it_shows(tmp_path, monkeypatch):
    from dashboard.views.evaluate import GALLERY_PAGE

    run_dir = _gallery_run(tmp_path / "runs")
    result = json.loads((run_dir / "eval.json").read_text())
    confusion = np.asarray(result["confusion"])
    all_mistakes = int(confusion.sum() - np.trace(confusion))
    monkeypatch.setenv("QUICKDRAW_RUNS", str(tmp_path / "runs"))
    at = page_test("evaluate").run()
    assert not at.exception, at.exception
    which = at.selectbox(key="evaluate_which")
    assert which.options[0] == "test split" and which.options[1].startswith("folder drawings (")
    assert any("Evaluation on the **test split** (`eval.json`)" in c.value for c in at.caption)

    def count() -> str:
        return next(c.value for c in at.caption if c.value.startswith("Showing "))

    assert len(at.get("image")) == GALLERY_PAGE < 30
    assert count().startswith(f"Showing {GALLERY_PAGE} of {all_mistakes} mistakes.")
    assert "sample of 30" in count()
    at.button(key="evaluate_gallery_more").click().run()
    assert len(at.get("image")) == 30 and count().startswith(f"Showing 30 of {all_mistakes} mistakes.")
    assert "evaluate_gallery_more" not in [b.key for b in at.button]  # the whole sample is shown

    cat = result["classes"].index("cat")
    at.selectbox(key="evaluate_gallery_class").set_value("cat").run()
    kept = [w for w in result["misclassified"] if w["true"] == "cat"]
    assert len(at.get("image")) == len(kept)
    assert count().startswith(f"Showing {len(kept)} of {int(confusion[cat].sum() - confusion[cat, cat])} cat -> any mistakes.")
    pred = kept[0]["pred"]
    at.selectbox(key="evaluate_gallery_pred").set_value(pred).run()
    pair = int(confusion[cat, result["classes"].index(pred)])
    assert count().startswith(f"Showing {sum(w['pred'] == pred for w in kept)} of {pair} cat -> {pred} mistakes.")

    at.selectbox(key="evaluate_which").set_value(which.options[1]).run()
    assert not at.exception, at.exception
    assert {m.label: m.value for m in at.metric}["top-1"] == "0.5000"
    assert any("Evaluation on the **folder drawings" in c.value and "evals/drawings.json" in c.value for c in at.caption)


def test_evaluate_page_offers_the_test_split_alone_without_pipelines_listing(tmp_path, monkeypatch):
    from pipeline import evaluate as evaluate_mod

    _gallery_run(tmp_path / "runs")
    monkeypatch.delattr(evaluate_mod, "list_evaluations", raising=False)
    monkeypatch.setenv("QUICKDRAW_RUNS", str(tmp_path / "runs"))
    at = page_test("evaluate").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="evaluate_which").options == ["test split"]


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


def test_every_page_is_reachable_by_its_url_path(runs_env):
    """/runs opened directly shows Runs, not "Page not found" (the root shows it too). AppTest has no
    public way to open a URL path: the registered pages and the requested page hash are its internals."""
    at = AppTest.from_file(str(REPO / "dashboard" / "streamlit_app.py"), default_timeout=TIMEOUT).run()
    hashes = {info.get("url_pathname"): page_hash for page_hash, info in at._registered_pages.items()}
    titles = {"runs": "Runs", "compare": "Compare", "draw": "Draw", "train": "Train", "evaluate": "Evaluate",
              "export": "Export"}
    assert set(titles) <= set(hashes) and "" in hashes
    for path in ("runs", "compare", "evaluate", "export"):  # Draw and Train have their own tests
        at._page_hash = hashes[path]
        at.run()
        assert not at.exception, (path, at.exception)
        assert at.header[0].value == titles[path], path


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
    # The page's own clock, strokes in -> top-5, shown beside each guess and kept for bench/bench_draw.py.
    import html

    from dashboard.views import draw

    timings = at.session_state[draw.TIMINGS_KEY]
    chosen = [at.selectbox(key=key).value for key in ("draw_model_1", "draw_model_2")]
    assert [timings[slot]["run"] for slot in (1, 2)] == chosen
    for slot in (1, 2):
        assert 0 < timings[slot]["model_ms"] <= timings[slot]["predict_ms"] <= timings[slot]["path_ms"]
    assert timings[2]["path_ms"] >= timings[1]["path_ms"]  # Model 2's clock includes Model 1's guess
    shown = [m for m in at.metric if m.label == draw.PATH_LABEL]
    assert [m.value for m in shown] == [f"{timings[slot]['path_ms']:.1f} ms" for slot in (1, 2)]
    assert len([c for c in at.caption if c.value.startswith("model call ")]) == 2
    # What reached Python: the count in the expander's title, a picture of the strokes, the JSON as a download.
    assert at.expander[0].label == f"Strokes that reached Python ({len(drawing)})"
    captions = [str(image.proto.imgs[0].caption) for image in at.get("image")]
    points = sum(len(stroke[0]) for stroke in drawing)
    assert f"{len(drawing)} strokes, {points} points, as received" in captions[-1]  # the picture of the strokes
    assert [b.proto.label for b in at.get("download_button")] == ["Download the strokes (JSON)"]
    hidden = at.get("html")  # the JSON browser tests read, in the DOM but not shown
    assert len(hidden) == 1 and hidden[0].proto.body.startswith("<code hidden")
    assert json.loads(html.unescape(hidden[0].proto.body.split(">", 1)[1].rsplit("<", 1)[0])) == objects
    assert not at.code  # no wall of JSON on the page


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
    # A tap (as the canvas reports it) is too small to guess: "draw a bit more", no guess, no error.
    at.session_state["draw_injected_objects"] = [{"type": "Path", "path": [["M", 131.5, 60.25], ["L", 132.5, 60.75]]}]
    at.run(timeout=180)
    assert not at.exception and not at.warning
    assert [i.value for i in at.info].count("Too small to guess: draw a bit more.") == 2  # both models
    assert not [m for m in at.markdown if m.value.startswith("1. ")]


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
    from dashboard.views.evaluate import GALLERY_PAGE

    assert len(at.get("image")) == min(len(result["misclassified"]), GALLERY_PAGE)  # the first page of mistakes


def test_compare_default_pairs_a_cnn_with_the_mobilenet_it_compares_with():
    from dashboard.views.compare import default_selection

    def run(name, model, classes, representation="bitmap28"):
        return {"name": name, "model": model, "classes": classes, "representation": representation,
                "status": "finished", "epochs": 5}

    newest_first = [run("side-cnn", "cnn", 9, "strokes"), run("mobile", "mobilenet", 56), run("main-cnn", "cnn", 56),
                    run("old-cnn", "cnn", 56)]
    assert default_selection(newest_first) == ["main-cnn", "mobile"]
    assert default_selection([run("only-cnn", "cnn", 3)]) == ["only-cnn"]


# ---------------------------------------------------------------- seed groups and what differs
def _seed_runs(runs_dir: Path) -> dict[str, Path]:
    """cnn-s and cnn-s-seed1 differ only in their seed (a group); cnn-s-lr also in its learning rate; each
    evaluated on its test split."""
    import dataclasses

    made = {}
    for index, (name, seed, lr) in enumerate((("cnn-s", 0, None), ("cnn-s-seed1", 1, None), ("cnn-s-lr", 0, 0.01))):
        run_dir = _make_run(runs_dir, name, "cnn", 6, 3, "finished", seed=index)
        config = runs_mod.read_config(run_dir)
        runs_mod.write_config(run_dir, dataclasses.replace(config, seed=seed,
                                                           learning_rate=lr or config.learning_rate))
        _eval_json(run_dir, seed=index + 1, signal=1.5 + 0.2 * index)
        made[name] = run_dir
    return made


def _chart(at: AppTest) -> dict:
    """The page's plotly figure as JSON, its typed arrays ({"dtype", "bdata"}: base64) decoded to lists."""
    import base64

    def decode(value):
        if isinstance(value, dict) and set(value) >= {"dtype", "bdata"}:
            return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).tolist()
        return value

    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    spec["data"] = [{key: decode(value) for key, value in trace.items()} for trace in spec["data"]]
    return spec


def _compare_seed_runs(tmp_path, monkeypatch) -> tuple[AppTest, dict]:
    """The Compare page over the seed-group runs, all of them selected."""
    made = _seed_runs(tmp_path / "runs")
    monkeypatch.setenv("QUICKDRAW_RUNS", str(tmp_path / "runs"))
    at = page_test("compare")
    at.session_state["selected_runs"] = list(made)
    at.run()
    assert not at.exception, at.exception
    return at, made


def test_compare_draws_a_seed_group_as_mean_and_band_and_expands_it(tmp_path, monkeypatch):
    at, made = _compare_seed_runs(tmp_path, monkeypatch)
    traces = {t.get("name"): t for t in _chart(at)["data"]}
    label = "cnn-s (2 seeds)"
    assert label in traces and "cnn-s-lr" in traces
    assert "cnn-s" not in traces and "cnn-s-seed1" not in traces  # collapsed into the group
    band = next(t for t in traces.values() if t.get("fill") == "tonexty" and t["name"].startswith(label))
    low = next(t for t in traces.values() if t["name"] == f"{label} mean ± 1 sd (low)")
    histories = [runs_mod.read_history(made[n]) for n in ("cnn-s", "cnn-s-seed1")]
    values = np.array([[row["val_top3"] for row in h] for h in histories])
    assert traces[label]["y"] == pytest.approx(list(values.mean(0)))
    assert band["y"] == pytest.approx(list(values.mean(0) + values.std(0, ddof=1)))
    assert low["y"] == pytest.approx(list(values.mean(0) - values.std(0, ddof=1)))
    at.radio(key="compare_spread").set_value("min-max").run()
    band = next(t for t in _chart(at)["data"] if t.get("fill") == "tonexty")
    assert band["y"] == pytest.approx(list(values.max(0)))
    at.toggle(key=f"compare_members:{label}").set_value(True).run()
    names = {t.get("name") for t in _chart(at)["data"]}
    assert {label, "cnn-s", "cnn-s-seed1", "cnn-s-lr"} <= names
    at.radio(key="compare_axis").set_value("training time").run()  # groups: epoch axis only, said so
    assert not at.exception
    assert label not in {t.get("name") for t in _chart(at)["data"]}
    assert any("epoch axis only" in c.value for c in at.caption)
    at.radio(key="compare_axis").set_value("epoch").run()
    at.toggle(key="compare_group_seeds").set_value(False).run()
    assert not any(t.get("fill") for t in _chart(at)["data"])


def _differences(at: AppTest):
    return next(df.value for df in at.dataframe if "field" in df.value.columns)


def test_compare_shows_what_differs_between_the_compared_runs(tmp_path, monkeypatch):
    at, made = _compare_seed_runs(tmp_path, monkeypatch)
    table = _differences(at).set_index("field")
    assert list(table.index) == ["learning_rate", "seed"]
    assert list(table.columns) == list(made)
    assert table.loc["seed", "cnn-s-seed1"] == "1" and table.loc["learning_rate", "cnn-s-lr"] == "0.01"
    at.toggle(key="compare_diff_all").set_value(True).run()
    every = _differences(at).set_index("field")
    assert {"model", "per_class", "classes", "name", "learning_rate"} <= set(every.index)
    assert every.loc["classes", "cnn-s"] == "3 classes"


def test_runs_page_shows_seed_groups_and_what_differs_between_selected_runs(tmp_path, monkeypatch):
    made = _seed_runs(tmp_path / "runs")
    monkeypatch.setenv("QUICKDRAW_RUNS", str(tmp_path / "runs"))
    at = page_test("runs").run()
    assert not at.exception, at.exception
    groups = next(df.value for df in at.dataframe if "group" in df.value.columns)
    assert list(groups["group"]) == ["cnn-s (2 seeds)"]
    row = groups.iloc[0]
    assert row["runs"] == 2 and row["members"] == "cnn-s, cnn-s-seed1" and row["evaluated"] == "2 of 2"
    top1 = [json.loads((made[n] / "eval.json").read_text())["top1"] for n in ("cnn-s", "cnn-s-seed1")]
    assert row["test top-1 (mean ± sd)"] == f"{np.mean(top1):.4f} ± {np.std(top1, ddof=1):.4f}"
    assert not any("field" in df.value.columns for df in at.dataframe)  # nothing selected yet
    at.multiselect(key="runs_compare_widget").set_value(["cnn-s", "cnn-s-lr"]).run()
    assert not at.exception, at.exception
    table = _differences(at)
    assert list(table["field"]) == ["learning_rate"] and list(table.columns) == ["field", "cnn-s", "cnn-s-lr"]
    at.toggle(key="runs_diff_all").set_value(True).run()
    assert {"seed", "model", "classes", "learning_rate"} <= set(_differences(at)["field"])
    assert at.session_state["selected_runs"] == ["cnn-s", "cnn-s-lr"]  # the Compare selection is kept


# ---------------------------------------------------------------- Evaluate: compare with another run (issue 12 §5)
@pytest.fixture(scope="module")
def shipped_runs(tmp_path_factory) -> Path:
    """A copy of the repository's runs/ (the page reads them only; the copy keeps them safe anyway)."""
    import shutil

    runs_dir = tmp_path_factory.mktemp("shipped") / "runs"
    shutil.copytree(REPO / "runs", runs_dir, ignore=shutil.ignore_patterns("checkpoints", "cache", ".logs", ".lock"))
    return runs_dir


def _figure(at: AppTest, key: str) -> dict:
    """The plotly figure of the chart with widget key `key` as JSON, typed arrays decoded (2-D ones reshaped)."""
    import base64

    def decode(value):
        if isinstance(value, dict) and set(value) >= {"dtype", "bdata"}:
            array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
            shape = [int(n) for n in str(value.get("shape", len(array))).split(",")]
            return array.reshape(shape)
        return value

    chart = next(c for c in at.get("plotly_chart") if key in c.proto.id)
    spec = json.loads(chart.proto.spec)
    spec["data"] = [{name: decode(value) for name, value in trace.items()} for trace in spec["data"]]
    return spec


def test_evaluate_page_compares_two_shipped_runs_and_a_picked_pair_filters_the_gallery(shipped_runs, shared, cache_dir,
                                                                                        monkeypatch):
    from dashboard.views.evaluate import GALLERY_PAGE, NO_RUN
    from pipeline.evaluate import compare_test_splits

    for name in ("cnn-56", "mobilenet-56"):  # their data is ../shared, wherever it is here
        config = runs_mod.read_config(shipped_runs / name)
        runs_mod.write_config(shipped_runs / name, dataclasses.replace(config, data_root=str(shared)))
    monkeypatch.setenv("QUICKDRAW_RUNS", str(shipped_runs))
    at = page_test("evaluate").run()
    at.selectbox(key="evaluate_run").set_value("cnn-56").run()
    assert not at.exception, at.exception
    classes = set(json.loads((shipped_runs / "cnn-56" / "eval.json").read_text())["classes"])
    same = sorted(path.parent.name for path in shipped_runs.glob("*/eval.json")
                  if path.parent.name != "cnn-56" and set(json.loads(path.read_text())["classes"]) == classes)
    offered = at.selectbox(key="evaluate_compare_run").options
    assert offered == [NO_RUN, *same] and "mobilenet-56" in same and "strokes-exp-bitmap28" not in offered
    assert len(at.get("plotly_chart")) == 2  # no run B yet: the comparison's charts are not drawn

    at.selectbox(key="evaluate_compare_run").set_value("mobilenet-56").run()
    assert not at.exception, at.exception
    compared = compare_test_splits(shipped_runs / "cnn-56", shipped_runs / "mobilenet-56")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["A - B"] == f"{compared.top1_a - compared.top1_b:+.4f}"
    bars = _figure(at, "evaluate_compare_deltas")["data"][0]
    assert list(bars["y"]) == [row["class"] for row in compared.per_class]
    assert list(bars["x"]) == sorted(bars["x"], reverse=True)  # best first, worst last
    heatmap, cells = _figure(at, "evaluate_compare_heatmap")["data"]
    assert heatmap["type"] == "heatmap" and heatmap["zmid"] == 0 and list(heatmap["x"]) == compared.classes
    z = np.asarray(heatmap["z"], dtype=float)
    assert z.shape == (56, 56) and np.isnan(np.diag(z)).all()
    off_diagonal = ~np.eye(56, dtype=bool)
    assert (z[off_diagonal] == compared.difference[off_diagonal]).all()
    assert len(cells["x"]) == 56 * 55 and "true %{y} -> predicted %{x}: A %{customdata[0]}" in cells["hovertemplate"]

    pair = compared.changed_confusions[1]
    at.selectbox(key="evaluate_compare_pair").set_value(pair).run()
    assert not at.exception, at.exception
    assert (at.selectbox(key="evaluate_gallery_class").value, at.selectbox(key="evaluate_gallery_pred").value) == (
        pair["true"], pair["pred"])
    # Every test drawing of the pair, for A and for B, where each eval.json kept one or two of them.
    kept = {name: sum((w["true"], w["pred"]) == (pair["true"], pair["pred"])
                      for w in json.loads((shipped_runs / name / "eval.json").read_text())["misclassified"])
            for name in ("cnn-56", "mobilenet-56")}
    which = f"{pair['true']} -> {pair['pred']} mistakes."
    assert (pair["a"], pair["b"]) == (18, 34) and max(kept.values()) <= 1 < GALLERY_PAGE < pair["b"]

    def counts() -> list[str]:
        return [c.value for c in at.caption if c.value.startswith("Showing ")]

    assert counts() == [f"Showing {pair['a']} of {pair['a']} {which}", f"Showing {GALLERY_PAGE} of {pair['b']} {which}"]
    assert len(at.get("image")) == pair["a"] + GALLERY_PAGE
    assert "evaluate_gallery_more" not in [b.key for b in at.button]
    at.button(key="evaluate_gallery_b_more").click().run()
    assert not at.exception, at.exception
    assert counts() == [f"Showing {pair['a']} of {pair['a']} {which}", f"Showing {pair['b']} of {pair['b']} {which}"]
    images = [img.proto.imgs[0].caption for img in at.get("image")]
    assert len(images) == pair["a"] + pair["b"] and set(images) == {f"{pair['true']} -> {pair['pred']}"}


def test_a_click_on_the_difference_heatmap_names_its_pair():
    from dashboard.views.evaluate import pair_of_selection

    # What st.plotly_chart's on_select holds after a click on a cell (its invisible marker).
    event = {"selection": {"points": [{"x": "dog", "y": "cat", "customdata": [69, 42, 27], "curve_number": 1,
                                       "point_number": 1240, "point_index": 1240}],
                           "point_indices": [1240], "box": [], "lasso": []}}
    assert pair_of_selection(event) == ("cat", "dog")
    assert pair_of_selection({"selection": {"points": [], "point_indices": [], "box": [], "lasso": []}}) is None
    assert pair_of_selection(None) is None


# ---------------------------------------------------------------- lineage: branches and warm starts
def _branch(parent_dir: Path, name: str, epoch: int, more: int, gap: float = 3600.0) -> Path:
    """`python -m pipeline branch`'s record: runs.branch_run from a checkpoint of the parent at `epoch`
    (its history up to there, weights stand-ins), then `more` epochs trained `gap` seconds after the
    parent's last one."""
    from pipeline.checkpoints import Checkpoint, TrainState, epoch_checkpoint_path

    rows = runs_mod.read_history(parent_dir)
    state = TrainState(epoch=epoch, schedule={"lr": 0.002, "best": 1.0, "wait": 0}, history=rows[:epoch])
    Checkpoint(state, {"dense/kernel": np.zeros(2)}, {}).save(epoch_checkpoint_path(parent_dir, epoch))
    run_dir = runs_mod.branch_run(parent_dir, name, from_epoch=epoch, learning_rate=0.0005)
    history = runs_mod.read_history(run_dir)
    t = rows[-1]["ended"] + gap
    for offset in range(1, more + 1):
        history.append({**rows[epoch - 1], "epoch": epoch + offset, "chunk": 2, "started": t, "ended": t + 20,
                        "val_top3": 0.99 - 0.01 * offset})
        t += 21
    runs_mod.write_history(run_dir, history)
    return run_dir


@pytest.fixture
def family(tmp_path, monkeypatch) -> dict[str, Path]:
    """base (8 epochs), base-b4 (branch at epoch 4, 3 more epochs an hour later), base-b4-b6 (a branch
    of the branch), warm (--init-from base) and lonely (no family)."""
    runs_dir = tmp_path / "runs"
    made = {"base": _make_run(runs_dir, "base", "cnn", 8, 4, "finished")}
    made["base-b4"] = _branch(made["base"], "base-b4", 4, 3)
    made["base-b4-b6"] = _branch(made["base-b4"], "base-b4-b6", 6, 2)
    config = runs_mod.make_config(name="warm", model="cnn", classes=("cat", "dog", "fish"), per_class=100,
                                  data_root=str(tmp_path / "data"), init_from="base")
    made["warm"] = runs_mod.create_run(config, runs_dir)
    made["lonely"] = _make_run(runs_dir, "lonely", "cnn", 2, 2, "finished")  # no family: left out of the tree
    monkeypatch.setenv("QUICKDRAW_RUNS", str(runs_dir))
    return made


def test_runs_page_shows_the_family_tree(family):
    at = page_test("runs").run()
    assert not at.exception, at.exception
    tree = next(c.value for c in at.code if "base-b4" in c.value).splitlines()
    starts = ["base  ", "├─ base-b4  ", "│  └─ base-b4-b6  ", "└─ warm  "]
    assert len(tree) == 4 and all(line.startswith(start) for line, start in zip(tree, starts, strict=True)), tree
    assert "branch from epoch 4" in tree[1] and "branch from epoch 6" in tree[2]
    assert "warm start from its best model" in tree[3] and "[finished, 8 epochs" in tree[0]
    assert len(_dataframe(at, "runs_table")) == 5  # the table is still there, every run in it
    assert "lonely" not in "\n".join(tree)
    assert any("Not shown: 1 run with no branch or warm start" in c.value for c in at.caption)


def test_runs_page_without_branches_shows_no_tree(runs_env):
    at = page_test("runs").run()
    assert not at.exception and not any("Family tree" in s.value for s in at.subheader)


def test_compare_draws_a_branch_from_its_parents_branch_point(family):
    at = page_test("compare")
    at.session_state["selected_runs"] = ["base", "base-b4", "base-b4-b6"]
    at.run()
    assert not at.exception, at.exception
    traces = {t.get("name"): t for t in _chart(at)["data"]}
    assert traces["base"]["x"] == list(range(1, 9))
    assert traces["base-b4"]["x"] == [4, 5, 6, 7]  # the copied epochs 1-3 appear once, as base's
    assert traces["base-b4-b6"]["x"] == [6, 7, 8]
    marker = traces["base-b4 branches from base at epoch 4"]
    assert marker["x"] == [4] and marker["y"] == pytest.approx([traces["base"]["y"][3]])
    assert "base-b4-b6 branches from base-b4 at epoch 6" in traces
    assert any("base-b4 from base at epoch 4" in c.value for c in at.caption)
    at.session_state["selected_runs"] = ["base-b4"]  # without its parent, the whole history is the branch's
    at.multiselect(key="compare_runs").set_value(["base-b4"]).run()
    assert _chart(at)["data"][0]["x"] == list(range(1, 8))


def test_a_branchs_training_time_continues_from_its_parents_at_the_branch_point(family):
    from dashboard.views.compare import branch_points, build_figure, merged_history

    run_dirs = {name: family[name] for name in ("base", "base-b4")}
    branches = branch_points({"base-b4": {"parent": "base", "parent_epoch": 4}}, run_dirs)
    data = merged_history(run_dirs, "val_top3", 0.0)
    figure = build_figure(data, run_dirs, "val_top3", "training", 0.0, branches=branches)
    curves = {t.name: list(t.x) for t in figure.data if t.name in run_dirs}
    # 30 s per epoch of base, 20 s per epoch of the branch; the hour between them is not training time.
    assert curves["base"][3] == curves["base-b4"][0] == pytest.approx(4 * 30 / 60)
    assert curves["base-b4"][1:] == pytest.approx([(120 + 20 * k) / 60 for k in (1, 2, 3)])
    elapsed = build_figure(data, run_dirs, "val_top3", "elapsed", 0.0, branches=branches)
    assert [t for t in elapsed.data if t.name == "base-b4"][0].x[1] > 60  # wall-clock still shows the gap


def test_a_restarted_dashboard_reads_saved_summaries_and_rereads_a_changed_run(tmp_path, monkeypatch):
    import streamlit as st

    runs_dir = tmp_path / "runs"
    changed = _make_run(runs_dir, "changes", "cnn", 4, 4, "finished")
    _make_run(runs_dir, "stays", "cnn", 3, 3, "finished")
    monkeypatch.setenv("QUICKDRAW_RUNS", str(runs_dir))
    page_test("runs").run()
    saved = runs_mod.read_summary_cache(runs_dir)
    assert {Path(p).name: entry[1]["epochs"] for p, entry in saved.items()} == {"changes": 4, "stays": 3}
    rows = runs_mod.read_history(changed)
    runs_mod.write_history(changed, rows + [{**rows[-1], "epoch": 5}])
    st.cache_data.clear()
    st.cache_resource.clear()  # a new dashboard process
    at = page_test("runs").run()
    assert not at.exception, at.exception
    table = _dataframe(at, "runs_table").set_index("name")
    assert table.loc["changes", "epochs"] == 5 and table.loc["stays", "epochs"] == 3
    assert runs_mod.read_summary_cache(runs_dir)[str(changed)][1]["epochs"] == 5


def test_compare_says_why_a_damaged_run_cannot_be_compared(runs_env):
    at = page_test("compare")
    at.session_state["selected_runs"] = ["cnn-finished", "broken-run"]
    at.run()
    assert not at.exception, at.exception
    assert any("broken-run" in w.value and "cannot be compared" in w.value for w in at.warning)
    assert at.get("plotly_chart")


def test_every_write_to_a_run_record_changes_its_signature(tmp_path):
    """run_signature stats the run folder, events.jsonl, .lock and model/ only: each way the pipeline
    writes a run (config, history, status, eval.json, events, the lock, the saved model) must change it,
    or the Runs page would keep showing a stale row."""
    from dashboard import common
    from pipeline.files import atomic_write_json

    run_dir = _make_run(tmp_path / "runs", "watched", "cnn", 2, 2, "finished")
    writes = {
        "config": lambda: runs_mod.write_config(run_dir, dataclasses.replace(runs_mod.read_config(run_dir), seed=7)),
        "history": lambda: runs_mod.write_history(run_dir, runs_mod.read_history(run_dir)[:1]),
        "status": lambda: runs_mod.write_status(run_dir, "stopped", epoch=1),
        "eval": lambda: atomic_write_json(run_dir / "eval.json", {"top1": 0.5}),
        "event": lambda: runs_mod.append_event(run_dir, "renamed", old="a", new="b"),
        "model": lambda: atomic_write_json(run_dir / "model" / "meta.json", {"epoch": 2}),
    }
    for what, write in writes.items():
        before = common.run_signature(run_dir)
        time.sleep(0.01)  # past the file system's timestamp granularity
        write()
        assert common.run_signature(run_dir) != before, what
    before = common.run_signature(run_dir)
    time.sleep(0.01)
    with runs_mod.RunLock(run_dir):
        assert common.run_signature(run_dir) != before, "lock"


def test_run_folders_are_listed_again_when_a_run_is_added_renamed_or_deleted(tmp_path):
    """run_folders keeps its listing while the runs directory's own mtime stands still, and every change
    of its entries (a new run, a rename, a deletion) moves that mtime."""
    from dashboard import common

    runs_dir = tmp_path / "runs"
    _make_run(runs_dir, "first", "cnn", 2, 2, "finished")
    assert [p.name for p in common.run_folders(runs_dir)] == ["first"]
    listed = common.run_folders(runs_dir)
    listed.append(runs_dir / "not-a-run")  # a caller's change to its copy stays its own
    assert [p.name for p in common.run_folders(runs_dir)] == ["first"]
    for change, expected in ((lambda: _make_run(runs_dir, "second", "cnn", 2, 2, "finished"), ["first", "second"]),
                             (lambda: runs_mod.rename_run(runs_dir, "second", "third"), ["first", "third"]),
                             (lambda: runs_mod.delete_run(runs_dir, "first"), ["third"])):
        time.sleep(0.01)  # past the file system's timestamp granularity
        change()
        assert [p.name for p in common.run_folders(runs_dir)] == expected
