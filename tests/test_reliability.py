"""Faults and bad input (issue: reliability): SIGKILL at random moments, a full or read-only disk,
and random stroke data through simplify, rasterise and predict."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import checkpoints as ckpt
from pipeline import runs
from pipeline.chunks import run_chunks
from pipeline.errors import RunError
from pipeline.predict import Predictor
from pipeline.raster import render_bitmap, render_colour_coded
from pipeline.strokes import DrawingTooSmall, simplify, to_simplified

CLASSES = ("apple", "fish", "eye")
KILL_RUNS = 20


def tiny_args(shared, name):
    return ["train", "--name", name, "--model", "cnn", "--classes", *CLASSES, "--per-class", "120",
            "--epochs-per-chunk", "3", "--max-epochs", "3", "--data", str(shared), "--batch-size", "16",
            "--save-every-batches", "3"]


def _progress(run_dir) -> int:
    """Batches trained so far, from status.json (0 before training starts)."""
    try:
        status = json.loads((run_dir / "status.json").read_text())
    except (OSError, ValueError):
        return 0
    epoch, batch, per_epoch = status.get("epoch") or 0, status.get("batch") or 0, status.get("batches_per_epoch")
    return (epoch - 1) * per_epoch + batch if per_epoch and epoch else 0


@pytest.mark.slow
def test_twenty_runs_killed_at_random_moments_all_complete(shared, cache_dir, tmp_path):
    env = {**os.environ, "QUICKDRAW_CACHE": str(cache_dir), "QUICKDRAW_RUNS": str(tmp_path / "runs"),
           "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore", "QUICKDRAW_STATUS_INTERVAL": "0"}
    rng = np.random.default_rng(2026)
    completed = killed = 0
    for i in range(KILL_RUNS):
        name = f"killed-{i:02d}"
        run_dir = tmp_path / "runs" / name
        proc = subprocess.Popen([sys.executable, "-m", "pipeline", *tiny_args(shared, name)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Random moments in the run's own progress (so a fast or a loaded machine kills alike): a few
        # during start-up, the rest at a random batch of the 3 epochs (about 54 batches in all).
        if rng.uniform() < 0.2:
            time.sleep(float(rng.uniform(0.1, 2.0)))
        else:
            target = int(rng.integers(1, 54))
            deadline = time.time() + 300
            while proc.poll() is None and _progress(run_dir) < target and time.time() < deadline:
                time.sleep(0.005)
        if proc.poll() is None:
            proc.kill()
            killed += 1
        proc.wait()
        command = ["resume", name] if (run_dir / "config.json").exists() else tiny_args(shared, name)
        for _ in range(3):
            done = subprocess.run([sys.executable, "-m", "pipeline", *command], env=env, capture_output=True,
                                  text=True, timeout=600)
            assert done.returncode == 0, done.stderr[-2000:]
            if runs.read_status(run_dir).get("run_complete") or len(runs.read_history(run_dir)) >= 3:
                break
            command = ["resume", name]
        rows = runs.read_history(run_dir)
        assert [r["epoch"] for r in rows] == [1, 2, 3], (name, rows)
        runs.read_config(run_dir)
        runs.read_events(run_dir)
        json.loads((run_dir / "status.json").read_text())
        for path in (run_dir / "checkpoints").glob("*.npz"):
            ckpt.Checkpoint.load(path)
        completed += 1
    print(f"SIGKILL fault test: {killed} of {KILL_RUNS} runs killed mid-flight, {completed}/{KILL_RUNS} "
          "completed after resume with no duplicated or missing epoch and every file readable")
    assert completed == KILL_RUNS and killed >= KILL_RUNS - 2


@pytest.mark.slow  # trains through chunks.run_chunks
@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "disk is full"), (errno.EROFS, "read-only")])
def test_full_or_read_only_disk_is_a_clear_error_and_keeps_the_checkpoint(shared, cache_dir, tmp_path,
                                                                            monkeypatch, code, words):
    config = runs.make_config(name="disk", model="cnn", classes=CLASSES, per_class=120, data_root=str(shared),
                              epochs_per_chunk=1, batch_size=32)
    run_dir = runs.create_run(config, tmp_path / "runs")
    assert run_chunks(run_dir) == 0
    saved = ckpt.latest_checkpoint(run_dir)
    before = saved.read_bytes()

    real = ckpt.atomic_write_bytes

    def failing(path, data):
        if str(path).endswith(".npz"):
            raise OSError(code, os.strerror(code), str(path))
        return real(path, data)

    monkeypatch.setattr(ckpt, "atomic_write_bytes", failing)
    with pytest.raises(RunError, match=words):
        run_chunks(run_dir, epochs_per_chunk=1)
    assert saved.read_bytes() == before
    ckpt.Checkpoint.load(saved)
    monkeypatch.setattr(ckpt, "atomic_write_bytes", real)
    assert run_chunks(run_dir, epochs_per_chunk=1) == 0  # space is back: resume works
    assert [r["epoch"] for r in runs.read_history(run_dir)] == [1, 2]


# ---------------------------------------------------------------- property-based
coordinate = st.one_of(
    st.floats(min_value=-1e5, max_value=1e5, allow_nan=False),
    st.integers(min_value=0, max_value=255),
    st.sampled_from([float("nan"), float("inf"), 1e12, -1e12]),
)
stroke = st.integers(min_value=0, max_value=12).flatmap(
    lambda n: st.tuples(st.lists(coordinate, min_size=n, max_size=n), st.lists(coordinate, min_size=n, max_size=n))
).map(lambda xy: [list(xy[0]), list(xy[1])])
drawing = st.lists(stroke, min_size=0, max_size=6)


@pytest.fixture(scope="module")
def untrained_predictor():
    from pipeline.models import build_model

    return Predictor(build_model("cnn", 3, (28, 28, 1)), list(CLASSES), "bitmap28", 28)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drawing=drawing)
def test_random_strokes_only_raise_clear_value_errors(drawing, untrained_predictor):
    try:
        strokes = to_simplified(drawing, form="raw")
    except ValueError as exc:
        assert str(exc)  # a message, not a bare error
        return
    for points in strokes:
        assert points.shape[1] == 2 and points.dtype == np.float64
        assert points.min() >= 0 and points.max() <= 255
    image = render_bitmap(strokes)
    assert image.shape == (28, 28) and image.dtype == np.uint8
    coded = render_colour_coded(simplify(strokes), 40)
    assert coded.shape == (40, 40, 1) and coded.dtype == np.uint8
    try:
        top = untrained_predictor.predict(drawing, top=3, form="raw")
    except DrawingTooSmall as exc:  # a tap or a jitter: the one too-small rule, with its message
        assert "too small" in str(exc)
        return
    assert len(top) == 3 and all(0.0 <= p <= 1.0 for _, p in top)
