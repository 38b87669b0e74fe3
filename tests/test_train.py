"""Chunked, resumable training: chunks equal one long run, signals and kill -9 lose nothing.

Real training on ../shared bitmaps through the real CLI in subprocesses (signals and kills need a
separate process). Small data so each trainer runs for seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from pipeline import checkpoints as ckpt
from pipeline import runs

CLASSES = ["apple", "banana", "cat", "fish"]
PER_CLASS = 250  # ~800 training drawings: 13 batches of 64 an epoch


@pytest.fixture
def env(shared, cache_dir, tmp_path):
    return {**os.environ, "QUICKDRAW_CACHE": str(cache_dir), "QUICKDRAW_DETERMINISTIC": "1",
            "TF_CPP_MIN_LOG_LEVEL": "3", "QUICKDRAW_STATUS_INTERVAL": "0", "QUICKDRAW_RUNS": str(tmp_path / "runs"), "PYTHONWARNINGS": "ignore"}


def cli(env, *args, check=True, **kw):
    proc = subprocess.run([sys.executable, "-m", "pipeline", *args], env=env, capture_output=True, text=True,
                          timeout=600, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"pipeline {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def train_args(shared, name, epochs, chunks=1, model="cnn", extra=(), per_class=PER_CLASS):
    if "--model" in extra:  # a recipe that names its own model
        model = extra[list(extra).index("--model") + 1]
        extra = [a for i, a in enumerate(extra) if a != "--model" and (i == 0 or extra[i - 1] != "--model")]
    return ["train", "--name", name, "--model", model, "--classes", *CLASSES, "--per-class", str(per_class),
            "--epochs-per-chunk", str(epochs), "--chunks", str(chunks), "--data", str(shared),
            "--batch-size", "64", "--seed", "7", *extra]


def final_weights(run_dir):
    saved = ckpt.epoch_checkpoints(run_dir)
    checkpoint = ckpt.Checkpoint.load(saved[max(saved)])
    return checkpoint.model, checkpoint.state


def assert_same_training(a, b):
    wa, sa = final_weights(a)
    wb, sb = final_weights(b)
    ha, hb = runs.read_history(a), runs.read_history(b)
    assert [r["epoch"] for r in ha] == [r["epoch"] for r in hb]
    for ra, rb in zip(ha, hb, strict=True):
        for key in ("loss", "accuracy", "top3", "val_loss", "val_accuracy", "val_top3", "lr"):
            assert ra[key] == pytest.approx(rb[key], rel=1e-5, abs=1e-6), (ra["epoch"], key)
    assert sorted(wa) == sorted(wb)
    for key in wa:
        np.testing.assert_allclose(wa[key], wb[key], rtol=1e-5, atol=1e-6, err_msg=key)
    assert sa.schedule == pytest.approx(sb.schedule)


# The recipe of issue 9 (per-batch cosine schedule with warmup, label smoothing, AdamW, augmentation
# keyed by the batch position) on qdnet (batch norm, dropout), in mixed bfloat16: everything it adds to
# the training state must resume exactly too. The seed's recipe in float32: both precisions are held
# to it on any machine (`--precision auto` picks one of them by the CPU).
RECIPE = ("--model", "qdnet", "--schedule", "cosine", "--warmup-epochs", "1", "--label-smoothing", "0.1",
          "--weight-decay", "0.02", "--augment", "--precision", "mixed_bfloat16")
RECIPES = {"seed-recipe": ("--precision", "float32"), "new-recipe": RECIPE}


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES.values(), ids=RECIPES.keys())
def test_two_chunks_equal_one_chunk(shared, env, tmp_path, recipe):
    runs_dir = tmp_path / "runs"
    extra = (*recipe, "--max-epochs", "4")
    cli(env, *train_args(shared, "whole", 4, extra=extra))
    first = cli(env, *train_args(shared, "halves", 2, extra=extra))
    second = cli(env, "resume", "halves", "--epochs-per-chunk", "2")
    assert_same_training(runs_dir / "whole", runs_dir / "halves")
    config = runs.read_config(runs_dir / "halves")
    assert config.precision == recipe[recipe.index("--precision") + 1]
    # The saved model computes in float32 whatever the run trained in (evaluation, prediction, TF.js).
    from pipeline.models import load_inference_model

    saved = load_inference_model(runs_dir / "halves" / "model" / "model.keras")
    assert {layer.dtype_policy.name for layer in saved.layers} == {"float32"}
    if config.model == "qdnet":
        assert (config.schedule, config.augment, config.label_smoothing) == ("cosine", True, 0.1)
        rates = [r["lr"] for r in runs.read_history(runs_dir / "halves")]
        assert rates == sorted(rates, reverse=True) and rates[-1] < 1e-4  # decayed to the end, across chunks
    # The command line says what it is doing: a line per chunk and per epoch (no batch lines in a log).
    assert "run halves, chunk 1: up to epoch 2" in first.stdout and "from the start" in first.stdout
    assert [line.split("(")[0].split() for line in first.stdout.splitlines() if line.startswith("epoch")] == \
        [["epoch", "1"], ["epoch", "2"]]
    assert "resuming from epoch-0002.npz at epoch 3, batch 0" in second.stdout
    assert "epoch   4 (chunk 2)" in second.stdout and "chunk 2 done at epoch 4" in second.stdout
    assert "batch" not in "".join(line for line in second.stdout.splitlines() if line.startswith("epoch"))
    history = runs.read_history(runs_dir / "halves")
    assert [r["chunk"] for r in history] == [1, 1, 2, 2]
    events = [e["event"] for e in runs.read_events(runs_dir / "halves")]
    assert events.count("chunk_start") == 2 and "resume_point" in events


def wait_for(predicate, timeout=240, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def status_of(run_dir):
    try:
        return json.loads((run_dir / "status.json").read_text())
    except (OSError, ValueError):
        return {}


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES.values(), ids=RECIPES.keys())
def test_sigterm_mid_epoch_saves_and_resume_matches_uninterrupted(shared, env, tmp_path, recipe):
    runs_dir = tmp_path / "runs"
    extra = (*recipe, "--max-epochs", "3")
    # Larger epochs (~40 batches) so the signal lands inside the epoch it was aimed at.
    cli(env, *train_args(shared, "whole", 3, per_class=800, extra=extra))
    run_dir = runs_dir / "stopped"
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", *train_args(shared, "stopped", 3, per_class=800, extra=extra)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # Stop it in the middle of epoch 2: the status file is updated during the epoch.
    assert wait_for(lambda: status_of(run_dir).get("epoch") == 2 and status_of(run_dir).get("batch", 0) >= 3,
                    proc=proc), proc.stderr.read() if proc.poll() is not None else "no progress"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143
    stopped = [e for e in runs.read_events(run_dir) if e["event"] == "signal_stop"]
    assert stopped and stopped[0]["signal"] == "SIGTERM" and stopped[0]["epoch"] == 2
    assert status_of(run_dir)["state"] == "stopped"
    assert runs.run_state(run_dir).state == "stopped"
    assert ckpt.latest_checkpoint(run_dir).name == "partial.npz"
    cli(env, "resume", "stopped", "--epochs-per-chunk", "2")
    assert_same_training(runs_dir / "whole", run_dir)
    resume = [e for e in runs.read_events(run_dir) if e["event"] == "resume_point"][0]
    assert resume["epoch"] == 2 and resume["batch"] == stopped[0]["batch"] > 0
    assert [r["chunk"] for r in runs.read_history(run_dir)] == [1, 2, 2]


@pytest.mark.slow
def test_resume_after_a_stop_finishes_the_stopped_chunk_and_the_plan(shared, env, tmp_path):
    """Planned 2 chunks of 2 epochs, stopped in epoch 2: a plain `resume` finishes chunk 1's remaining
    epoch and then the planned chunk 2; only then is the run "finished". A resume of a finished plan
    trains one more chunk."""
    run_dir = tmp_path / "runs" / "plan"
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", *train_args(shared, "plan", 2, chunks=2)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert wait_for(lambda: status_of(run_dir).get("epoch") == 2 and status_of(run_dir).get("batch", 0) >= 1,
                    proc=proc), proc.stderr.read() if proc.poll() is not None else "no progress"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143
    assert runs.run_state(run_dir).state == "stopped"
    assert runs.planned_epoch(runs.read_events(run_dir)) == 4
    assert runs.unfinished_chunk_target(runs.read_events(run_dir)) == 2
    cli(env, "resume", "plan")
    assert [r["epoch"] for r in runs.read_history(run_dir)] == [1, 2, 3, 4]
    starts = [e for e in runs.read_events(run_dir) if e["event"] == "chunk_start"]
    assert [e["target_epoch"] for e in starts] == [2, 2, 4]  # chunk 1, its rest, then the planned chunk 2
    state = runs.run_state(run_dir)
    assert state.state == "finished" and runs.planned_epoch(runs.read_events(run_dir)) == 4
    cli(env, "resume", "plan", "--epochs-per-chunk", "1")  # the plan is done: one more chunk
    assert len(runs.read_history(run_dir)) == 5 and runs.planned_epoch(runs.read_events(run_dir)) == 5


@pytest.mark.slow
def test_kill_9_at_several_points_never_loses_or_duplicates_an_epoch(shared, env, tmp_path):
    runs_dir = tmp_path / "runs"
    run_dir = runs_dir / "killed"
    rng = np.random.default_rng(3)
    args = train_args(shared, "killed", 4, extra=("--save-every-batches", "4", "--max-epochs", "4"))
    kills = 0
    for attempt in range(6):
        command = args if attempt == 0 else ["resume", "killed"]
        proc = subprocess.Popen([sys.executable, "-m", "pipeline", *command], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Kill at a random moment once training is under way (status shows a batch).
        wait_for(lambda: status_of(run_dir).get("state") == "running", proc=proc)
        time.sleep(float(rng.uniform(0.0, 2.5)))
        if proc.poll() is None:
            proc.kill()
            kills += 1
        proc.wait()
        # Every file readable at any moment.
        runs.read_config(run_dir)
        runs.read_events(run_dir)
        json.loads((run_dir / "status.json").read_text())
        rows = runs.read_history(run_dir)
        assert [r["epoch"] for r in rows] == list(range(1, len(rows) + 1))
        latest = ckpt.latest_checkpoint(run_dir)
        if latest is not None:
            ckpt.Checkpoint.load(latest)
        if len(rows) == 4 and status_of(run_dir).get("state") == "finished":
            break
    assert kills >= 2
    if len(runs.read_history(run_dir)) < 4 or status_of(run_dir).get("state") != "finished":
        cli(env, "resume", "killed")
    rows = runs.read_history(run_dir)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    events = runs.read_events(run_dir)
    assert any(e["event"] == "crash_detected" for e in events)
    assert runs.run_state(run_dir).state == "finished"


@pytest.mark.slow
def test_second_trainer_is_refused_and_branch_remembers_parent(shared, env, tmp_path):
    runs_dir = tmp_path / "runs"
    cli(env, *train_args(shared, "base", 2))
    # A real holder of the run's lock (the kernel's flock), as a trainer would hold it.
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pipeline.runs import RunLock; "
                               "RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(120)",
                               str(runs_dir / "base")], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        proc = cli(env, "resume", "base", check=False)
        assert proc.returncode == 2
        assert f"being trained by PID {holder.pid}" in proc.stderr and "Traceback" not in proc.stderr
    finally:
        holder.kill()
        holder.wait()
    # The holder was killed: the kernel freed its lock, and the next trainer says whose run it continues.
    proc = cli(env, "resume", "base", "--epochs-per-chunk", "1")
    assert "stale lock" in proc.stderr.lower() or "took over" in proc.stderr.lower(), proc.stderr[-500:]
    proc = cli(env, "branch", "base", "--name", "slower", "--from-epoch", "1", "--lr", "0.0005", "--chunks", "1",
               "--epochs-per-chunk", "1")
    child = runs_dir / "slower"
    assert runs.read_config(child).parent == {"run": "base", "epoch": 1}
    rows = runs.read_history(child)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[1]["lr"] == pytest.approx(0.0005)
    assert rows[0]["val_loss"] == pytest.approx(runs.read_history(runs_dir / "base")[0]["val_loss"])
    assert any(e["event"] == "lock_takeover" for e in runs.read_events(runs_dir / "base"))


@pytest.mark.slow
def test_a_record_without_checkpoints_is_never_retrained_from_scratch(shared, env, tmp_path):
    # A cloned run (checkpoints stay out of git) or an imported log: `resume` must refuse, not start
    # again at epoch 1 and overwrite the recorded history.
    runs_dir = tmp_path / "runs"
    cli(env, *train_args(shared, "cloned", 2))
    run_dir = runs_dir / "cloned"
    import shutil

    shutil.rmtree(run_dir / "checkpoints")
    before = {name: (run_dir / name).read_bytes() for name in ("history.csv", "events.jsonl", "status.json")}
    proc = cli(env, "resume", "cloned", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "2 epoch(s) in history.csv but no training checkpoint" in proc.stderr and "train --name NEW" in proc.stderr
    assert {name: (run_dir / name).read_bytes() for name in before} == before
    assert runs.summarize_run(run_dir).checkpoints == 0


def test_bad_training_arguments_are_one_line_errors(shared, env):
    proc = cli(env, "train", "--name", "../x", "--model", "cnn", "--classes", "cat", "dog", "--per-class", "5",
               check=False)
    assert proc.returncode == 2 and "not a valid run name" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli(env, "train", "--name", "x", "--model", "cnn", "--classes", "cat", "dgo", "--per-class", "5",
               check=False)
    assert proc.returncode == 2 and "unknown class 'dgo'; did you mean 'dog'?" in proc.stderr
    proc = cli(env, "resume", "nope", check=False)
    assert proc.returncode == 2 and "no run 'nope'" in proc.stderr
    proc = cli(env, "train", "--name", "x", "--model", "cnn", "--classes", "cat", "dog", "--per-class", "5",
               "--schedule", "cosine", "--data", str(shared), check=False)
    assert proc.returncode == 2 and "give --max-epochs too" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_warm_start_from_a_run_or_a_keras_file_and_the_seeds_way_of_resuming(shared, env, tmp_path):
    import keras

    runs_dir = tmp_path / "runs"
    cli(env, *train_args(shared, "donor", 2))
    donor_model = keras.models.load_model(runs_dir / "donor" / "model" / "model.keras", compile=False)
    # From a run: epoch 1 starts where the donor's best model was, with a fresh optimizer.
    cli(env, *train_args(shared, "warm", 1, extra=("--init-from", "donor")))
    assert runs.read_config(runs_dir / "warm").init_from == "donor"
    first = runs.read_history(runs_dir / "warm")[0]
    scratch = runs.read_history(runs_dir / "donor")[0]
    assert first["val_accuracy"] > scratch["val_accuracy"]
    # From a notebook's legacy .h5 file of the same architecture (no Rescaling layer: it scaled outside).
    notebook = keras.Sequential([keras.Input((28, 28, 1))] + [layer for layer in donor_model.layers[2:]])
    notebook.save(tmp_path / "seed.h5")
    cli(env, *train_args(shared, "from-h5", 1, extra=("--init-from", str(tmp_path / "seed.h5"))))
    assert runs.read_history(runs_dir / "from-h5")[0]["val_accuracy"] > scratch["val_accuracy"]
    # A different architecture is refused before the run exists, naming the variable.
    proc = cli(env, *train_args(shared, "mismatch", 1, model="qdnet", extra=("--init-from", "donor")), check=False)
    assert proc.returncode == 2 and "has shape" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli(env, *train_args(shared, "missing", 1, extra=("--init-from", "nothing-here")), check=False)
    assert proc.returncode == 2 and "no run 'nothing-here'" in proc.stderr
    assert not (runs_dir / "missing").exists()
    # The seed's way: every chunk restarts the optimizer and the plateau schedule from the weights.
    cli(env, *train_args(shared, "seedway", 1, extra=("--resume-mode", "weights", "--lr", "0.003")))
    cli(env, "branch", "donor", "--name", "unused", "--chunks", "0")  # unrelated runs keep working
    checkpoint = ckpt.epoch_checkpoints(runs_dir / "seedway")[1]
    optimizer_before = ckpt.Checkpoint.load(checkpoint).optimizer
    cli(env, "resume", "seedway")
    after = ckpt.Checkpoint.load(ckpt.epoch_checkpoints(runs_dir / "seedway")[2])
    optimizer_after, state = after.optimizer, after.state
    # The optimizer's step counter: after a restart it again counts one epoch of batches, where exact
    # resume would count two.
    steps_before = int(np.asarray(optimizer_before["iteration"]).ravel()[0])
    steps_after = int(np.asarray(optimizer_after["iteration"]).ravel()[0])
    assert steps_before > 0 and steps_after == steps_before, (steps_before, steps_after)
    assert state.schedule["lr"] == pytest.approx(0.003) and state.schedule["wait"] in (0, 1)
