"""The shipped experiment in runs/ and web/models/ (made by `make experiment`) is what the README says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline import runs

REPO = Path(__file__).resolve().parents[1]
RUNS = REPO / "runs"
BITMAP_RUNS = ("cnn-56", "cnn-56-seed1", "cnn-56-seedway", "mobilenet-56", "qdnet-56", "qdnet-56-seed1")
BEST_RUNS = ("qdnet-56", "qdnet-56-seed1")
ALL_BITMAPS = 111_548  # every drawing of ../shared/quickdraw/bitmaps (its README)
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
    assert runs.run_state(run_dir).state == "finished"
    assert runs.read_status(run_dir).get("run_complete") is True
    model = run_dir / "model" / "model.keras"
    assert model.exists() and model.stat().st_size < 5 * 2**20
    assert (run_dir / "eval.json").exists() and list((run_dir / "tb").iterdir())


def evaluation(name):
    return json.loads((RUNS / name / "eval.json").read_text())


def test_the_bitmap_runs_use_every_drawing_at_natural_frequencies():
    for name in BITMAP_RUNS:
        config = runs.read_config(RUNS / name)
        assert config.per_class >= 8003 and config.source == "numpy_bitmap", name  # no cap on any class
        result = evaluation(name)
        # The test split is a tenth of all 111,548 drawings, by the hash split.
        assert abs(result["n"] - ALL_BITMAPS * config.test_fraction) < 0.01 * ALL_BITMAPS, (name, result["n"])
        assert {"top1", "top3", "map3", "balanced_top1"} <= set(result)


def test_the_best_model_meets_the_target_on_the_test_split():
    best = max(BEST_RUNS, key=lambda n: evaluation(n)["top1"])
    assert evaluation(best)["top1"] >= 0.87 and evaluation(best)["top3"] >= 0.95, evaluation(best)
    cnn = (evaluation("cnn-56")["top1"] + evaluation("cnn-56-seed1")["top1"]) / 2
    ours = sum(evaluation(n)["top1"] for n in BEST_RUNS) / len(BEST_RUNS)
    assert ours - cnn >= 0.03, (ours, cnn)


def test_the_seeds_way_of_resuming_is_shipped_beside_exact_resume():
    exact, seedway = runs.read_config(RUNS / "cnn-56"), runs.read_config(RUNS / "cnn-56-seedway")
    assert (exact.resume_mode, seedway.resume_mode) == ("exact", "weights")
    assert (exact.classes, exact.per_class, exact.seed, exact.max_epochs) == \
        (seedway.classes, seedway.per_class, seedway.seed, seedway.max_epochs)
    # Every resume of the seed's way restarted the schedule at the base rate.
    points = [e for e in runs.read_events(RUNS / "cnn-56-seedway") if e["event"] == "resume_point"]
    assert points and all(p["plateau"]["lr"] == seedway.learning_rate for p in points)


def test_stroke_experiment_uses_the_same_drawings_and_split():
    a, b = (runs.read_config(RUNS / n) for n in STROKE_RUNS)
    assert a.classes == b.classes and a.per_class == b.per_class and a.seed == b.seed
    assert (a.representation, b.representation) == ("bitmap28", "strokes")
    assert a.source == b.source == "simplified"
    assert a.max_epochs == b.max_epochs and a.model == b.model
    for name in STROKE_RUNS:
        assert (RUNS / name / "eval.json").exists()
        # Trained the same way to the end: every epoch the config asks for, and nothing left to resume.
        assert [r["epoch"] for r in runs.read_history(RUNS / name)] == list(range(1, a.max_epochs + 1))
        assert runs.read_status(RUNS / name).get("run_complete") is True


def test_the_best_bitmap_model_is_the_web_default():
    index = json.loads((REPO / "web" / "models" / "index.json").read_text())
    default = index["default"]
    entry = next(m for m in index["models"] if m["name"] == default)
    assert entry.get("run", default) in BITMAP_RUNS
    folder = REPO / "web" / "models" / default
    assert (folder / "model.json").exists() and (folder / "labels.json").exists()
    assert json.loads((folder / "labels.json").read_text()) == list(runs.read_config(RUNS / entry.get("run", default)).classes)


# ---------------------------------------------------------------- what a fresh clone opens
def _page_test(page: str):
    from streamlit.testing.v1 import AppTest

    script = (f"import sys\nsys.path.insert(0, {str(REPO)!r})\n"
              f"from dashboard.views import {page}\n{page}.render()\n")
    return AppTest.from_string(script, default_timeout=120)


def _real_drawings(shared: Path, classes: list[str], per_class: int) -> list[tuple[str, list]]:
    """The first drawings of each class that ../shared has simplified strokes for."""
    out = []
    for name in classes:
        path = shared / "simplified" / f"{name.replace(' ', '_')}.ndjson"
        if not path.exists():
            continue
        with open(path, encoding="utf-8") as fh:
            for _, line in zip(range(per_class), fh, strict=False):
                out.append((name, json.loads(line)["drawing"]))
    return out


def test_compare_opens_on_the_shipped_cnn_and_mobilenet(monkeypatch):
    monkeypatch.setenv("QUICKDRAW_RUNS", str(RUNS))
    at = _page_test("compare").run()
    assert not at.exception, at.exception
    chosen = at.multiselect(key="compare_runs").value
    assert sorted(runs.read_config(RUNS / n).model for n in chosen) == ["cnn", "mobilenet"]
    assert "mobilenet-56" in chosen and all(n in BITMAP_RUNS for n in chosen)
    assert at.get("plotly_chart")


@pytest.mark.slow
def test_draw_page_guesses_with_the_web_default(monkeypatch, shared):
    monkeypatch.setenv("QUICKDRAW_RUNS", str(RUNS))
    default = json.loads((REPO / "web" / "models" / "index.json").read_text())["default"]
    name, drawing = _real_drawings(shared, list(runs.read_config(RUNS / default).classes), 1)[0]
    objects = [{"type": "path", "left": 0, "top": 0, "pathOffset": {"x": 0, "y": 0},
                "path": [["M", xs[0], ys[0]], *[["L", x, y] for x, y in zip(xs[1:], ys[1:], strict=True)]]}
               for xs, ys in (stroke[:2] for stroke in drawing)]
    at = _page_test("draw")
    at.session_state["draw_injected_objects"] = objects
    at.run(timeout=180)
    assert not at.exception, at.exception
    assert at.selectbox(key="draw_model_1").value == default
    assert any(m.value.startswith("1. ") for m in at.markdown)



def test_export_page_lists_the_shipped_web_model(monkeypatch):
    monkeypatch.setenv("QUICKDRAW_RUNS", str(RUNS))
    at = _page_test("export").run()
    assert not at.exception, at.exception
    assert len(at.dataframe) == 1
    table = at.dataframe[0].value
    default = json.loads((REPO / "web" / "models" / "index.json").read_text())["default"]
    row = table[table["model"] == default].iloc[0]
    assert bool(row["default"]) and row["verification"] == "passed" and row["size"].endswith("MB")
