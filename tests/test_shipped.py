"""The shipped experiment in runs/ and web/models/ (made by `make experiment`) is what the README says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline import runs

REPO = Path(__file__).resolve().parents[1]
RUNS = REPO / "runs"
BITMAP_RUNS = ("cnn-56", "mobilenet-56", "qdnet-56", "cnn-56-seed1", "qdnet-56-seed1")
STROKE_RUNS = ("strokes-exp-bitmap28", "strokes-exp-colour")


def events_of(name):
    return [e["event"] for e in runs.read_events(RUNS / name)]


@pytest.mark.parametrize("name", BITMAP_RUNS)
def test_bitmap_runs_were_interrupted_both_ways_and_resumed(name):
    run_dir = RUNS / name
    config = runs.read_config(run_dir)
    assert len(config.classes) == 56
    events = runs.read_events(run_dir)
    stops = [e for e in events if e["event"] == "signal_stop"]
    assert any(e.get("signal") == "SIGTERM" for e in stops), "no SIGTERM stop mid-chunk"
    assert "crash_detected" in [e["event"] for e in events], "no kill -9 detected on resume"
    assert "resume_point" in [e["event"] for e in events]
    history = runs.read_history(run_dir)
    assert [r["epoch"] for r in history] == list(range(1, config.max_epochs + 1))
    assert len({r["chunk"] for r in history}) >= 4
    assert runs.effective_status(run_dir)["state"] == "finished"
    model = run_dir / "model" / "model.keras"
    assert model.exists() and model.stat().st_size < 5 * 2**20
    assert (run_dir / "eval.json").exists() and list((run_dir / "tb").iterdir())


def test_our_model_beats_the_seed_cnn_by_three_points():
    def top1(name):
        return json.loads((RUNS / name / "eval.json").read_text())["top1"]

    cnn = (top1("cnn-56") + top1("cnn-56-seed1")) / 2
    ours = (top1("qdnet-56") + top1("qdnet-56-seed1")) / 2
    assert ours - cnn >= 0.03, (ours, cnn)


def test_stroke_experiment_uses_the_same_drawings_and_split():
    a, b = (runs.read_config(RUNS / n) for n in STROKE_RUNS)
    assert a.classes == b.classes and a.per_class == b.per_class and a.seed == b.seed
    assert (a.representation, b.representation) == ("bitmap28", "strokes")
    assert a.source == b.source == "simplified"
    assert a.max_epochs == b.max_epochs and a.model == b.model
    for name in STROKE_RUNS:
        assert (RUNS / name / "eval.json").exists()


def test_the_best_bitmap_model_is_the_web_default():
    index = json.loads((REPO / "web" / "models" / "index.json").read_text())
    default = index["default"]
    entry = next(m for m in index["models"] if m["name"] == default)
    assert entry.get("run", default) in BITMAP_RUNS
    folder = REPO / "web" / "models" / default
    assert (folder / "model.json").exists() and (folder / "labels.json").exists()
    assert json.loads((folder / "labels.json").read_text()) == list(runs.read_config(RUNS / entry.get("run", default)).classes)
