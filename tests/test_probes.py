"""Probe drawings (pipeline/probes.py): sets made from real drawings of ../shared, scored by a shipped
run's saved model and by the trainer at every epoch end, and what the Probes page reads back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline import probes, runs
from pipeline.errors import DrawingError, QuickDrawError
from pipeline.formats import iter_ndjson
from pipeline.strokes import to_google, to_simplified

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "runs" / "cnn-56"


@pytest.fixture
def runs_dir(tmp_path):
    path = tmp_path / "runs"
    path.mkdir()
    return path


def stroke_file(shared_subdir, cls: str) -> Path:
    path = shared_subdir("simplified") / f"{cls}.ndjson"
    if not path.exists():
        pytest.skip(f"{path} is missing from the shared data")
    return path


def test_a_set_from_a_stroke_file_keeps_label_order_and_simplified_drawings(runs_dir, shared_subdir):
    cats = probes.create_set_from_file(runs_dir, "cats", stroke_file(shared_subdir, "cat"), limit=4)
    assert [p.label for p in cats] == ["cat"] * 4
    first = next(iter_ndjson(stroke_file(shared_subdir, "cat")))
    assert cats[0].drawing == to_google(to_simplified(first["drawing"]))
    assert (runs_dir / "probes" / "cats.ndjson").is_file() and probes.list_sets(runs_dir) == ["cats"]
    # Extending with the same drawings adds nothing; another class's drawings are appended after them.
    probes.create_set_from_file(runs_dir, "cats", stroke_file(shared_subdir, "cat"), limit=4)
    mixed = probes.create_set_from_file(runs_dir, "cats", stroke_file(shared_subdir, "apple"), limit=2)
    assert [p.label for p in mixed] == ["cat"] * 4 + ["apple"] * 2
    assert len({p.id for p in mixed}) == 6


def test_labels_are_official_class_names_with_a_clear_error(runs_dir, shared_subdir):
    path = stroke_file(shared_subdir, "cat")
    assert probes.create_set_from_file(runs_dir, "c", path, label="Cat", limit=1)[0].label == "cat"
    with pytest.raises(QuickDrawError, match="unknown class 'dgo'; did you mean 'dog'"):
        probes.create_set_from_file(runs_dir, "d", path, label="dgo", limit=1)
    with pytest.raises(QuickDrawError, match="not a valid probe set name"):
        probes.set_path(runs_dir, "../escape")
    with pytest.raises(QuickDrawError, match="no probe set 'missing'.*probe-set missing --from"):
        probes.check_sets(runs_dir, ["missing"])


def test_a_drawing_too_small_to_guess_is_refused(runs_dir):
    with pytest.raises(DrawingError, match="too small"):
        probes.add_drawing(runs_dir, "taps", [[[10, 11], [10, 11]]], "cat", form="raw")
    assert probes.read_set(runs_dir, "taps") == []


def test_the_probes_folder_is_never_a_run(runs_dir, shared_subdir):
    probes.create_set_from_file(runs_dir, "cats", stroke_file(shared_subdir, "cat"), limit=1)
    assert runs.list_runs(runs_dir) == []
    with pytest.raises(QuickDrawError, match="not a valid run name"):
        runs.validate_run_name("probes")


def test_old_configs_without_probes_still_load(tmp_path):
    data = json.loads((SHIPPED / "config.json").read_text())
    data.pop("probes", None)
    config = runs.RunConfig.from_json(data)
    assert config.probes == ()
    again = runs.RunConfig.from_json({**config.to_json(), "probes": ["cats", "dogs"]})
    assert again.probes == ("cats", "dogs")


@pytest.fixture
def shipped_copy(tmp_path):
    if not (SHIPPED / "model" / "model.keras").exists():
        pytest.skip("the shipped run runs/cnn-56 has no model")
    runs_dir = tmp_path / "runs"
    shutil.copytree(SHIPPED, runs_dir / "cnn-56", ignore=shutil.ignore_patterns("tb", "checkpoints"))
    return runs_dir


def test_a_shipped_run_scores_a_set_with_its_saved_model(shipped_copy, shared_subdir):
    from pipeline.predict import Predictor

    run_dir = shipped_copy / "cnn-56"
    probes.create_set_from_file(shipped_copy, "mix", stroke_file(shared_subdir, "cat"), limit=3)
    probes.create_set_from_file(shipped_copy, "mix", stroke_file(shared_subdir, "ant"), limit=1)  # not a class
    record = probes.score_saved_model(run_dir, "mix")
    meta = json.loads((run_dir / "model" / "meta.json").read_text())
    assert record["epoch"] == meta["epoch"] and record["source"] == "saved-model"
    # The same numbers as the one path from a drawing to a guess.
    predictor = Predictor.from_run(run_dir)
    for probe, row in zip(probes.read_set(shipped_copy, "mix"), record["drawings"], strict=True):
        top = predictor.predict(probe.drawing, top=1)[0]
        assert row["top1"] == top[0] and row["top1_prob"] == pytest.approx(top[1], abs=1e-5)
    assert record["drawings"][3]["label"] == "ant" and record["drawings"][3]["prob"] is None
    assert record["top1"] == sum(r["top1"] == r["label"] for r in record["drawings"]) / 4
    assert runs.read_probe_scores(run_dir)[-1]["drawings"] == record["drawings"]
    assert probes.top1_by_run({"cnn-56": run_dir}, "mix")[0]["top1"] == record["top1"]


@pytest.mark.slow
def test_the_trainer_scores_each_epoch_and_a_resume_continues(runs_dir, shared, cache_dir, shared_subdir):
    """A tiny real run (3 classes, 2 epochs, then a resume for a third): one probes.jsonl line per
    epoch, with the chunk, so the page can mark where a resume started."""
    from pipeline.chunks import run_chunks

    probes.create_set_from_file(runs_dir, "watch", stroke_file(shared_subdir, "cat"), limit=3)
    config = runs.make_config(name="tiny", model="cnn", classes=("apple", "cat", "fish"), per_class=120,
                              data_root=str(shared), epochs_per_chunk=2, batch_size=64, probes=("watch",))
    run_dir = runs.create_run(config, runs_dir)
    assert run_chunks(run_dir, chunks=1) == 0
    probes.create_set_from_file(runs_dir, "apples", stroke_file(shared_subdir, "apple"), limit=2)
    runs.set_probes(run_dir, ("watch", "apples"))  # `resume tiny --probes watch apples`
    assert run_chunks(run_dir, chunks=1, epochs_per_chunk=1) == 0
    records = runs.read_probe_scores(run_dir)
    assert [(r["set"], r["epoch"], r["chunk"], r["source"]) for r in records] == [
        ("watch", 1, 1, "train"), ("watch", 2, 1, "train"), ("watch", 3, 2, "train"), ("apples", 3, 2, "train")]
    assert runs.read_events(run_dir)[-1]["event"] != "probes"  # recorded before chunk 2 started
    assert any(e["event"] == "probes" and e["sets"] == ["watch", "apples"] for e in runs.read_events(run_dir))
    assert all(len(r["drawings"]) == {"watch": 3, "apples": 2}[r["set"]] and 0 <= r["drawings"][0]["prob"] <= 1
               for r in records)
    table = probes.probability_table(run_dir, "watch")
    assert len(table) == 9 and {row["epoch"] for row in table} == {1, 2, 3}


def test_learned_epoch_is_where_the_guess_stays_right():
    def rows(*rights, source="train"):
        return [{"epoch": e, "right": r, "source": source} for e, r in enumerate(rights, start=1)]

    assert probes.learned_epoch(rows(False, True, True)) == 2
    assert probes.learned_epoch(rows(True, False, True, True)) == 3  # set back by epoch 2, learned again
    assert probes.learned_epoch(rows(True, True, False)) is None
    assert probes.learned_epoch(rows(True, source="saved-model")) is None  # per-epoch scores only


# ---------------------------------------------------------------- the command line
def test_cli_mistakes_are_one_line_before_tensorflow(runs_dir, shared, shared_subdir):
    from test_cli import assert_one_line_error, make_run, run_cli

    cats = stroke_file(shared_subdir, "cat")
    make_run(runs_dir, "tiny")
    make_run(runs_dir, "untrained", model_file=False)
    where = ["--runs-dir", str(runs_dir)]
    assert_one_line_error(run_cli("probe", "nope", "cats", *where), "no run 'nope'")
    assert_one_line_error(run_cli("probe", "tiny", "cats", *where), "no probe set 'cats'",
                          "`python -m pipeline probe-set cats --from DRAWINGS.ndjson --label LABEL`")
    assert_one_line_error(run_cli("probe", "untrained", "cats", *where), "has no model/model.keras yet")
    assert_one_line_error(run_cli("probe-set", "cats", "--from", str(cats), "--label", "dgo", *where),
                          "unknown class 'dgo'; did you mean 'dog'")
    assert_one_line_error(run_cli("probe-set", "cats", "--from", str(runs_dir / "none.ndjson"), *where), "no file")
    assert_one_line_error(run_cli("train", "--name", "t", "--model", "cnn", "--classes", "cat", "apple",
                                  "--per-class", "10", "--probes", "cats", *where), "no probe set 'cats'")
    make_run(runs_dir, "trainable", data_root=shared)
    assert_one_line_error(run_cli("resume", "trainable", "--probes", "cats", *where), "no probe set 'cats'")
    assert runs.read_config(runs_dir / "trainable").probes == ()
    proc = run_cli("probe-set", "cats", "--from", str(cats), "--limit", "2", *where)
    assert proc.returncode == 0 and "probe set cats: 2 drawing(s) of cat" in proc.stdout, proc.stderr
    assert "TENSORFLOW-NOT-LOADED" in proc.stdout


@pytest.mark.slow
def test_cli_probe_scores_a_shipped_run(shipped_copy, shared_subdir):
    from test_cli import run_cli

    probes.create_set_from_file(shipped_copy, "cats", stroke_file(shared_subdir, "cat"), limit=3)
    proc = run_cli("probe", "cnn-56", "cats", "--runs-dir", str(shipped_copy), probe=False)
    assert proc.returncode == 0, proc.stderr
    record = runs.read_probe_scores(shipped_copy / "cnn-56")[-1]
    right = sum(d["top1"] == "cat" for d in record["drawings"])
    assert f"cnn-56 epoch {record['epoch']} on probe set cats: top-1 {right}/3" in proc.stdout
    assert proc.stdout.count("  cat: p = ") == 3 and proc.stderr == ""
