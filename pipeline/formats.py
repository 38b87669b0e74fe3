"""Reading Quick, Draw! data files: numpy_bitmap .npy, simplified/raw .ndjson and Google's .bin.

Used by `python -m pipeline download` (where files go), `train` / `evaluate` (reading them) and
`predict` (ndjson drawings). The folder layout mirrors Google's bucket
(`https://storage.googleapis.com/quickdraw_dataset/full/<format>/<class>.<ext>`):

    <root>/numpy_bitmap/<class>.npy      (also <root>/bitmaps/, the ../shared layout)
    <root>/simplified/<class>.ndjson
    <root>/raw/<class>.ndjson
    <root>/binary/<class>.bin

Class file names may use spaces (as Google does: "alarm clock.npy") or underscores
("alarm_clock.npy"); `root` may also be the format folder itself (a folder of <class>.npy).
"""

from __future__ import annotations

import gzip
import json
import math
import mmap
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from pipeline.categories import all_categories
from pipeline.errors import DataFormatError, QuickDrawError
from pipeline.files import atomic_output

FORMATS = ("numpy_bitmap", "simplified", "raw", "binary")

# Folder names per format, the bucket's name first (that is where downloads go).
FORMAT_DIRS: dict[str, tuple[str, ...]] = {
    "numpy_bitmap": ("numpy_bitmap", "bitmaps"),
    "simplified": ("simplified",),
    "raw": ("raw",),
    "binary": ("binary",),
}

# File extension per format, without the dot (as in the bucket URL `<class>.<ext>`).
EXTENSIONS: dict[str, str] = {
    "numpy_bitmap": "npy",
    "simplified": "ndjson",
    "raw": "ndjson",
    "binary": "bin",
}

BITMAP_PIXELS = 28 * 28


def _check_format(fmt: str) -> None:
    if fmt not in FORMAT_DIRS:
        raise QuickDrawError(f"unknown data format '{fmt}'; use one of {', '.join(FORMATS)}.")


def _extensions(fmt: str) -> tuple[str, ...]:
    ext = "." + EXTENSIONS[fmt]
    # ndjson is often kept gzipped; iter_ndjson reads both.
    return (ext, ext + ".gz") if ext == ".ndjson" else (ext,)


# ---------------------------------------------------------------- layout
def data_root(explicit: str | os.PathLike | None = None) -> Path:
    """The data folder: `explicit` (--data DIR), else $QUICKDRAW_DATA, else `data/`."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("QUICKDRAW_DATA")
    return Path(env) if env else Path("data")


def class_file_path(root: str | os.PathLike, fmt: str, cls: str) -> Path:
    """Where a download of `cls` in `fmt` goes: the bucket layout, spaces kept as Google does."""
    _check_format(fmt)
    return Path(root) / FORMAT_DIRS[fmt][0] / f"{cls}.{EXTENSIONS[fmt]}"


def _format_folders(root: Path, fmt: str, include_root: bool = True) -> list[Path]:
    folders = [root / name for name in FORMAT_DIRS[fmt]]
    if include_root:
        folders.append(root)  # root may itself be the format folder
    return [f for f in folders if f.is_dir()]


def _name_variants(cls: str) -> list[str]:
    return list(dict.fromkeys((cls, cls.replace(" ", "_"), cls.replace("_", " "))))


def find_class_file(root: str | os.PathLike, fmt: str, cls: str, include_root: bool = True) -> Path | None:
    """The existing file of `cls` in `fmt` under `root` (spaces or underscores, any case), or None.

    Looks in the bucket folder, its aliases (`bitmaps/`) and, unless include_root=False, `root`
    itself (a folder holding the class files directly)."""
    _check_format(fmt)
    root = Path(root)
    folders = _format_folders(root, fmt, include_root)
    exts = _extensions(fmt)
    for folder in folders:
        for stem in _name_variants(cls):
            for ext in exts:
                path = folder / f"{stem}{ext}"
                if path.is_file():
                    return path
    # Case-insensitive fallback ("the_eiffel_tower.npy"): one directory scan per folder.
    wanted = cls.replace("_", " ").lower()
    for folder in folders:
        for path in sorted(folder.iterdir()):
            stem = _class_stem(path.name, exts)
            if stem is not None and stem.replace("_", " ").lower() == wanted and path.is_file():
                return path
    return None


def _class_stem(filename: str, exts: tuple[str, ...]) -> str | None:
    for ext in exts:
        if filename.endswith(ext) and len(filename) > len(ext) and not filename.startswith("."):
            return filename[: -len(ext)]
    return None


def available_classes(root: str | os.PathLike, fmt: str) -> list[str]:
    """Sorted class names (with spaces; official spelling where the name is official) that have a
    `fmt` file under `root`."""
    _check_format(fmt)
    official = {name.lower(): name for name in all_categories()}
    exts = _extensions(fmt)
    names: set[str] = set()
    for folder in _format_folders(Path(root), fmt):
        for path in folder.iterdir():
            stem = _class_stem(path.name, exts)
            if stem is None or not path.is_file():
                continue
            name = stem.replace("_", " ")
            names.add(official.get(name.lower(), name))
    return sorted(names)


# ---------------------------------------------------------------- numpy_bitmap
def _npy_fix(path: Path) -> str:
    return (f"Re-download it (python -m pipeline download '{path.stem.replace('_', ' ')}' "
            f"--format numpy_bitmap) or replace {path.name} with a uint8 array of shape (N, 784) "
            "saved by np.save.")


def read_npy_header(fp, path: Path) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, fortran_order, dtype, header_length) of an open .npy file; DataFormatError when the
    header is not a valid .npy header. Never unpickles anything."""
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, EOFError, SyntaxError, struct.error) as exc:
        raise DataFormatError(f"{path} is not a valid .npy file (corrupt or truncated header: {exc}). "
                              f"{_npy_fix(path)}") from None
    return tuple(shape), bool(fortran), dtype, fp.tell()


def read_numpy_bitmap(path: str | os.PathLike, limit: int | None = None) -> np.ndarray:
    """A numpy_bitmap file as a read-only memory map: uint8 (N, 784), rows of 28x28 pixels.

    `limit` keeps the first `limit` rows (still memory-mapped). DataFormatError naming the file for
    a corrupt header, truncated data, a dtype other than uint8, a shape other than (N, 784) or an
    object array."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(2, "no such numpy_bitmap file", str(path))
    file_size = path.stat().st_size
    with open(path, "rb") as fp:
        shape, fortran, dtype, header_len = read_npy_header(fp, path)
    if dtype.hasobject:
        raise DataFormatError(f"{path} holds Python objects (dtype {dtype}), not pixels; refusing to "
                              f"unpickle it. {_npy_fix(path)}")
    if dtype != np.uint8:
        raise DataFormatError(f"{path} has dtype {dtype}, expected uint8 pixels 0-255. Convert it with "
                              "np.save(path, np.clip(arr, 0, 255).astype(np.uint8)) or re-download it.")
    if len(shape) != 2 or shape[1] != BITMAP_PIXELS:
        hint = (" (28x28 images: save arr.reshape(len(arr), 784) instead)"
                if shape[-2:] == (28, 28) else "")
        raise DataFormatError(f"{path} has shape {shape}, expected (N, 784): one flattened 28x28 "
                              f"bitmap per row{hint}. {_npy_fix(path)}")
    expected = header_len + shape[0] * BITMAP_PIXELS
    if file_size < expected:
        have = max(0, (file_size - header_len) // BITMAP_PIXELS)
        raise DataFormatError(f"{path} is truncated: its header promises {shape[0]} rows "
                              f"({expected} bytes) but the file has {file_size} bytes (about {have} "
                              f"rows). {_npy_fix(path)}")
    if shape[0] == 0:
        return np.zeros((0, BITMAP_PIXELS), dtype=np.uint8)
    try:
        rows = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:  # e.g. "mmap length is greater than file size"
        raise DataFormatError(f"{path} cannot be read as a numpy_bitmap file ({exc}). {_npy_fix(path)}") from None
    if limit is not None:
        rows = rows[: max(0, int(limit))]
    return rows


# ---------------------------------------------------------------- ndjson
@dataclass
class ReadStats:
    """Counts from one pass over a file: `read` records yielded, `skipped` malformed lines or
    records, `filtered` well-formed records left out by the `recognized` filter."""

    read: int = 0
    skipped: int = 0
    filtered: int = 0


def _finite_numbers(values) -> bool:
    # sum() is C-speed: TypeError for strings/None/lists, NaN or inf for non-finite input.
    if not isinstance(values, list):
        return False
    try:
        return math.isfinite(sum(values))
    except (TypeError, OverflowError):  # OverflowError: an int too large for a float
        return False


def valid_drawing(drawing) -> bool:
    """Structural check of Google's stroke lists: a non-empty list of strokes, each 2 (x, y) or 3
    (x, y, t) equal-length lists of finite numbers."""
    if not isinstance(drawing, list) or not drawing:
        return False
    for stroke in drawing:
        if not isinstance(stroke, list) or len(stroke) not in (2, 3):
            return False
        n = len(stroke[0]) if isinstance(stroke[0], list) else -1
        for values in stroke:
            if not isinstance(values, list) or len(values) != n or not _finite_numbers(values):
                return False
    return True


def _open_text_lines(path: Path):
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def iter_ndjson(path: str | os.PathLike, recognized: bool | None = None, limit: int | None = None,
                stats: ReadStats | None = None) -> Iterator[dict]:
    """Stream the records of a simplified or raw .ndjson (or .ndjson.gz) file.

    Lines that are not JSON objects with a valid `drawing` are skipped and counted in
    `stats.skipped` (never raised). `recognized=True/False` keeps only records whose `recognized`
    field is exactly that value; `limit` stops after that many yielded records."""
    path = Path(path)
    stats = stats if stats is not None else ReadStats()
    if limit is not None and limit <= 0:
        return
    with _open_text_lines(path) as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):  # bad JSON, bad UTF-8 (binary junk), half a line
                stats.skipped += 1
                continue
            if not isinstance(record, dict) or not valid_drawing(record.get("drawing")):
                stats.skipped += 1
                continue
            if recognized is not None and record.get("recognized") is not recognized:
                stats.filtered += 1
                continue
            stats.read += 1
            yield record
            if limit is not None and stats.read >= limit:
                return


# ---------------------------------------------------------------- Google's binary format
# Per drawing (little endian): key_id uint64, countrycode 2 ASCII bytes, recognized uint8,
# timestamp uint32 (Unix seconds), n_strokes uint16; per stroke: n_points uint16, x uint8[n],
# y uint8[n]. Unknown values (null in ndjson) are written as 0 and read back as None.
_RECORD_HEAD = struct.Struct("<Q2sBIH")
_UINT16 = struct.Struct("<H")


def _timestamp_seconds(value, index: int) -> int:
    if value is None:
        return 0
    if isinstance(value, bool):
        raise DataFormatError(f"record {index}: timestamp {value!r} is not a time.")
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str):
        text = value.strip().removesuffix("UTC").strip()
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise DataFormatError(f"record {index}: timestamp {value!r} is not a date like "
                                  "'2017-03-02 23:25:10.07453 UTC' or Unix seconds.") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return int(moment.timestamp())
    raise DataFormatError(f"record {index}: timestamp {value!r} is not a time.")


def _coordinate_bytes(values: list) -> bytes | None:
    """uint8 bytes of whole-number coordinates 0-255 (ints or integral floats), else None."""
    try:
        return bytes(values)  # fast path: ints 0-255
    except (TypeError, ValueError):
        pass
    try:
        if all(float(v).is_integer() for v in values):
            return bytes(int(v) for v in values)
    except (TypeError, ValueError, OverflowError):
        pass
    return None


def _encode_record(record: dict, index: int) -> bytes:
    drawing = record.get("drawing")
    if not valid_drawing(drawing):
        raise DataFormatError(f"record {index} has no valid 'drawing' (a list of [[x...], [y...]] strokes).")
    key = record.get("key_id")
    try:
        key_id = 0 if key is None else int(key)
    except (TypeError, ValueError):
        raise DataFormatError(f"record {index}: key_id {key!r} is not a whole number.") from None
    if not 0 <= key_id < 2**64:
        raise DataFormatError(f"record {index}: key_id {key_id} does not fit in 64 bits.")
    country = record.get("countrycode")
    if country is None:
        country_bytes = b"\0\0"
    else:
        try:
            country_bytes = str(country).encode("ascii")
        except UnicodeEncodeError:
            country_bytes = b""
        if len(country_bytes) != 2:
            raise DataFormatError(f"record {index}: countrycode {country!r} is not 2 ASCII letters.")
    timestamp = _timestamp_seconds(record.get("timestamp"), index)
    if not 0 <= timestamp < 2**32:
        raise DataFormatError(f"record {index}: timestamp {timestamp} does not fit in 32 bits.")
    if len(drawing) >= 2**16:
        raise DataFormatError(f"record {index} has {len(drawing)} strokes; the binary format holds at most 65535.")
    parts = [_RECORD_HEAD.pack(key_id, country_bytes, 1 if record.get("recognized") else 0, timestamp,
                               len(drawing))]
    for stroke in drawing:
        if len(stroke) != 2:
            raise DataFormatError(f"record {index} has (x, y, t) strokes: the binary format holds simplified "
                                  "drawings only; simplify them first (python -m pipeline simplify).")
        xs, ys = stroke
        if len(xs) >= 2**16:
            raise DataFormatError(f"record {index} has a stroke of {len(xs)} points; at most 65535 fit.")
        x_bytes, y_bytes = _coordinate_bytes(xs), _coordinate_bytes(ys)
        if x_bytes is None or y_bytes is None:
            raise DataFormatError(f"record {index} has coordinates outside whole numbers 0-255: the binary "
                                  "format holds simplified drawings only; simplify them first.")
        parts += [_UINT16.pack(len(xs)), x_bytes, y_bytes]
    return b"".join(parts)


def write_binary(records: Iterable[dict], path: str | os.PathLike) -> int:
    """Write records (dicts like simplified ndjson lines) in Google's .bin format, atomically.

    Returns the number of drawings written. Null key_id/timestamp/countrycode are written as 0 and
    read back as None; null `recognized` is written as False."""
    count = 0
    with atomic_output(path, "wb") as out:
        for count, record in enumerate(records, start=1):
            out.write(_encode_record(record, count - 1))
    return count


def _decode_records(data, stats: ReadStats):
    """Yield (record, end_offset) for each complete record of a .bin buffer; a truncated final
    record is counted as skipped."""
    size = len(data)
    pos = 0
    head = _RECORD_HEAD.size
    while pos < size:
        if pos + head > size:
            stats.skipped += 1
            return
        key_id, country, recognized, timestamp, n_strokes = _RECORD_HEAD.unpack_from(data, pos)
        cursor = pos + head
        drawing = []
        for _ in range(n_strokes):
            if cursor + 2 > size:
                stats.skipped += 1
                return
            (n,) = _UINT16.unpack_from(data, cursor)
            cursor += 2
            if cursor + 2 * n > size:
                stats.skipped += 1
                return
            drawing.append([list(data[cursor:cursor + n]), list(data[cursor + n:cursor + 2 * n])])
            cursor += 2 * n
        country_text = country.rstrip(b"\0").decode("ascii", "replace")
        record = {
            "key_id": str(key_id) if key_id else None,
            "countrycode": country_text or None,
            "recognized": bool(recognized),
            "timestamp": timestamp or None,
            "drawing": drawing,
        }
        pos = cursor
        yield record, pos


def iter_binary(path: str | os.PathLike, recognized: bool | None = None, limit: int | None = None,
                stats: ReadStats | None = None) -> Iterator[dict]:
    """Stream the drawings of a Google .bin file as dicts {key_id (str), countrycode, recognized
    (bool), timestamp (Unix seconds), drawing ([[x...], [y...]] per stroke)}. A truncated final
    record ends the stream and is counted in `stats.skipped`; records with no strokes are skipped."""
    path = Path(path)
    stats = stats if stats is not None else ReadStats()
    if limit is not None and limit <= 0:
        return
    if path.stat().st_size == 0:
        return
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        for record, _end in _decode_records(data, stats):
            if not record["drawing"]:
                stats.skipped += 1
                continue
            if recognized is not None and record["recognized"] is not recognized:
                stats.filtered += 1
                continue
            stats.read += 1
            yield record
            if limit is not None and stats.read >= limit:
                return


def binary_record_end(data, pos: int = 0) -> int | None:
    """Offset just past the .bin record starting at `pos`, or None when the buffer ends inside it
    (used to cut per-class downloads at a record boundary without decoding the points)."""
    size = len(data)
    cursor = pos + _RECORD_HEAD.size
    if cursor > size:
        return None
    n_strokes = _UINT16.unpack_from(data, cursor - 2)[0]
    for _ in range(n_strokes):
        if cursor + 2 > size:
            return None
        cursor += 2 + 2 * _UINT16.unpack_from(data, cursor)[0]
    return cursor if cursor <= size else None


# ---------------------------------------------------------------- unified
def iter_drawings(root: str | os.PathLike, fmt: str, cls: str, recognized: bool | None = None,
                  limit: int | None = None, stats: ReadStats | None = None) -> Iterator[dict]:
    """Records of class `cls` from its simplified/raw ndjson or binary file under `root`."""
    _check_format(fmt)
    if fmt == "numpy_bitmap":
        raise QuickDrawError("numpy_bitmap files hold images, not drawings: read them with read_numpy_bitmap().")
    path = find_class_file(root, fmt, cls)
    if path is None:
        raise QuickDrawError(
            f"no {fmt} file for '{cls}' under {root} (looked for "
            f"{class_file_path(root, fmt, cls)} and underscore spellings). Download it with "
            f"`python -m pipeline download '{cls}' --format {fmt} --data {root}`.")
    if fmt == "binary":
        for record in iter_binary(path, recognized=recognized, limit=limit, stats=stats):
            record.setdefault("word", cls)
            yield record
    else:
        yield from iter_ndjson(path, recognized=recognized, limit=limit, stats=stats)
