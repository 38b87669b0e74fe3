"""Rendering throughput per core: Google-exact 28 px and colour-coded 64 px vs cv2 per-segment lines.

    python bench/bench_render.py [--drawings 4000] [--repeats 5] [--fit-batches 300] [--quick]

On real simplified drawings of ../shared/quickdraw/simplified (or $QUICKDRAW_SHARED), taken a few
from every class, each renderer starts from the parsed Google JSON (`record["drawing"]`):

- exact-28:  pipeline.raster.render_bitmap(drawing, 28) - cairo, Google's geometry (simplified JSON is
             drawn as it is; anything else would be simplified first);
- colour-64: pipeline.raster.render_colour_coded(drawing, 64) - pipeline.paint's numba renderer;
- cairo-64:  pipeline.raster.render_colour_coded_cairo(drawing, 64) - the same picture drawn by cairo,
             the reference colour-64 is held against (mean absolute error in grey levels, reported);
- cv2-64:    the Kaggle kernels' renderer (`kaggle_cv2_render` below): cv2.line per segment on a
             256x256 canvas, intensity 255 - min(stroke, 10) * 13, thickness 6, cv2.resize to 64;
- render_many: pipeline.raster.render_many(..., 28 / 64, workers=2), the aggregate over 2 processes.

Single-renderer rows run in this process (one core); each is the median of `--repeats` interleaved
passes. The seed CNN's training throughput is measured in a subprocess (TensorFlow on all cores):
keras `model.fit` of pipeline.models.build_model("cnn", 340, (28, 28, 1)) on float32 28x28 bitmaps in
memory, batch 256, `--fit-batches` timed batches after a warm-up. Targets: exact-28 over 2 workers
must outrun that training (ratio > 1), so rendering never starves training; colour-64 must be at
least as fast per core as cv2-64 (ratio >= 1.0) and within 1 grey level of cairo-64 on average.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHARED = Path(os.environ.get("QUICKDRAW_SHARED", REPO.parent / "shared" / "quickdraw"))
BATCH_SIZE = 256
CNN_CLASSES = 340


def load_drawings(count: int) -> list:
    """Up to `count` Google-JSON drawings, taken round-robin from every class file of shared/simplified
    (so the mix of classes, and of stroke counts, is as varied as the shared data allows)."""
    from pipeline.formats import iter_ndjson

    readers = [iter_ndjson(path) for path in sorted((SHARED / "simplified").glob("*.ndjson"))]
    drawings: list = []
    while readers and len(drawings) < count:
        for reader in list(readers):
            record = next(reader, None)
            if record is None:
                readers.remove(reader)
                continue
            drawings.append(record["drawing"])
            if len(drawings) == count:
                break
    return drawings


# ---------------------------------------------------------------- the Kaggle kernels' renderer
def kaggle_cv2_render(drawing, size: int = 64, line_width: int = 6) -> np.ndarray:
    """The per-segment cv2.line renderer of the Kaggle 'Quick, Draw!' kernels (not the project's):
    a 256x256 canvas, one cv2.line per segment, stroke t drawn at 255 - min(t, 10) * 13, resized."""
    import cv2

    img = np.zeros((256, 256), np.uint8)
    for t, stroke in enumerate(drawing):
        colour = 255 - min(t, 10) * 13
        xs, ys = stroke[0], stroke[1]
        for i in range(len(xs) - 1):
            cv2.line(img, (int(xs[i]), int(ys[i])), (int(xs[i + 1]), int(ys[i + 1])), colour, line_width)
    return cv2.resize(img, (size, size)) if size != 256 else img


# ---------------------------------------------------------------- renderers timed
def _renderers():
    from pipeline.raster import render_bitmap, render_colour_coded, render_colour_coded_cairo

    return {
        "exact-28": lambda d: render_bitmap(d, 28),
        "colour-64": lambda d: render_colour_coded(d, 64),
        "cairo-64": lambda d: render_colour_coded_cairo(d, 64),
        "cv2-64": lambda d: kaggle_cv2_render(d, 64),
    }


def colour_error(drawings: list) -> tuple[float, float]:
    """(mean, worst drawing's mean) absolute difference in grey levels, colour-64 vs cairo-64."""
    from pipeline.raster import render_colour_coded, render_colour_coded_cairo

    errors = [np.abs(render_colour_coded(d, 64).astype(np.int16) - render_colour_coded_cairo(d, 64)).mean()
              for d in drawings]
    return float(np.mean(errors)), float(np.max(errors))


def time_single(renderers: dict, drawings: list, repeats: int) -> dict:
    """{name: (drawings per wall second, drawings per CPU second)} of each renderer in this process,
    medians over interleaved passes."""
    samples = {name: [] for name in renderers}
    cpu_samples = {name: [] for name in renderers}
    for fn in renderers.values():  # warm-up: cairo surfaces, cv2 import
        for drawing in drawings[:20]:
            fn(drawing)
    for _ in range(repeats):
        for name, fn in renderers.items():
            cpu, start = time.process_time(), time.perf_counter()
            for drawing in drawings:
                fn(drawing)
            samples[name].append(len(drawings) / (time.perf_counter() - start))
            cpu_samples[name].append(len(drawings) / (time.process_time() - cpu))
    return {name: (statistics.median(samples[name]), statistics.median(cpu_samples[name])) for name in renderers}


def _cpu_with_children() -> float:
    """CPU seconds of this process and of its reaped children (render_many's pool workers)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def time_many(drawings: list, size: int, colour_coded: bool, repeats: int, workers: int = 2) -> tuple:
    """(drawings per wall second, per CPU second) of render_many over `workers` processes (pool start-up
    included, as callers pay it)."""
    from pipeline.raster import render_many

    chunk = max(100, -(-len(drawings) // (4 * workers)))
    rates, cpu_rates = [], []
    for _ in range(repeats):
        cpu, start = _cpu_with_children(), time.perf_counter()
        out = render_many(drawings, size, colour_coded=colour_coded, workers=workers, chunk=chunk)
        rates.append(len(drawings) / (time.perf_counter() - start))
        cpu_rates.append(len(drawings) / (_cpu_with_children() - cpu))
        assert out.shape == (len(drawings), size, size, 1)
    return statistics.median(rates), statistics.median(cpu_rates)


# ---------------------------------------------------------------- the seed CNN's training
def measure_fit(batches: int, warmup: int) -> dict:
    import keras

    from pipeline.models import build_model

    files = sorted((SHARED / "bitmaps").glob("*.npy"))
    needed = BATCH_SIZE * max(batches, warmup)
    x = np.concatenate([np.load(path) for path in files])
    y = np.concatenate([np.full(len(np.load(path, mmap_mode="r")), label, np.int32)
                        for label, path in enumerate(files)])
    pick = np.random.default_rng(0).permutation(len(x))
    pick = np.resize(pick, needed)  # repeats drawings if the shared set is smaller than needed
    x = x[pick].reshape(-1, 28, 28, 1).astype(np.float32)
    y = y[pick]
    keras.utils.set_random_seed(0)
    model = build_model("cnn", CNN_CLASSES, (28, 28, 1))
    model.compile(keras.optimizers.Adam(0.002), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[:BATCH_SIZE * warmup], y[:BATCH_SIZE * warmup], batch_size=BATCH_SIZE, epochs=1,
              shuffle=True, verbose=0)
    timed = BATCH_SIZE * batches
    cpu, start = time.process_time(), time.perf_counter()
    model.fit(x[:timed], y[:timed], batch_size=BATCH_SIZE, epochs=1, shuffle=True, verbose=0)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"samples_per_s": timed / seconds, "samples_per_cpu_s": timed / cpu, "seconds": seconds,
            "samples": timed}


def run_fit(args) -> dict:
    command = [sys.executable, __file__, "--child-fit", "--fit-batches", str(args.fit_batches),
               "--fit-warmup", str(args.fit_warmup)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"cnn training measurement failed (exit code {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][7:])


# ---------------------------------------------------------------- main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drawings", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--fit-batches", type=int, default=300)
    parser.add_argument("--fit-warmup", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="smoke run: 300 drawings, 1 repeat, 20 batches")
    parser.add_argument("--child-fit", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.drawings, args.repeats, args.fit_batches, args.fit_warmup = 300, 1, 20, 5
    if args.child_fit:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        print("RESULT " + json.dumps(measure_fit(args.fit_batches, args.fit_warmup)))
        return 0
    if not (SHARED / "simplified").is_dir() or not (SHARED / "bitmaps").is_dir():
        print(f"skipped: no Quick, Draw! simplified/ and bitmaps/ at {SHARED} (set QUICKDRAW_SHARED to the "
              "shared quickdraw folder)")
        return 0

    drawings = load_drawings(args.drawings)
    segments = sum(max(len(s[0]) - 1, 0) for d in drawings for s in d)
    strokes = sum(len(d) for d in drawings)
    print(f"rendering throughput on {len(drawings)} real simplified drawings ({strokes / len(drawings):.1f} "
          f"strokes, {segments / len(drawings):.1f} segments each), median of {args.repeats} passes; "
          f"{os.cpu_count()} cores")
    single = time_single(_renderers(), drawings, args.repeats)
    many28 = time_many(drawings, 28, False, args.repeats)
    many64 = time_many(drawings, 64, True, args.repeats)
    fit = run_fit(args)

    print()
    header = f"{'renderer':40} {'drawings/s':>11} {'us/drawing':>11} {'per CPU-s':>10}"
    print(header)
    print("-" * len(header))
    rows = [("exact-28    render_bitmap, 1 core", single["exact-28"]),
            ("colour-64   render_colour_coded, 1 core", single["colour-64"]),
            ("cairo-64    the same drawn by cairo, 1 core", single["cairo-64"]),
            ("cv2-64      Kaggle cv2.line, 1 core", single["cv2-64"]),
            ("exact-28    render_many, 2 workers", many28),
            ("colour-64   render_many, 2 workers", many64),
            ("seed cnn    model.fit, batch 256 (samples)", (fit["samples_per_s"], fit["samples_per_cpu_s"]))]
    for name, (rate, cpu_rate) in rows:
        print(f"{name:40} {rate:>11.0f} {1e6 / rate:>11.1f} {cpu_rate:>10.0f}")
    print(f"(seed cnn: {fit['samples']} samples in {fit['seconds']:.1f} s after {args.fit_warmup} warm-up batches; "
          "TensorFlow on all cores. 'per CPU-s' = per second of CPU time, all threads and workers counted)")
    print()
    starve = many28[0] / fit["samples_per_s"]
    verdict = "PASS" if starve > 1 else "FAIL"
    print(f"exact-28 (2 workers) / seed cnn training, wall clock: {starve:.2f}x (target > 1: {verdict})")
    print(f"exact-28 (1 core) / seed cnn training, wall clock: {single['exact-28'][0] / fit['samples_per_s']:.2f}x")
    print(f"exact-28 / seed cnn training per CPU second: {single['exact-28'][1] / fit['samples_per_cpu_s']:.2f}x "
          "(for reference: less disturbed by other work on this shared machine)")
    colour = single["colour-64"][0] / single["cv2-64"][0]
    colour_verdict = "PASS" if colour >= 1.0 else "FAIL"
    print(f"colour-64 / cv2-64 per core: {colour:.2f}x wall (target >= 1.0: {colour_verdict}), "
          f"{single['colour-64'][1] / single['cv2-64'][1]:.2f}x CPU")
    print(f"colour-64 / cairo-64 per core: {single['colour-64'][0] / single['cairo-64'][0]:.2f}x wall")
    mean_error, worst = colour_error(drawings)
    error_verdict = "PASS" if mean_error <= 1.0 else "FAIL"
    print(f"colour-64 vs cairo-64 mean absolute error: {mean_error:.3f} grey levels over {len(drawings)} drawings "
          f"(target <= 1: {error_verdict}); worst drawing {worst:.3f}")
    return 0 if verdict == colour_verdict == error_verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
