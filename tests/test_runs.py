"""runs/ contract: names confined to runs/, atomic files, tolerant readers, locks, listing."""

import json
import os
import subprocess
import sys

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


def test_lock_refuses_a_live_trainer_and_takes_over_a_dead_one(tmp_path):
    path, _ = make_run(tmp_path)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (path / ".lock").write_text(json.dumps({"pid": sleeper.pid}))
        with pytest.raises(RunError, match=f"being trained by PID {sleeper.pid}"):
            runs.RunLock(path).acquire()
    finally:
        sleeper.kill()
        sleeper.wait()
    lock = runs.RunLock(path).acquire()  # the trainer reports the takeover (event + stderr line)
    assert lock.took_over_from == sleeper.pid
    assert runs.read_lock(path)["pid"] == os.getpid()
    lock.release()
    assert runs.read_lock(path) is None


def test_running_status_with_dead_pid_is_crashed(tmp_path):
    path, _ = make_run(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    runs.write_status(path, "running", pid=dead.pid)
    assert runs.effective_status(path)["state"] == "crashed"
    runs.write_status(path, "running", pid=os.getpid())
    (path / ".lock").write_text(json.dumps({"pid": os.getpid()}))
    assert runs.effective_status(path)["state"] == "running"


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
