"""The recipe sweep behind the shipped experiment's choices: `python scripts/sweep.py [--only NAME ...]`.

Trains each candidate recipe on a subset of the 56 bitmap classes of ../shared/quickdraw (at most
PER_CLASS drawings a class, the project's hash split) for EPOCHS epochs through the CLI, and compares
them on the VALIDATION split only (the test split is kept for the shipped runs). Writes the table to
runs/SWEEP.md and the numbers to runs/sweep.json; the run records go to a scratch folder
($QUICKDRAW_SWEEP_RUNS, default /tmp/quickdraw-sweep) because only the comparison is kept.
Candidates already trained there are reused, so the command can be interrupted and rerun.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = os.environ.get("QUICKDRAW_SHARED", str(REPO.parent / "shared" / "quickdraw"))
SCRATCH = Path(os.environ.get("QUICKDRAW_SWEEP_RUNS", "/tmp/quickdraw-sweep"))
PER_CLASS = 1000
EPOCHS = 10
RECIPE = ["--schedule", "cosine", "--warmup-epochs", "1"]

# name, model, extra training arguments: each row changes one thing from a row above it.
CANDIDATES = [
    ("plateau", "qdnet", []),
    ("cosine", "qdnet", RECIPE),
    ("cosine-ls", "qdnet", [*RECIPE, "--label-smoothing", "0.1"]),
    ("cosine-ls-aug", "qdnet", [*RECIPE, "--label-smoothing", "0.1", "--augment"]),
    # Google's bitmaps (and the canvas, through the same simplification) are always aligned and
    # scaled to fill the frame, so shifting and scaling teach the model drawings it never sees:
    # a milder jitter, rotation and aspect only.
    ("cosine-mildaug", "qdnet", [*RECIPE, "--augment", "--augment-shift", "0", "--augment-scale", "0.05",
                                 "--augment-rotate", "8"]),
    ("cosine-wd", "qdnet", [*RECIPE, "--weight-decay", "0.05"]),
    ("w48-cosine", "qdnet", [*RECIPE, "--model-options", '{"width": 48}']),
    # The MobileNet with the seed's recipe, as the experiment trains it beside the seed's CNN.
    ("mobilenet-a50-32", "mobilenet", ["--model-options", '{"alpha": 0.5, "input_size": 32}']),
    ("mobilenet-a100-32", "mobilenet", ["--model-options", '{"alpha": 1.0, "input_size": 32}']),
]
# What each architecture costs to train here: the time of one training step (batch 256, 28 px input,
# 56 classes), measured in one process, so input sizes and widths can be weighed before a run.
COSTS = [
    ("cnn", {}), ("qdnet", {}), ("qdnet", {"width": 48}), ("qdnet", {"blocks": 2}),
    ("mobilenet", {"alpha": 0.5, "input_size": 32}), ("mobilenet", {"alpha": 1.0, "input_size": 32}),
    ("mobilenet", {"alpha": 0.5, "input_size": 48}), ("mobilenet", {"alpha": 0.5, "input_size": 64}),
]
TRAIN_DRAWINGS = 89_315  # the training split of all 111,548 bitmaps


def step_costs() -> list[dict]:
    """Median seconds of a training step for each COSTS architecture, and its parameter count."""
    import keras
    import numpy as np
    import tensorflow as tf

    from pipeline.models import build_model

    rng = np.random.default_rng(0)
    images = tf.constant(rng.integers(0, 256, (256, 28, 28, 1)).astype(np.float32))
    labels = tf.constant(rng.integers(0, 56, 256))
    rows = []
    for model_name, options in COSTS:
        model = build_model(model_name, 56, (28, 28, 1), **options)
        optimizer = keras.optimizers.Adam()

        @tf.function
        def step(x, y, model=model, optimizer=optimizer):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, model(x, training=True)))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            return loss

        step(images, labels).numpy()
        times = []
        for _ in range(7):
            started = time.perf_counter()
            step(images, labels).numpy()
            times.append(time.perf_counter() - started)
        seconds = sorted(times)[len(times) // 2]
        rows.append({"model": model_name, "options": options, "parameters": int(model.count_params()),
                     "ms_per_step": seconds * 1000, "s_per_epoch_all_data": seconds * TRAIN_DRAWINGS / 256})
    return rows


def train(name: str, model: str, extra: list[str]) -> None:
    from pipeline.formats import available_classes

    if (SCRATCH / name / "status.json").exists() and json.loads((SCRATCH / name / "status.json").read_text()).get("run_complete"):
        return
    env = {**os.environ, "QUICKDRAW_RUNS": str(SCRATCH), "TF_CPP_MIN_LOG_LEVEL": "3"}
    if (SCRATCH / name / "config.json").exists():
        args = ["resume", name, "--chunks", "1"]
    else:
        classes = available_classes(Path(SHARED), "numpy_bitmap")
        args = ["train", "--name", name, "--model", model, "--classes", *classes, "--per-class", str(PER_CLASS),
                "--epochs-per-chunk", str(EPOCHS), "--max-epochs", str(EPOCHS), "--data", SHARED,
                "--batch-size", "256", "--seed", "0", "--source", "numpy_bitmap", *extra]
    subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=REPO, env=env, check=True)


def summary(name: str, model: str, extra: list[str]) -> dict:
    from pipeline.runs import read_history

    history = read_history(SCRATCH / name)
    best = max(history, key=lambda r: (r["val_accuracy"], r["val_top3"]))
    seconds = [r["ended"] - r["started"] for r in history]
    return {"name": name, "model": model, "args": " ".join(extra) or "(defaults: plateau)",
            "epochs": len(history), "final_val_top1": history[-1]["val_accuracy"],
            "final_val_top3": history[-1]["val_top3"], "best_val_top1": best["val_accuracy"],
            "best_epoch": best["epoch"], "s_per_epoch": sorted(seconds)[len(seconds) // 2]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", help="train only these candidates")
    args = parser.parse_args()
    SCRATCH.mkdir(parents=True, exist_ok=True)
    chosen = [c for c in CANDIDATES if not args.only or c[0] in args.only]
    started = time.time()
    for name, model, extra in chosen:
        print(f"[{time.strftime('%H:%M:%S')}] {name}", flush=True)
        train(name, model, extra)
    rows = [summary(*c) for c in CANDIDATES if (SCRATCH / c[0] / "history.csv").exists()]
    lines = ["# Recipe sweep (`python scripts/sweep.py`)\n",
             f"56 classes of ../shared/quickdraw/bitmaps, at most {PER_CLASS} drawings a class, {EPOCHS} epochs, "
             "batch 256, seed 0; validation split only. Each row changes one thing from a row above it.\n",
             "| candidate | model | arguments | final val top-1 | final val top-3 | best val top-1 (epoch) | s / epoch |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['model']} | `{r['args']}` | {r['final_val_top1']:.4f} | "
                     f"{r['final_val_top3']:.4f} | {r['best_val_top1']:.4f} ({r['best_epoch']}) | {r['s_per_epoch']:.1f} |")
    costs = step_costs()
    lines += ["", "Training cost of each architecture here (one step of batch 256, median of 7; an epoch of all "
              f"{TRAIN_DRAWINGS:,} training drawings extrapolated):", "",
              "| model | options | parameters | ms / step | s / epoch (all data) |", "|---|---|---|---|---|"]
    for c in costs:
        options = ", ".join(f"{k}={v}" for k, v in c["options"].items()) or "-"
        lines.append(f"| {c['model']} | {options} | {c['parameters']:,} | {c['ms_per_step']:.0f} | "
                     f"{c['s_per_epoch_all_data']:.0f} |")
    (REPO / "runs" / "sweep.json").write_text(json.dumps({"candidates": rows, "costs": costs}, indent=2) + "\n")
    (REPO / "runs" / "SWEEP.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"sweep took {(time.time() - started) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
