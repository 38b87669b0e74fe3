"""Finding a Chromium for export verification, browser tests and benchmarks.

`python -m pipeline.browser --ensure` (called by `make test`) uses the system Chromium when there
is one (Debian's `chromium`), otherwise runs `python -m playwright install chromium` - the path
for online users; it cannot download on an offline machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

# Flags that keep a headless Chromium quiet on a closed network and runnable as root.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]

_SYSTEM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """Path of a Chromium executable: $QUICKDRAW_CHROMIUM, the system's, or Playwright's build."""
    explicit = os.environ.get("QUICKDRAW_CHROMIUM")
    if explicit:
        return explicit if os.path.exists(explicit) else None
    for name in _SYSTEM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    try:
        with sync_playwright() as p:
            path = p.chromium.executable_path
    except Exception:  # noqa: BLE001 - playwright raises plain Exception when no driver is present
        return None
    return path if path and os.path.exists(path) else None


def launch_kwargs() -> dict:
    """Keyword arguments for Playwright's `chromium.launch` on this machine."""
    path = find_chromium()
    kwargs: dict = {"headless": True, "args": list(CHROMIUM_ARGS)}
    if path:
        kwargs["executable_path"] = path
    return kwargs


def ensure_chromium() -> str:
    path = find_chromium()
    if path:
        return path
    print("No system Chromium found; running `python -m playwright install chromium` (needs internet).")
    subprocess.run([sys.executable, "-m", "playwright", "install", "chromium"], check=False)
    path = find_chromium()
    if not path:
        raise SystemExit(
            "error: no Chromium available. Install one (Debian: `apt-get install chromium`) or run "
            "`python -m playwright install chromium` with internet access."
        )
    return path


if __name__ == "__main__":
    if "--ensure" in sys.argv:
        print(f"chromium: {ensure_chromium()}")
    else:
        print(find_chromium() or "no chromium found")
