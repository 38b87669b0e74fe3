"""Dashboard scaling: the Runs and Compare pages' script runs with 10 vs 200 runs, side by side.

    python bench/bench_dashboard.py [--small 10] [--large 200] [--epochs 100] [--repeats 5]

Generates two runs folders (10 and 200 runs of 100 epochs each, written with pipeline.runs: config,
history, chunk events, status) and times each page with streamlit's AppTest, 5 runs selected for
Compare. "cold" is the first script run after clearing Streamlit's caches (every history, event log
and summary read from disk); "warm" is the median of the following runs (what a user waiting on the
page sees: caches keyed by file mtimes, so only files that changed are re-read). The target is a
200-run time within 4x of the 10-run time.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

TARGET_RATIO = 4.0
SELECTED = 5


def make_runs(runs_dir: Path, count: int, epochs: int) -> list[str]:
    """`count` finished runs of `epochs` epochs in 10-epoch chunks, alternating cnn and mobilenet."""
    from pipeline import runs
    from pipeline.runs import RunConfig

    runs_dir.mkdir(parents=True, exist_ok=True)
    names = []
    start = time.time() - 86400
    for i in range(count):
        name = f"{'cnn' if i % 2 == 0 else 'mobilenet'}-{i:03d}"
        run_dir = runs.run_path(runs_dir, name)
        run_dir.mkdir()
        config = RunConfig(name=name, model="cnn" if i % 2 == 0 else "mobilenet",
                           classes=tuple(f"class{j}" for j in range(56)), per_class=1000, epochs_per_chunk=10,
                           created=runs.now_iso())
        runs.write_config(run_dir, config)
        rows, t = [], start + i * 60
        for epoch in range(1, epochs + 1):
            acc = 0.85 - 0.6 * math.exp(-epoch / (10 + i % 7))
            rows.append({"epoch": epoch, "chunk": (epoch - 1) // 10 + 1, "started": t, "ended": t + 50,
                         "loss": 1.5 - acc, "accuracy": acc, "top3": acc + 0.08, "val_loss": 1.55 - acc,
                         "val_accuracy": acc - 0.02, "val_top3": acc + 0.06, "lr": 0.002 / (1 + epoch // 30)})
            t += 51
        runs.write_history(run_dir, rows)
        for chunk in range(1, (epochs - 1) // 10 + 2):
            runs.append_event(run_dir, "chunk_start", chunk=chunk, epoch=(chunk - 1) * 10 + 1, batch=0)
            runs.append_event(run_dir, "chunk_end", chunk=chunk, epoch=min(chunk * 10, epochs), batch=0)
        runs.write_status(run_dir, "finished", chunk=(epochs - 1) // 10 + 1, epoch=epochs)
        names.append(name)
    return names


def _page(page: str):
    from streamlit.testing.v1 import AppTest

    script = (f"import sys\nsys.path.insert(0, {str(REPO)!r})\n"
              f"from dashboard.views import {page}\n{page}.render()\n")
    return AppTest.from_string(script, default_timeout=600)


def time_page(page: str, runs_dir: Path, selected: list[str], repeats: int) -> dict:
    """Cold (caches cleared) and warm (median of `repeats`) seconds of one page's script run."""
    import streamlit as st

    os.environ["QUICKDRAW_RUNS"] = str(runs_dir)
    st.cache_data.clear()
    st.cache_resource.clear()
    at = _page(page)
    at.session_state["selected_runs"] = selected
    started = time.perf_counter()
    at.run()
    cold = time.perf_counter() - started
    if at.exception:
        raise RuntimeError(f"{page} page failed: {at.exception}")
    warm = []
    for _ in range(repeats):
        started = time.perf_counter()
        at.run()
        warm.append(time.perf_counter() - started)
    return {"cold": cold, "warm": statistics.median(warm)}


def main(small: int = 10, large: int = 200, epochs: int = 100, repeats: int = 5) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        folders, selections = {}, {}
        for count in (small, large):
            started = time.perf_counter()
            names = make_runs(Path(tmp) / f"runs-{count}", count, epochs)
            folders[count] = Path(tmp) / f"runs-{count}"
            selections[count] = names[:SELECTED]
            print(f"generated {count} runs of {epochs} epochs in {time.perf_counter() - started:.1f} s", flush=True)
        # Warm-up: imports (plotly, pandas, pipeline) and Streamlit's first-script costs are not the pages'.
        time_page("runs", folders[small], selections[small], 1)
        time_page("compare", folders[small], selections[small], 1)
        results: dict = {"epochs": epochs, "selected": SELECTED, "target_ratio": TARGET_RATIO, "pages": {}}
        for page in ("runs", "compare"):
            measured = {count: time_page(page, folders[count], selections[count], repeats) for count in (small, large)}
            entry = {}
            for phase in ("cold", "warm"):
                entry[phase] = {"small": measured[small][phase], "large": measured[large][phase],
                                "ratio": measured[large][phase] / measured[small][phase]}
            results["pages"][page] = entry
    print(f"\n{'page':8} {'phase':5} {small:>6} runs (s) {large:>6} runs (s) {'ratio':>7}  target <= {TARGET_RATIO:g}x")
    ok = True
    for page, entry in results["pages"].items():
        for phase, row in entry.items():
            verdict = "ok" if row["ratio"] <= TARGET_RATIO else "OVER"
            ok &= row["ratio"] <= TARGET_RATIO
            print(f"{page:8} {phase:5} {row['small']:15.3f} {row['large']:15.3f} {row['ratio']:7.2f}x  {verdict}")
    results["within_target"] = ok
    print(f"\n{'all within' if ok else 'NOT all within'} {TARGET_RATIO:g}x ({SELECTED} runs selected on Compare)")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=10)
    parser.add_argument("--large", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    main(args.small, args.large, args.epochs, args.repeats)
