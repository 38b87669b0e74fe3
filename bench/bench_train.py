"""Training throughput: the project's pipeline vs the seed's in-memory `model.fit`, side by side.

    python bench/bench_train.py [--classes 20] [--per-class 1000] [--repeats 3]

For `cnn` and `mobilenet`, on the same drawings of ../shared (or $QUICKDRAW_SHARED) with the same
batch size: one epoch through pipeline.train (memory-mapped uint8 cache, tf.data batches, our own
train step, validation included) against `model.fit` on a float32 array held in memory (the seed's
way, validation included). Each measurement runs in its own subprocess so peak memory is its own;
the two sides are interleaved and the median of `--repeats` runs is reported with the ratio. The
target is a pipeline/fit throughput ratio of at least 0.95.
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
MODELS = {"cnn": {}, "mobilenet": {"alpha": 0.25, "input_size": 32}}


def bitmap_classes(n: int) -> list[str]:
    from pipeline.formats import available_classes

    ranked = sorted(available_classes(SHARED, "numpy_bitmap"),
                    key=lambda c: -os.path.getsize(_bitmap_file(c)))
    return ranked[:n]


def _bitmap_file(cls: str) -> Path:
    return SHARED / "bitmaps" / f"{cls.replace(' ', '_')}.npy"


def measure_pipeline(model: str, classes: list[str], per_class: int, batch_size: int, workdir: Path) -> dict:
    from pipeline import runs
    from pipeline.chunks import run_chunks
    from pipeline.datasets import load_dataset

    name = f"bench-{model}-{time.time_ns()}"
    config = runs.make_config(name=name, model=model, classes=tuple(classes), per_class=per_class,
                              data_root=str(SHARED), epochs_per_chunk=1, batch_size=batch_size,
                              model_options=MODELS[model])
    run_dir = runs.create_run(config, workdir / "runs")
    load_dataset(config)  # render/copy the cache outside the timed part, as fit's array is loaded before
    with PeakMemory() as peak:
        start = time.perf_counter()
        assert run_chunks(run_dir) == 0
        seconds = time.perf_counter() - start
    dataset = load_dataset(config)
    n = len(dataset.indices("train"))
    return {"samples_per_s": n / seconds, "seconds": seconds, "train_samples": n, "peak_rss_mb": peak.peak_mb}


def measure_fit(model: str, classes: list[str], per_class: int, batch_size: int, workdir: Path) -> dict:
    """The seed's way: every drawing as float32 in memory, model.fit with the same model and split."""
    import keras
    import numpy as np

    from pipeline import runs
    from pipeline.datasets import load_dataset
    from pipeline.models import build_model

    config = runs.make_config(name="fit", model=model, classes=tuple(classes), per_class=per_class,
                              data_root=str(SHARED), epochs_per_chunk=1, batch_size=batch_size,
                              model_options=MODELS[model])
    dataset = load_dataset(config)
    with PeakMemory() as peak:
        tr, va = dataset.indices("train"), dataset.indices("val")
        x_train = np.asarray(dataset.images[np.sort(tr)], dtype=np.float32)
        y_train = np.asarray(dataset.labels[np.sort(tr)])
        x_val = np.asarray(dataset.images[np.sort(va)], dtype=np.float32)
        y_val = np.asarray(dataset.labels[np.sort(va)])
        keras.utils.set_random_seed(0)
        net = build_model(model, len(classes), x_train.shape[1:], **MODELS[model])
        net.compile(keras.optimizers.Adam(0.002), "sparse_categorical_crossentropy",
                    metrics=["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(3)])
        start = time.perf_counter()
        net.fit(x_train, y_train, batch_size=batch_size, epochs=1, shuffle=True, validation_data=(x_val, y_val),
                verbose=0)
        seconds = time.perf_counter() - start
    return {"samples_per_s": len(x_train) / seconds, "seconds": seconds, "train_samples": len(x_train),
            "peak_rss_mb": peak.peak_mb}


def _child(args) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    classes = json.loads(args.child_classes)
    with tempfile.TemporaryDirectory() as tmp:
        fn = measure_pipeline if args.child == "pipeline" else measure_fit
        result = fn(args.child_model, classes, args.per_class, args.batch_size, Path(tmp))
    print("RESULT " + json.dumps(result))


def run_side(side: str, model: str, classes: list[str], args) -> dict:
    command = [sys.executable, __file__, "--child", side, "--child-model", model, "--child-classes",
               json.dumps(classes), "--per-class", str(args.per_class), "--batch-size", str(args.batch_size)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{side} {model} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][7:])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--per-class", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--child", choices=("pipeline", "fit"), help=argparse.SUPPRESS)
    parser.add_argument("--child-model", help=argparse.SUPPRESS)
    parser.add_argument("--child-classes", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args)
        return {}
    if not (SHARED / "bitmaps").is_dir():
        print(f"skipped: no Quick, Draw! bitmaps at {SHARED} (set QUICKDRAW_SHARED)")
        return {}
    classes = bitmap_classes(args.classes)
    os.environ.setdefault("QUICKDRAW_CACHE", str(Path(tempfile.gettempdir()) / "quickdraw-bench-cache"))
    results = {}
    print(f"training throughput, {len(classes)} classes x {args.per_class} drawings, batch {args.batch_size}, "
          f"median of {args.repeats} interleaved runs")
    print(f"{'model':10} {'side':9} {'samples/s':>10} {'peak RSS MB':>12}")
    for model in args.models:
        samples = {"pipeline": [], "fit": []}
        for _ in range(args.repeats):
            for side in ("fit", "pipeline"):
                samples[side].append(run_side(side, model, classes, args))
        row = {}
        for side, runs in samples.items():
            row[side] = {"samples_per_s": statistics.median(r["samples_per_s"] for r in runs),
                         "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs)}
            print(f"{model:10} {side:9} {row[side]['samples_per_s']:>10.0f} {row[side]['peak_rss_mb']:>12.0f}")
        row["throughput_ratio"] = row["pipeline"]["samples_per_s"] / row["fit"]["samples_per_s"]
        row["memory_ratio"] = row["fit"]["peak_rss_mb"] / max(row["pipeline"]["peak_rss_mb"], 1e-9)
        verdict = "PASS" if row["throughput_ratio"] >= 0.95 else "FAIL"
        print(f"{model:10} pipeline/fit throughput {row['throughput_ratio']:.2f}x (target >= 0.95: {verdict}); "
              f"fit/pipeline peak memory {row['memory_ratio']:.2f}x")
        results[model] = row
    return results


if __name__ == "__main__":
    main()
