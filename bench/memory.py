"""Peak anonymous resident memory of this process (and, if asked, its child processes), sampled in a
thread.

Anonymous memory (RssAnon in /proc/<pid>/status) is what a loader really allocates; file-backed pages
of memory-mapped data are page cache the kernel can drop, so they are excluded.
"""

from __future__ import annotations

import os
import threading
import time


def rss_anon_bytes(pid: int | str = "self") -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # a child that has just exited
        pass
    return 0


def child_pids(pid: int) -> list[int]:
    """The children of process `pid` (e.g. a process pool's workers)."""
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as fh:
                found += [int(child) for child in fh.read().split()]
    except OSError:
        pass
    return found


def tree_rss_anon_bytes(pid: int) -> int:
    """RssAnon of `pid` and all its descendants (pages shared after a fork count in each)."""
    total, pids = 0, [pid]
    while pids:
        current = pids.pop()
        total += rss_anon_bytes(current)
        pids += child_pids(current)
    return total


class PeakMemory:
    """`with PeakMemory() as peak: ...` then `peak.peak_mb` (and `peak.baseline_mb` at entry).

    With `children=True` the peak is of this process plus its descendants (render workers), and
    `peak.own_peak_mb` is this process's own."""

    def __init__(self, interval: float = 0.01, children: bool = False):
        self.interval = interval
        self.children = children
        self.peak = self.own_peak = 0
        self.baseline = 0
        self._stop = threading.Event()

    def _measure(self) -> None:
        own = rss_anon_bytes()
        self.own_peak = max(self.own_peak, own)
        self.peak = max(self.peak, tree_rss_anon_bytes(os.getpid()) if self.children else own)

    def _sample(self):
        while not self._stop.is_set():
            self._measure()
            time.sleep(self.interval)

    def __enter__(self):
        self._measure()
        self.baseline = self.peak
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._measure()

    @property
    def peak_mb(self) -> float:
        return self.peak / 2**20

    @property
    def own_peak_mb(self) -> float:
        return self.own_peak / 2**20

    @property
    def baseline_mb(self) -> float:
        return self.baseline / 2**20

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.baseline) / 2**20
