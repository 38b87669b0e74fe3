"""Data loading: an epoch of shuffled float32 batches, the project's dataset vs the seed's loader.

    python bench/bench_data.py [--classes 340] [--per-class 3000] [--seed-classes 100] [--repeats 3] [--quick]

Writes `--classes` files `numpy_bitmap/<class>.npy` of Google's shape (uint8, (per_class, 784)) into a
temporary folder, their rows tiled from the real bitmaps of ../shared/quickdraw/bitmaps (or
$QUICKDRAW_SHARED; each repeat of the pool shifted one pixel sideways so no two rows are the same).
Then, each side in its own subprocess so its peak memory is its own:

- project: `datasets.build_cache` of all classes into a fresh cache folder (memory-mapped uint8), then
  one epoch of `iter_batches(ds, epoch_order(ds.indices("train"), 0, 1), 256)` (the trainer's feed), each batch cast to float32.
- seed: `np.concatenate([np.load(f).astype(np.float64) / 255 for f in files])`, `.astype(np.float32)`,
  labels, a shuffled permutation (the first 80% as its training part, like the project's split), then
  one epoch of `x[perm[i:i + 256]]` batches. At 340 classes that needs 13-19 GB, so the seed runs on
  `--seed-classes` classes and is compared per drawing (its time and memory grow linearly with it).

Reported per drawing loaded: wall time (cache build + epoch for the project) and peak anonymous
resident memory (RssAnon, page cache excluded). Target: seed/project at least 5x on both.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.memory import PeakMemory  # noqa: E402

SHARED = Path(os.environ.get("QUICKDRAW_SHARED", REPO.parent / "shared" / "quickdraw"))
TARGET = 5.0
TRAIN_FRACTION = 0.8  # the project's default split: 10% validation, 10% test


# ---------------------------------------------------------------- the files
def write_bitmap_files(folder: Path, classes: list[str], per_class: int) -> list[Path]:
    """`folder/numpy_bitmap/<class>.npy`, uint8 (per_class, 784), rows tiled from the real bitmaps."""
    import numpy as np

    sources = sorted((SHARED / "bitmaps").glob("*.npy"))
    pool = np.concatenate([np.load(path, allow_pickle=False) for path in sources])
    target = folder / "numpy_bitmap"
    target.mkdir(parents=True, exist_ok=True)
    files = []
    for number, cls in enumerate(classes):
        positions = number * per_class + np.arange(per_class)
        rows = pool[positions % len(pool)].reshape(per_class, 28, 28)
        repeat = positions // len(pool)
        # Each pass over the pool shifts its drawings one pixel sideways: realistic, and distinct bytes
        # (the project's split hashes a bitmap's bytes).
        for shift in np.unique(repeat[repeat > 0]):
            rows[repeat == shift] = np.roll(rows[repeat == shift], int(shift), axis=2)
        path = target / f"{cls}.npy"
        np.save(path, rows.reshape(per_class, 784))
        files.append(path)
    return files


# ---------------------------------------------------------------- the two sides
def measure_project(data_root: Path, classes: list[str], per_class: int, batch_size: int, workdir: Path) -> dict:
    import numpy as np
    import tensorflow as tf

    from pipeline.datasets import DatasetSpec, build_cache, epoch_order, iter_batches

    spec = DatasetSpec(classes=tuple(classes), per_class=per_class, data_root=str(data_root),
                       source="numpy_bitmap")
    with PeakMemory() as peak:
        cpu = time.process_time()
        start = time.perf_counter()
        dataset = build_cache(spec, workdir / "cache")
        built = time.perf_counter()
        order = epoch_order(dataset.indices("train"), 0, 1)
        seen, count, checksum = 0, 0, 0.0
        for images, labels in iter_batches(dataset, order, batch_size):  # the trainer's feed
            x = tf.cast(images, tf.float32)
            seen += int(x.shape[0])
            count += 1
            checksum += float(labels[0])
        end = time.perf_counter()
        cpu = time.process_time() - cpu
    assert seen == len(order), (seen, len(order))
    drawings = len(dataset)
    return {"drawings": drawings, "train": int(seen), "batches": count, "build_s": built - start,
            "epoch_s": end - built, "seconds": end - start, "cpu_s": cpu, "peak_mb": peak.peak_mb,
            "baseline_mb": peak.baseline_mb, "cache_mb": dataset.images.nbytes / 2**20,
            "dtype": str(np.asarray(x).dtype)}


def measure_seed(files: list[Path], per_class: int, batch_size: int) -> dict:
    """The seed's loader, as it was: float64 per class, concatenated, then float32; shuffled batches."""
    import numpy as np

    with PeakMemory() as peak:
        cpu = time.process_time()
        start = time.perf_counter()
        x = np.concatenate([np.load(f).astype(np.float64) / 255 for f in files])
        x = x.astype(np.float32)
        y = np.concatenate([np.full(per_class, label) for label in range(len(files))])
        loaded = time.perf_counter()
        perm = np.random.default_rng(0).permutation(len(x))[:int(len(x) * TRAIN_FRACTION)]
        seen, count = 0, 0
        for i in range(0, len(perm), batch_size):
            xb, yb = x[perm[i:i + batch_size]], y[perm[i:i + batch_size]]
            seen += len(xb)
            count += 1
        end = time.perf_counter()
        cpu = time.process_time() - cpu
    assert xb.dtype == np.float32 and len(yb) == len(xb)
    return {"drawings": len(x), "train": seen, "batches": count, "build_s": loaded - start,
            "epoch_s": end - loaded, "seconds": end - start, "cpu_s": cpu, "peak_mb": peak.peak_mb,
            "baseline_mb": peak.baseline_mb}


def _child(args) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    data_root = Path(args.child_root)
    classes = json.loads(args.child_classes)
    if args.child == "project":
        with tempfile.TemporaryDirectory(prefix="bench-data-cache-") as tmp:
            result = measure_project(data_root, classes, args.per_class, args.batch_size, Path(tmp))
    else:
        files = [data_root / "numpy_bitmap" / f"{cls}.npy" for cls in classes]
        result = measure_seed(files, args.per_class, args.batch_size)
    print("RESULT " + json.dumps(result))


def run_side(side: str, data_root: Path, classes: list[str], args) -> dict:
    command = [sys.executable, __file__, "--child", side, "--child-root", str(data_root),
               "--child-classes", json.dumps(classes), "--per-class", str(args.per_class),
               "--batch-size", str(args.batch_size)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{side} side failed (exit code {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][7:])


# ---------------------------------------------------------------- main
def _median(runs: list[dict]) -> dict:
    """Per-key median over repeated runs (numbers), else the first run's value."""
    return {key: type(value)(statistics.median(r[key] for r in runs)) if isinstance(value, (int, float)) else value
            for key, value in runs[0].items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=340, help="classes for the project's side")
    parser.add_argument("--per-class", type=int, default=3000)
    parser.add_argument("--seed-classes", type=int, default=100,
                        help="classes for the seed's side (340 would need 13-19 GB)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs per side; medians reported")
    parser.add_argument("--quick", action="store_true", help="smoke run: 20 / 10 classes x 500 drawings, once")
    parser.add_argument("--child", choices=("project", "seed"), help=argparse.SUPPRESS)
    parser.add_argument("--child-root", help=argparse.SUPPRESS)
    parser.add_argument("--child-classes", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args)
        return 0
    if args.quick:
        args.classes, args.seed_classes, args.per_class, args.repeats = 20, 10, 500, 1
    if not (SHARED / "bitmaps").is_dir():
        print(f"skipped: no Quick, Draw! bitmaps at {SHARED / 'bitmaps'} (set QUICKDRAW_SHARED to the "
              "shared quickdraw folder)")
        return 0

    from pipeline.categories import all_categories

    classes = list(all_categories()[:args.classes])
    seed_classes = classes[:min(args.seed_classes, len(classes))]
    runs: dict[str, list[dict]] = {"seed": [], "project": []}
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        write_bitmap_files(root, classes, args.per_class)
        print(f"wrote {len(classes)} numpy_bitmap files x {args.per_class} drawings "
              f"({len(classes) * args.per_class * 784 / 2**20:.0f} MB) in {time.perf_counter() - start:.1f} s; "
              f"batch {args.batch_size}, one epoch over the training part, float32 batches; "
              f"median of {args.repeats} interleaved runs per side, each in its own process")
        for _ in range(args.repeats):
            runs["seed"].append(run_side("seed", root, seed_classes, args))
            runs["project"].append(run_side("project", root, classes, args))
    seed, project = _median(runs["seed"]), _median(runs["project"])

    print()
    header = (f"{'side':8} {'classes':>7} {'drawings':>9} {'load s':>7} {'epoch s':>8} {'total s':>8} "
              f"{'CPU s':>6} {'us/drawing':>10} {'CPU us/dr':>9} {'peak MB':>8} {'KB/drawing':>10}")
    print(header)
    print("-" * len(header))
    per = {}
    for side, result, n_classes in (("seed", seed, len(seed_classes)), ("project", project, len(classes))):
        us = result["seconds"] / result["drawings"] * 1e6
        cpu_us = result["cpu_s"] / result["drawings"] * 1e6
        kb = result["peak_mb"] * 1024 / result["drawings"]
        per[side] = (us, kb, cpu_us)
        print(f"{side:8} {n_classes:>7} {result['drawings']:>9} {result['build_s']:>7.2f} {result['epoch_s']:>8.2f} "
              f"{result['seconds']:>8.2f} {result['cpu_s']:>6.1f} {us:>10.2f} {cpu_us:>9.2f} "
              f"{result['peak_mb']:>8.0f} {kb:>10.3f}")
    print("(load = the seed's np.load/concatenate/astype, the project's build_cache; peak = RssAnon of the whole "
          "process, page cache excluded)")
    print()
    print(f"project: cache build {project['build_s']:.2f} s, epoch {project['epoch_s']:.2f} s over "
          f"{project['train']} training drawings in {project['batches']} batches "
          f"({project['epoch_s'] / project['batches'] * 1e3:.2f} ms a batch); cache {project['cache_mb']:.0f} MB "
          f"on disk; RssAnon {project['baseline_mb']:.0f} MB before loading (TensorFlow imported)")
    print(f"seed:    load {seed['build_s']:.2f} s, epoch {seed['epoch_s']:.2f} s over {seed['train']} drawings "
          f"in {seed['batches']} batches; at {len(classes)} classes its peak would be about "
          f"{seed['peak_mb'] / seed['drawings'] * len(classes) * args.per_class / 1024:.1f} GB")
    failed = 0
    for name, index in (("time per drawing", 0), ("peak memory per drawing", 1)):
        ratio = per["seed"][index] / per["project"][index]
        verdict = "PASS" if ratio >= TARGET else "FAIL"
        failed += verdict == "FAIL"
        print(f"seed/project {name}: {ratio:.2f}x (target >= {TARGET:g}x: {verdict})")
    print(f"seed/project CPU time per drawing: {per['seed'][2] / per['project'][2]:.2f}x (for reference: "
          "the machine is shared, CPU time is less disturbed by other work than wall time)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
