"""AppTest of the Probes page and the Draw page's "Save to probe set" (dashboard/views/probes.py,
dashboard/views/draw.py) over a copy of the shipped run runs/cnn-56 and real drawings of ../shared."""

from __future__ import annotations

import base64
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from pipeline import probes, runs

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "runs" / "cnn-56"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def page_test(page: str) -> AppTest:
    script = (f"import sys\nsys.path.insert(0, {str(REPO)!r})\n"
              f"from dashboard.views import {page}\n{page}.render()\n")
    return AppTest.from_string(script, default_timeout=120)


@pytest.fixture
def runs_dir(tmp_path, monkeypatch, shared_subdir):
    if not (SHIPPED / "model" / "model.keras").exists():
        pytest.skip("the shipped run runs/cnn-56 has no model")
    path = tmp_path / "runs"
    shutil.copytree(SHIPPED, path / "cnn-56", ignore=shutil.ignore_patterns("tb", "checkpoints"))
    monkeypatch.setenv("QUICKDRAW_RUNS", str(path))
    return path


def decode(value):
    """Plotly's binary arrays ({"dtype", "bdata"}) as a list."""
    if isinstance(value, dict) and set(value) >= {"dtype", "bdata"}:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).tolist()
    return value


def cat_drawings(shared_subdir, count: int) -> list[list]:
    with open(shared_subdir("simplified") / "cat.ndjson", encoding="utf-8") as fh:
        return [json.loads(next(fh))["drawing"] for _ in range(count)]


def test_probes_page_without_sets_says_how_to_make_one(runs_dir):
    at = page_test("probes")
    at.run()
    assert not at.exception
    assert "No probe sets yet" in at.info[0].value and "probe-set NAME --from" in at.info[0].value


def test_probes_page_scores_a_shipped_run_and_shows_each_drawing(runs_dir, shared_subdir):
    for drawing in cat_drawings(shared_subdir, 3):
        probes.add_drawing(runs_dir, "cats", drawing, "cat", source="test")
    at = page_test("probes")
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="probes_set").value == "cats"
    assert at.multiselect(key="probes_runs").value == ["cnn-56"]
    assert any("None of these runs has scored this set yet" in i.value for i in at.info)
    at.button(key="probes_score").click().run()
    assert not at.exception, at.exception
    record = runs.read_probe_scores(runs_dir / "cnn-56")[-1]
    assert record["source"] == "saved-model" and record["scored"] == 3
    top1 = at.dataframe[0].value
    assert list(top1["run"]) == ["cnn-56"] and top1["top-1"][0] == pytest.approx(record["top1"])
    guesses = at.dataframe[1].value
    assert list(guesses["cnn-56"]) == [d["top1"] for d in record["drawings"]]
    # Per run: a picture and a probability chart for each drawing, the caption naming the last score.
    assert len(at.get("imgs")) + len(at.get("image")) >= 3
    assert len(at.get("plotly_chart")) == 3
    first = record["drawings"][0]
    assert any(f"epoch {record['epoch']}: p={first['prob']:.2f}, guess {first['top1']}" in c.value for c in at.caption)


def test_probes_page_shows_per_epoch_training_scores(runs_dir, shared_subdir):
    """Records as the trainer writes them (chunks 1 and 2): one point per epoch and drawing."""
    for drawing in cat_drawings(shared_subdir, 2):
        probes.add_drawing(runs_dir, "cats", drawing, "cat")
    run_dir = runs_dir / "cnn-56"
    ids = [p.id for p in probes.read_set(runs_dir, "cats")]
    for epoch, prob in ((1, 0.2), (2, 0.6), (3, 0.3)):
        rows = [{"id": i, "label": "cat", "prob": prob, "top1": "cat" if prob > 0.5 else "dog", "top1_prob": 0.6}
                for i in ids]
        runs.append_probe_scores(run_dir, probes.score_record("cats", rows, epoch, 1 if epoch < 3 else 2, "train"))
    at = page_test("probes")
    at.run()
    assert not at.exception, at.exception
    charts = at.get("plotly_chart")
    assert len(charts) == 2
    figure = json.loads(charts[0].proto.spec)
    trace = figure["data"][0]
    assert decode(trace["y"]) == [0.2, 0.6, 0.3] and decode(trace["x"]) == [1, 2, 3]
    # The shipped run's chunks: a line at every chunk start after the first, dashed for a resume.
    marks = [shape["x0"] for shape in figure["layout"]["shapes"]]
    assert 3.5 in marks and all(m % 1 == 0.5 for m in marks)
    assert any(c.value.endswith("epoch 3: p=0.30, guess dog") for c in at.caption)  # set back: not learned
    assert at.dataframe[0].value["top-1"][0] == 0.0


@pytest.mark.slow
def test_draw_page_saves_the_drawing_into_a_probe_set(runs_dir, shared_subdir):
    drawing = cat_drawings(shared_subdir, 1)[0]
    at = page_test("draw")
    at.session_state["draw_injected_objects"] = drawing
    at.run(timeout=180)
    assert not at.exception, at.exception
    label = next(s for s in at.selectbox if s.label.startswith("Label"))
    guess = [m.value for m in at.markdown if m.value.startswith("1. ")][0].splitlines()[0][3:].rsplit(" (", 1)[0]
    assert label.value == guess  # the label defaults to Model 1's guess
    label.set_value("cat")
    at.text_input(key="draw_probe_set").set_value("mine")
    at.button(key="draw_probe_save").click().run(timeout=180)
    assert not at.exception, at.exception
    saved = probes.read_set(runs_dir, "mine")
    assert [p.label for p in saved] == ["cat"] and saved[0].drawing == probes.make_probe(drawing, "cat").drawing
    assert any("probe set mine: 1 drawing(s)" in s.value for s in at.success)


def test_train_page_offers_probe_sets_and_passes_them_to_train(runs_dir, shared_subdir):
    from dashboard.views.train import train_steps
    from pipeline.cli import build_parser

    probes.add_drawing(runs_dir, "cats", cat_drawings(shared_subdir, 1)[0], "cat")
    at = page_test("train")
    at.run()
    assert not at.exception, at.exception
    assert at.multiselect(key="train_probes").options == ["cats"]
    steps = train_steps(name="r1", model="cnn", classes=["cat", "dog"], per_class=50, representation="bitmap28",
                        epochs_per_chunk=2, chunks=1, missing=[], data_root=runs_dir, probes=["cats"])
    assert build_parser().parse_args(steps[-1]).probes == ["cats"]
