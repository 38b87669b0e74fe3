"""Peak anonymous resident memory of this process, sampled in a thread.

Anonymous memory (RssAnon in /proc/self/status) is what a loader really allocates; file-backed pages
of memory-mapped data are page cache the kernel can drop, so they are excluded.
"""

from __future__ import annotations

import threading
import time


def rss_anon_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


class PeakMemory:
    """`with PeakMemory() as peak: ...` then `peak.peak_mb` (and `peak.baseline_mb` at entry)."""

    def __init__(self, interval: float = 0.01):
        self.interval = interval
        self.peak = 0
        self.baseline = 0
        self._stop = threading.Event()

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_anon_bytes())
            time.sleep(self.interval)

    def __enter__(self):
        self.baseline = self.peak = rss_anon_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_anon_bytes())

    @property
    def peak_mb(self) -> float:
        return self.peak / 2**20

    @property
    def baseline_mb(self) -> float:
        return self.baseline / 2**20

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.baseline) / 2**20
