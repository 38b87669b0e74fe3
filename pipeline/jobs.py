"""Background pipeline jobs: what the dashboard starts, lists, stops and watches.

A job is one or more `python -m pipeline ...` commands run one after another by
`python -m pipeline run-job JOBFILE` (`run_job` below), in a session of its own
(`start_new_session`), so it outlives the Streamlit script, the browser tab and a dashboard
restart. Everything about a job is in files under `<runs>/.logs/`, and readers use only these:

    <job>.json             the job record, written atomically: id, kind, run, runs_dir, steps (the
                           `python -m pipeline` arguments), commands (the full command lines), cwd,
                           started, log, progress; the runner adds pid, step and returncodes, and at
                           the end returncode, ended and stopped
    <job>.progress.jsonl   JSON lines written by the commands (`python -m pipeline --progress FILE
                           ...`, see ProgressFile): start, progress, result and error records
    <job>.log              the commands' stdout and stderr, for people: shown as is, never parsed

A job's state (JOB_STATES) comes from its record - a return code, or a runner PID still alive -
and, for training jobs, from the run's own state (`pipeline.runs.run_state`); why a job failed
comes from the progress file's error record, the run's state, or the return code.

Layer: just under cli and the dashboard. Imports runs and files only: the commands it starts load
TensorFlow in their own processes, this module never does.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline import runs
from pipeline.errors import RunError
from pipeline.files import append_json_line, atomic_write_json, read_json, read_json_lines

JOB_STATES = ("running", "done", "failed", "stopped")
RECORD_TYPES = ("start", "progress", "result", "error")
REPO = Path(__file__).resolve().parents[1]
STOP_CODES = (130, 143, -int(signal.SIGINT), -int(signal.SIGTERM))  # stopped by SIGINT/SIGTERM
START_GRACE_SECONDS = 30.0  # a record without a runner PID is "starting" this long, then "failed"


# ---------------------------------------------------------------- the progress file
class ProgressFile:
    """The JSON-lines progress file of one command (`python -m pipeline --progress FILE COMMAND`);
    does nothing when `path` is None. Each record is one line appended, flushed and fsynced
    (pipeline.files.append_json_line), so a reader never sees half a record; readers skip a partial
    last line. Records (all with `type`, `time` and `command`):

        {"type": "start", "pid": P}
        {"type": "progress", "stage": "downloading cat", "done": 12, "total": 40, "fraction": 0.3}
        {"type": "result", "result": {...}}        what the command produced (e.g. ExportResult)
        {"type": "error", "message": "..."}        why it failed (the CLI's `error: ...` line)

    progress() writes at most one record every `interval` seconds, unless forced or complete."""

    def __init__(self, path: Path | str | None, command: str | None, interval: float = 0.5):
        self.path = Path(path) if path else None
        self.command = command
        self.interval = interval
        self._last = 0.0

    def _write(self, kind: str, **fields) -> None:
        if self.path is not None:
            append_json_line(self.path, {"type": kind, "time": time.time(), "command": self.command, **fields})

    def start(self) -> None:
        self._write("start", pid=os.getpid())

    def progress(self, stage: str, done: float | None = None, total: float | None = None,
                 fraction: float | None = None, force: bool = False) -> None:
        if self.path is None:
            return
        if fraction is None and done is not None and total:
            fraction = done / total
        now = time.monotonic()
        if not force and (fraction is None or fraction < 1.0) and now - self._last < self.interval:
            return
        self._last = now
        self._write("progress", stage=stage, done=done, total=total,
                    fraction=None if fraction is None else max(0.0, min(1.0, float(fraction))))

    def result(self, result: dict) -> None:
        self._write("result", result=result)

    def error(self, message: str) -> None:
        self._write("error", message=str(message))


# ---------------------------------------------------------------- what to run
def download_step(classes: list[str], fmt: str = "numpy_bitmap", per_class: int | None = None,
                  data: Path | str | None = None, base_url: str | None = None) -> list[str]:
    """`python -m pipeline download` arguments (a job step)."""
    step = ["download", *classes, "--format", fmt]
    step += ["--per-class", str(per_class)] if per_class else []
    step += ["--data", str(data)] if data is not None else []
    return step + (["--base-url", str(base_url)] if base_url else [])


def train_step(*, name: str, model: str, classes: list[str], per_class: int, representation: str = "bitmap28",
               epochs_per_chunk: int = 10, chunks: int = 1, batch_size: int = 256, data: Path | str | None = None,
               model_options: str = "", probes: list[str] | tuple = ()) -> list[str]:
    """`python -m pipeline train` arguments (`probes`: probe sets scored at each epoch end)."""
    step = ["train", "--name", name, "--model", model, "--classes", *classes, "--per-class", str(per_class),
            "--representation", representation, "--epochs-per-chunk", str(epochs_per_chunk), "--chunks", str(chunks),
            "--batch-size", str(batch_size)]
    step += ["--data", str(data)] if data is not None else []
    step += ["--probes", *probes] if probes else []
    return step + (["--model-options", model_options.strip()] if model_options.strip() else [])


def resume_step(run: str, chunks: int | None = None, epochs_per_chunk: int | None = None) -> list[str]:
    """`python -m pipeline resume` arguments (chunks None or 0: to the end of the run's plan;
    epochs_per_chunk None or 0: as configured)."""
    return (["resume", run] + (["--chunks", str(chunks)] if chunks else [])
            + (["--epochs-per-chunk", str(epochs_per_chunk)] if epochs_per_chunk else []))


def branch_step(run: str, name: str, chunks: int = 0, from_epoch: int | None = None,
                lr: float | None = None) -> list[str]:
    """`python -m pipeline branch` arguments (from_epoch None or 0: the latest; lr None or 0: keep)."""
    step = ["branch", run, "--name", name, "--chunks", str(chunks)]
    step += ["--from-epoch", str(from_epoch)] if from_epoch else []
    return step + (["--lr", repr(float(lr))] if lr else [])


def evaluate_step(run: str, checkpoint: str = "best", data: Path | str | None = None) -> list[str]:
    """`python -m pipeline evaluate` arguments (no data: the run's test split)."""
    return ["evaluate", run, "--checkpoint", checkpoint] + (["--data", str(data)] if data is not None else [])


def export_step(run: str, checkpoint: str = "best", quantize: str = "none", verify: bool = True,
                make_default: bool = False, web: Path | str | None = None) -> list[str]:
    """`python -m pipeline export` arguments."""
    step = ["export", run, "--checkpoint", checkpoint, "--quantize", quantize]
    step += ["--web", str(web)] if web is not None else []
    return step + ([] if verify else ["--no-verify"]) + (["--make-default"] if make_default else [])


def pipeline_command(step: list[str], progress: Path | str | None = None) -> list[str]:
    """The full command line of a step with this interpreter, writing `progress` when given."""
    return [sys.executable, "-m", "pipeline", *(["--progress", str(progress)] if progress else []), *step]


def display_command(step: list[str]) -> str:
    """A step as one would type it: `python -m pipeline export RUN ...`."""
    return shlex.join(["python", "-m", "pipeline", *step])


# ---------------------------------------------------------------- records
def logs_dir(runs_dir: Path | str) -> Path:
    """Where job files live; list_runs skips dot-folders, so it is never taken for a run."""
    return Path(runs_dir) / ".logs"


@dataclass(frozen=True)
class Job:
    """A job record (<runs>/.logs/<id>.json) as read back."""

    id: str
    kind: str  # what the page calls it: "train", "evaluate", "export", ...
    steps: tuple[tuple[str, ...], ...]  # `python -m pipeline` arguments of each command
    commands: tuple[tuple[str, ...], ...]  # the full command lines run
    started: float
    record: Path  # the <id>.json file
    log: Path  # stdout and stderr of the commands, for display only
    progress: Path  # the JSON-lines progress file
    run: str | None = None  # the run it is about
    runs_dir: str | None = None
    cwd: str | None = None
    pid: int | None = None  # the runner's (its session's) PID, once it has started
    step: int | None = None  # index of the command running (or last run)
    returncodes: tuple[int, ...] = ()  # of the commands that have ended, in order
    returncode: int | None = None  # of the job, when it has ended
    ended: float | None = None
    stopped: bool = False  # the runner was asked to stop (SIGTERM/SIGINT)

    @classmethod
    def from_json(cls, data: dict, record: Path) -> Job:
        known = {f.name for f in dataclasses.fields(cls)} - {"record", "log", "progress", "steps", "commands",
                                                             "returncodes"}
        values = {k: v for k, v in data.items() if k in known}
        job_id = str(data["id"])
        return cls(record=record, steps=tuple(tuple(str(a) for a in c) for c in data.get("steps", [])),
                   commands=tuple(tuple(str(a) for a in c) for c in data.get("commands", [])),
                   returncodes=tuple(int(c) for c in data.get("returncodes") or ()),
                   log=Path(data.get("log") or record.with_name(f"{job_id}.log")),
                   progress=Path(data.get("progress") or record.with_name(f"{job_id}.progress.jsonl")),
                   **{**values, "id": job_id, "started": float(data.get("started") or 0.0)})

    def command_name(self, index: int | None = None) -> str | None:
        """The pipeline command of a step ("download", "train", ...): the current one by default."""
        index = self.step if index is None else index
        if index is None or not 0 <= index < len(self.steps) or not self.steps[index]:
            return None
        return self.steps[index][0]


@dataclass(frozen=True)
class JobStatus:
    """Where a job stands, from its files only."""

    state: str  # one of JOB_STATES
    message: str = ""  # why it failed or stopped ("" when done or running)
    command: str | None = None  # the pipeline command running, or the last one that ran
    stage: str = ""  # what the running command last said it was doing
    fraction: float | None = None  # of the running command, when it knows
    result: dict | None = None  # the last result record's content
    run_state: runs.RunState | None = None  # training jobs: their run's state


def read_job(runs_dir: Path | str, job_id: str) -> Job | None:
    """The job's record, None when there is none (or it is unreadable)."""
    path = logs_dir(runs_dir) / f"{job_id}.json"
    try:
        data = read_json(path)
        return Job.from_json(data, path) if isinstance(data, dict) else None
    except (OSError, RunError, KeyError, TypeError, ValueError):
        return None


def list_jobs(runs_dir: Path | str, kind: str | None = None) -> list[Job]:
    """Every job of `kind` (all kinds by default), the newest first."""
    directory = logs_dir(runs_dir)
    if not directory.is_dir():
        return []
    jobs = [job for path in directory.glob("*.json") if (job := read_job(runs_dir, path.stem)) is not None]
    return sorted((j for j in jobs if kind is None or j.kind == kind), key=lambda j: j.started, reverse=True)


def progress_records(job: Job) -> list[dict]:
    """The progress file's records, in order (a partial last line is skipped)."""
    return [r for r in read_json_lines(job.progress) if r.get("type") in RECORD_TYPES]


def _run_state(job: Job) -> runs.RunState | None:
    if job.kind != "train" or not job.run or not job.runs_dir:
        return None
    try:
        run_dir = runs.run_path(job.runs_dir, job.run)
    except RunError:
        return None
    return runs.run_state(run_dir) if (run_dir / "config.json").exists() else None


def job_status(job: Job) -> JobStatus:
    """running, done, failed or stopped, with the message, progress and result of the job."""
    records = progress_records(job)
    errors = [r for r in records if r["type"] == "error"]
    results = [r for r in records if r["type"] == "result"]
    starts = [i for i, r in enumerate(records) if r["type"] == "start"]
    current = [r for r in records[starts[-1] if starts else 0:] if r["type"] == "progress"]
    info = {"command": job.command_name(), "result": results[-1].get("result") if results else None,
            "run_state": _run_state(job)}
    run_state = info["run_state"]
    if job.returncode is None:
        if job.pid is None and time.time() - job.started < START_GRACE_SECONDS:
            return JobStatus("running", stage="starting", **info)
        if job.pid is not None and runs.pid_alive(job.pid):
            last = current[-1] if current else {}
            return JobStatus("running", stage=str(last.get("stage") or ""), fraction=last.get("fraction"), **info)
        gone = ("the job never started (see its log)" if job.pid is None else
                f"the job's process (PID {job.pid}) ended without recording how: killed, or the machine restarted")
        return JobStatus("failed", errors[-1]["message"] if errors else gone, **info)
    if job.stopped or job.returncode in STOP_CODES:
        return JobStatus("stopped", run_state.message if run_state and run_state.state == "stopped" else "stopped",
                         **info)
    if job.returncode == 0:
        return JobStatus("done", **info)
    if errors:
        message = errors[-1]["message"]
    elif run_state is not None and run_state.state == "crashed":
        message = run_state.message
    else:
        message = f"`{info['command'] or 'the command'}` exited with status {job.returncode}; see the log"
    return JobStatus("failed", message, **info)


def log_tail(job: Job, lines: int = 12, tail_bytes: int = 20000) -> str:
    """The end of the job's log as people read it (a progress bar's redraws show as its last state)."""
    try:
        with open(job.log, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - tail_bytes))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    shown = [line.split("\r")[-1] for line in text.strip().split("\n")]
    return "\n".join(shown[-lines:])


# ---------------------------------------------------------------- start and stop
def start(runs_dir: Path | str, job_id: str, kind: str, steps: list[list[str]], *, run: str | None = None,
          cwd: Path | str | None = None) -> Job:
    """Run `python -m pipeline STEP` for each step, one after another, in the background; each step
    writes the job's progress file. Refuses a job id that is still running (RunError)."""
    runs.validate_run_name(job_id)
    if not steps:
        raise RunError(f"job '{job_id}' has no command to run.")
    runs_dir = Path(runs_dir).absolute()
    existing = read_job(runs_dir, job_id)
    if existing is not None and job_status(existing).state == "running":
        raise RunError(f"job '{job_id}' is still running (PID {existing.pid}); wait for it or stop it.")
    directory = logs_dir(runs_dir)
    directory.mkdir(parents=True, exist_ok=True)
    record_path = directory / f"{job_id}.json"
    log_path, progress_path = directory / f"{job_id}.log", directory / f"{job_id}.progress.jsonl"
    progress_path.unlink(missing_ok=True)
    steps = [[str(arg) for arg in step] for step in steps]
    record = {"id": job_id, "kind": kind, "run": run, "runs_dir": str(runs_dir), "steps": steps,
              "commands": [pipeline_command(step, progress_path) for step in steps],
              "cwd": str(Path(cwd or REPO).absolute()), "started": time.time(), "log": str(log_path),
              "progress": str(progress_path)}
    atomic_write_json(record_path, record)
    env = dict(os.environ, PYTHONUNBUFFERED="1", QUICKDRAW_RUNS=str(runs_dir))
    with open(log_path, "wb") as log:
        process = subprocess.Popen(pipeline_command(["run-job", str(record_path)]), cwd=record["cwd"], env=env,
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    # The runner writes its PID (the same: no shell in between) into the record itself; from now on
    # it is the record's only writer.
    return Job.from_json({**record, "pid": process.pid}, record_path)


def wait(job: Job, timeout: float = 600.0, interval: float = 0.2) -> Job:
    """Re-read the job's record until it is no longer running (or `timeout` seconds passed); for
    scripts and tests - the dashboard never blocks on a job."""
    deadline = time.monotonic() + timeout
    while True:
        job = read_job(Path(job.record).parent.parent, job.id) or job
        if job_status(job).state != "running" or time.monotonic() > deadline:
            return job
        time.sleep(interval)


def stop(job: Job) -> bool:
    """SIGTERM to the whole job (its session): a trainer saves at the end of its batch and stops, the
    runner starts no further command. False when it was not running."""
    if job.returncode is not None or not runs.pid_alive(job.pid):
        return False
    try:
        os.killpg(int(job.pid), signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def stop_run(run_dir: Path) -> int:
    """SIGTERM to the trainer holding the run (saves at the end of the batch); returns its PID."""
    state = runs.run_state(run_dir)
    if state.state != "running" or not state.pid:
        raise RunError(f"run '{Path(run_dir).name}' has no live trainer to stop ({state.state}).")
    os.kill(int(state.pid), signal.SIGTERM)
    return int(state.pid)


# ---------------------------------------------------------------- the runner
def run_job(record_path: Path | str) -> int:
    """Run a job's commands one after another (`python -m pipeline run-job JOBFILE`), recording the
    runner's PID, the step and each return code in the record; stops at the first failure, or
    after the running command when SIGTERM/SIGINT arrives (the command gets the signal too: it is
    in the same session)."""
    record_path = Path(record_path)
    record = read_json(record_path)
    stop_signal: list[int] = []

    def handle(signum, _frame):
        stop_signal.append(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handle)
    record.update(pid=os.getpid(), returncodes=[])
    atomic_write_json(record_path, record)
    code = 0
    for index, command in enumerate(record["commands"]):
        if stop_signal:
            code = 128 + stop_signal[0]
            break
        record["step"] = index
        atomic_write_json(record_path, record)
        steps = record.get("steps") or []
        print("$ " + (display_command(steps[index]) if index < len(steps) else shlex.join(command)), flush=True)
        try:
            code = subprocess.Popen(command, cwd=record.get("cwd")).wait()
        except OSError as exc:
            print(f"could not start the command: {exc}", flush=True)
            code = 127
        record["returncodes"].append(code)
        if code != 0:
            print(f"command exited with status {code}", flush=True)
            break
    record.update(returncode=code, ended=time.time(), stopped=bool(stop_signal))
    atomic_write_json(record_path, record)
    return code


__all__ = ["JOB_STATES", "Job", "JobStatus", "ProgressFile", "branch_step", "display_command", "download_step",
           "evaluate_step", "export_step", "job_status", "list_jobs", "log_tail", "logs_dir", "pipeline_command",
           "progress_records", "read_job", "resume_step", "run_job", "start", "stop", "stop_run", "train_step", "wait"]
