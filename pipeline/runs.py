"""The record of experiments: one folder per run under runs/, the contract with the dashboard.

Used by `python -m pipeline train|resume|branch|runs|import-logs` and by every dashboard page.
The layout is documented in runs/README.md. Everything here is plain files written atomically
(temp file, then `os.replace`), so a `kill -9` at any moment leaves every file readable:

    config.json    frozen RunConfig          classes.json   ordered labels
    history.csv    one row per epoch         events.jsonl   append-only log of what happened
    status.json    live progress             .lock          PID of the trainer holding the run
    checkpoints/   full training state       model/         inference-only best weights
    eval.json      after `evaluate`          tb/            TensorBoard event files

This module knows nothing about Keras; train.py owns what goes inside checkpoints.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import re
import socket
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import RunError

SCHEMA_VERSION = 1
HISTORY_COLUMNS = (
    "epoch", "chunk", "started", "ended", "loss", "accuracy", "top3",
    "val_loss", "val_accuracy", "val_top3", "lr",
)
METRIC_COLUMNS = ("loss", "accuracy", "top3", "val_loss", "val_accuracy", "val_top3", "lr")
STATES = ("created", "running", "finished", "interrupted", "crashed", "damaged")
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
    parent: dict | None = None  # {"run": name, "epoch": E} for a branch
    imported_from: str | None = None
    created: str = ""
    versions: dict = field(default_factory=dict)
    schema: int = SCHEMA_VERSION

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["classes"] = list(self.classes)
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
        try:
            return cls(**values)
        except TypeError as exc:
            raise RunError(f"{source} is malformed: {exc}") from None


# ---------------------------------------------------------------- names and paths
def validate_run_name(name: str) -> str:
    """A run name is one path component of letters, digits, '.', '_' and '-': never '../x' or '/x'."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or name in (".", ".."):
        raise RunError(
            f"'{name}' is not a valid run name: use letters, digits, '.', '_' or '-' "
            "(no path separators, at most 80 characters), e.g. cnn-56-classes."
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


# ---------------------------------------------------------------- atomic files
def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temp file in the same folder, fsync, then os.replace: readers see old or new."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_json(path: Path):
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RunError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}); restore or delete it.") from None


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


def read_history(run_dir: Path) -> list[dict]:
    """Rows of history.csv as dicts of numbers; a line cut short (hand edits, old tools) is dropped
    with a warning, a file that is not a history at all raises RunError."""
    path = Path(run_dir) / "history.csv"
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.splitlines()
    if not lines:
        return []
    header = lines[0].split(",")
    if "epoch" not in header:
        raise RunError(f"{path} has no 'epoch' column; it is not a Quick Draw Lab history.")
    rows, bad = [], 0
    for line in lines[1:]:
        if not line.strip():
            continue
        cells = next(csv.reader([line]))
        if len(cells) != len(header):
            bad += 1
            continue
        try:
            row = {key: _parse_cell(key, cell) for key, cell in zip(header, cells, strict=True)}
        except ValueError:
            bad += 1
            continue
        rows.append(row)
    if bad:
        warnings.warn(f"{path}: skipped {bad} damaged line(s)", stacklevel=2)
    return rows


def _parse_cell(key: str, cell: str):
    if cell == "":
        return None
    if key in ("epoch", "chunk"):
        return int(cell)
    if key in ("started", "ended"):
        return float(cell)
    try:
        return float(cell)
    except ValueError:
        if key in METRIC_COLUMNS:
            raise
        return cell


# ---------------------------------------------------------------- events
def append_event(run_dir: Path, event: str, **fields) -> dict:
    """Append one JSON line; a single write + fsync, so a kill leaves at most one partial last line,
    which readers skip."""
    record = {"time": time.time(), "event": event, **fields}
    line = json.dumps(record, default=_json_default) + "\n"
    path = Path(run_dir) / "events.jsonl"
    # A previous writer killed mid-line leaves no newline at the end: start on a fresh line.
    prefix = ""
    if path.exists() and path.stat().st_size:
        with open(path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                prefix = "\n"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(prefix + line)
        fh.flush()
        os.fsync(fh.fileno())
    return record


def read_events(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "events.jsonl"
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "event" in record:
            events.append(record)
    return events


def count_chunks(events: list[dict]) -> int:
    return sum(1 for e in events if e.get("event") == "chunk_start")


# ---------------------------------------------------------------- status
def write_status(run_dir: Path, state: str, **fields) -> dict:
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


def effective_status(run_dir: Path) -> dict:
    """status.json corrected by reality: 'running' whose trainer is gone is 'crashed'."""
    status = dict(read_status(run_dir))
    if status.get("state") == "running":
        lock = read_lock(run_dir)
        pid = (lock or {}).get("pid", status.get("pid"))
        if not pid_alive(pid):
            status["state"] = "crashed"
            status["message"] = f"trainer PID {pid} is gone without saying goodbye (killed or crashed)"
    return status


# ---------------------------------------------------------------- lock: one trainer per run
def read_lock(run_dir: Path) -> dict | None:
    path = Path(run_dir) / ".lock"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return {"pid": None, "raw": text}
    return data if isinstance(data, dict) else {"pid": None}


class RunLock:
    """A lock file holding the trainer's PID. A live holder refuses a second trainer; a dead one
    (stale lock after a kill) is taken over with a warning and an event."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"
        self.run_dir = Path(run_dir)
        self.took_over_from: int | None = None

    def acquire(self) -> RunLock:
        payload = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()})
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = read_lock(self.run_dir) or {}
                pid = holder.get("pid")
                if pid_alive(pid) and pid != os.getpid():
                    raise RunError(
                        f"run '{self.run_dir.name}' is being trained by PID {pid}; wait for it, or stop it "
                        f"(`kill {pid}` saves and stops at the end of the current batch)."
                    ) from None
                self.took_over_from = pid
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            return self
        raise RunError(f"could not take the lock {self.path}; another trainer keeps grabbing it.")

    def release(self) -> None:
        holder = read_lock(self.run_dir)
        if holder and holder.get("pid") == os.getpid():
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


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
    parent: str | None = None
    updated: float | None = None
    damaged: str | None = None
    imported: bool = False
    checkpoints: int = 0  # training checkpoints on disk: 0 for a cloned or imported record (not trainable)


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
    run_dir = Path(run_dir)
    summary = RunSummary(name=run_dir.name, path=run_dir)
    try:
        summary.updated = max((p.stat().st_mtime for p in run_dir.iterdir() if p.is_file()), default=None)
        config = read_config(run_dir)
        summary.model = config.model
        summary.representation = config.representation
        summary.classes = len(config.classes)
        summary.parent = (config.parent or {}).get("run")
        summary.imported = bool(config.imported_from)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            history = read_history(run_dir)
        summary.epochs = len(history)
        events = read_events(run_dir)
        summary.chunks = count_chunks(events) or len({row.get("chunk") for row in history})
        folder = run_dir / "checkpoints"
        summary.checkpoints = sum(1 for _ in folder.glob("*.npz")) if folder.is_dir() else 0
        scored = [r for r in history if r.get("val_top3") is not None]
        if scored:
            best = max(scored, key=lambda r: r["val_top3"])
            summary.best_val_top3 = best["val_top3"]
            summary.best_val_accuracy = best.get("val_accuracy")
            summary.best_epoch = best.get("epoch")
        eval_path = run_dir / "eval.json"
        ev = read_json(eval_path) if eval_path.exists() else None
        if ev is not None:
            summary.test_top1, summary.test_top3 = ev.get("top1"), ev.get("top3")
        status = effective_status(run_dir)
        summary.status = status.get("state", "created")
        summary.updated = recorded_update_time(events, status, ev) or summary.updated
    except (RunError, OSError, ValueError, KeyError, TypeError) as exc:
        summary.status = "damaged"
        summary.damaged = str(exc)
    return summary


def list_runs(runs_dir: Path | str) -> list[RunSummary]:
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    rows = [summarize_run(p) for p in sorted(runs_dir.iterdir()) if p.is_dir() and not p.name.startswith(".")
            and _NAME_RE.match(p.name)]
    return sorted(rows, key=lambda r: r.updated or 0, reverse=True)


def rename_run(runs_dir: Path, old: str, new: str) -> Path:
    source = resolve_run(runs_dir, old)
    target = run_path(runs_dir, new)
    if target.exists():
        raise RunError(f"a run named '{new}' already exists; pick another name.")
    lock = read_lock(source)
    if lock and pid_alive(lock.get("pid")):
        raise RunError(f"run '{old}' is training (PID {lock.get('pid')}); stop it before renaming.")
    os.rename(source, target)
    config = read_config(target)
    write_config(target, dataclasses.replace(config, name=new))
    append_event(target, "renamed", old=old, new=new)
    return target


def delete_run(runs_dir: Path, name: str) -> None:
    import shutil

    path = resolve_run(runs_dir, name)
    lock = read_lock(path)
    if lock and pid_alive(lock.get("pid")):
        raise RunError(f"run '{name}' is training (PID {lock.get('pid')}); stop it before deleting.")
    # Move aside first so a half-finished delete never looks like a run.
    trash = path.with_name(f".deleting-{name}-{os.getpid()}")
    os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)
