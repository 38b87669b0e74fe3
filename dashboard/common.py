"""Shared helpers of the dashboard pages (`streamlit run dashboard`): where runs live, cached readers,
the model cache, the smoothing function and background jobs.

Pages only call pipeline functions: reading runs goes through pipeline.runs, predictions through
pipeline.predict, and anything that trains, evaluates, downloads or exports runs as a background
`python -m pipeline ...` process whose log and state live in files under runs/.logs/, so a page
reload or a closed tab loses nothing.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import streamlit as st

from pipeline import runs as runs_mod
from pipeline.errors import RunError

REPO = Path(__file__).resolve().parents[1]
RUN_FILES = ("config.json", "history.csv", "events.jsonl", "status.json", "eval.json", ".lock")
SELECTED_KEY = "selected_runs"  # the runs picked on the Runs page, used by Compare (not a widget key)


# ---------------------------------------------------------------- locations
def runs_dir() -> Path:
    """$QUICKDRAW_RUNS, else runs/ of the repository (wherever streamlit was started from)."""
    explicit = os.environ.get("QUICKDRAW_RUNS")
    if explicit:
        path = Path(explicit).expanduser()
        return path if path.is_absolute() else (Path.cwd() / path).resolve()
    return REPO / "runs"


def logs_dir() -> Path:
    """Logs and state of background jobs; list_runs skips dot-folders, so it is never taken for a run."""
    return runs_dir() / ".logs"


def data_root() -> Path:
    from pipeline.formats import data_root as resolve

    root = Path(resolve())
    return root if root.is_absolute() else (REPO / root).resolve()


def run_dir_of(name: str) -> Path:
    """The folder of an existing run named in the UI; '../x' or '/x' raise RunError."""
    return runs_mod.resolve_run(runs_dir(), runs_mod.validate_run_name(name))


# ---------------------------------------------------------------- cached readers
def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def run_signature(run_dir: Path) -> tuple:
    """Modification times of the files a run summary depends on: the cache key of its row."""
    return tuple(_mtime(run_dir / name) for name in RUN_FILES)


@st.cache_resource(show_spinner=False)
def _summary_store() -> dict:
    """{run path: (signature, summary)} shared by all sessions. A plain dict rather than st.cache_data:
    cache_data pickles every hit, which made the Runs page scale badly with hundreds of runs."""
    return {}


def _summary_cached(path: str, signature: tuple) -> dict:
    store = _summary_store()
    hit = store.get(path)
    if hit is not None and hit[0] == signature:
        return hit[1]
    summary = asdict(runs_mod.summarize_run(Path(path)))
    summary["path"] = path
    store[path] = (signature, summary)
    return summary


def run_summaries(directory: Path | None = None) -> list[dict]:
    """One dict per run (pipeline.runs.RunSummary fields), newest first; damaged runs included."""
    directory = directory or runs_dir()
    if not directory.is_dir():
        return []
    rows = []
    for path in directory.iterdir():
        if not path.is_dir() or path.name.startswith("."):
            continue
        try:
            runs_mod.validate_run_name(path.name)
        except RunError:
            continue
        row = dict(_summary_cached(str(path), run_signature(path)))  # a copy: callers may edit it
        if row["status"] == "running":
            # Liveness of the trainer's PID is not in any mtime: check it on every run of the page.
            row["status"] = runs_mod.effective_status(path).get("state", "running")
        rows.append(row)
    return sorted(rows, key=lambda r: r.get("updated") or 0, reverse=True)


@st.cache_data(show_spinner=False, max_entries=1000)
def _history_cached(path: str, mtime: float) -> list[dict]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return runs_mod.read_history(Path(path))


def history(run_dir: Path) -> list[dict]:
    """history.csv rows, re-read only when the file changes ([] when unreadable)."""
    try:
        return _history_cached(str(run_dir), _mtime(run_dir / "history.csv"))
    except (RunError, OSError):
        return []


@st.cache_data(show_spinner=False, max_entries=1000)
def _events_cached(path: str, mtime: float) -> list[dict]:
    return runs_mod.read_events(Path(path))


def events(run_dir: Path) -> list[dict]:
    try:
        return _events_cached(str(run_dir), _mtime(run_dir / "events.jsonl"))
    except OSError:
        return []


@st.cache_data(show_spinner=False, max_entries=200)
def _json_cached(path: str, mtime: float):
    return runs_mod.read_json(Path(path))


def read_json_file(path: Path):
    """A JSON file through the cache (eval.json is megabytes with its confusion matrix); None if absent."""
    if not path.exists():
        return None
    return _json_cached(str(path), _mtime(path))


@st.cache_resource(show_spinner="Loading model...", max_entries=6)
def _predictor_cached(path: str, model_mtime: float):
    from pipeline.predict import Predictor

    predictor = Predictor.from_run(Path(path), checkpoint="best")
    # One prediction of a small drawing now pays the one-off start-up (TensorFlow's first call, the
    # renderer's), so the latency the Draw page shows for the first real drawing is steady-state.
    predictor.predict([[[0, 40, 80], [0, 60, 10]]], top=1)
    return predictor


def load_predictor(run_dir: Path):
    """Predictor.from_run, kept in memory until the run's model/model.keras changes."""
    return _predictor_cached(str(run_dir), _mtime(run_dir / "model" / "model.keras"))


def runs_with_model(summaries: list[dict]) -> list[dict]:
    return [r for r in summaries if (Path(r["path"]) / "model" / "model.keras").exists() and r["status"] != "damaged"]


# ---------------------------------------------------------------- smoothing
def ema_smooth(values, weight: float) -> list[float | None]:
    """TensorBoard's smoothing: an exponential moving average debiased by 1 - weight**n (so the first
    points are not dragged towards 0). None/NaN values stay None and do not move the average."""
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight must be in [0, 1), got {weight}")
    out: list[float | None] = []
    last, steps = 0.0, 0
    for value in values:
        if value is None or value != value:  # NaN
            out.append(None)
            continue
        steps += 1
        last = last * weight + (1.0 - weight) * float(value)
        debias = 1.0 - weight ** steps if weight > 0 else 1.0
        out.append(last / debias)
    return out


# ---------------------------------------------------------------- background jobs
# A job is a list of `python -m pipeline ...` commands run one after another by a tiny Python
# program (no shell), in its own session so it outlives the Streamlit script and the tab.
# <logs>/<job>.json holds the commands, the PID and, when done, the return code.
_CHAIN_PROGRAM = r"""
import json, os, subprocess, sys, time
spec_path = sys.argv[1]
with open(spec_path) as fh:
    spec = json.load(fh)
code = 0
for command in spec["commands"]:
    print("$ " + " ".join(command), flush=True)
    code = subprocess.call(command, cwd=spec.get("cwd"))
    if code != 0:
        print(f"command exited with status {code}", flush=True)
        break
spec["returncode"], spec["ended"] = code, time.time()
tmp = spec_path + ".tmp"
with open(tmp, "w") as fh:
    json.dump(spec, fh)
os.replace(tmp, spec_path)
"""


def pipeline_command(*args: str) -> list[str]:
    """`python -m pipeline ARGS --runs-dir RUNS` with this interpreter."""
    return [sys.executable, "-m", "pipeline", *args]


def start_job(job_id: str, kind: str, commands: list[list[str]], run: str | None = None) -> dict:
    """Start commands in the background; refuses a job id that is still running."""
    runs_mod.validate_run_name(job_id)
    existing = read_job(job_id)
    if existing and job_state(existing) == "running":
        raise RunError(f"job '{job_id}' is still running (PID {existing['pid']}); wait for it or stop it.")
    directory = logs_dir()
    directory.mkdir(parents=True, exist_ok=True)
    spec_path, log_path = directory / f"{job_id}.json", directory / f"{job_id}.log"
    spec = {"id": job_id, "kind": kind, "run": run, "commands": commands, "cwd": str(REPO),
            "started": time.time(), "log": str(log_path)}
    runs_mod.atomic_write_json(spec_path, spec)
    env = dict(os.environ, PYTHONUNBUFFERED="1", QUICKDRAW_RUNS=str(runs_dir()))
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-c", _CHAIN_PROGRAM, str(spec_path)], cwd=REPO, env=env,
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    spec = dict(spec, pid=process.pid)
    # The chain program rewrites the file when it finishes; merge so the PID survives either order.
    current = read_job(job_id) or {}
    runs_mod.atomic_write_json(spec_path, {**spec, **{k: v for k, v in current.items() if k in ("returncode", "ended")}})
    return read_job(job_id) or spec


def read_job(job_id: str) -> dict | None:
    path = logs_dir() / f"{job_id}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def list_jobs(kind: str | None = None) -> list[dict]:
    directory = logs_dir()
    if not directory.is_dir():
        return []
    jobs = []
    for path in directory.glob("*.json"):
        job = read_job(path.stem)
        if job and (kind is None or job.get("kind") == kind):
            jobs.append(job)
    return sorted(jobs, key=lambda j: j.get("started") or 0, reverse=True)


def job_state(job: dict) -> str:
    """running, done (return code 0), failed (non-zero) or killed (gone without a return code)."""
    if "returncode" in job:
        return "done" if job["returncode"] == 0 else "failed"
    if "pid" not in job:
        return "running"  # between Popen and the PID being recorded
    return "running" if runs_mod.pid_alive(job["pid"]) else "killed"


def job_log(job: dict, tail_bytes: int = 20000) -> str:
    path = Path(job.get("log") or logs_dir() / f"{job['id']}.log")
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - tail_bytes))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    # tqdm redraws with carriage returns: keep the last state of each line.
    lines = (line.split("\r")[-1] for line in text.split("\n"))
    return "\n".join(line for line in lines if not _TF_NATIVE_LOG.match(line))


# TensorFlow's native start-up chatter (absl/C++ logging: CUDA plugins it cannot find on a CPU machine,
# oneDNN notices). No environment variable silences all of it, and it buries the lines that matter.
_TF_NATIVE_LOG = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] \S+\.cc:\d+\]|[IWE]\d{4} [\d:.]+\s+\d+ \S+\.cc:\d+\]"
    r"|WARNING: All log messages before absl::InitializeLog\(\)|To enable the following instructions: )")


def log_errors(text: str) -> list[str]:
    """The `error: ...` lines the CLI prints for user mistakes (e.g. a download URL that failed)."""
    return [line.strip() for line in text.splitlines() if line.strip().startswith("error:")]


def stop_job(job: dict) -> None:
    """SIGTERM to the whole job (its session): a trainer saves at the end of the batch and stops."""
    pid = job.get("pid")
    if pid and runs_mod.pid_alive(pid):
        try:
            os.killpg(int(pid), signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            os.kill(int(pid), signal.SIGTERM)


def stop_run(run_dir: Path) -> int:
    """SIGTERM to the trainer holding the run's lock (or named in status.json); returns the PID."""
    lock = runs_mod.read_lock(run_dir) or {}
    pid = lock.get("pid") or runs_mod.read_status(run_dir).get("pid")
    if not runs_mod.pid_alive(pid):
        raise RunError(f"run '{run_dir.name}' has no live trainer to stop (PID {pid}).")
    os.kill(int(pid), signal.SIGTERM)
    return int(pid)


def last_json_object(text: str):
    """The last top-level JSON object printed by a CLI command (export prints one, indented)."""
    decoder = json.JSONDecoder()
    found = None
    index = text.find("{")
    while index != -1:
        try:
            value, end = decoder.raw_decode(text, index)
        except json.JSONDecodeError:
            index = text.find("{", index + 1)
            continue
        if isinstance(value, dict):
            found = value
        index = text.find("{", end)
    return found


def format_seconds(seconds) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def flash(message: str, kind: str = "success") -> None:
    """A message shown once after the st.rerun that follows an action."""
    st.session_state["_flash"] = (kind, message)


def show_flash() -> None:
    item = st.session_state.pop("_flash", None)
    if item:
        getattr(st, item[0])(item[1])
