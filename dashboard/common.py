"""Shared helpers of the dashboard pages (`streamlit run dashboard`): where runs live, cached readers,
the model cache and the smoothing function.

Pages only call pipeline functions: reading runs goes through pipeline.runs, predictions through
pipeline.predict, and anything that trains, evaluates, downloads or exports is a background job of
pipeline.jobs (`python -m pipeline ...` processes whose record, progress and result are files under
runs/.logs/), so a page reload or a closed tab loses nothing. Pages read a job's state, progress and
result from those files only; its log is shown as it is, never parsed.
"""

from __future__ import annotations

import functools
import os
import stat
from pathlib import Path

import streamlit as st

from pipeline import runs as runs_mod
from pipeline.errors import RunError

REPO = Path(__file__).resolve().parents[1]
# run_signature's paths: the run folder itself (config, history, status, eval: atomic writes), the two
# files written in place, and the model folder (model/meta.json).
RUN_WATCHED = ("", os.sep + "events.jsonl", os.sep + ".lock", os.sep + "model")
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
    """What a run summary depends on, as modification times (0: absent): the cache key of its row.

    Four stats, not one per file: every file of the run record except two is written atomically (a
    temporary file renamed into the folder, pipeline/files.py), which changes the folder's own mtime;
    the two written in place are the appended events.jsonl and the lock (its holder's PID), and
    model/meta.json sits in a folder of its own. On the Runs page with hundreds of runs these checks
    are what each rerun pays per run. os.stat on joined strings: pathlib's joins cost more than stats."""
    folder = os.fspath(run_dir)
    times = []
    for name in RUN_WATCHED:
        try:
            times.append(os.stat(folder + name).st_mtime_ns)
        except OSError:
            times.append(0)
    return tuple(times)


@st.cache_resource(show_spinner=False)
def _summary_store() -> dict:
    """{run path: (signature, summary, config)} shared by all sessions. A plain dict rather than
    st.cache_data: cache_data pickles every hit, which made the Runs page scale badly with hundreds of runs."""
    return {}


@st.cache_resource(show_spinner=False)
def _summary_disk() -> dict:
    """{"loaded": runs folders whose saved summaries are in the store, "changed": folders with new ones}."""
    return {"loaded": set(), "changed": set()}


def _load_saved_summaries(directory: Path) -> None:
    """Once per process and runs folder: the summaries the previous dashboard process saved
    (pipeline.runs.read_summary_cache), so a restart does not read every run's history again."""
    disk = _summary_disk()
    if str(directory) in disk["loaded"]:
        return
    disk["loaded"].add(str(directory))
    store = _summary_store()
    for path, entry in runs_mod.read_summary_cache(directory).items():
        store.setdefault(path, entry)


def _record_cached(path: str, signature: tuple, store: dict | None = None) -> tuple[dict, object]:
    """(summary dict, RunConfig or None) of a run, read again only when one of its files changed.
    `store`: _summary_store(), fetched once by callers that look up hundreds of runs."""
    store = _summary_store() if store is None else store
    hit = store.get(path)
    if hit is not None and hit[0] == signature:
        return hit[1], hit[2]
    summary, config = runs_mod.summarize_run_with_config(Path(path))
    row = dict(vars(summary))  # a shallow copy: dataclasses.asdict deep-copies every field, for nothing
    row["path"] = path
    store[path] = (signature, row, config)
    _summary_disk()["changed"].add(os.path.dirname(path))
    return row, config


@functools.lru_cache(maxsize=4096)
def _is_run_name(name: str) -> bool:
    """validate_run_name's answer, remembered: each rerun of the Runs page lists every folder again."""
    try:
        runs_mod.validate_run_name(name)
    except RunError:
        return False
    return True


def run_folders(directory: Path | None = None) -> list[Path]:
    """The run folders of the runs directory (valid run names, no dot-folders), by name; nothing read.
    Listed again only when the directory's own mtime changed (a run was added, removed or renamed): on
    the Runs page with hundreds of runs the listing was a cost every rerun paid per run."""
    directory = directory or runs_dir()
    try:
        found = os.stat(directory)
    except OSError:
        return []
    if not stat.S_ISDIR(found.st_mode):
        return []

    def listing() -> list[Path]:
        names = []
        with os.scandir(directory) as entries:  # the entries' types come with the listing: no stat per run
            for entry in entries:
                if entry.name.startswith(".") or not entry.is_dir():
                    continue
                if _is_run_name(entry.name):
                    names.append(entry.name)
        return [directory / name for name in sorted(names)]

    return list(derived(f"run folders of {directory}", found.st_mtime_ns, listing))  # a copy: callers may edit it


def run_summary(path: Path, store: dict | None = None) -> dict:
    """One run's summary dict (pipeline.runs.RunSummary fields), re-read only when its files changed."""
    row = dict(_record_cached(str(path), run_signature(path), store)[0])  # a copy: callers may edit it
    if row["status"] == "running":
        # Liveness of the trainer's PID is not in any mtime: check it on every run of the page.
        row["status"] = runs_mod.run_state(path).state
    return row


def run_summaries(directory: Path | None = None) -> list[dict]:
    """One dict per run (pipeline.runs.RunSummary fields), newest first; damaged runs included. The
    summaries are also saved under the runs folder for the next dashboard process."""
    directory = directory or runs_dir()
    _load_saved_summaries(directory)
    folders = run_folders(directory)
    store = _summary_store()
    rows = [run_summary(path, store) for path in folders]
    changed = _summary_disk()["changed"]
    if str(directory) in changed:
        changed.discard(str(directory))
        runs_mod.write_summary_cache(directory, {str(p): store[str(p)] for p in folders if str(p) in store})
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


def configs_of(rows: list[dict]) -> dict:
    """{name: RunConfig} of summary rows just listed by `run_summaries` (their files were checked then:
    no second look at every run's files), for the runs whose config reads."""
    store = _summary_store()
    configs = {}
    for row in rows:
        hit = store.get(row["path"])
        config = hit[2] if hit is not None else run_configs({row["name"]: Path(row["path"])}).get(row["name"])
        if config is not None:
            configs[row["name"]] = config
    return configs


@st.cache_resource(show_spinner=False)
def _derived_store() -> dict:
    """{what: (key, value)} of `derived`, shared by all sessions."""
    return {}


def rows_key(rows: list[dict]) -> tuple:
    """What summary rows just listed by `run_summaries` show, as their runs' file signatures and
    states: equal keys mean equal rows (a memo key for what a page derives from hundreds of rows)."""
    store = _summary_store()
    return tuple((row["name"], row["status"], (store.get(row["path"]) or (None,))[0]) for row in rows)


def derived(what: str, key, compute):
    """`compute()`, computed again only when `key` (usually built on `rows_key`) differs from the last
    one seen for `what`: what a page derives from hundreds of runs on every rerun adds up."""
    store = _derived_store()
    hit = store.get(what)
    if hit is None or hit[0] != key:
        hit = store[what] = (key, compute())
    return hit[1]


def seed_groups_of(rows: list[dict]) -> list:
    """pipeline.runs.seed_groups of summary rows just listed, computed again only when one of their runs'
    files changed (it compares every run's whole config)."""
    return derived("seed_groups", rows_key(rows), lambda: runs_mod.seed_groups(configs_of(rows)))


def run_configs(run_dirs: dict[str, Path]) -> dict:
    """{name: RunConfig} of the runs whose config.json reads, re-read only when their files change
    (kept with each run's summary)."""
    configs = {}
    for name, run_dir in run_dirs.items():
        config = _record_cached(str(run_dir), run_signature(Path(run_dir)))[1]
        if config is not None:
            configs[name] = config
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
