"""pipeline.download against a real HTTP server on 127.0.0.1 that honours Range and can misbehave
(drop connections, ignore Range, truncate bodies), serving real Quick, Draw! files from a tmp bucket."""

from __future__ import annotations

import json
import random
import re
import shutil
import socket
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from pipeline import download, formats
from pipeline.errors import DownloadError

FAST = {"backoff": 0.001, "timeout": 5}


class _Handler(BaseHTTPRequestHandler):
    """Serves files under server.root; honours single `bytes=a-b` / `bytes=a-` ranges (the stdlib
    SimpleHTTPRequestHandler ignores Range) and records what it served in server.log."""

    def log_message(self, *args):
        pass

    def do_HEAD(self):
        self._serve(send_body=False)

    def do_GET(self):
        self._serve(send_body=True)

    def _record(self, status):
        with self.server.lock:
            self.server.log.append({"method": self.command, "path": urllib.parse.unquote(self.path),
                                    "range": self.headers.get("Range"), "status": status})

    def _serve(self, send_body):
        srv = self.server
        with srv.lock:
            error = srv.errors.pop(0) if srv.errors and send_body else None
        if error is not None:
            self._record(error)
            self.send_response(error)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path = srv.root / urllib.parse.unquote(urllib.parse.urlparse(self.path).path).lstrip("/")
        if not path.is_file():
            self._record(404)
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = path.read_bytes()
        size = len(data)
        start, end, status = 0, size - 1, 200
        requested = self.headers.get("Range")
        if requested and not srv.ignore_range:
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", requested)
            start = int(match[1])
            end = min(int(match[2]) if match[2] else size - 1, size - 1)
            if start >= size:
                self._record(416)
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        stop = end + 1  # file offset where this response's body stops being sent
        with srv.lock:
            cut = next((c for c in sorted(srv.cuts) if start < c < stop), None)
            if cut is not None and send_body:
                srv.cuts.remove(cut)
                stop = cut
            stall = next((c for c in sorted(srv.stalls) if start < c < stop), None)
            if stall is not None and send_body:
                srv.stalls.remove(stall)
                stop = stall
        if srv.truncate_to is not None:
            stop = min(stop, max(start, srv.truncate_to))
        self._record(status)
        self.send_response(status)
        self.send_header("Content-Length", str(end + 1 - start))  # always the full promised length
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if send_body:
            self.wfile.write(data[start:stop])
            if stall is not None and stop == stall:
                time.sleep(srv.stall_seconds)  # silence: the client's read timeout must fire
            if stop <= end:  # drop the connection mid-body
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)


class BucketServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.log: list[dict] = []
        self.lock = threading.Lock()
        self.cuts: list[int] = []  # file offsets at which to drop a connection (each used once)
        self.ignore_range = False  # answer 200 with the whole file to Range requests
        self.truncate_to: int | None = None  # never send bytes past this offset (full Content-Length)
        self.stalls: list[int] = []  # file offsets at which to go silent for stall_seconds, then close
        self.stall_seconds = 1.0
        self.errors: list[int] = []  # statuses to answer the next GETs with (e.g. 503)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def gets(self) -> list[dict]:
        return [e for e in self.log if e["method"] == "GET"]


@pytest.fixture(scope="module")
def bucket(shared, tmp_path_factory) -> Path:
    """A tmp folder laid out like Google's bucket, holding real files copied from ../shared."""
    root = tmp_path_factory.mktemp("bucket")
    (root / "numpy_bitmap").mkdir()
    (root / "simplified").mkdir()
    shutil.copyfile(shared / "bitmaps" / "alarm_clock.npy", root / "numpy_bitmap" / "alarm clock.npy")
    shutil.copyfile(shared / "bitmaps" / "candle.npy", root / "numpy_bitmap" / "candle.npy")
    np.save(root / "numpy_bitmap" / "cat.npy", np.load(shared / "bitmaps" / "cat.npy")[:500])
    shutil.copyfile(shared / "simplified" / "cat.ndjson", root / "simplified" / "cat.ndjson")
    shutil.copyfile(shared / "simplified" / "smiley_face.ndjson", root / "simplified" / "smiley face.ndjson")
    formats.write_binary(formats.iter_ndjson(shared / "simplified" / "snowman.ndjson", limit=800),
                         root / "binary" / "snowman.bin")
    return root


@pytest.fixture
def server(bucket):
    srv = BucketServer(bucket)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def _no_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith((".part", ".tmp")))


# ---------------------------------------------------------------- happy paths
def test_human_size():
    from pipeline.files import human_size

    assert human_size(0) == "0 B"
    assert human_size(999) == "999 B"
    assert human_size(7968) == "8.0 kB"
    assert human_size(2_666_512) == "2.7 MB"
    assert human_size(3_000_000_000) == "3.0 GB"
    assert human_size(None) == "unknown size"


def test_full_download_byte_identical_and_not_repeated(server, bucket, tmp_path):
    source = bucket / "numpy_bitmap" / "alarm clock.npy"
    p = download.plan("alarm clock", "numpy_bitmap", tmp_path, base_url=server.url)
    assert p.size == source.stat().st_size
    assert p.dest == tmp_path / "numpy_bitmap" / "alarm clock.npy"
    assert p.url == f"{server.url}/numpy_bitmap/alarm%20clock.npy"
    seen = []
    path = download.fetch_plan(p, progress=lambda done, total: seen.append((done, total)), **FAST)
    assert path.read_bytes() == source.read_bytes()
    assert seen[-1] == (p.size, p.size) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert [e["status"] for e in server.log] == [200, 200] and server.log[0]["method"] == "HEAD"
    assert _no_leftovers(tmp_path) == []
    # A finished file is not fetched again.
    assert download.fetch("alarm clock", "numpy_bitmap", tmp_path, base_url=server.url, **FAST) == path
    assert len(server.gets()) == 1


def test_per_class_numpy_bitmap_is_one_range_request(server, bucket, tmp_path):
    source = np.load(bucket / "numpy_bitmap" / "alarm clock.npy")
    p = download.plan("alarm clock", "numpy_bitmap", tmp_path, per_class=25, base_url=server.url)
    header_len = 128
    assert p.size == header_len + 25 * 784 and p.npy_rows == 25
    path = download.fetch_plan(p, **FAST)
    row_requests = [e for e in server.gets() if e["range"] and int(e["range"].split("-")[1]) >= header_len]
    assert row_requests == [{"method": "GET", "path": "/numpy_bitmap/alarm clock.npy",
                             "range": f"bytes=0-{p.size - 1}", "status": 206}]
    assert all(e["range"] for e in server.gets())  # never the whole file
    rows = formats.read_numpy_bitmap(path)
    assert rows.shape == (25, 784)
    np.testing.assert_array_equal(rows, source[:25])
    assert path.stat().st_size == p.size
    (tmp_path / "plain").write_bytes(b"")
    assert path.stat().st_mode == (tmp_path / "plain").stat().st_mode  # usual permissions, not 0600
    # Asking for more rows than the file has gives the whole file.
    whole = download.fetch("candle", "numpy_bitmap", tmp_path, per_class=100_000, base_url=server.url, **FAST)
    assert np.array_equal(np.load(whole), np.load(bucket / "numpy_bitmap" / "candle.npy"))
    # A later request for more rows than the file on disk fetches again; fewer does not.
    download.fetch("alarm clock", "numpy_bitmap", tmp_path, per_class=10, base_url=server.url, **FAST)
    assert formats.read_numpy_bitmap(path).shape == (25, 784)
    download.fetch("alarm clock", "numpy_bitmap", tmp_path, per_class=40, base_url=server.url, **FAST)
    np.testing.assert_array_equal(formats.read_numpy_bitmap(path), source[:40])


def test_per_class_ndjson_and_binary_stop_after_n(server, bucket, tmp_path):
    p = download.plan("cat", "simplified", tmp_path, per_class=7, base_url=server.url)
    assert p.size is None
    path = download.fetch_plan(p, **FAST)
    source_lines = (bucket / "simplified" / "cat.ndjson").read_bytes().splitlines(keepends=True)
    assert path.read_bytes() == b"".join(source_lines[:7])
    assert len(list(formats.iter_ndjson(path))) == 7

    path = download.fetch("snowman", "binary", tmp_path, per_class=5, base_url=server.url, **FAST)
    got = list(formats.iter_binary(path, stats=(stats := formats.ReadStats())))
    assert stats.skipped == 0
    assert got == list(formats.iter_binary(bucket / "binary" / "snowman.bin", limit=5))
    assert _no_leftovers(tmp_path) == []


# ---------------------------------------------------------------- misbehaving servers
def test_dropped_connection_is_resumed_with_range(server, bucket, tmp_path):
    source = (bucket / "numpy_bitmap" / "alarm clock.npy").read_bytes()
    server.cuts = [1_000_003]
    path = download.fetch("alarm clock", "numpy_bitmap", tmp_path, base_url=server.url, **FAST)
    assert path.read_bytes() == source
    gets = server.gets()
    assert [(e["range"], e["status"]) for e in gets] == [(None, 200), ("bytes=1000003-", 206)]


def test_server_answering_200_to_range_restarts(server, bucket, tmp_path):
    source = (bucket / "numpy_bitmap" / "alarm clock.npy").read_bytes()
    server.cuts = [700_000]
    server.ignore_range = True
    path = download.fetch("alarm clock", "numpy_bitmap", tmp_path, base_url=server.url, **FAST)
    assert path.read_bytes() == source
    gets = server.gets()
    assert gets[-1]["range"] == "bytes=700000-" and gets[-1]["status"] == 200


def test_stalled_server_times_out_and_resumes(server, bucket, tmp_path):
    source = (bucket / "simplified" / "cat.ndjson").read_bytes()
    server.stalls = [50_000]
    path = download.fetch("cat", "simplified", tmp_path, base_url=server.url, backoff=0.001, timeout=0.2)
    assert path.read_bytes() == source
    assert [e["range"] for e in server.gets()] == [None, "bytes=50000-"]


def test_server_errors_are_retried_then_reported(server, bucket, tmp_path):
    source = (bucket / "simplified" / "cat.ndjson").read_bytes()
    server.errors = [503, 500]
    path = download.fetch("cat", "simplified", tmp_path, base_url=server.url, **FAST)
    assert path.read_bytes() == source
    assert [e["status"] for e in server.gets()] == [503, 500, 200]
    path.unlink()
    server.errors = [503] * 3
    with pytest.raises(DownloadError, match="HTTP 503"):
        download.fetch("cat", "simplified", tmp_path, base_url=server.url, retries=2, **FAST)
    assert not path.exists()


def test_truncated_body_every_time_fails_without_dest(server, bucket, tmp_path):
    size = (bucket / "numpy_bitmap" / "alarm clock.npy").stat().st_size
    server.truncate_to = size // 2
    with pytest.raises(DownloadError, match=r"alarm%20clock\.npy failed 4 times in a row.*resume"):
        download.fetch("alarm clock", "numpy_bitmap", tmp_path, base_url=server.url, retries=3, **FAST)
    dest = tmp_path / "numpy_bitmap" / "alarm clock.npy"
    assert not dest.exists()
    part = dest.with_name(dest.name + ".part")
    assert part.stat().st_size == size // 2  # kept for the next run to resume
    assert len(server.gets()) == 5  # first try made progress, then 4 failures in a row
    # Once the server is fixed, the next run resumes from the .part.
    server.truncate_to = None
    download.fetch("alarm clock", "numpy_bitmap", tmp_path, base_url=server.url, **FAST)
    assert dest.read_bytes() == (bucket / "numpy_bitmap" / "alarm clock.npy").read_bytes()
    assert server.gets()[-1]["range"] == f"bytes={size // 2}-"


def test_part_left_by_an_earlier_run_is_resumed(server, bucket, tmp_path):
    source = (bucket / "simplified" / "smiley face.ndjson").read_bytes()
    part = tmp_path / "simplified" / "smiley face.ndjson.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(source[:12345])
    path = download.fetch("smiley face", "simplified", tmp_path, base_url=server.url, **FAST)
    assert path.read_bytes() == source
    assert [e["range"] for e in server.gets()] == ["bytes=12345-"]
    # A .part already holding the whole file: the server answers 416 and the file is complete.
    path.unlink()
    part.write_bytes(source)
    download.fetch("smiley face", "simplified", tmp_path, base_url=server.url, **FAST)
    assert path.read_bytes() == source and not part.exists()


def test_404_names_the_url_and_local_fix(server, tmp_path):
    with pytest.raises(DownloadError) as info:
        download.fetch("hot air balloon", "numpy_bitmap", tmp_path, base_url=server.url, **FAST)
    message = str(info.value)
    assert f"{server.url}/numpy_bitmap/hot%20air%20balloon.npy was not found (HTTP 404)" in message
    assert "--base-url" in message and "hot air balloon.npy" in message
    assert not (tmp_path / "numpy_bitmap").exists()


def test_connection_refused_is_a_download_error(tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DownloadError, match=rf"cannot reach http://127.0.0.1:{port}/numpy_bitmap/cat.npy.*offline"):
        download.fetch("cat", "numpy_bitmap", tmp_path, base_url=f"http://127.0.0.1:{port}", **FAST)
    with pytest.raises(DownloadError, match="local files"):
        download.plan("cat", "simplified", tmp_path, per_class=3, base_url=f"http://127.0.0.1:{port}/")


def test_reliability_random_cuts_resume_byte_identical(server, bucket, tmp_path):
    rng = random.Random(20240611)
    files = [("alarm clock", "numpy_bitmap", "numpy_bitmap/alarm clock.npy"),
             ("smiley face", "simplified", "simplified/smiley face.ndjson"),
             ("snowman", "binary", "binary/snowman.bin")]
    for cls, fmt, rel in files:
        source = (bucket / rel).read_bytes()
        server.log.clear()
        server.cuts = sorted(rng.sample(range(1, len(source)), 5))
        cuts = list(server.cuts)
        path = download.fetch(cls, fmt, tmp_path, base_url=server.url, **FAST)
        assert path.read_bytes() == source, cls
        assert server.cuts == []  # every cut happened
        assert [e["range"] for e in server.gets()] == [None] + [f"bytes={c}-" for c in cuts]
        assert [e["status"] for e in server.gets()] == [200] + [206] * 5
    assert _no_leftovers(tmp_path) == []


def test_per_class_download_survives_cuts(server, bucket, tmp_path):
    source = np.load(bucket / "numpy_bitmap" / "alarm clock.npy")
    server.cuts = [5000, 40_000]
    path = download.fetch("alarm clock", "numpy_bitmap", tmp_path, per_class=60, base_url=server.url, **FAST)
    np.testing.assert_array_equal(formats.read_numpy_bitmap(path), source[:60])
    assert [e["range"] for e in server.gets()] == ["bytes=0-127",  # plan(): the .npy header
                                                   f"bytes=0-{128 + 60 * 784 - 1}",
                                                   f"bytes=5000-{128 + 60 * 784 - 1}",
                                                   f"bytes=40000-{128 + 60 * 784 - 1}"]
    lines = (bucket / "simplified" / "cat.ndjson").read_bytes().splitlines(keepends=True)
    server.cuts = [len(b"".join(lines[:3])) + 10]
    path = download.fetch("cat", "simplified", tmp_path, per_class=30, base_url=server.url, **FAST)
    assert path.read_bytes() == b"".join(lines[:30])


# ---------------------------------------------------------------- local folders and the CLI
def test_local_folder_base_url(shared, tmp_path):
    # ../shared is laid out with bitmaps/ and underscores.
    path = download.fetch("alarm clock", "numpy_bitmap", tmp_path, per_class=20, base_url=str(shared))
    assert path == tmp_path / "numpy_bitmap" / "alarm clock.npy"
    np.testing.assert_array_equal(formats.read_numpy_bitmap(path),
                                  np.load(shared / "bitmaps" / "alarm_clock.npy")[:20])
    source = (shared / "simplified" / "smiley_face.ndjson").read_bytes()
    p = download.plan("smiley face", "simplified", tmp_path, base_url=(shared).as_uri())
    assert p.is_local and p.size == len(source)
    assert download.fetch_plan(p).read_bytes() == source
    path = download.fetch("cat", "raw", tmp_path, per_class=4, base_url=str(shared))
    assert [json.loads(line)["key_id"] for line in path.read_text().splitlines()] == \
        [r["key_id"] for r in formats.iter_ndjson(shared / "raw" / "cat.ndjson", limit=4)]
    with pytest.raises(DownloadError, match="no numpy_bitmap file for 'zebra'"):
        download.plan("zebra", "numpy_bitmap", tmp_path, base_url=str(shared))
    with pytest.raises(DownloadError, match="neither an http"):
        download.plan("cat", "numpy_bitmap", tmp_path, base_url=str(tmp_path / "nowhere"))
    assert _no_leftovers(tmp_path) == []


def test_cli_download_prints_size_first(server, bucket, tmp_path, capsys):
    from pipeline.cli import main
    from pipeline.files import human_size

    code = main(["download", "cat", "--format", "numpy_bitmap", "--per-class", "10", "--data", str(tmp_path),
                 "--base-url", server.url])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0] == f"1 file(s), {human_size(128 + 10 * 784)} to fetch into {tmp_path}"
    assert out[1] == f"cat: {tmp_path / 'numpy_bitmap' / 'cat.npy'}"
    np.testing.assert_array_equal(formats.read_numpy_bitmap(tmp_path / "numpy_bitmap" / "cat.npy"),
                                  np.load(bucket / "numpy_bitmap" / "cat.npy")[:10])


def test_cli_download_offline_is_one_line_error(tmp_path, capsys):
    from pipeline.cli import main

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = main(["download", "cat", "--data", str(tmp_path), "--base-url", f"http://127.0.0.1:{port}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: cannot reach")
