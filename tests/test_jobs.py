"""pipeline.jobs: background `python -m pipeline ...` jobs started, listed, stopped and read back from
their files only (the job record, the JSON-lines progress file), never from their output."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline import jobs, runs
from pipeline.errors import RunError


@pytest.fixture
def runs_dir(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "runs"
    path.mkdir()
    monkeypatch.setenv("QUICKDRAW_RUNS", str(path))
    return path


def _records(job: jobs.Job, kind: str) -> list[dict]:
    return [r for r in jobs.progress_records(job) if r["type"] == kind]


def test_a_job_runs_its_commands_in_order_and_is_listed(runs_dir):
    started = jobs.start(runs_dir, "listing", "test", [["classes"], ["runs"]])
    assert started.pid and started.steps == (("classes",), ("runs",))
    assert [j.id for j in jobs.list_jobs(runs_dir)] == ["listing"]
    assert jobs.list_jobs(runs_dir, kind="other") == []
    job = jobs.wait(started, timeout=60)
    status = jobs.job_status(job)
    assert (status.state, status.message, status.command) == ("done", "", "runs")
    assert job.returncodes == (0, 0) and job.returncode == 0 and job.ended >= job.started and not job.stopped
    record = json.loads((runs_dir / ".logs" / "listing.json").read_text())
    assert record["pid"] == started.pid and record["steps"] == [["classes"], ["runs"]]
    assert record["commands"][0][:3] == [sys.executable, "-m", "pipeline"]
    assert [r["command"] for r in _records(job, "start")] == ["classes", "runs"]
    # The log is for people: each command as typed, then its output.
    tail = jobs.log_tail(job, lines=400)
    assert "$ python -m pipeline classes" in tail and "zigzag" in tail and "no runs in" in tail


def test_a_failing_command_ends_the_job_with_its_error_record(runs_dir):
    job = jobs.wait(jobs.start(runs_dir, "bad", "test", [["download", "not-a-class"], ["classes"]]), timeout=60)
    status = jobs.job_status(job)
    assert status.state == "failed" and status.command == "download"
    assert "'not-a-class' is not a Quick, Draw! class" in status.message
    assert job.returncodes == (2,) and job.step == 0  # the second command never ran
    assert _records(job, "error")[0]["message"] == status.message
    with pytest.raises(RunError, match="not a valid run name"):
        jobs.start(runs_dir, "../evil", "test", [["classes"]])


def test_a_download_job_reports_progress_and_result(runs_dir, shared, tmp_path):
    data = tmp_path / "data"
    step = jobs.download_step(["cat", "apple"], "numpy_bitmap", per_class=20, data=data, base_url=shared)
    job = jobs.wait(jobs.start(runs_dir, "fetch", "download", [step]), timeout=60)
    status = jobs.job_status(job)
    assert status.state == "done", jobs.log_tail(job)
    fractions = [r["fraction"] for r in _records(job, "progress") if r["fraction"] is not None]
    assert fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert status.result == {"root": str(data), "format": "numpy_bitmap", "per_class": 20,
                             "files": {"cat": str(data / "numpy_bitmap" / "cat.npy"),
                                       "apple": str(data / "numpy_bitmap" / "apple.npy")}}
    assert (data / "numpy_bitmap" / "apple.npy").exists()


def test_stopping_a_job_stops_its_session(runs_dir):
    # A server that accepts connections and never answers: the download waits on it (30 s timeout).
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        job = jobs.start(runs_dir, "stuck", "download", [jobs.download_step(["cat"], base_url=url), ["classes"]])
        deadline = time.monotonic() + 60
        while not _records(job, "start") and time.monotonic() < deadline:  # the download has started
            time.sleep(0.1)
        assert jobs.job_status(job).state == "running"
        with pytest.raises(RunError, match="still running"):
            jobs.start(runs_dir, "stuck", "download", [["classes"]])
        assert jobs.stop(job)
        job = jobs.wait(job, timeout=30)
    status = jobs.job_status(job)
    assert status.state == "stopped" and job.stopped
    assert len(job.returncodes) == 1  # `classes` never ran
    assert not runs.pid_alive(job.pid) and not jobs.stop(job)


def test_a_job_whose_runner_vanished_is_failed(runs_dir):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    logs = runs_dir / ".logs"
    logs.mkdir()
    common = {"kind": "test", "steps": [["classes"]], "commands": [], "started": time.time()}
    (logs / "killed.json").write_text(json.dumps({"id": "killed", "pid": dead.pid, **common}))
    (logs / "never.json").write_text(json.dumps({"id": "never", **common, "started": time.time() - 3600}))
    (logs / "garbage.json").write_text("{ not json")
    assert {j.id for j in jobs.list_jobs(runs_dir)} == {"killed", "never"}
    killed = jobs.job_status(jobs.read_job(runs_dir, "killed"))
    assert killed.state == "failed" and f"PID {dead.pid}" in killed.message
    never = jobs.job_status(jobs.read_job(runs_dir, "never"))
    assert never.state == "failed" and "never started" in never.message


def test_a_training_job_takes_its_state_from_the_run(runs_dir):
    run_dir = runs.create_run(runs.make_config(name="r1", model="cnn", classes=("cat", "dog"), per_class=10),
                              runs_dir)
    runs.write_status(run_dir, "stopped", message="stopped by SIGTERM; `python -m pipeline resume r1` continues")
    logs = runs_dir / ".logs"
    logs.mkdir()
    record = {"id": "train-r1", "kind": "train", "run": "r1", "runs_dir": str(runs_dir), "steps": [["resume", "r1"]],
              "commands": [], "started": time.time(), "pid": os.getpid(), "step": 0, "returncodes": [143],
              "returncode": 143, "ended": time.time()}
    (logs / "train-r1.json").write_text(json.dumps(record))
    status = jobs.job_status(jobs.read_job(runs_dir, "train-r1"))
    assert status.state == "stopped" and "resume r1" in status.message
    assert status.run_state.state == "stopped" and status.command == "resume"


def test_progress_file_records_are_whole_lines(tmp_path):
    path = tmp_path / "p.jsonl"
    progress = jobs.ProgressFile(path, "download", interval=60)
    progress.start()
    progress.progress("downloading cat", done=1, total=4)
    progress.progress("downloading cat", done=2, total=4)  # within the interval: not written
    progress.progress("downloading cat", done=4, total=4)  # complete: always written
    progress.result({"files": {}})
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"type": "error", "mess')  # a writer killed mid-line
    job = jobs.Job(id="j", kind="test", steps=(), commands=(), started=0.0, record=tmp_path / "j.json",
                   log=tmp_path / "j.log", progress=path)
    records = jobs.progress_records(job)
    assert [r["type"] for r in records] == ["start", "progress", "progress", "result"]
    assert [r["fraction"] for r in records if r["type"] == "progress"] == [0.25, 1.0]
    progress.error("boom")  # the next record starts on a line of its own
    assert jobs.progress_records(job)[-1]["message"] == "boom"
    jobs.ProgressFile(None, "download").error("nowhere")  # without a file: nothing, no error


def test_cli_writes_the_error_record_of_a_user_mistake(tmp_path, capsys):
    from pipeline.cli import main

    path = tmp_path / "p.jsonl"
    assert main(["--progress", str(path), "export", "no-such-run", "--runs-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: no run 'no-such-run'")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["type"] for r in records] == ["start", "error"]
    assert records[1]["command"] == "export" and records[1]["message"].startswith("no run 'no-such-run'")


def test_steps_are_the_cli_arguments():
    from pipeline.cli import build_parser

    parser = build_parser()
    for step in (jobs.download_step(["cat"], "simplified", per_class=5, data="d", base_url="u"),
                 jobs.train_step(name="r", model="cnn", classes=["cat", "dog"], per_class=5, model_options='{"a": 1}'),
                 jobs.resume_step("r", 2, 3), jobs.branch_step("r", "b", 1, from_epoch=2, lr=0.001),
                 jobs.evaluate_step("r", "last", data="d"), jobs.export_step("r", "last", "uint8", False, True)):
        args = parser.parse_args(["--progress", "p.jsonl", *step])
        assert args.command == step[0] and args.progress == "p.jsonl"
    assert jobs.display_command(jobs.export_step("my run")) == \
        "python -m pipeline export 'my run' --checkpoint best --quantize none"
