"""Mixed bfloat16 vs float32: what `train --precision` costs in accuracy and gains in time.

    python bench/bench_precision.py [--per-class 2000] [--epochs 8] [--seeds 0 1] [--model cnn]

The seed's CNN (or `--model`) trained by the pipeline itself (`python -m pipeline train`, one chunk of
`--epochs` epochs, batch 256, the default plateau schedule) on every numpy_bitmap class of ../shared
(or $QUICKDRAW_SHARED), `--per-class` drawings each, once per seed in each precision; the runs are
interleaved (seed by seed, float32 then mixed_bfloat16) and each trains in its own process. Reported
per run: the final and best validation top-1 and top-3 and the training time (the epochs' own
durations from history.csv: steps, validation and saving, not the process start). Then, per precision,
the mean over seeds, and the time ratio. No target: the README states the trade. Where the CPU has no
bfloat16 instructions, mixed_bfloat16 is emulated and slower; the header says which this machine is.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHARED = Path(os.environ.get("QUICKDRAW_SHARED", REPO.parent / "shared" / "quickdraw"))
PRECISIONS = ("float32", "mixed_bfloat16")


def train(runs_dir: Path, name: str, classes: list[str], precision: str, seed: int, args) -> dict:
    from pipeline import runs

    command = [sys.executable, "-m", "pipeline", "train", "--name", name, "--model", args.model,
               "--classes", *classes, "--per-class", str(args.per_class), "--epochs-per-chunk", str(args.epochs),
               "--chunks", "1", "--seed", str(seed), "--precision", precision, "--data", str(SHARED),
               "--runs-dir", str(runs_dir)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env, timeout=7200)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:6])} ... failed:\n{proc.stderr[-3000:]}")
    history = runs.read_history(runs_dir / name)
    last = history[-1]
    return {"precision": runs.read_config(runs_dir / name).precision, "seed": seed,
            "val_top1": last["val_accuracy"], "val_top3": last["val_top3"],
            "best_top1": max(r["val_accuracy"] for r in history), "best_top3": max(r["val_top3"] for r in history),
            "seconds": sum(r["ended"] - r["started"] for r in history)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--model", default="cnn")
    args = parser.parse_args(argv)
    if not (SHARED / "bitmaps").is_dir():
        print(f"skipped: no Quick, Draw! bitmaps at {SHARED} (set QUICKDRAW_SHARED)")
        return {}
    from pipeline.formats import available_classes
    from pipeline.models import cpu_has_bfloat16

    classes = sorted(available_classes(SHARED, "numpy_bitmap"))
    os.environ.setdefault("QUICKDRAW_CACHE", str(Path(tempfile.gettempdir()) / "quickdraw-bench-cache"))
    print(f"{args.model}, {len(classes)} numpy_bitmap classes x <= {args.per_class} drawings, {args.epochs} epochs, "
          f"batch 256, seeds {' '.join(map(str, args.seeds))}; this CPU "
          f"{'has' if cpu_has_bfloat16() else 'has no'} bfloat16 instructions")
    print(f"{'precision':15} {'seed':>4} {'val top-1':>9} {'best':>6} {'val top-3':>9} {'best':>6} {'train s':>8}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for precision in PRECISIONS:
                row = train(Path(tmp), f"{precision}-{seed}", classes, precision, seed, args)
                results.append(row)
                print(f"{row['precision']:15} {seed:>4} {row['val_top1']:>9.4f} {row['best_top1']:>6.4f} "
                      f"{row['val_top3']:>9.4f} {row['best_top3']:>6.4f} {row['seconds']:>8.1f}", flush=True)
    summary = {}
    for precision in PRECISIONS:
        mine = [r for r in results if r["precision"] == precision]
        summary[precision] = {key: statistics.mean(r[key] for r in mine)
                              for key in ("val_top1", "best_top1", "val_top3", "best_top3", "seconds")}
        m = summary[precision]
        print(f"{precision:15} mean {m['val_top1']:>9.4f} {m['best_top1']:>6.4f} {m['val_top3']:>9.4f} "
              f"{m['best_top3']:>6.4f} {m['seconds']:>8.1f}")
    for seed in args.seeds:
        pair = {r["precision"]: r for r in results if r["seed"] == seed}
        print(f"seed {seed}: mixed_bfloat16 - float32 val top-1 {pair['mixed_bfloat16']['val_top1'] - pair['float32']['val_top1']:+.4f}, "
              f"time float32/mixed_bfloat16 {pair['float32']['seconds'] / pair['mixed_bfloat16']['seconds']:.2f}x")
    speed = summary["float32"]["seconds"] / summary["mixed_bfloat16"]["seconds"]
    spread = max(r["val_top1"] for r in results if r["precision"] == "float32") - min(
        r["val_top1"] for r in results if r["precision"] == "float32")
    print(f"mixed_bfloat16 trains {speed:.2f}x as fast as float32; mean val top-1 "
          f"{summary['mixed_bfloat16']['val_top1']:.4f} vs {summary['float32']['val_top1']:.4f} "
          f"({summary['mixed_bfloat16']['val_top1'] - summary['float32']['val_top1']:+.4f}; float32's own spread "
          f"over seeds {spread:.4f})")
    return {"runs": results, "summary": summary, "speed_ratio": speed}


if __name__ == "__main__":
    main()
