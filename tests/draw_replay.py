"""Replaying real Quick, Draw! drawings as mouse strokes on a drawing page (issue 9 §3).

Shared by the Draw page's replays (tests/test_dashboard_browser.py) and web/'s (tests/test_web.py):
the same 40 drawings of ../shared/quickdraw/simplified, drawn at the same two paces, checked the same
way - every stroke drawn arrives with every point, and the page's top-1 equals pipeline.predict's on
the original strokes.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPLAYS = 40
MARGIN = 15  # canvas pixels left free on every side, as the older browser tests draw


@dataclass(frozen=True)
class Pace:
    name: str
    move: float    # seconds between two mouse moves of a stroke
    stroke: float  # seconds between a mouse-up and the next stroke's mouse-down


BRISK = Pace("brisk", move=0.0, stroke=0.1)
HUMAN = Pace("human", move=0.02, stroke=0.3)


def replay_set(shared: Path, classes: list[str], count: int = REPLAYS) -> list[tuple[str, list]]:
    """`count` drawings of the model's classes that ../shared has strokes for, deterministic: the
    first drawings of each such class, taken in turn (with 9 classes: 5 of the first 4, 4 of the rest)."""
    folder = Path(shared) / "simplified"
    files = []
    for name in classes:
        for candidate in (name, name.replace(" ", "_")):
            if (folder / f"{candidate}.ndjson").exists():
                files.append((name, folder / f"{candidate}.ndjson"))
                break
    if not files:
        return []
    per_class = math.ceil(count / len(files))
    pools = []
    for name, path in files:
        with open(path, encoding="utf-8") as fh:
            drawings = []
            for line in fh:
                drawings.append(json.loads(line)["drawing"])
                if len(drawings) == per_class:
                    break
        pools.append((name, drawings))
    turns = [(name, drawings[i]) for i in range(per_class) for name, drawings in pools if i < len(drawings)]
    return turns[:count]


def drawn_points(drawing: list, box: dict, margin: float = MARGIN) -> list[np.ndarray]:
    """Each stroke's points (0..255) mapped into the canvas box: (n, 2) arrays of canvas pixels."""
    scale = (min(box["width"], box["height"]) - 2 * margin) / 255.0
    return [np.stack([margin + np.asarray(s[0], float) * scale, margin + np.asarray(s[1], float) * scale], axis=1)
            for s in drawing]


def _wait_until(deadline: float) -> None:
    """Deliberate pacing, not a wait for the page: the replay keeps a person's timing between mouse
    events (the Pace), which is what the Draw page and web/ must cope with."""
    delay = deadline - time.perf_counter()
    if delay > 0:
        time.sleep(delay)


def replay(page, drawing: list, box: dict, pace: Pace, margin: float = MARGIN) -> tuple[list[np.ndarray], float]:
    """Draw each stroke as mouse down, one move per point, mouse up, at `pace` (intervals measured from
    the previous event, so the browser's own delay in taking an event counts towards them); returns
    the points drawn (canvas pixels) and `time.perf_counter()` at the last mouse-up."""
    strokes = drawn_points(drawing, box, margin)
    last_up = None
    for points in strokes:
        page.mouse.move(box["x"] + points[0, 0], box["y"] + points[0, 1])  # pen up, to the stroke's start
        if last_up is not None:
            _wait_until(last_up + pace.stroke)
        page.mouse.down()
        last = time.perf_counter()
        for x, y in points[1:]:
            _wait_until(last + pace.move)
            last = time.perf_counter()
            page.mouse.move(box["x"] + x, box["y"] + y)
        page.mouse.up()
        last_up = time.perf_counter()
    return strokes, last_up


def stroke_problems(drawn: list[np.ndarray], arrived: list[np.ndarray], tolerance: float = 1.0) -> list[str]:
    """What differs between the strokes drawn and the strokes that arrived (canvas pixels)."""
    if len(arrived) != len(drawn):
        return [f"{len(drawn)} strokes drawn, {len(arrived)} arrived"]
    problems = []
    for i, (d, a) in enumerate(zip(drawn, arrived, strict=True)):
        a = np.asarray(a, float)[:, :2]
        if len(a) != len(d):
            problems.append(f"stroke {i + 1}: {len(d)} points drawn, {len(a)} arrived")
        elif len(d) and float(np.abs(a - d).max()) > tolerance:
            problems.append(f"stroke {i + 1}: points off by up to {float(np.abs(a - d).max()):.1f} px")
    return problems


@dataclass
class Outcome:
    """One replayed drawing."""
    name: str
    strokes: int
    problems: list[str] = field(default_factory=list)
    page_top1: str | None = None
    python_top1: str | None = None
    latency: float | None = None  # seconds from the last mouse-up to the guess for the whole drawing

    @property
    def lost_strokes(self) -> bool:
        return any(p.endswith("arrived") and p[0].isdigit() for p in self.problems)


def summary(page_name: str, pace: Pace, outcomes: list[Outcome]) -> str:
    agree = sum(o.page_top1 == o.python_top1 for o in outcomes)
    lost = sum(o.lost_strokes for o in outcomes)
    points = sum(bool(o.problems) and not o.lost_strokes for o in outcomes)
    lines = [f"{page_name}, {pace.name} pace ({pace.move * 1000:.0f} ms between moves, "
             f"{pace.stroke * 1000:.0f} ms between strokes): top-1 equals pipeline.predict on the original "
             f"strokes for {agree}/{len(outcomes)}; whole strokes lost in {lost}/{len(outcomes)} drawings, "
             f"points differing in {points}/{len(outcomes)}"]
    latencies = [o.latency for o in outcomes if o.latency is not None]
    if latencies:
        lines.append(f"  final guess after the last mouse-up: p50 {np.median(latencies):.3f} s, "
                     f"max {max(latencies):.3f} s" + (f" ({len(outcomes) - len(latencies)} never shown)"
                                                     if len(latencies) < len(outcomes) else ""))
    for i, o in enumerate(outcomes):
        if o.problems or o.page_top1 != o.python_top1:
            lines.append(f"  #{i} {o.name} ({o.strokes} strokes): page {o.page_top1}, python {o.python_top1}; "
                         + ("; ".join(o.problems) or "all strokes arrived"))
    return "\n".join(lines)
