"""Files that are never seen half-written, and the one human-readable size.

Everything the pipeline saves for another process or a later session (run records, checkpoints,
converted data, downloads, exported models' metadata) goes through `atomic_output`: the content is
written to a temporary file in the same folder, flushed to disk (fsync) and moved into place with
`os.replace`, so a reader sees the old file or the new one, and a `kill -9` or a full disk at any
moment leaves the previous version intact. Used by every module that writes; imports nothing of ours.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import RunError


@contextlib.contextmanager
def atomic_output(path: Path | str, mode: str = "wb", **open_args) -> Iterator:
    """`with atomic_output(path) as fh: fh.write(...)` - `path` appears complete or not at all.

    The temporary file is created with `open()`, not mkstemp, so it gets the usual permissions (a
    mkstemp file is 0600, which would make shared data files unreadable by others)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with open(tmp, mode, **open_args) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """A temporary path beside `path` for writers that need a file name (numpy memmaps, Keras
    `model.save`); moved into place after the block, fsynced, or removed if the block fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    with atomic_output(path, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path | str, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=json_default) + "\n")


def json_default(value):
    """numpy scalars, tuples, sets and paths as JSON."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_json(path: Path | str):
    """A JSON file; RunError naming the file and the fix when it is not valid JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RunError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}); restore or delete it.") from None


def append_json_line(path: Path | str, record: dict) -> None:
    """Append one JSON line as a single write + fsync, so a kill leaves at most one partial last line
    (which `read_json_lines` skips); a line cut short by an earlier kill is closed first."""
    path = Path(path)
    line = json.dumps(record, default=json_default) + "\n"
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


def read_json_lines(path: Path | str) -> list[dict]:
    """The JSON-object lines of a file ([] when absent); partial or foreign lines are skipped."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def human_size(n: int | float | None) -> str:
    """Bytes in decimal units as tqdm shows them: 0 B, 512 B, 7.9 kB, 12.3 MB, 1.2 GB."""
    if n is None:
        return "unknown size"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if abs(value) < 1000:
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"
