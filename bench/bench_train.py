"""Training throughput: the project's pipeline vs the seed's in-memory `model.fit`, side by side.

    python bench/bench_train.py [--classes 20] [--per-class 3000] [--repeats 3]

For `cnn` and `mobilenet`, on the same drawings of ../shared (or $QUICKDRAW_SHARED) with the same
batch size: one epoch through pipeline.train (memory-mapped uint8 cache, batches read ahead by a
thread, our own train step, validation and the epoch's checkpoint and best model included) against
`model.fit` on a float32 array held in memory (the seed's way, validation included). Both clocks start
with TensorFlow and Keras imported and the data on hand, and include tracing the step functions.
The default size is the seed's 3,000 drawings per class (fewer where ../shared has fewer), so an
epoch is long enough that the once-per-chunk costs (building the model, tracing) weigh as they do in
real training, not as in a two-second toy epoch.

Sides and their compile settings:
- pipeline: the project's defaults (a `tf.function` step, no XLA; `--precision auto`, which is
  mixed_bfloat16 on a CPU with bfloat16 instructions - this machine's - else float32);
- pipeline-float32: the same in float32 (what the pipeline does on a CPU without bfloat16);
- pipeline-xla (cnn): the defaults with $QUICKDRAW_JIT_COMPILE=1 (the step compiled by XLA);
- fit: `model.compile` defaults, `jit_compile="auto"`, which Keras resolves to no XLA on a CPU,
  float32 (Keras' default dtype policy);
- fit-bf16: the same under Keras' mixed_bfloat16 policy (the fair comparison for the pipeline's default);
- fit-xla (cnn): `model.compile(jit_compile=True)`.

Each measurement runs in its own subprocess so peak memory is its own; the sides are interleaved and
the median of `--repeats` runs is reported; the XLA sides, several times slower than the rest, are
measured once (`--xla-repeats`). Targets: for the seed's CNN, pipeline/fit >= 1.3 against `model.fit`
with its defaults (the issue's target), with the ratios at equal precision (pipeline/fit-bf16,
pipeline-float32/fit) and against fit with XLA reported beside it; for MobileNet pipeline/fit >= 0.95.
The FLOP rate: the model's forward FLOPs per drawing counted by TensorFlow's graph profiler
(tf.compat.v1.profiler, float_operation) at batch 1, training taken as 3x forward (forward, gradients
of activations and of weights), times the median samples/s - an epoch's rate including validation and
saving, so the step alone runs faster - against the machine's rough peak: cores x 32 float32 FLOP per
cycle (two 256-bit FMA units) x the clock /proc/cpuinfo reports; bfloat16 dot products (AVX512-BF16)
run at twice that.
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
SIDES = {"cnn": ("fit", "fit-bf16", "fit-xla", "pipeline", "pipeline-float32", "pipeline-xla"),
         "mobilenet": ("fit", "fit-bf16", "pipeline", "pipeline-float32")}
XLA_SIDES = ("fit-xla", "pipeline-xla")
TARGETS = {"cnn": 1.3, "mobilenet": 0.95}  # pipeline / fit (defaults)
FLOP_PER_CYCLE_PER_CORE = 32  # float32, AVX2: two FMA units x 8 lanes x 2 FLOP


def bitmap_classes(n: int) -> list[str]:
    from pipeline.formats import available_classes

    ranked = sorted(available_classes(SHARED, "numpy_bitmap"),
                    key=lambda c: -os.path.getsize(_bitmap_file(c)))
    return ranked[:n]


def _bitmap_file(cls: str) -> Path:
    return SHARED / "bitmaps" / f"{cls.replace(' ', '_')}.npy"


def measure_pipeline(model: str, classes: list[str], per_class: int, batch_size: int, workdir: Path,
                     precision: str = "auto") -> dict:
    import keras  # noqa: F401  - imported before the clock starts, as on fit's side
    import tensorflow  # noqa: F401

    from pipeline import runs
    from pipeline.chunks import run_chunks
    from pipeline.datasets import load_dataset

    name = f"bench-{model}-{time.time_ns()}"
    config = runs.make_config(name=name, model=model, classes=tuple(classes), per_class=per_class,
                              data_root=str(SHARED), epochs_per_chunk=1, batch_size=batch_size,
                              model_options=MODELS[model], precision=precision)
    run_dir = runs.create_run(config, workdir / "runs")
    load_dataset(config)  # render/copy the cache outside the timed part, as fit's array is loaded before
    with PeakMemory() as peak:
        start = time.perf_counter()
        assert run_chunks(run_dir) == 0
        seconds = time.perf_counter() - start
    dataset = load_dataset(config)
    n = len(dataset.indices("train"))
    return {"samples_per_s": n / seconds, "seconds": seconds, "train_samples": n, "peak_rss_mb": peak.peak_mb,
            "precision": config.precision}


def measure_fit(model: str, classes: list[str], per_class: int, batch_size: int, workdir: Path,
                jit_compile="auto", precision: str = "float32") -> dict:
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
        net = build_model(model, len(classes), x_train.shape[1:], precision=precision, **MODELS[model])
        net.compile(keras.optimizers.Adam(0.002), "sparse_categorical_crossentropy",
                    metrics=["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(3)], jit_compile=jit_compile)
        start = time.perf_counter()
        net.fit(x_train, y_train, batch_size=batch_size, epochs=1, shuffle=True, validation_data=(x_val, y_val),
                verbose=0)
        seconds = time.perf_counter() - start
    return {"samples_per_s": len(x_train) / seconds, "seconds": seconds, "train_samples": len(x_train),
            "peak_rss_mb": peak.peak_mb, "precision": precision}


def forward_flops(model: str, num_classes: int) -> int:
    """FLOPs of one drawing's forward pass, counted by TensorFlow's graph profiler at batch 1."""
    import tensorflow as tf

    from pipeline.models import build_model

    net = build_model(model, num_classes, (28, 28, 1), **MODELS[model])
    graph = tf.function(lambda x: net(x, training=False)).get_concrete_function(
        tf.TensorSpec((1, 28, 28, 1), tf.float32)).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return int(tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops)


def peak_gflops() -> tuple[float, float, int]:
    """(rough peak GFLOP/s, clock GHz, cores): cores x 32 float32 FLOP per cycle x /proc/cpuinfo's clock."""
    clocks = [float(line.split(":")[1]) for line in Path("/proc/cpuinfo").read_text().splitlines()
              if line.startswith("cpu MHz")]
    ghz = max(clocks) / 1000.0
    cores = os.cpu_count() or 1
    return cores * FLOP_PER_CYCLE_PER_CORE * ghz, ghz, cores


def _child(args) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    classes = json.loads(args.child_classes)
    if args.child == "flops":
        print("RESULT " + json.dumps({"forward_flops": forward_flops(args.child_model, len(classes))}))
        return
    with tempfile.TemporaryDirectory() as tmp:
        common = (args.child_model, classes, args.per_class, args.batch_size, Path(tmp))
        if args.child.startswith("pipeline"):
            result = measure_pipeline(*common, precision="float32" if args.child == "pipeline-float32" else "auto")
        else:
            result = measure_fit(*common, jit_compile=True if args.child == "fit-xla" else "auto",
                                 precision="mixed_bfloat16" if args.child == "fit-bf16" else "float32")
    print("RESULT " + json.dumps(result))


def run_side(side: str, model: str, classes: list[str], args) -> dict:
    command = [sys.executable, __file__, "--child", side, "--child-model", model, "--child-classes",
               json.dumps(classes), "--per-class", str(args.per_class), "--batch-size", str(args.batch_size)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore",
           "QUICKDRAW_JIT_COMPILE": "1" if side == "pipeline-xla" else "0"}
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{side} {model} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][7:])


def verdict(ratio: float, target: float) -> str:
    return f"{ratio:.2f}x (target >= {target}: {'PASS' if ratio >= target else 'FAIL'})"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--per-class", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--xla-repeats", type=int, default=1, help="runs of the (slow) XLA sides")
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--child", choices=(*SIDES["cnn"], "flops"),
                        help=argparse.SUPPRESS)
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
    peak, ghz, cores = peak_gflops()
    print(f"training throughput, {len(classes)} classes x {args.per_class} drawings, batch {args.batch_size}, "
          f"median of {args.repeats} interleaved runs; machine peak ~{peak:.0f} GFLOP/s float32 "
          f"({cores} cores x {FLOP_PER_CYCLE_PER_CORE} FLOP/cycle x {ghz:.2f} GHz from /proc/cpuinfo), "
          f"~{2 * peak:.0f} GFLOP/s for bfloat16 dot products; the XLA sides: {args.xla_repeats} run(s)")
    print(f"{'model':10} {'side':17} {'precision':15} {'runs':>4} {'samples/s':>10} {'peak RSS MB':>12} "
          f"{'GFLOP/s':>8} {'% of peak':>9}")
    for model in args.models:
        flops = run_side("flops", model, classes, args)["forward_flops"]
        samples = {side: [] for side in SIDES[model]}
        for repeat in range(args.repeats):
            for side in SIDES[model]:
                if side not in XLA_SIDES or repeat < args.xla_repeats:
                    samples[side].append(run_side(side, model, classes, args))
        row = {"forward_mflops_per_sample": flops / 1e6}
        for side, runs in samples.items():
            rate = statistics.median(r["samples_per_s"] for r in runs)
            gflops = rate * 3 * flops / 1e9
            precision = runs[0]["precision"]
            side_peak = peak * (2 if precision == "mixed_bfloat16" else 1)
            row[side] = {"samples_per_s": rate, "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs),
                         "gflops": gflops, "percent_of_peak": 100 * gflops / side_peak, "precision": precision,
                         "runs": len(runs)}
            print(f"{model:10} {side:17} {precision:15} {len(runs):>4} {rate:>10.0f} {row[side]['peak_rss_mb']:>12.0f} "
                  f"{gflops:>8.1f} {row[side]['percent_of_peak']:>8.1f}%")

        def ratio(a: str, b: str, row=row) -> float:
            return row[a]["samples_per_s"] / row[b]["samples_per_s"]

        row["throughput_ratio"] = ratio("pipeline", "fit")
        row["memory_ratio"] = row["fit"]["peak_rss_mb"] / max(row["pipeline"]["peak_rss_mb"], 1e-9)
        print(f"{model:10} forward {flops / 1e6:.2f} MFLOP/drawing (TensorFlow's profiler), training ~3x that")
        print(f"{model:10} pipeline/fit (defaults, the target side) throughput "
              f"{verdict(row['throughput_ratio'], TARGETS[model])}; fit/pipeline peak memory {row['memory_ratio']:.2f}x")
        row["ratio_same_precision"] = {
            "pipeline/fit-bf16": ratio("pipeline", "fit-bf16") if row["pipeline"]["precision"] != "float32"
            else ratio("pipeline", "fit"),
            "pipeline-float32/fit": ratio("pipeline-float32", "fit")}
        same = row["ratio_same_precision"]
        if row["pipeline"]["precision"] == "float32":
            print(f"{model:10} at equal precision: pipeline/fit {same['pipeline/fit-bf16']:.2f}x (the pipeline's default "
                  f"is float32 for {model}); pipeline and pipeline-float32 are the same configuration, so their ratio, "
                  f"{ratio('pipeline', 'pipeline-float32'):.2f}x, is the run-to-run noise; mixed_bfloat16 vs float32: "
                  f"fit {ratio('fit-bf16', 'fit'):.2f}x")
        else:
            print(f"{model:10} at equal precision: pipeline/fit-bf16 {same['pipeline/fit-bf16']:.2f}x, pipeline-float32/fit "
                  f"{same['pipeline-float32/fit']:.2f}x; mixed_bfloat16 vs float32: pipeline "
                  f"{ratio('pipeline', 'pipeline-float32'):.2f}x, fit {ratio('fit-bf16', 'fit'):.2f}x")
        if "fit-xla" in row:
            row["throughput_ratio_vs_fit_xla"] = row["pipeline"]["samples_per_s"] / row["fit-xla"]["samples_per_s"]
            print(f"{model:10} pipeline/fit-xla (fit with jit_compile=True) throughput "
                  f"{verdict(row['throughput_ratio_vs_fit_xla'], TARGETS[model])}")
        if "pipeline-xla" in row:
            print(f"{model:10} pipeline-xla/pipeline {row['pipeline-xla']['samples_per_s'] / row['pipeline']['samples_per_s']:.2f}x "
                  "(reported: why XLA is opt-in)")
        results[model] = row
    return results


if __name__ == "__main__":
    main()
