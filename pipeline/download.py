"""Fetching Quick, Draw! class files from Google's bucket, a mirror, or a local folder.

Used by `python -m pipeline download CLASS... [--format F] [--per-class N] [--data DIR] [--base-url URL]`.

Files stream into `<dest>.part` and are moved into place with `os.replace` only when complete, so a
half file is never taken for data. Dropped connections are retried with exponential backoff and
resumed with `Range: bytes=<have>-`. `--per-class N` fetches only the start of a file: for
numpy_bitmap one Range request for the header and N rows (the header is rewritten to (N, 784)),
for ndjson the first N complete lines, for binary the first N complete records.
Only the standard library (urllib) talks to the network.
"""

from __future__ import annotations

import http.client
import io
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.errors import DataFormatError, DownloadError
from pipeline.files import atomic_path
from pipeline.formats import (
    BITMAP_PIXELS,
    EXTENSIONS,
    FORMAT_DIRS,
    FORMATS,
    binary_record_end,
    class_file_path,
    find_class_file,
    read_npy_header,
    read_numpy_bitmap,
)

DEFAULT_BASE_URL = "https://storage.googleapis.com/quickdraw_dataset/full"
CHUNK_BYTES = 1 << 16
HEADER_PROBE_BYTES = 128  # numpy pads .npy headers to 64-byte multiples; Google's are 128 bytes
MAX_BACKOFF_SECONDS = 60.0
USER_AGENT = "quick-draw-lab/0.1 (+urllib)"
# Answers that no retry will change.
FATAL_HTTP_CODES = {400, 401, 403, 404, 405, 410, 451}

Progress = Callable[[int, int | None], None]


@dataclass(frozen=True)
class DownloadPlan:
    """One file to fetch. `url` is an http(s) URL or a local file path; `size` is the number of
    bytes to fetch (None when unknown, e.g. the first N lines of an ndjson file)."""

    cls: str
    fmt: str
    url: str
    dest: Path
    size: int | None
    per_class: int | None = None
    total_size: int | None = None  # size of the whole source file, when known
    npy_rows: int | None = None  # per-class numpy_bitmap: rows the result will hold

    @property
    def is_local(self) -> bool:
        return not self.url.startswith(("http://", "https://"))


# ---------------------------------------------------------------- where from, where to
def _local_base(base_url: str) -> Path | None:
    """The folder a base URL names, or None for http(s)."""
    parsed = urllib.parse.urlparse(str(base_url))
    if parsed.scheme in ("http", "https"):
        return None
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    return Path(base_url)


def _local_hint(cls: str, fmt: str, root: Path) -> str:
    folder = Path(root) / FORMAT_DIRS[fmt][0]
    name = f"'{cls}.{EXTENSIONS[fmt]}'"
    if " " in cls:
        name += f" (or '{cls.replace(' ', '_')}.{EXTENSIONS[fmt]}')"
    return (f"To use local files instead, copy {name} into {folder}/ and pass --data {root}, "
            "or pass --base-url /path/to/folder laid out like the bucket (numpy_bitmap/, simplified/, "
            "raw/, binary/ or bitmaps/).")


def _candidate_urls(base: str, fmt: str, cls: str) -> list[str]:
    base = base.rstrip("/")
    ext = EXTENSIONS[fmt]
    underscored = cls.replace(" ", "_")
    urls = [f"{base}/{fmt}/{urllib.parse.quote(cls)}.{ext}",  # Google's layout (spaces kept)
            f"{base}/{fmt}/{urllib.parse.quote(underscored)}.{ext}"]  # mirrors that use underscores
    if fmt == "numpy_bitmap":
        urls.append(f"{base}/bitmaps/{urllib.parse.quote(underscored)}.npy")  # the ../shared layout
    return list(dict.fromkeys(urls))


def _request(url: str, start: int = 0, end: int | None = None, method: str = "GET", timeout: float = 30):
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if start or end is not None:
        headers["Range"] = f"bytes={start}-{'' if end is None else end}"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers, method=method), timeout=timeout)


def _content_range_total(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) from a Content-Range header like 'bytes 100-199/1000'."""
    match = re.match(r"bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)", value or "")
    if not match:
        return None, None
    first = int(match.group(1)) if match.group(1) else None
    total = int(match.group(2)) if match.group(2) != "*" else None
    return first, total


def _response_total(resp) -> int | None:
    """Size of the whole file from a response: Content-Range total for 206, Content-Length for 200."""
    if resp.status == 206:
        return _content_range_total(resp.headers.get("Content-Range"))[1]
    length = resp.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def _unreachable(url: str, reason, cls: str, fmt: str, root: Path) -> DownloadError:
    return DownloadError(f"cannot reach {url} ({reason}); are you offline? {_local_hint(cls, fmt, root)}")


def _probe_http(urls: list[str], cls: str, fmt: str, root: Path, timeout: float, head_bytes: int | None):
    """(url, total size, first bytes or None) for the first candidate URL that exists."""
    for url in urls:
        try:
            if head_bytes is None:
                try:
                    with _request(url, method="HEAD", timeout=timeout) as resp:
                        return url, _response_total(resp), None
                except urllib.error.HTTPError as exc:
                    if exc.code not in (405, 501):  # servers without HEAD: probe with a GET instead
                        raise
                with _request(url, end=0, timeout=timeout) as resp:
                    return url, _response_total(resp), None
            with _request(url, end=head_bytes - 1, timeout=timeout) as resp:
                # A server that ignores Range sends the whole file: read only what we need.
                return url, _response_total(resp), resp.read(head_bytes)
        except urllib.error.HTTPError as exc:
            if exc.code in (404, 410):
                continue
            raise DownloadError(f"{url} answered HTTP {exc.code} {exc.reason}. {_local_hint(cls, fmt, root)}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise _unreachable(url, getattr(exc, "reason", exc), cls, fmt, root) from None
    also = f" (also tried {', '.join(urls[1:])})" if len(urls) > 1 else ""
    raise DownloadError(f"{urls[0]} was not found (HTTP 404){also}: check the class name "
                        f"(`python -m pipeline classes`) and --base-url. {_local_hint(cls, fmt, root)}")


def _npy_window(head: bytes, source: str, per_class: int) -> tuple[int, int]:
    """(rows to keep, bytes to fetch) for the first `per_class` rows of a .npy whose first bytes are `head`."""
    shape, fortran, dtype, header_len = read_npy_header(io.BytesIO(head), Path(source))
    if dtype != np.uint8 or len(shape) != 2 or shape[1] != BITMAP_PIXELS or fortran:
        raise DataFormatError(f"{source} is not a numpy_bitmap file (dtype {dtype}, shape {shape}, "
                              f"fortran_order {fortran}; expected C-ordered uint8 (N, 784)).")
    rows = min(per_class, shape[0])
    return rows, header_len + rows * BITMAP_PIXELS


def _npy_header_length(head: bytes) -> int | None:
    """Total header length from a .npy's first 12 bytes (magic, version, header length field)."""
    if len(head) < 12 or not head.startswith(b"\x93NUMPY"):
        return None
    if head[6] == 1:
        return 10 + int.from_bytes(head[8:10], "little")
    return 12 + int.from_bytes(head[8:12], "little")


def plan(cls: str, fmt: str, root: str | os.PathLike, per_class: int | None = None,
         base_url: str = DEFAULT_BASE_URL, timeout: float = 30) -> DownloadPlan:
    """What fetching `cls` in `fmt` into `root` involves: the URL, destination and size.

    Contacts the server (a HEAD request, or for a per-class numpy_bitmap the .npy header), so an
    offline machine or a wrong class name fails here, before anything is written."""
    if fmt not in FORMATS:
        raise DownloadError(f"unknown format '{fmt}'; use one of {', '.join(FORMATS)}.")
    if per_class is not None and per_class <= 0:
        raise DownloadError(f"--per-class must be above 0, got {per_class}.")
    root = Path(root)
    dest = class_file_path(root, fmt, cls)
    local = _local_base(base_url)
    if local is not None:
        if not local.is_dir():
            raise DownloadError(f"--base-url {base_url} is neither an http(s) URL nor an existing folder. "
                                f"{_local_hint(cls, fmt, root)}")
        source = find_class_file(local, fmt, cls)
        if source is None:
            raise DownloadError(f"{local} has no {fmt} file for '{cls}' (looked in "
                                f"{', '.join(d + '/' for d in FORMAT_DIRS[fmt])} and the folder itself, spaces or underscores).")
        total = source.stat().st_size
        url, head = str(source), None
        if per_class is not None and fmt == "numpy_bitmap":
            with open(source, "rb") as fh:
                head = fh.read(HEADER_PROBE_BYTES)
                needed = _npy_header_length(head)
                if needed and needed > len(head):
                    head += fh.read(needed - len(head))
    else:
        head_bytes = HEADER_PROBE_BYTES if per_class is not None and fmt == "numpy_bitmap" else None
        urls = _candidate_urls(base_url, fmt, cls)
        url, total, head = _probe_http(urls, cls, fmt, root, timeout, head_bytes)
        needed = _npy_header_length(head) if head is not None else None
        if needed and needed > len(head):  # a long (version 2) header: fetch the rest of it
            url, total, head = _probe_http([url], cls, fmt, root, timeout, needed)
    if per_class is None:
        return DownloadPlan(cls, fmt, url, dest, total, None, total)
    if fmt == "numpy_bitmap":
        rows, window = _npy_window(head, url, per_class)
        return DownloadPlan(cls, fmt, url, dest, window, per_class, total, npy_rows=rows)
    return DownloadPlan(cls, fmt, url, dest, None, per_class, total)


# ---------------------------------------------------------------- how much to keep
class _Cutter:
    """Decides where a partial download ends. feed(chunk) returns None to keep the whole chunk, or
    the number of its bytes to keep when the wanted amount ends inside it (download complete)."""

    limit: int | None = None  # bytes wanted, when known in advance

    def feed(self, chunk: bytes) -> int | None:
        return None


@dataclass
class _ByteWindow(_Cutter):
    limit: int
    seen: int = 0

    def feed(self, chunk: bytes) -> int | None:
        if self.seen + len(chunk) >= self.limit:
            keep = self.limit - self.seen
            self.seen = self.limit
            return keep
        self.seen += len(chunk)
        return None


@dataclass
class _Lines(_Cutter):
    wanted: int
    count: int = 0

    def feed(self, chunk: bytes) -> int | None:
        newlines = chunk.count(b"\n")
        if self.count + newlines < self.wanted:
            self.count += newlines
            return None
        pos = -1
        while self.count < self.wanted:
            pos = chunk.index(b"\n", pos + 1)
            self.count += 1
        return pos + 1


@dataclass
class _BinaryRecords(_Cutter):
    wanted: int
    count: int = 0
    tail: bytearray = field(default_factory=bytearray)  # bytes of the record in progress

    def feed(self, chunk: bytes) -> int | None:
        start_of_chunk = len(self.tail)
        self.tail += chunk
        pos = 0
        while True:
            end = binary_record_end(self.tail, pos)
            if end is None:
                break
            pos = end
            self.count += 1
            if self.count >= self.wanted:
                return pos - start_of_chunk
        del self.tail[:pos]
        return None


def _make_cutter(p: DownloadPlan) -> _Cutter:
    if p.per_class is None:
        return _Cutter()
    if p.fmt == "numpy_bitmap":
        return _ByteWindow(p.size)
    if p.fmt == "binary":
        return _BinaryRecords(p.per_class)
    return _Lines(p.per_class)


# ---------------------------------------------------------------- existing files
def _count_items(path: Path, cutter: _Cutter) -> bool:
    """True when the file holds at least what `cutter` wants."""
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            if cutter.feed(chunk) is not None:
                return True
    return False


def _already_done(p: DownloadPlan) -> bool:
    """A finished dest that satisfies the plan is not downloaded again."""
    if not p.dest.is_file():
        return False
    size = p.dest.stat().st_size
    if p.total_size is not None and size == p.total_size:
        return True  # the whole source file
    if p.per_class is None:
        return p.total_size is None
    if p.fmt == "numpy_bitmap":
        try:
            return len(read_numpy_bitmap(p.dest)) >= (p.npy_rows or 0)
        except DataFormatError:
            return False
    return _count_items(p.dest, _make_cutter(p))


# ---------------------------------------------------------------- fetching
def _report(progress: Progress | None, done: int, total: int | None) -> None:
    if progress is not None:
        progress(done, total)


def _copy_local(p: DownloadPlan, part: Path, progress: Progress | None) -> None:
    cutter = _make_cutter(p)
    done = 0
    with open(p.url, "rb") as src, open(part, "wb") as out:
        while chunk := src.read(1 << 20):
            keep = cutter.feed(chunk)
            if keep is not None:
                chunk = chunk[:keep]
            out.write(chunk)
            done += len(chunk)
            _report(progress, done, p.size)
            if keep is not None:
                break


def _resume_state(p: DownloadPlan, part: Path) -> tuple[_Cutter, int, bool]:
    """(cutter that has seen the bytes already in .part, bytes kept, complete?). A .part left by an
    earlier run or attempt is a prefix of the same source file, whatever its plan was."""
    cutter = _make_cutter(p)
    have = part.stat().st_size if part.exists() else 0
    if not have or type(cutter) is _Cutter:
        return cutter, have, False
    if isinstance(cutter, _ByteWindow):
        if have >= cutter.limit:
            os.truncate(part, cutter.limit)
            return cutter, cutter.limit, True
        cutter.seen = have
        return cutter, have, False
    kept = 0  # lines / records: count what is there (small: only N of them are wanted)
    with open(part, "r+b") as fh:
        while chunk := fh.read(1 << 20):
            keep = cutter.feed(chunk)
            if keep is not None:
                kept += keep
                fh.truncate(kept)
                return cutter, kept, True
            kept += len(chunk)
    return cutter, kept, False


class _RetryableError(Exception):
    pass


def _download_http(p: DownloadPlan, part: Path, progress: Progress | None, retries: int, timeout: float,
                   backoff: float) -> None:
    cutter, have, complete = _resume_state(p, part)
    failures = 0
    while not complete:
        before = have
        try:
            cutter, have, complete = _attempt(p, part, cutter, have, progress, timeout)
        except _RetryableError as exc:
            cutter, have, complete = _resume_state(p, part)
            if complete:
                break
            failures = 0 if have > before else failures + 1
            if failures > retries:
                raise DownloadError(
                    f"downloading {p.url} failed {retries + 1} times in a row ({exc}). The {have} bytes "
                    f"received are kept in {part}; run the command again to resume. "
                    f"{_local_hint(p.cls, p.fmt, p.dest.parent.parent)}") from None
            time.sleep(min(MAX_BACKOFF_SECONDS, backoff * 2 ** max(0, failures - 1)))


def _attempt(p: DownloadPlan, part: Path, cutter: _Cutter, have: int, progress: Progress | None,
             timeout: float) -> tuple[_Cutter, int, bool]:
    """One request, appending to .part. Returns (cutter, bytes in .part, complete?); raises
    _RetryableError for anything a retry may fix."""
    end = cutter.limit - 1 if cutter.limit else None
    try:
        resp = _request(p.url, start=have, end=end, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            # Range beyond the end: .part already holds the whole file, or the file shrank.
            total = _content_range_total(exc.headers.get("Content-Range"))[1]
            if total is not None and total == have:
                return cutter, have, True
            part.unlink(missing_ok=True)
            raise _RetryableError(f"HTTP 416 for bytes from {have}; starting over") from None
        if exc.code in FATAL_HTTP_CODES:
            raise DownloadError(f"{p.url} answered HTTP {exc.code} {exc.reason}. "
                                f"{_local_hint(p.cls, p.fmt, p.dest.parent.parent)}") from None
        raise _RetryableError(f"HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _RetryableError(str(getattr(exc, "reason", exc)) or type(exc).__name__) from None
    with resp:
        mode = "ab"
        if resp.status == 206:
            first, total = _content_range_total(resp.headers.get("Content-Range"))
            if first == 0 and have:  # a range from the start instead of ours: start over
                cutter, have, mode = _make_cutter(p), 0, "wb"
            elif first != have:
                raise _RetryableError(f"asked for bytes from {have}, got Content-Range "
                                      f"{resp.headers.get('Content-Range')!r}")
        else:
            total = _response_total(resp)
            if have:  # the server ignored Range and sends the whole file: start over
                cutter, have, mode = _make_cutter(p), 0, "wb"
        if p.total_size is not None and total is not None and total != p.total_size:
            part.unlink(missing_ok=True)  # the file changed on the server since plan(): start over
            raise _RetryableError(f"the file's size changed from {p.total_size} to {total} bytes")
        complete = False
        with open(part, mode) as out:
            while True:
                try:
                    chunk = resp.read1(CHUNK_BYTES)  # what has arrived: a timeout loses nothing
                except (OSError, http.client.HTTPException) as exc:  # dropped connection, timeout
                    raise _RetryableError(f"connection lost after {have} bytes: "
                                          f"{exc or type(exc).__name__}") from None
                if not chunk:
                    break
                keep = cutter.feed(chunk)
                if keep is not None:
                    chunk = chunk[:keep]
                out.write(chunk)
                have += len(chunk)
                _report(progress, have, p.size)
                if keep is not None:
                    complete = True
                    break
    if complete or (cutter.limit is not None and have == cutter.limit):
        return cutter, have, True
    if total is None or have == total:
        return cutter, have, True  # the whole source file (smaller than --per-class, or a full download)
    raise _RetryableError(f"got {have} of {total} bytes")


def _finish(p: DownloadPlan, part: Path) -> None:
    """Check the fetched bytes and move them into place atomically."""
    if p.fmt != "numpy_bitmap":
        os.replace(part, p.dest)
        return
    try:
        if p.per_class is None:
            read_numpy_bitmap(part)
            os.replace(part, p.dest)
            return
        _rewrite_npy_rows(part, p.dest)
    except DataFormatError as exc:
        part.unlink(missing_ok=True)
        raise DownloadError(f"the file fetched from {p.url} is not a valid numpy_bitmap file ({exc}).") from None
    part.unlink(missing_ok=True)


def _rewrite_npy_rows(part: Path, dest: Path) -> None:
    """.part holds the source header and the first rows: write a .npy whose header says (rows, 784)."""
    with open(part, "rb") as fh:
        shape, _fortran, dtype, header_len = read_npy_header(fh, part)
        rows, extra = divmod(part.stat().st_size - header_len, BITMAP_PIXELS)
        if extra or rows > shape[0]:
            raise DataFormatError(f"{part} holds {part.stat().st_size - header_len} bytes of pixels, "
                                  "not whole 784-byte rows")
        with atomic_path(dest) as tmp:
            with open(tmp, "wb") as out:
                np.lib.format.write_array_header_1_0(
                    out, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                          "shape": (rows, BITMAP_PIXELS)})
                fh.seek(header_len)
                while chunk := fh.read(1 << 20):
                    out.write(chunk)
            read_numpy_bitmap(tmp)  # checked before it takes the real name


def fetch_plan(p: DownloadPlan, progress: Progress | None = None, retries: int = 5, timeout: float = 30,
               backoff: float = 1.0) -> Path:
    """Fetch a planned file into `p.dest` (returned). Resumes an earlier `.part`; retries dropped
    connections `retries` times in a row with backoff `backoff * 2**k` seconds; DownloadError when
    it cannot finish (the `.part` is kept for the next run, `p.dest` is never a half file)."""
    if _already_done(p):
        size = p.dest.stat().st_size
        _report(progress, size, size)
        return p.dest
    p.dest.parent.mkdir(parents=True, exist_ok=True)
    part = p.dest.with_name(p.dest.name + ".part")
    if p.is_local:
        try:
            _copy_local(p, part, progress)
        except OSError as exc:
            part.unlink(missing_ok=True)
            raise DownloadError(f"copying {p.url} to {part} failed: {exc}") from None
    else:
        _download_http(p, part, progress, retries, timeout, backoff)
    _finish(p, part)
    return p.dest


def fetch(cls: str, fmt: str, root: str | os.PathLike, per_class: int | None = None,
          base_url: str = DEFAULT_BASE_URL, progress: Progress | None = None, *, retries: int = 5,
          timeout: float = 30, backoff: float = 1.0) -> Path:
    """plan() then fetch_plan(): the path of the class file under `root`."""
    return fetch_plan(plan(cls, fmt, root, per_class=per_class, base_url=base_url, timeout=timeout),
                      progress=progress, retries=retries, timeout=timeout, backoff=backoff)

