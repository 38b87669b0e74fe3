"""`make bench` / `python -m bench [NAME...]`: run every benchmark and write bench/RESULTS.md.

Each benchmark is a script in this folder that measures its sides in one run and prints a table with
ratios; RESULTS.md records each one's output verbatim with the command that produced it and the date.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = {
    "data": ("bench_data.py", "data loading: project dataset vs the seed's loader"),
    "render": ("bench_render.py", "rendering throughput: Google-exact and colour-coded vs cv2 per-segment"),
    "scale": ("bench_scale.py", "one million colour-coded drawings: cache build and one epoch (100,000 here; "
                                "`python bench/bench_scale.py --drawings 1000000` for the README)"),
    "train": ("bench_train.py", "training throughput: pipeline vs in-memory model.fit (defaults and XLA), FLOP rate vs the machine's peak"),
    "precision": ("bench_precision.py", "mixed bfloat16 vs float32: accuracy and training time of the seed's CNN"),
    "predict": ("bench_predict.py", "prediction latency: Python and Chromium (TF.js)"),
    "draw": ("bench_draw.py", "Draw page latency: the page's own path (strokes in -> top-5) vs the bare model call"),
    "dashboard": ("bench_dashboard.py", "dashboard scaling: 10 vs 200 runs"),
}


def _earlier_sections() -> dict[str, str]:
    """{benchmark: its section} of the RESULTS.md there is, each marked with the date it was measured:
    `python -m bench train` re-measures one benchmark and keeps the others as they were."""
    path = HERE / "RESULTS.md"
    if not path.exists():
        return {}
    text = path.read_text()
    date = text.split(" on ", 1)[1].split(" on this machine", 1)[0] if " on this machine" in text else "an earlier run"
    kept = {}
    for name, (script, title) in BENCHMARKS.items():
        start = text.find(f"## {title}\n")
        if start < 0:
            continue
        end = text.find("\n## ", start + 1)
        body = text[start:end if end >= 0 else len(text)].rstrip() + "\n"
        if "(measured " not in body:
            body = body.replace(f"`python bench/{script}`", f"`python bench/{script}` (measured {date})", 1)
        kept[name] = body
    return kept


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    sections = _earlier_sections() if argv else {}
    failed = 0
    for name in names:
        script, title = BENCHMARKS[name]
        if not (HERE / script).exists():
            sections[name] = f"## {title}\n\n`python bench/{script}`: not present.\n"
            continue
        print(f"== {name}: python bench/{script}", flush=True)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, str(HERE / script)], capture_output=True, text=True)
        seconds = time.perf_counter() - start
        print(proc.stdout, flush=True)
        if proc.returncode != 0:
            failed += 1
            print(proc.stderr[-3000:], file=sys.stderr)
        status = "" if proc.returncode == 0 else f" (exit code {proc.returncode})"
        when = time.strftime("%Y-%m-%d %H:%M")
        sections[name] = (f"## {title}\n\n`python bench/{script}` (measured {when}, {seconds:.0f} s){status}\n\n"
                          f"```\n{proc.stdout.strip()}\n```\n")
    header = (f"# Benchmark results\n\nWritten by `make bench` (`python -m bench`; `python -m bench NAME` re-measures "
              f"one and keeps the others) on {time.strftime('%Y-%m-%d %H:%M')} on this machine (2 cores, no GPU). Each "
              "section is the verbatim output of the command above it, with the time it was measured.\n")
    ordered = [sections[name] for name in BENCHMARKS if name in sections]
    (HERE / "RESULTS.md").write_text("\n".join([header, *ordered]))
    print(f"wrote {HERE / 'RESULTS.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
