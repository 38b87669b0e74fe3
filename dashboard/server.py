"""`streamlit run dashboard` as a background server for scripts: the browser tests
(tests/test_dashboard_browser.py) and the Draw page benchmark (`python bench/bench_draw.py`) start the
dashboard through `running_dashboard` and drive it with Playwright.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthy(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as response:
            return response.read().strip() == b"ok"
    except OSError:
        return False


@contextlib.contextmanager
def running_dashboard(runs_dir: Path, data: Path, log_path: Path, timeout: float = 120.0) -> Iterator[str]:
    """The dashboard over `runs_dir` and `data` (its own session, output in `log_path`) on a free port of
    127.0.0.1; yields its base URL once it answers, stops it afterwards. RuntimeError with the end of its
    log when it does not start within `timeout` seconds."""
    port = _free_port()
    env = dict(os.environ, QUICKDRAW_RUNS=str(runs_dir), QUICKDRAW_DATA=str(data), PYTHONUNBUFFERED="1")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "dashboard", "--server.headless", "true", "--server.port",
             str(port), "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while not _healthy(base):  # no page exists yet to wait on: poll the health endpoint
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"streamlit did not start: {Path(log_path).read_text(errors='replace')[-2000:]}")
                time.sleep(0.5)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
