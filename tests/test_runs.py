"""runs/ contract: names confined to runs/, atomic files, tolerant readers, locks, listing."""

import dataclasses
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from pipeline import runs
from pipeline.errors import RunError
from pipeline.runs import RunConfig


def make_run(runs_dir, name="r1", **kw):
    config = RunConfig(name=name, model="cnn", classes=("cat", "dog"), per_class=10, **kw)
    path = runs.run_path(runs_dir, name)
    path.mkdir(parents=True)
    runs.write_config(path, config)
    return path, config


@pytest.mark.parametrize("bad", ["../x", "/etc", "a/b", "..", ".", "", "a\\b", "x" * 81, "-rf", "a b"])
def test_run_names_with_path_separators_are_refused(tmp_path, bad):
    with pytest.raises(RunError, match="not a valid run name"):
        runs.run_path(tmp_path, bad)


def test_config_round_trip_and_bad_fields(tmp_path):
    path, config = make_run(tmp_path, parent={"run": "p", "epoch": 3})
    assert runs.read_config(path) == config
    assert runs.read_classes(path) == ["cat", "dog"]
    data = json.loads((path / "config.json").read_text())
    data["colour"] = "blue"
    (path / "config.json").write_text(json.dumps(data))
    with pytest.raises(RunError, match="unknown field.*colour"):
        runs.read_config(path)
    del data["colour"], data["model"]
    (path / "config.json").write_text(json.dumps(data))
    with pytest.raises(RunError, match="lacks required field.*model"):
        runs.read_config(path)
    (path / "config.json").write_text("{not json")
    with pytest.raises(RunError, match="not valid JSON"):
        runs.read_config(path)


def test_history_cut_mid_line_keeps_complete_rows(tmp_path):
    path, _ = make_run(tmp_path)
    rows = [{"epoch": e, "chunk": 1, "loss": 1.0 / e, "val_top3": 0.1 * e, "lr": 0.002} for e in (1, 2, 3)]
    runs.write_history(path, rows)
    text = (path / "history.csv").read_text()
    (path / "history.csv").write_text(text[: text.rindex("\n", 0, len(text) - 1) + 8])  # cut the last row
    with pytest.warns(UserWarning, match="damaged line"):
        back = runs.read_history(path)
    assert [r["epoch"] for r in back] == [1, 2]
    assert back[1]["val_top3"] == pytest.approx(0.2)


def test_events_survive_a_partial_last_line(tmp_path):
    path, _ = make_run(tmp_path)
    runs.append_event(path, "chunk_start", chunk=1)
    with open(path / "events.jsonl", "a") as fh:
        fh.write('{"time": 1, "event": "chunk_e')  # a writer killed mid-line
    runs.append_event(path, "chunk_start", chunk=2)
    events = runs.read_events(path)
    assert [e["chunk"] for e in events] == [1, 2]
    assert runs.count_chunks(events) == 2


def hold_lock(path):
    """A separate process holding the run's lock the way a trainer does; returns it once it holds it."""
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pipeline.runs import RunLock; "
                               "RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(60)", str(path)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_lock_refuses_a_live_trainer_and_a_dead_ones_lock_frees_itself(tmp_path):
    path, _ = make_run(tmp_path)
    holder = hold_lock(path)
    try:
        assert runs.read_lock(path)["pid"] == holder.pid
        with pytest.raises(RunError, match=f"being trained by PID {holder.pid}"):
            runs.RunLock(path).acquire()
        assert runs.run_state(path).state == "running"
    finally:
        holder.kill()  # kill -9: no clean-up ran, the kernel dropped its flock
        holder.wait()
    assert runs.read_lock(path) is None  # the PID left in the file is dead: nobody holds the run
    lock = runs.RunLock(path).acquire()  # the trainer reports whose run it took over (event + stderr line)
    assert lock.took_over_from == holder.pid
    assert runs.read_lock(path)["pid"] == os.getpid()
    with pytest.raises(RunError, match=f"being trained by PID {os.getpid()}"):
        runs.RunLock(path).acquire()  # even from the same process: flock is per open file
    lock.release()
    assert runs.read_lock(path) is None
    runs.RunLock(path).acquire().release()


def test_run_state_is_one_answer_for_every_situation(tmp_path):
    path, _ = make_run(tmp_path)
    assert runs.run_state(path).state == "created"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    runs.write_status(path, "running", pid=dead.pid)
    state = runs.run_state(path)
    assert state.state == "crashed" and str(dead.pid) in state.message
    runs.write_status(path, "stopped", message="stopped by SIGTERM")
    assert runs.run_state(path).state == "stopped"
    runs.write_status(path, "interrupted")  # the name runs recorded before
    assert runs.run_state(path).state == "stopped"
    runs.append_event(path, "chunk_start", chunk=1)  # a chunk that never ended, nobody training it
    assert runs.run_state(path).state == "crashed"
    runs.append_event(path, "chunk_end", chunk=1)
    runs.write_status(path, "finished", run_complete=True)
    state = runs.run_state(path)
    assert state.state == "finished" and state.complete
    holder = hold_lock(path)
    try:
        assert runs.run_state(path) == runs.RunState("running", f"trained by PID {holder.pid}", pid=holder.pid,
                                                     status=runs.read_status(path))
    finally:
        holder.kill()
        holder.wait()
    (path / "config.json").write_text("{")
    assert runs.run_state(path).state == "damaged"


@pytest.mark.slow  # trains
def test_eight_trainers_racing_for_one_run_exactly_one_trains(shared, cache_dir, tmp_path):
    """8 processes `resume` one run at the same moment: the kernel's lock lets exactly one train; the
    others are refused at once, naming the PID of the one that holds it."""
    config = runs.make_config(name="race", model="cnn", classes=("apple", "cat"), per_class=200,
                              data_root=str(shared), epochs_per_chunk=1, batch_size=64)
    run_dir = runs.create_run(config, tmp_path / "runs")
    env = {**os.environ, "QUICKDRAW_CACHE": str(cache_dir), "QUICKDRAW_RUNS": str(tmp_path / "runs"),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    go = tmp_path / "go"
    # Each racer waits for the same file to appear, then resumes: they all start within milliseconds.
    racer = ("import os, sys, time\nwhile not os.path.exists(sys.argv[1]): time.sleep(0.001)\n"
             "from pipeline.cli import main\nsys.exit(main(['resume', 'race']))")
    procs = [subprocess.Popen([sys.executable, "-c", racer, str(go)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(8)]
    time.sleep(3)  # every racer has started and is polling
    go.write_text("go")
    results = [(p.pid, *p.communicate(timeout=600), p.returncode) for p in procs]
    winners = [pid for pid, _out, _err, code in results if code == 0]
    assert len(winners) == 1, [(code, err[-300:]) for _pid, _out, err, code in results]
    for _pid, _out, err, code in results:
        if code != 0:
            assert code == 2 and f"is being trained by PID {winners[0]}" in err, err[-500:]
    events = runs.read_events(run_dir)
    assert sum(e["event"] == "chunk_start" for e in events) == 1
    assert [r["epoch"] for r in runs.read_history(run_dir)] == [1]
    assert runs.run_state(run_dir).state == "finished"


def test_list_runs_reports_damaged_runs_with_reason(tmp_path):
    make_run(tmp_path, "good")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "history.csv").write_text("epoch,loss\n1,0.5\n")
    rows = {r.name: r for r in runs.list_runs(tmp_path)}
    assert rows["good"].status == "created" and rows["good"].classes == 2
    assert rows["broken"].status == "damaged" and "config.json is missing" in rows["broken"].damaged


def test_rename_and_delete(tmp_path):
    make_run(tmp_path, "old")
    new = runs.rename_run(tmp_path, "old", "new")
    assert runs.read_config(new).name == "new" and not (tmp_path / "old").exists()
    with pytest.raises(RunError):
        runs.rename_run(tmp_path, "new", "../escape")
    runs.delete_run(tmp_path, "new")
    assert list(tmp_path.iterdir()) == []


def test_renaming_a_parent_keeps_its_branches_and_warm_starts_under_it(tmp_path):
    parent, _ = make_run(tmp_path, "parent")
    branch, _ = make_run(tmp_path, "branch")
    warm, _ = make_run(tmp_path, "warm")
    other, _ = make_run(tmp_path, "other")
    runs.write_config(branch, dataclasses.replace(runs.read_config(branch), parent={"run": "parent", "epoch": 2}))
    model_file = str(parent / "model" / "model.keras")
    runs.write_config(warm, dataclasses.replace(runs.read_config(warm), init_from=model_file))
    runs.rename_run(tmp_path, "parent", "renamed")
    assert runs.read_config(tmp_path / "branch").parent == {"run": "renamed", "epoch": 2}
    assert runs.read_config(tmp_path / "warm").init_from == str(tmp_path.resolve() / "renamed" / "model" / "model.keras")
    assert runs.read_config(tmp_path / "other").parent is None
    tree = {node.name: node for node in runs.lineage_forest(runs.list_runs(tmp_path))}
    assert tree["branch"].parent == "renamed" and tree["warm"].parent == "renamed", tree
    assert [e["event"] for e in runs.read_events(tmp_path / "branch")][-1] == "parent_renamed"


def test_atomic_write_failure_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "status.json"
    runs.atomic_write_json(target, {"state": "old"})

    def full_disk(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError):
        runs.atomic_write_json(target, {"state": "new"})
    assert json.loads(target.read_text()) == {"state": "old"}
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_runs_are_ordered_by_recorded_time_not_file_times(tmp_path):
    # A fresh clone gives every file the checkout time: the order must come from what was recorded.
    older, _ = make_run(tmp_path, "trained-first")
    newer, _ = make_run(tmp_path, "trained-later")
    runs.append_event(older, "finished", epoch=3)
    runs.append_event(newer, "finished", epoch=3)
    for path, stamp in ((older, 1_700_000_000.0), (newer, 1_700_000_500.0)):
        runs.write_status(path, "finished")
        status = json.loads((path / "status.json").read_text())
        runs.atomic_write_json(path / "status.json", {**status, "updated": stamp})
        lines = [json.loads(line) for line in (path / "events.jsonl").read_text().splitlines()]
        (path / "events.jsonl").write_text("".join(json.dumps({**e, "time": stamp}) + "\n" for e in lines))
    checkout = 1_800_000_000.0
    for i, path in enumerate((newer, older)):  # the older run's files look newest on disk
        for f in path.iterdir():
            os.utime(f, (checkout + i, checkout + i))
    listed = runs.list_runs(tmp_path)
    assert [r.name for r in listed] == ["trained-later", "trained-first"]
    assert listed[0].updated == 1_700_000_500.0


# ---------------------------------------------------------------- seed groups and what differs
def _config(name, seed=0, classes=("cat", "dog", "fish"), **kw):
    return RunConfig(name=name, model="cnn", classes=classes, per_class=10, seed=seed,
                     created=f"2026-01-0{seed + 1}", versions={"tensorflow": f"2.{seed}"}, **kw)


def test_seed_groups_are_runs_that_differ_only_in_seed():
    configs = [_config("cnn-a", 0), _config("cnn-a-seed2", 2), _config("cnn-a-seed1", 1),
               _config("cnn-a-lr", 1, learning_rate=0.01),  # another field differs: not in the group
               _config("cnn-a-opts", 1, model_options={"width": 2}), _config("cnn-a-opts-seed3", 3, model_options={"width": 2}),
               _config("alone", 5, augment=True)]
    groups = runs.seed_groups(configs)
    assert [(g.label, g.members, g.seeds) for g in groups] == [
        ("cnn-a (3 seeds)", ("cnn-a", "cnn-a-seed1", "cnn-a-seed2"), (0, 1, 2)),
        ("cnn-a-opts (2 seeds)", ("cnn-a-opts", "cnn-a-opts-seed3"), (1, 3))]
    assert runs.seed_groups([_config("x", 0), _config("y", 0, resume_mode="weights")]) == []
    assert runs.seed_groups([_config("only", 0)]) == []
    assert runs.seed_groups([_config("p", 0), _config("q", 1)])[0].label == "p (2 seeds)"  # no shared prefix
    assert set(runs.IDENTITY_FIELDS) >= {"name", "created", "versions", "schema"}


def test_seed_groups_from_run_folders_skip_unreadable_ones(tmp_path):
    make_run(tmp_path, "m-1", seed=1)
    make_run(tmp_path, "m-2", seed=2)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{nope")
    groups = runs.seed_groups(sorted(tmp_path.iterdir()))
    assert [(g.label, g.members) for g in groups] == [("m (2 seeds)", ("m-1", "m-2"))]


def test_seed_group_metrics_are_mean_and_sample_sd():
    group = runs.SeedGroup(label="g (2 seeds)", members=("a", "b"), seeds=(0, 1))
    stats = runs.seed_group_metrics(group, {"a": {"test_top1": 0.8, "test_top3": 0.9, "best_val_top3": None},
                                            "b": {"test_top1": 0.9, "test_top3": None, "best_val_top3": None}})
    mean, sd, n = stats["test_top1"]
    assert (mean, n) == (pytest.approx(0.85), 2) and sd == pytest.approx(0.0707107, rel=1e-5)
    assert stats["test_top3"] == (pytest.approx(0.9), None, 1)
    assert stats["best_val_top3"] == (None, None, 0)


def test_the_shipped_two_seed_runs_form_groups():
    from pathlib import Path

    shipped = Path(__file__).resolve().parents[1] / "runs"
    groups = {g.label: g.members for g in runs.seed_groups(sorted(p for p in shipped.iterdir() if p.is_dir()))}
    assert groups["cnn-56 (2 seeds)"] == ("cnn-56", "cnn-56-seed1")
    assert groups["qdnet-56 (2 seeds)"] == ("qdnet-56", "qdnet-56-seed1")
    assert not any("cnn-56-seedway" in members for members in groups.values())  # resume_mode differs
    diff = runs.config_differences([runs.read_config(shipped / "cnn-56"), runs.read_config(shipped / "cnn-56-seedway")])
    assert [row["field"] for row in diff] == ["resume_mode"]


def test_config_differences_show_only_differing_fields_unless_all():
    a = _config("a", 0)
    b = _config("b", 1, model_options={"alpha": 0.5}, parent={"run": "a", "epoch": 3},
                classes=("cat", "dog", "fish", "cow", "owl"))
    c = _config("c", 0, classes=("fish", "dog", "cat"))
    rows = runs.config_differences({"a": a, "b": b, "c": c})
    by_field = {row.pop("field"): row for row in rows}
    assert list(by_field) == ["classes", "seed", "model_options.alpha", "parent.epoch", "parent.run"]
    assert by_field["classes"] == {"a": "3 classes", "b": "5 classes, differs: +2 -0", "c": "3 classes, other order"}
    assert by_field["model_options.alpha"] == {"a": None, "b": 0.5, "c": None}
    assert by_field["parent.run"] == {"a": None, "b": "a", "c": None}
    assert runs.config_differences([a, _config("a2", 0)]) == []  # names, dates and versions aside
    every = {row["field"]: row for row in runs.config_differences([a, _config("a2", 0)], all_fields=True)}
    assert {"name", "created", "model", "per_class", "learning_rate", "classes", "versions.tensorflow"} <= set(every)
    assert every["model"] == {"field": "model", "a": "cnn", "a2": "cnn"}
    assert every["name"]["a2"] == "a2"
    one_removed = runs.config_differences([a, _config("d", 0, classes=("cat", "dog", "cow"))])
    assert one_removed[0]["d"] == "3 classes, differs: +1 -1"


# ---------------------------------------------------------------- lineage
def _checkpointed_run(runs_dir, name, epochs):
    """A run with `epochs` history rows and an epoch-end checkpoint at each (weights stand-ins: branch_run
    copies them, it never builds a model)."""
    from pipeline.checkpoints import Checkpoint, TrainState, epoch_checkpoint_path

    path, _ = make_run(runs_dir, name)
    rows = [{"epoch": e, "chunk": 1, "started": 1000.0 * e, "ended": 1000.0 * e + 60, "val_top3": 0.5 + e / 100}
            for e in range(1, epochs + 1)]
    runs.write_history(path, rows)
    for epoch in range(1, epochs + 1):
        state = TrainState(epoch=epoch, schedule={"lr": 0.001, "best": 1.0, "wait": 0}, history=rows[:epoch])
        Checkpoint(state, {"dense/kernel": np.zeros(2)}, {}).save(epoch_checkpoint_path(path, epoch))
    return path


def _tree(runs_dir):
    return [(n.name, n.depth, n.parent, n.kind, n.epoch) for n in runs.lineage_forest(runs.list_runs(runs_dir))]


def test_lineage_puts_branches_under_their_parent_with_the_epoch_and_warm_starts_under_their_source(tmp_path):
    root = _checkpointed_run(tmp_path, "base", 6)
    runs.branch_run(root, "base-lr", from_epoch=4, learning_rate=0.0005)
    late = _checkpointed_run(tmp_path, "base-lr-x", 0)  # a branch of the branch, recorded in its config
    runs.write_config(late, dataclasses.replace(runs.read_config(late), parent={"run": "base-lr", "epoch": 5}))
    make_run(tmp_path, "warm", init_from="base")
    make_run(tmp_path, "warm-file", init_from=str(tmp_path / "base" / "model" / "model.keras"))
    make_run(tmp_path, "scratch")
    assert _tree(tmp_path) == [
        ("base", 0, None, None, None),
        ("base-lr", 1, "base", "branch", 4),
        ("base-lr-x", 2, "base-lr", "branch", 5),
        ("warm", 1, "base", "warm start", None),
        ("warm-file", 1, "base", "warm start", None),
        ("scratch", 0, None, None, None),
    ]
    nodes = {n.name: n for n in runs.lineage_forest(runs.list_runs(tmp_path))}
    assert nodes["base"].children == ("base-lr", "warm", "warm-file")
    assert all(not n.note for n in nodes.values())


def test_lineage_survives_missing_parents_cycles_and_damaged_configs(tmp_path):
    make_run(tmp_path, "orphan", parent={"run": "gone", "epoch": 3})
    make_run(tmp_path, "a", parent={"run": "b", "epoch": 1})
    make_run(tmp_path, "b", parent={"run": "a", "epoch": 2})
    make_run(tmp_path, "self", parent={"run": "self", "epoch": 1})
    make_run(tmp_path, "c", parent={"run": "a", "epoch": 1})  # hangs below a cycle: placed once a is a root
    make_run(tmp_path, "outside", init_from="/elsewhere/model.h5")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{ not json", encoding="utf-8")
    nodes = runs.lineage_forest(runs.list_runs(tmp_path))
    assert sorted(n.name for n in nodes) == sorted(["orphan", "a", "b", "self", "c", "outside", "broken"])
    by_name = {n.name: n for n in nodes}
    assert by_name["orphan"].depth == 0 and by_name["orphan"].kind == "branch" and by_name["orphan"].epoch == 3
    assert "'gone'" in by_name["orphan"].note and "not in this folder" in by_name["orphan"].note
    assert by_name["a"].depth == by_name["b"].depth == by_name["self"].depth == 0
    assert "cycle" in by_name["a"].note and "cycle" in by_name["b"].note and "self -> self" in by_name["self"].note
    assert (by_name["c"].depth, by_name["c"].parent) == (1, "a")
    assert by_name["outside"].kind == "warm start" and "/elsewhere/model.h5" in by_name["outside"].note
    assert by_name["broken"].depth == 0 and by_name["broken"].note.startswith("unreadable")
    assert [n.name for n in nodes].index("c") == [n.name for n in nodes].index("a") + 1  # under its parent


# ---------------------------------------------------------------- reading hundreds of runs
def test_read_history_reads_every_kind_of_row_and_only_the_asked_columns(tmp_path):
    path, _ = make_run(tmp_path)
    (path / "history.csv").write_text(
        "epoch,chunk,started,ended,loss,val_top3,lr,note\n"
        "1,1,10.5,20.5,1.25,0.5,0.002,fine\n"       # a text column: cell by cell
        "2,1,21,31,1.0,,0.002,3\n"                   # an empty cell is None, a number in the text column a float
        "3,1,32,42,oops,0.7,0.002,x\n"               # a metric that is not a number: the row is damaged
        "4,2,43,53,0.8,0.75,0.001\n", encoding="utf-8")  # a cell short: damaged
    with pytest.warns(UserWarning, match="skipped 2 damaged"):
        rows = runs.read_history(path)
    assert rows == [
        {"epoch": 1, "chunk": 1, "started": 10.5, "ended": 20.5, "loss": 1.25, "val_top3": 0.5, "lr": 0.002, "note": "fine"},
        {"epoch": 2, "chunk": 1, "started": 21.0, "ended": 31.0, "loss": 1.0, "val_top3": None, "lr": 0.002, "note": 3.0}]
    numbers = [{"epoch": e, "chunk": 1, "started": 1.0 * e, "ended": e + 0.5, "loss": 1 / e, "accuracy": 0.5,
                "top3": 0.7, "val_loss": 1.1 / e, "val_accuracy": 0.4, "val_top3": 0.6 + e / 100, "lr": 0.002}
               for e in range(1, 4)]
    runs.write_history(path, numbers)  # numbers only: the fast path
    assert runs.read_history(path) == numbers
    assert all(isinstance(row["epoch"], int) and isinstance(row["chunk"], int) for row in runs.read_history(path))
    assert runs.read_history(path, ("epoch", "val_top3")) == [{"epoch": e, "val_top3": 0.6 + e / 100} for e in (1, 2, 3)]


def test_summarize_run_reads_the_model_epoch_and_the_config_once(tmp_path):
    path = _checkpointed_run(tmp_path, "r", 3)
    runs.atomic_write_json(path / "model" / "meta.json", {"epoch": 2})
    summary, config = runs.summarize_run_with_config(path)
    assert (summary.epochs, summary.best_epoch, summary.model_epoch) == (3, 3, 2)
    assert config == runs.read_config(path)
    (path / "model" / "meta.json").write_text("{ not json", encoding="utf-8")
    assert runs.summarize_run(path).model_epoch is None and runs.summarize_run(path).status != "damaged"


def test_saved_summaries_come_back_and_anything_else_is_ignored(tmp_path):
    good, _ = make_run(tmp_path, "good")
    summary, config = runs.summarize_run_with_config(good)
    entries = {str(good): ((1, 2, 3), {**vars(summary), "path": str(good)}, config),
               str(tmp_path.parent / "elsewhere" / "x"): ((1,), {}, None)}  # another runs folder: not kept
    runs.write_summary_cache(tmp_path, entries)
    assert runs.read_summary_cache(tmp_path) == {str(good): entries[str(good)]}
    assert runs.list_runs(tmp_path)[0].name == "good"  # the cache folder is not a run
    cache = tmp_path / runs.SUMMARY_CACHE
    data = json.loads(cache.read_text())
    cache.write_text(json.dumps({**data, "fields": ["name"]}))  # written for other summary fields
    assert runs.read_summary_cache(tmp_path) == {}
    cache.write_text("{ cut sho")
    assert runs.read_summary_cache(tmp_path) == {}


def test_resumptions_are_the_chunk_starts_that_continue_a_run():
    """A chunk retried from epoch 1 (its first attempt trained nothing) starts the run; chunks that begin
    later continue it, and only those are marked as resumes on Compare and Probes."""
    events = [{"event": "created"}, {"event": "chunk_start", "chunk": 1, "epoch": 1},
              {"event": "chunk_end", "chunk": 1, "epoch": 0},
              {"event": "chunk_start", "chunk": 2, "epoch": 1}, {"event": "chunk_end", "chunk": 2, "epoch": 3},
              {"event": "chunk_start", "chunk": 3, "epoch": 4, "resumed_from": "epoch-0003"}]
    assert runs.resumptions(events) == [events[-1]]
    assert runs.resumptions([]) == []
