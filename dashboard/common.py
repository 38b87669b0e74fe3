"""Shared helpers of the dashboard pages (`streamlit run dashboard`): where runs live, cached readers,
the model cache and the smoothing function.

Pages only call pipeline functions: reading runs goes through pipeline.runs, predictions through
pipeline.predict, and anything that trains, evaluates, downloads or exports is a background job of
pipeline.jobs (`python -m pipeline ...` processes whose record, progress and result are files under
runs/.logs/), so a page reload or a closed tab loses nothing. Pages read a job's state, progress and
result from those files only; its log is shown as it is, never parsed.
"""

from __future__ import annotations

import os
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


def data_root() -> Path:
    from pipeline.formats import data_root as resolve

    root = Path(resolve())
    return root if root.is_absolute() else (REPO / root).resolve()


def web_dir() -> Path:
    """The web page's folder exports go to: $QUICKDRAW_WEB, else the repository's web/."""
    from pipeline.export import web_root

    return web_root()


def rerun_when_changed(key: str, value) -> None:
    """Inside a fragment: rerun the whole page when `value` (e.g. which jobs are running) differs from
    what the previous tick saw, so parts outside the fragment (a Resume list, a table) catch up."""
    seen = st.session_state.get(f"_seen_{key}")
    st.session_state[f"_seen_{key}"] = value
    if seen is not None and seen != value:
        st.rerun(scope="app")


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
            row["status"] = runs_mod.run_state(path).state
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
def _config_cached(path: str, signature: tuple):
    return runs_mod.read_config(Path(path))


def run_configs(run_dirs: dict[str, Path]) -> dict:
    """{name: RunConfig} of the runs whose config.json reads, re-read only when their files change."""
    configs = {}
    for name, run_dir in run_dirs.items():
        try:
            configs[name] = _config_cached(str(run_dir), run_signature(Path(run_dir)))
        except (RunError, OSError):
            continue
    return configs


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
    points are not dragged towards 0) - which is pandas' `ewm(alpha=1 - weight, adjust=True,
    ignore_na=True).mean()`. None/NaN values stay None and do not move the average."""
    import pandas as pd

    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight must be in [0, 1), got {weight}")
    series = pd.Series([float("nan") if v is None else float(v) for v in values], dtype="float64")
    smoothed = series.ewm(alpha=1.0 - weight, adjust=True, ignore_na=True).mean()
    return [None if pd.isna(raw) else float(value) for raw, value in zip(series, smoothed, strict=True)]


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
