"""The record of experiments: one folder per run under runs/, the contract with the dashboard.

Used by `python -m pipeline train|resume|branch|runs|import-logs`, by the trainer and by every
dashboard page. This module is the one writer of the run record - it creates, branches, renames and
deletes runs, holds the lock, appends events and writes status and history - and `run_state` is the
one answer to "what state is this run in". The layout is documented in runs/README.md. Every file
is written atomically (pipeline.files), so a `kill -9` at any moment leaves every file readable:

    config.json    frozen RunConfig          classes.json   ordered labels
    history.csv    one row per epoch         events.jsonl   append-only log of what happened
    status.json    live progress             .lock          flock'ed by the trainer; its PID inside
    checkpoints/   full training state       model/         inference-only best weights
    eval.json      after `evaluate`          tb/            TensorBoard event files
    evals/         `evaluate --data DIR`, one file per folder (pipeline.evaluate)
    probes.jsonl   probe-set scores per epoch (pipeline.probes; `append_probe_scores`)
runs/probes/ holds the probe sets themselves (pipeline.probes), never a run.

What goes inside checkpoints is pipeline.checkpoints' business; this module imports no Keras.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import fcntl
import io
import json
import math
import os
import re
import socket
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import QuickDrawError, RunError
from pipeline.files import (
    append_json_line,
    atomic_write_json,
    atomic_write_text,
    json_default,
    read_json,
    read_json_lines,
)

SCHEMA_VERSION = 1
HISTORY_COLUMNS = (
    "epoch", "chunk", "started", "ended", "loss", "accuracy", "top3",
    "val_loss", "val_accuracy", "val_top3", "lr",
)
METRIC_COLUMNS = ("loss", "accuracy", "top3", "val_loss", "val_accuracy", "val_top3", "lr")
# The one set of names shown for the history's metrics (CLI, dashboard, RESULTS).
METRIC_LABELS = {
    "loss": "train loss", "accuracy": "train top-1", "top3": "train top-3", "val_loss": "val loss",
    "val_accuracy": "val top-1", "val_top3": "val top-3", "lr": "learning rate",
}
# What `run_state` answers: created (no epoch trained yet), running (a live trainer holds the lock),
# stopped (by a signal or the Stop button; resumable), crashed (its trainer died), finished (the
# chunks it was asked to train are done), damaged (unreadable).
RUN_STATES = ("created", "running", "stopped", "crashed", "finished", "damaged")
PROBES_FOLDER = "probes"  # runs/probes/: the probe sets (pipeline.probes), not a run
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")


# ---------------------------------------------------------------- configuration
@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run; written once to config.json (resume may extend the plan)."""

    name: str
    model: str
    classes: tuple[str, ...]
    per_class: int
    representation: str = "bitmap28"
    image_size: int = 28
    source: str = "auto"
    data_root: str = "data"
    epochs_per_chunk: int = 10
    batch_size: int = 256
    learning_rate: float = 0.002
    seed: int = 0
    save_every_batches: int | None = None  # None: about every save_every_seconds of training
    save_every_seconds: float = 300.0
    strategy: str = "default"
    model_options: dict = field(default_factory=dict)
    max_epochs: int | None = None
    # ReduceLROnPlateau on val_loss - its state is saved in every checkpoint (the seed's loss).
    lr_factor: float = 0.5
    lr_patience: int = 3
    lr_min: float = 1e-5
    early_stopping_patience: int | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    time_channel: bool = False
    # Runs from before the vectorised bitmap-row split have no such field: they keep blake2b.
    split_scheme: str = "blake2b"
    # The recipe (issue 9). Every field is recorded, so Compare can show what differs between runs.
    # lr schedule: "plateau" (ReduceLROnPlateau above) or "cosine" (per-batch cosine decay to
    # lr_min over max_epochs after a linear warmup of warmup_epochs); both are pure functions of
    # saved state, so a resume continues them exactly.
    schedule: str = "plateau"
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    weight_decay: float = 0.0  # decoupled (AdamW) when above 0
    # Random affine jitter of each training image, drawn from a stateless RNG keyed by
    # (seed, epoch, batch): a resumed epoch replays the same augmentation.
    augment: bool = False
    augment_shift: float = 0.08  # fraction of the side, each direction
    augment_scale: float = 0.12  # relative, each axis independently
    augment_rotate: float = 12.0  # degrees
    # Warm start: the weights this run started from (a run name or a .keras/.h5 file), with a
    # fresh optimizer and schedule - the seed's way of resuming.
    init_from: str | None = None
    # "exact" (everything resumes) or "weights": each chunk reloads only the model weights and starts a
    # fresh optimizer and plateau schedule - how the seed resumed its notebook, kept to measure the cost.
    resume_mode: str = "exact"
    # The arithmetic of training (pipeline.models.PRECISIONS): runs from before the field trained in
    # float32; new runs get "auto"'s choice (mixed_bfloat16 on a CPU with bfloat16 instructions).
    precision: str = "float32"
    # Probe sets (runs/probes/<name>.ndjson) scored at every epoch end into probes.jsonl (pipeline.probes).
    probes: tuple[str, ...] = ()
    parent: dict | None = None  # {"run": name, "epoch": E} for a branch
    imported_from: str | None = None
    created: str = ""
    versions: dict = field(default_factory=dict)
    schema: int = SCHEMA_VERSION

    def to_json(self) -> dict:
        # Field by field rather than dataclasses.asdict, which deep-copies every class name: the
        # dashboard saves 200 configs at once (write_summary_cache) and asdict was most of that time.
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name, value in data.items():
            if isinstance(value, tuple):
                data[name] = list(value)
            elif isinstance(value, dict):
                data[name] = copy.deepcopy(value)
        return data

    @classmethod
    def from_json(cls, data: dict, source: str = "config.json") -> RunConfig:
        if not isinstance(data, dict):
            raise RunError(f"{source} does not hold a JSON object; restore it from a backup or delete the run.")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RunError(
                f"{source} has unknown field(s) {', '.join(unknown)}: written by a newer Quick Draw Lab or edited "
                "by hand. Upgrade, or remove those fields."
            )
        required = [f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [name for name in required if name not in data]
        if missing:
            raise RunError(f"{source} lacks required field(s) {', '.join(missing)}; the run cannot be read.")
        values = dict(data)
        values["classes"] = tuple(values["classes"])
        values["probes"] = tuple(values.get("probes") or ())
        try:
            return cls(**values)
        except TypeError as exc:
            raise RunError(f"{source} is malformed: {exc}") from None


# ---------------------------------------------------------------- names and paths
def validate_run_name(name: str) -> str:
    """A run name is one path component of letters, digits, '.', '_' and '-': never '../x' or '/x'."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or name in (".", "..", PROBES_FOLDER):
        raise RunError(
            f"'{name}' is not a valid run name: use letters, digits, '.', '_' or '-' "
            f"(no path separators, at most 80 characters, not '{PROBES_FOLDER}'), e.g. cnn-56-classes."
        )
    return name


def run_path(runs_dir: Path | str, name: str) -> Path:
    """The folder of run `name`, confined to runs_dir."""
    runs_dir = Path(runs_dir)
    path = runs_dir / validate_run_name(name)
    if path.resolve().parent != runs_dir.resolve():
        raise RunError(f"run '{name}' would live outside {runs_dir}; pick a plain name.")
    return path


def resolve_run(runs_dir: Path | str, name: str) -> Path:
    """An existing run by name (or a path to a run folder inside runs_dir)."""
    runs_dir = Path(runs_dir)
    candidate = Path(name)
    if candidate.parts and len(candidate.parts) > 1 and candidate.exists():
        if candidate.resolve().parent != runs_dir.resolve():
            raise RunError(f"{name} is not inside {runs_dir}; pass --runs-dir {candidate.parent}.")
        name = candidate.name
    path = run_path(runs_dir, name)
    if not (path / "config.json").exists():
        known = ", ".join(sorted(p.name for p in runs_dir.glob("*") if (p / "config.json").exists())[:10])
        raise RunError(f"no run '{name}' in {runs_dir}" + (f" (runs: {known})" if known else "") +
                       "; `python -m pipeline runs` lists them.")
    return path


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime()) + f"{time.time() % 1:.3f}"[1:]


# ---------------------------------------------------------------- config and classes
def write_config(run_dir: Path, config: RunConfig) -> None:
    atomic_write_json(run_dir / "config.json", config.to_json())
    atomic_write_json(run_dir / "classes.json", list(config.classes))


def read_config(run_dir: Path) -> RunConfig:
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise RunError(f"{path} is missing: this folder is not a complete run.")
    return RunConfig.from_json(read_json(path), source=str(path))


def read_classes(run_dir: Path) -> list[str]:
    path = Path(run_dir) / "classes.json"
    if path.exists():
        classes = read_json(path)
        if isinstance(classes, list) and all(isinstance(c, str) for c in classes):
            return classes
        raise RunError(f"{path} must be a JSON list of class names.")
    return list(read_config(run_dir).classes)


# ---------------------------------------------------------------- history
def history_to_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=HISTORY_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(row.get(k)) for k in HISTORY_COLUMNS})
    return out.getvalue()


def _fmt(value):
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return repr(value)
    return value


def write_history(run_dir: Path, rows: list[dict]) -> None:
    atomic_write_text(Path(run_dir) / "history.csv", history_to_csv(rows))


def read_history(run_dir: Path, columns: tuple[str, ...] | None = None) -> list[dict]:
    """Rows of history.csv as dicts of numbers; a line cut short (hand edits, old tools) is dropped
    with a warning, a file that is not a history at all raises RunError. `columns`: read only those
    (cells of the other columns are not checked), for summaries of hundreds of runs."""
    path = Path(run_dir) / "history.csv"
    if not path.exists():
        return []
    with open(path, encoding="utf-8", errors="replace", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header:
            return []
        if "epoch" not in header:
            raise RunError(f"{path} has no 'epoch' column; it is not a Quick Draw Lab history.")
        # One converter per column, chosen once: the Runs page reads hundreds of histories. A row of
        # numbers only (the usual one) takes the fast path: map(float) and zip run in C.
        parsers = [_CELL_PARSERS.get(key, _number_or_text) for key in header]
        wanted = [(index, key, parse) for index, (key, parse) in enumerate(zip(header, parsers, strict=True))
                  if columns is None or key in columns]
        fast = columns is None and all(parse is not _number_or_text for parse in parsers)
        counts = [index for index, parse in enumerate(parsers) if parse is int]
        rows, bad = [], 0
        for cells in reader:
            if not any(cells):
                continue
            if len(cells) != len(header):  # too many or too few cells
                bad += 1
                continue
            try:
                if fast and all(cells):
                    values = list(map(float, cells))
                    for index in counts:
                        values[index] = int(cells[index])
                    rows.append(dict(zip(header, values, strict=True)))
                else:
                    rows.append({key: parse(cells[index]) if cells[index] != "" else None
                                 for index, key, parse in wanted})
            except ValueError:
                bad += 1
    if bad:
        warnings.warn(f"{path}: skipped {bad} damaged line(s)", stacklevel=2)
    return rows


def _number_or_text(cell: str):
    try:
        return float(cell)
    except ValueError:
        return cell


# How history.csv's cells are read: counts as int, times and metrics as float (a cell that is not a
# number makes the row damaged), any other column a number when it is one, else its text.
_CELL_PARSERS = {"epoch": int, "chunk": int, "started": float, "ended": float,
                 **{key: float for key in METRIC_COLUMNS}}


# What a run's summary reads of its history (every column of hundreds of runs made the Runs page slow).
SUMMARY_COLUMNS = ("epoch", "chunk", "val_top3", "val_loss", "val_accuracy")


def best_row(history: list[dict]) -> dict | None:
    """The best epoch of a history - the one definition (the trainer keeps its model): highest val
    top-3, ties broken by the lower val loss, then the earlier epoch."""
    scored = [row for row in history if row.get("val_top3") is not None]
    if not scored:
        return None
    return max(scored, key=lambda row: (row["val_top3"], -(row.get("val_loss") or 0.0), -row["epoch"]))


# ---------------------------------------------------------------- events
def append_event(run_dir: Path, event: str, **fields) -> dict:
    """Append one JSON line to events.jsonl (a single fsync'ed write: a kill leaves at most one partial
    last line, which readers skip)."""
    record = {"time": time.time(), "event": event, **fields}
    append_json_line(Path(run_dir) / "events.jsonl", record)
    return record


def read_events(run_dir: Path) -> list[dict]:
    return [record for record in read_json_lines(Path(run_dir) / "events.jsonl") if "event" in record]


def append_probe_scores(run_dir: Path, record: dict) -> dict:
    """Append one probe set's scores (pipeline.probes.score_record) to probes.jsonl, like an event."""
    record = {"time": time.time(), **record}
    append_json_line(Path(run_dir) / "probes.jsonl", record)
    return record


def set_probes(run_dir: Path, names: tuple[str, ...]) -> RunConfig:
    """`resume --probes SET...`: the probe sets the trainer scores from now on (config.json and a
    `probes` event, so a page can tell when scoring started)."""
    config = dataclasses.replace(read_config(run_dir), probes=tuple(names))
    write_config(run_dir, config)
    append_event(run_dir, "probes", sets=list(names))
    return config


def read_probe_scores(run_dir: Path) -> list[dict]:
    return [record for record in read_json_lines(Path(run_dir) / "probes.jsonl") if "set" in record]


def count_chunks(events: list[dict]) -> int:
    return sum(1 for e in events if e.get("event") == "chunk_start")


def resumptions(events: list[dict]) -> list[dict]:
    """The `chunk_start` events that continue a run (their first epoch is after epoch 1): where Compare
    and Probes mark a resume. A chunk retried from epoch 1 (its first attempt trained nothing) starts
    the run; it does not continue it."""
    return [e for e in events if e.get("event") == "chunk_start" and (e.get("epoch") or 1) > 1]


def open_chunk(events: list[dict]) -> int | None:
    """The chunk that started and never ended (its trainer was killed or its machine died), if any."""
    opened = [e for e in events if e.get("event") == "chunk_start"]
    closed = {e.get("chunk") for e in events if e.get("event") == "chunk_end"}
    if opened and opened[-1].get("chunk") not in closed:
        return opened[-1].get("chunk")
    return None


def unfinished_chunk_target(events: list[dict]) -> int | None:
    """The epoch the last chunk was to reach, when it stopped (or died) before reaching it: a resume
    finishes that chunk first."""
    starts = [e for e in events if e.get("event") == "chunk_start"]
    if not starts or starts[-1].get("target_epoch") is None:
        return None
    last = starts[-1]
    ends = [e for e in events if e.get("event") == "chunk_end" and e.get("chunk") == last.get("chunk")]
    reached = ends[-1].get("epoch", 0) if ends else 0
    return int(last["target_epoch"]) if reached < int(last["target_epoch"]) else None


def planned_epoch(events: list[dict]) -> int | None:
    """The epoch the run's plan ends at: set by each `train`/`resume`/`branch` (`plan` events)."""
    plans = [e.get("until_epoch") for e in events if e.get("event") == "plan"]
    return int(plans[-1]) if plans and plans[-1] is not None else None


# ---------------------------------------------------------------- status
def write_status(run_dir: Path, state: str, **fields) -> dict:
    """status.json: what the trainer is doing now (state, epoch, batch, metrics, ETA); for live views."""
    record = {"state": state, "updated": time.time(), **fields}
    atomic_write_json(Path(run_dir) / "status.json", record)
    return record


def read_status(run_dir: Path) -> dict:
    path = Path(run_dir) / "status.json"
    if not path.exists():
        return {"state": "created"}
    try:
        data = read_json(path)
    except RunError:
        return {"state": "damaged", "message": f"{path.name} unreadable"}
    return data if isinstance(data, dict) else {"state": "damaged", "message": "status.json is not an object"}


def pid_alive(pid) -> bool:
    try:
        pid = int(pid)
    except (TypeError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (killed child not yet reaped) is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


@dataclass(frozen=True)
class RunState:
    """What state a run is in (one of RUN_STATES), why, and what status.json last said."""

    state: str
    message: str = ""
    pid: int | None = None
    complete: bool = False  # no further epoch to train (max_epochs reached or early stopping)
    status: dict = field(default_factory=dict)


def run_state(run_dir: Path) -> RunState:
    """The one definition of a run's state, used by the CLI, the trainer and the dashboard: status.json
    corrected by reality (a 'running' run whose trainer is gone, or a chunk that started and never
    ended without a live trainer, is 'crashed')."""
    run_dir = Path(run_dir)
    try:
        read_config(run_dir)
    except RunError as exc:
        return RunState("damaged", str(exc))
    return state_from_record(run_dir, read_status(run_dir), lambda: read_events(run_dir))


def state_from_record(run_dir: Path, status: dict, events) -> RunState:
    """`run_state` of a run whose config reads, from its status.json and events (a list, or a function
    returning it, called only when needed): `summarize_run` has read them already."""
    recorded = status.get("state", "created")
    holder = read_lock(run_dir)
    if holder is not None:
        return RunState("running", f"trained by PID {holder['pid']}", pid=holder["pid"], status=status)
    if recorded == "damaged":
        return RunState("damaged", status.get("message", "status.json unreadable"), status=status)
    unfinished = open_chunk(events() if callable(events) else events)
    if recorded == "running" or recorded == "crashed" or unfinished is not None:
        pid = status.get("pid")
        message = status.get("message") if recorded == "crashed" else None
        return RunState("crashed", message or f"trainer PID {pid} is gone without saying goodbye (killed or "
                        f"crashed) in chunk {unfinished or status.get('chunk')}; resume continues from its last save",
                        pid=pid, status=status)
    if recorded in ("stopped", "interrupted"):  # "interrupted": the name before issue 10
        return RunState("stopped", status.get("message", "stopped; resume continues"), status=status)
    if recorded == "finished":
        return RunState("finished", status.get("message", ""), complete=bool(status.get("run_complete")),
                        status=status)
    return RunState("created", "no epoch trained yet", status=status)


# ---------------------------------------------------------------- lock: one trainer per run
def read_lock(run_dir: Path) -> dict | None:
    """The live trainer holding the run ({pid, host, since}), or None. The kernel's flock decides who
    may train; the PID inside the file is for display and for this check."""
    path = Path(run_dir) / ".lock"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError:
        return None
    if isinstance(data, dict) and pid_alive(data.get("pid")):
        return data
    return None


def training_refusal(run_dir: Path, pid) -> RunError:
    """The error for a second trainer of a run that PID `pid` is training."""
    return RunError(f"run '{Path(run_dir).name}' is being trained by PID {pid}; wait for it, or stop it "
                    f"(`kill {pid}` saves and stops at the end of the current batch).")


class RunLock:
    """`fcntl.flock` on runs/<id>/.lock, held for as long as the trainer lives: the kernel lets exactly
    one process hold it, and frees it when that process dies (no stale lock to take over by hand).
    The holder writes its PID into the file so others can say who is training."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"
        self.run_dir = Path(run_dir)
        self.took_over_from: int | None = None  # a dead trainer's PID left in the file (it was killed)
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            # The holder writes its PID right after taking the lock: wait a moment for it.
            holder = None
            for _ in range(50):
                holder = read_lock(self.run_dir)
                if holder:
                    break
                time.sleep(0.02)
            pid = (holder or {}).get("pid", "unknown")
            raise training_refusal(self.run_dir, pid) from None
        previous = os.read(fd, 4096).decode("utf-8", errors="replace")
        try:
            left = json.loads(previous).get("pid") if previous.strip() else None
        except (json.JSONDecodeError, AttributeError):
            left = None
        self.took_over_from = left if left not in (None, os.getpid()) else None
        payload = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()})
        os.ftruncate(fd, 0)
        os.pwrite(fd, payload.encode("utf-8"), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)  # nobody holds it: readers see an empty file, not our (live) PID
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


# ---------------------------------------------------------------- creating and branching
def library_versions() -> dict:
    """The versions a run was created with, from the installed packages' metadata: creating a run's
    config imports no TensorFlow (the CLI checks every argument before TensorFlow loads)."""
    from importlib import metadata

    def version(*distributions: str) -> str | None:
        for distribution in distributions:
            try:
                return metadata.version(distribution)
            except metadata.PackageNotFoundError:
                continue
        return None

    return {"python": sys.version.split()[0],
            "tensorflow": version("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tf-nightly"),
            "keras": version("keras"), "numpy": version("numpy")}


def make_config(*, name: str, model: str, classes: tuple[str, ...], per_class: int,
                representation: str = "bitmap28", image_size: int | None = None, source: str = "auto",
                data_root: str | None = None, epochs_per_chunk: int = 10, batch_size: int = 256,
                learning_rate: float | None = None, seed: int = 0, save_every_batches: int | None = None,
                strategy: str = "default", model_options: dict | None = None, max_epochs: int | None = None,
                precision: str = "auto", **extra) -> RunConfig:
    """A validated RunConfig with the model's defaults filled in; `precision` "auto" is resolved for this
    machine (pipeline.models.resolve_precision) and recorded."""
    from pipeline import recipe
    from pipeline.formats import data_root as resolve_data_root
    from pipeline.models import model_spec, resolve_precision

    validate_run_name(name)
    spec = model_spec(model)
    if len(set(classes)) != len(classes):
        raise QuickDrawError("the class list has duplicates; name each class once.")
    if len(classes) < 2:
        raise QuickDrawError("train needs at least 2 classes.")
    if representation == "bitmap28":
        size = 28
    elif representation == "strokes":
        size = int(image_size or 64)
        if not 28 <= size <= 256:
            raise QuickDrawError(f"--image-size must be between 28 and 256, got {size}.")
    else:
        raise QuickDrawError(f"unknown representation '{representation}'; use bitmap28 or strokes.")
    config = RunConfig(
        name=name, model=model, classes=tuple(classes), per_class=int(per_class),
        representation=representation, image_size=size, source=source,
        data_root=str(resolve_data_root(data_root)), epochs_per_chunk=int(epochs_per_chunk),
        batch_size=int(batch_size), learning_rate=float(learning_rate or spec.learning_rate), seed=int(seed),
        save_every_batches=save_every_batches, strategy=strategy, model_options=dict(model_options or {}),
        max_epochs=max_epochs, precision=resolve_precision(precision, model), created=now_iso(),
        versions=library_versions(), **{"split_scheme": "rows64", **extra},
    )
    recipe.validate(config)
    return config


def create_run(config: RunConfig, runs_dir: Path | str) -> Path:
    """Create runs/<name>/ with config.json, classes.json, an empty history and a `created` event."""
    run_dir = run_path(runs_dir, config.name)
    if (run_dir / "config.json").exists():
        raise RunError(f"run '{config.name}' already exists in {runs_dir}; `python -m pipeline resume "
                       f"{config.name}` continues it, or pick another --name.")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_config(run_dir, config)
    write_history(run_dir, [])
    append_event(run_dir, "created", model=config.model, classes=len(config.classes))
    write_status(run_dir, "created")
    return run_dir


# ---------------------------------------------------------------- retrying a run that never trained
def ensure_recreatable(run_dir: Path) -> None:
    """Refuse (RunError naming the command that works) to replace an existing run, unless it never
    trained an epoch: state `created`, or `crashed` in its first chunk, with no history row, no
    checkpoint and no model. Such a run (a `train` that failed on its data, say) is retried by the
    same `train` command (`recreate_run`). Reads files only: no TensorFlow."""
    run_dir = Path(run_dir)
    name = run_dir.name
    state = run_state(run_dir)
    if state.state == "running":
        raise RunError(f"run '{name}' is being trained ({state.message}); wait for it, or pick another --name.")
    if state.state == "damaged":
        raise RunError(f"run '{name}' already exists in {run_dir.parent} but cannot be read ({state.message}); "
                       f"delete the folder {run_dir} or pick another --name.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trained = len(read_history(run_dir))
    checkpoints = run_dir / "checkpoints"
    saved = checkpoints.is_dir() and any(checkpoints.glob("*.npz"))
    if state.state in ("created", "crashed") and not trained and not saved \
            and not (run_dir / "model" / "model.keras").exists():
        return
    what = f"{trained} trained epoch(s)" if trained else "a saved training state"
    raise RunError(f"run '{name}' already exists in {run_dir.parent} with {what} ({state.state}); "
                   f"`python -m pipeline resume {name}` continues it, or pick another --name.")


def recreate_run(config: RunConfig, runs_dir: Path | str) -> Path:
    """Replace the config of a run that never trained an epoch (`ensure_recreatable`) and start its
    record again: the previous events move to events.<n>.replaced.jsonl, and events.jsonl starts with
    a `recreated` event (the previous state and where its events went)."""
    run_dir = run_path(runs_dir, config.name)
    ensure_recreatable(run_dir)
    previous = run_state(run_dir).state
    events = run_dir / "events.jsonl"
    kept = None
    if events.exists():
        n = 1
        while (run_dir / f"events.{n}.replaced.jsonl").exists():
            n += 1
        kept = run_dir / f"events.{n}.replaced.jsonl"
        os.replace(events, kept)
    write_config(run_dir, config)
    write_history(run_dir, [])
    append_event(run_dir, "recreated", model=config.model, classes=len(config.classes), previous_state=previous,
                 previous_events=kept.name if kept else None)
    write_status(run_dir, "created")
    return run_dir


def branch_run(parent_dir: Path, name: str, from_epoch: int | None = None, learning_rate: float | None = None,
               epochs_per_chunk: int | None = None) -> Path:
    """A new run starting from an epoch-end checkpoint of another, remembering its parent."""
    from pipeline.checkpoints import Checkpoint, epoch_checkpoint_path, epoch_checkpoints

    parent_dir = Path(parent_dir)
    parent = read_config(parent_dir)
    saved = epoch_checkpoints(parent_dir)
    if not saved:
        raise RunError(f"run '{parent_dir.name}' has no epoch checkpoint to branch from; train it first.")
    epoch = from_epoch or max(saved)
    if epoch not in saved:
        raise RunError(f"run '{parent_dir.name}' has no checkpoint at epoch {epoch}; saved epochs: "
                       f"{', '.join(map(str, saved))}.")
    checkpoint = Checkpoint.load(saved[epoch])
    config = dataclasses.replace(
        parent, name=validate_run_name(name), parent={"run": parent_dir.name, "epoch": epoch},
        learning_rate=learning_rate or parent.learning_rate,
        epochs_per_chunk=epochs_per_chunk or parent.epochs_per_chunk,
        created=now_iso(), versions=library_versions(),
    )
    run_dir = create_run(config, parent_dir.parent)
    checkpoint.state = checkpoint.state.branched(epoch, learning_rate)
    checkpoint.save(epoch_checkpoint_path(run_dir, epoch))
    write_history(run_dir, checkpoint.state.history)
    append_event(run_dir, "branch", parent=parent_dir.name, epoch=epoch, lr=checkpoint.state.schedule["lr"])
    return run_dir


def refuse_retraining_a_record(run_dir: Path) -> None:
    """A run with recorded epochs but no checkpoint (a cloned run: checkpoints stay out of git; an
    imported seed log) must not silently start again from epoch 1 and overwrite its history."""
    recorded = read_history(run_dir)
    if recorded:
        raise RunError(
            f"run '{run_dir.name}' has {len(recorded)} epoch(s) in history.csv but no training checkpoint in "
            f"{run_dir / 'checkpoints'} (checkpoints stay out of git, and imported logs have none): it can be "
            "evaluated, predicted with and exported, not trained further. Nothing was changed; to train the "
            "same settings again, start a new run with `python -m pipeline train --name NEW ...`.")


# ---------------------------------------------------------------- listing
@dataclass
class RunSummary:
    name: str
    path: Path
    model: str | None = None
    representation: str | None = None
    classes: int = 0
    chunks: int = 0
    epochs: int = 0
    best_val_top3: float | None = None
    best_val_accuracy: float | None = None
    best_epoch: int | None = None
    test_top1: float | None = None
    test_top3: float | None = None
    status: str = "created"
    parent: str | None = None  # the run it branched from (config.json's parent.run)
    parent_epoch: int | None = None  # the parent's epoch it branched from
    init_from: str | None = None  # a warm start's source: a run name or a model file
    updated: float | None = None
    damaged: str | None = None
    imported: bool = False
    checkpoints: int = 0  # training checkpoints on disk: 0 for a cloned or imported record (not trainable)
    model_epoch: int | None = None  # the epoch model/ holds (model/meta.json)


def recorded_update_time(events: list[dict], status: dict, evaluation: dict | None) -> float | None:
    """The last time the pipeline recorded something about the run (events, status, evaluation).

    Why not file mtimes: a fresh clone stamps every file with the checkout time, which would make
    the order of runs (and the dashboard's "most recent" defaults) arbitrary."""
    times = [e.get("time") for e in events[-1:]] + [status.get("updated"), (evaluation or {}).get("evaluated_at")]
    numbers = [float(t) for t in times if isinstance(t, int | float) and not isinstance(t, bool) and t > 0]
    return max(numbers, default=None)


def summarize_run(run_dir: Path) -> RunSummary:
    """One row for `python -m pipeline runs` and the dashboard's Runs page; never raises: a damaged
    run comes back with status 'damaged' and the reason."""
    return summarize_run_with_config(run_dir)[0]


def summarize_run_with_config(run_dir: Path) -> tuple[RunSummary, RunConfig | None]:
    """`summarize_run` and the run's config (None when unreadable), each file read once: the dashboard
    keeps both per run (seed groups and the family tree need the config, the table the summary)."""
    run_dir = Path(run_dir)
    summary = RunSummary(name=run_dir.name, path=run_dir)
    config = None
    try:
        config = read_config(run_dir)
        summary.model = config.model
        summary.representation = config.representation
        summary.classes = len(config.classes)
        summary.parent = (config.parent or {}).get("run")
        summary.parent_epoch = (config.parent or {}).get("epoch")
        summary.init_from = config.init_from
        summary.imported = bool(config.imported_from)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            history = read_history(run_dir, SUMMARY_COLUMNS)
        summary.epochs = len(history)
        events = read_events(run_dir)
        summary.chunks = count_chunks(events) or len({row.get("chunk") for row in history})
        folder = run_dir / "checkpoints"
        summary.checkpoints = sum(1 for _ in folder.glob("*.npz")) if folder.is_dir() else 0
        best = best_row(history)
        if best:
            summary.best_val_top3 = best["val_top3"]
            summary.best_val_accuracy = best.get("val_accuracy")
            summary.best_epoch = best.get("epoch")
        eval_path = run_dir / "eval.json"
        ev = read_json(eval_path) if eval_path.exists() else None
        if ev is not None and ev.get("data", "test split") == "test split":  # older folder evaluations wrote here
            summary.test_top1, summary.test_top3 = ev.get("top1"), ev.get("top3")
        summary.model_epoch = model_epoch(run_dir)
        state = state_from_record(run_dir, read_status(run_dir), events)
        summary.status = state.state
        summary.updated = recorded_update_time(events, state.status, ev)
    except (RunError, OSError, ValueError, KeyError, TypeError) as exc:
        summary.status = "damaged"
        summary.damaged = str(exc)
    if summary.updated is None:  # nothing recorded a time (a damaged or hand-made run): its newest file's
        try:
            summary.updated = max((p.stat().st_mtime for p in run_dir.iterdir() if p.is_file()), default=None)
        except OSError:
            pass
    return summary, config


# The dashboard's summaries of every run, kept across its restarts (a dot-folder: list_runs skips it).
SUMMARY_CACHE = Path(".cache") / "summaries.json"
SUMMARY_CACHE_VERSION = 1


def read_summary_cache(runs_dir: Path | str) -> dict[str, tuple[tuple, dict, RunConfig | None]]:
    """{run folder: (signature, summary dict, RunConfig or None)} as `write_summary_cache` left them;
    {} when absent, unreadable or written for other summary fields (an older Quick Draw Lab). Each
    entry is only as good as its signature: the caller compares it with the run's files first."""
    path = Path(runs_dir) / SUMMARY_CACHE
    try:
        data = read_json(path) if path.exists() else None
    except (RunError, OSError):
        return {}
    fields = sorted(f.name for f in dataclasses.fields(RunSummary))
    if not isinstance(data, dict) or data.get("version") != SUMMARY_CACHE_VERSION or data.get("fields") != fields:
        return {}
    entries = {}
    for folder, entry in (data.get("runs") or {}).items():
        try:
            config = RunConfig.from_json(entry["config"]) if entry.get("config") is not None else None
            entries[folder] = (tuple(entry["signature"]), dict(entry["summary"]), config)
        except (RunError, KeyError, TypeError, ValueError):
            continue  # a config of another schema: that run is summarised again
    return entries


def write_summary_cache(runs_dir: Path | str, entries: dict[str, tuple[tuple, dict, RunConfig | None]]) -> None:
    """Keep the entries of the runs in `runs_dir` for the next dashboard process (atomic, like every file
    here; a folder that cannot be written only costs that process a first read of every run)."""
    runs_dir = Path(runs_dir)
    prefix = str(runs_dir) + os.sep
    payload = {"version": SUMMARY_CACHE_VERSION, "fields": sorted(f.name for f in dataclasses.fields(RunSummary)),
               "runs": {folder: {"signature": list(signature), "summary": summary,
                                 "config": config.to_json() if config is not None else None}
                        for folder, (signature, summary, config) in entries.items() if folder.startswith(prefix)}}
    try:
        (runs_dir / SUMMARY_CACHE).parent.mkdir(exist_ok=True)
        # Compact: read by machines only, and indenting 200 class lists doubled the write's time.
        atomic_write_text(runs_dir / SUMMARY_CACHE, json.dumps(payload, separators=(",", ":"), default=json_default))
    except (RunError, OSError):
        pass


def model_epoch(run_dir: Path) -> int | None:
    """The epoch of the run's saved best model (model/meta.json, written with it); None when there is
    no model or its meta.json cannot be read (the run stays readable: only this epoch is unknown)."""
    meta_path = Path(run_dir) / "model" / "meta.json"
    try:
        meta = read_json(meta_path) if meta_path.exists() else None
    except RunError:
        meta = None
    epoch = meta.get("epoch") if isinstance(meta, dict) else None
    return int(epoch) if isinstance(epoch, int | float) and not isinstance(epoch, bool) else None


def list_runs(runs_dir: Path | str) -> list[RunSummary]:
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    rows = [summarize_run(p) for p in sorted(runs_dir.iterdir()) if p.is_dir() and not p.name.startswith(".")
            and _NAME_RE.match(p.name) and p.name != PROBES_FOLDER]
    return sorted(rows, key=lambda r: r.updated or 0, reverse=True)


def rename_run(runs_dir: Path, old: str, new: str) -> Path:
    source = resolve_run(runs_dir, old)
    target = run_path(runs_dir, new)
    if target.exists():
        raise RunError(f"a run named '{new}' already exists; pick another name.")
    lock = read_lock(source)
    if lock:
        raise RunError(f"run '{old}' is training (PID {lock.get('pid')}); stop it before renaming.")
    os.rename(source, target)
    config = read_config(target)
    write_config(target, dataclasses.replace(config, name=new))
    append_event(target, "renamed", old=old, new=new)
    _follow_renamed_parent(runs_dir, source, target)
    return target


def _follow_renamed_parent(runs_dir: Path, source: Path, target: Path) -> None:
    """Point the renamed run's branches (config.parent.run) and warm starts (config.init_from, a run
    name or a path inside the run) at its new name, so the family tree keeps them under it."""
    old_prefix = str(source.resolve())
    for child in sorted(Path(runs_dir).iterdir()):
        if child == target or not (child / "config.json").is_file():
            continue
        try:
            config = read_config(child)
        except (OSError, ValueError, TypeError, KeyError):
            continue  # a damaged run keeps what it has; the tree shows it as a root with a note
        changes = {}
        if (config.parent or {}).get("run") == source.name:
            changes["parent"] = {**config.parent, "run": target.name}
        if config.init_from == source.name:
            changes["init_from"] = target.name
        elif config.init_from and str(Path(config.init_from).resolve()).startswith(old_prefix + os.sep):
            relative = Path(config.init_from).resolve().relative_to(old_prefix)
            changes["init_from"] = str(target / relative)
        if changes:
            write_config(child, dataclasses.replace(config, **changes))
            append_event(child, "parent_renamed", old=source.name, new=target.name)


def delete_run(runs_dir: Path, name: str) -> None:
    import shutil

    path = resolve_run(runs_dir, name)
    lock = read_lock(path)
    if lock:
        raise RunError(f"run '{name}' is training (PID {lock.get('pid')}); stop it before deleting.")
    # Move aside first so a half-finished delete never looks like a run.
    trash = path.with_name(f".deleting-{name}-{os.getpid()}")
    os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


# ---------------------------------------------------------------- seed groups and what differs
# The fields that say which run a config is rather than how it trains: they differ between any two
# runs, so seed groups ignore them and `config_differences` shows them only with all fields.
IDENTITY_FIELDS = ("name", "created", "versions", "schema", "imported_from", "probes")  # probes: watched, not trained on
SEED_FIELD = "seed"
# Fields whose dict values are shown as one dotted row per key (model_options.alpha, parent.run).
DOTTED_FIELDS = ("model_options", "parent", "versions")


@dataclass(frozen=True)
class SeedGroup:
    """Runs whose configs differ only in `seed` (and IDENTITY_FIELDS): members in seed order."""

    label: str
    members: tuple[str, ...]
    seeds: tuple[int, ...]


def _named_configs(configs) -> dict[str, RunConfig]:
    """{run name: RunConfig} from a mapping, or an iterable of RunConfigs or run folders (a folder
    whose config cannot be read is left out)."""
    if isinstance(configs, dict):
        return dict(configs)
    named = {}
    for item in configs:
        if isinstance(item, RunConfig):
            named[item.name] = item
            continue
        try:
            named[Path(item).name] = read_config(Path(item))
        except (RunError, OSError):
            continue
    return named


def training_identity(config: RunConfig) -> str:
    """Everything that decides how a run trains except its seed, as one comparable string."""
    # The fields as they are (json.dumps writes the classes tuple as a list, like to_json), without
    # to_json's deep copy: the Runs page computes this for every run.
    data = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
            if f.name not in IDENTITY_FIELDS and f.name != SEED_FIELD}
    return json.dumps(data, sort_keys=True, default=str)


def seed_groups(configs) -> list[SeedGroup]:
    """Groups of 2+ runs whose configs differ only in `seed` (IDENTITY_FIELDS always differ), by label.

    `configs`: {name: RunConfig}, or RunConfigs, or run folders. The label is the members' shared name
    prefix (else the first member's name) with the count: "cnn-56 (2 seeds)"."""
    by_identity: dict[str, list[tuple[str, RunConfig]]] = {}
    for name, config in _named_configs(configs).items():
        by_identity.setdefault(training_identity(config), []).append((name, config))
    groups = []
    for members in by_identity.values():
        if len(members) < 2:
            continue
        members.sort(key=lambda item: (item[1].seed, item[0]))
        names = tuple(name for name, _ in members)
        seeds = tuple(config.seed for _, config in members)
        prefix = os.path.commonprefix(list(names)).rstrip("-_.") or names[0]
        what = "seeds" if len(set(seeds)) == len(seeds) else "runs"
        groups.append(SeedGroup(label=f"{prefix} ({len(names)} {what})", members=names, seeds=seeds))
    return sorted(groups, key=lambda group: group.label)


def mean_sd(values) -> tuple[float | None, float | None, int]:
    """(mean, sample standard deviation, count) of the numbers among `values` (None skipped); the sd
    is None below two numbers. Two passes of math.fsum rather than statistics.stdev, which computes with
    exact fractions: milliseconds per group of a hundred runs, on every rerun of the Runs page."""
    numbers = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)
               and not math.isnan(v)]
    if not numbers:
        return None, None, 0
    mean = math.fsum(numbers) / len(numbers)
    if len(numbers) < 2:
        return mean, None, 1
    return mean, math.sqrt(math.fsum((x - mean) ** 2 for x in numbers) / (len(numbers) - 1)), len(numbers)


def seed_group_metrics(group: SeedGroup, summaries: dict) -> dict[str, tuple[float | None, float | None, int]]:
    """mean_sd of the members' test top-1, test top-3 (eval.json) and best val top-3; `summaries`:
    {name: RunSummary or its dict}."""
    def value(name: str, key: str):
        summary = summaries.get(name)
        return summary.get(key) if isinstance(summary, dict) else getattr(summary, key, None)

    return {key: mean_sd([value(name, key) for name in group.members])
            for key in ("test_top1", "test_top3", "best_val_top3")}


def describe_classes(classes: tuple[str, ...], reference: tuple[str, ...]) -> str:
    """A class list in a few words, against the first run's: "56 classes", "57 classes, differs: +3 -2"."""
    text = f"{len(classes)} classes"
    if tuple(classes) == tuple(reference):
        return text
    added, removed = len(set(classes) - set(reference)), len(set(reference) - set(classes))
    if not added and not removed:
        return f"{text}, other order"
    return f"{text}, differs: +{added} -{removed}"


def _config_fields(config: RunConfig, dotted_keys: dict[str, list[str]]) -> dict:
    data = config.to_json()
    flat = {}
    for key, value in data.items():
        if key in DOTTED_FIELDS and dotted_keys.get(key):
            for sub in dotted_keys[key]:
                flat[f"{key}.{sub}"] = (value or {}).get(sub)
        else:
            flat[key] = value
    return flat


def config_differences(configs, all_fields: bool = False) -> list[dict]:
    """The configuration fields that differ between runs: one row per field, {"field": name, run: value,
    ...}, in RunConfig order. model_options, parent and versions become dotted fields (model_options.alpha);
    the class list is one row described by `describe_classes` against the first run's. IDENTITY_FIELDS
    (names, dates, versions) only with `all_fields`, which shows every field, differing or not."""
    named = _named_configs(configs)
    if not named:
        return []
    dotted_keys = {key: sorted({sub for c in named.values() for sub in (getattr(c, key) or {})})
                   for key in DOTTED_FIELDS}
    flats = {name: _config_fields(config, dotted_keys) for name, config in named.items()}
    reference = next(iter(named.values())).classes
    rows = []
    for field_name in next(iter(flats.values())):
        if not all_fields and field_name.split(".")[0] in IDENTITY_FIELDS:
            continue
        values = {name: flat.get(field_name) for name, flat in flats.items()}
        if field_name == "classes":
            differs = len({tuple(v) for v in values.values()}) > 1
            values = {name: describe_classes(tuple(v), reference) for name, v in values.items()}
        else:
            differs = len({json.dumps(v, sort_keys=True, default=str) for v in values.values()}) > 1
        if differs or all_fields:
            rows.append({"field": field_name, **values})
    return rows


# ---------------------------------------------------------------- lineage: the family tree of runs
@dataclass(frozen=True)
class LineageNode:
    """One run in the family tree, in tree order (`lineage_forest`): `depth` 0 is a root. `parent` is
    the run it came from when that run is listed (None for a root), `kind` how it came from it
    ("branch": `python -m pipeline branch`, a copy of the parent's checkpoint at `epoch`; "warm start":
    `train --init-from`, the source's best weights with a fresh optimizer), `note` why a run that came
    from somewhere is shown as a root (its parent is missing, a cycle, an unreadable config, a model
    file from outside runs/)."""

    name: str
    depth: int = 0
    parent: str | None = None
    kind: str | None = None
    epoch: int | None = None
    note: str = ""
    children: tuple[str, ...] = ()


def _field(record, key: str):
    return record.get(key) if isinstance(record, dict) else getattr(record, key, None)


def run_origin(record, names) -> tuple[str | None, str | None, int | None, str]:
    """(source run, kind, epoch, note) of one run summary (RunSummary or its dict); `names`: the runs
    listed. A warm start from `<runs>/<run>/model/model.keras` counts as a warm start from <run>."""
    if _field(record, "parent"):
        epoch = _field(record, "parent_epoch")
        return str(_field(record, "parent")), "branch", int(epoch) if isinstance(epoch, int) else None, ""
    source = _field(record, "init_from")
    if not source:
        return None, None, None, ""
    path = Path(str(source))
    if path.suffix in (".keras", ".h5"):
        if len(path.parts) >= 3 and path.parts[-2] == "model" and path.parts[-3] in names:
            return path.parts[-3], "warm start", None, ""
        return None, "warm start", None, f"warm start from the model file {source}"
    return str(source), "warm start", None, ""


def lineage_forest(records) -> list[LineageNode]:
    """The runs' family tree as a list in depth-first order: each root (a run trained from scratch, or
    one whose origin cannot be placed) followed by its descendants; roots by name, siblings branches
    first (by epoch) then warm starts.

    `records`: run summaries (`list_runs`' RunSummary, or their dicts) with name, parent,
    parent_epoch, init_from and damaged. Never raises: a run whose parent is not listed (deleted or
    renamed) is a root with a note saying so, a damaged run is a root with its reason, and runs whose
    parents form a cycle (configs edited by hand) are roots with the cycle named."""
    records = {str(_field(r, "name")): r for r in records}
    recorded, origins, notes = {}, {}, {}  # recorded: every origin; origins: those placed in the tree
    for name, record in records.items():
        if _field(record, "damaged"):
            notes[name] = f"unreadable: {_field(record, 'damaged')}"
            continue
        source, kind, epoch, note = recorded[name] = run_origin(record, records)
        if note:
            notes[name] = note
        if source is None:
            continue
        if source not in records:
            notes[name] = (f"{kind} of '{source}'" + (f" at epoch {epoch}" if epoch else "") +
                           ", which is not in this folder (deleted or renamed)")
            continue
        origins[name] = source
    for name in list(origins):  # a parent chain that comes back to where it started: cut every link in it
        if name not in origins:
            continue
        chain, current = [name], origins[name]
        while current in origins and current not in chain:
            chain.append(current)
            current = origins[current]
        if current == name:
            for member in chain:
                notes[member] = "cycle in the recorded parents: " + " -> ".join([*chain, name])
                origins.pop(member, None)
    children: dict[str, list[str]] = {}
    for name, source in origins.items():
        children.setdefault(source, []).append(name)
    nodes: list[LineageNode] = []
    stack = [(name, 0) for name in sorted((n for n in records if n not in origins), reverse=True)]
    while stack:  # depth first, without recursion (a long chain of branches is no problem)
        name, depth = stack.pop()
        _, kind, epoch, _ = recorded.get(name, (None, None, None, ""))
        # Branches by the epoch they start from, then warm starts, each by name.
        kids = tuple(sorted(children.get(name, []), key=lambda n: (recorded[n][1] != "branch", recorded[n][2] or 0, n)))
        nodes.append(LineageNode(name=name, depth=depth, parent=origins.get(name), kind=kind, epoch=epoch,
                                 note=notes.get(name, ""), children=kids))
        stack += [(child, depth + 1) for child in reversed(kids)]
    return nodes
