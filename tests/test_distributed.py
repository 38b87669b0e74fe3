"""tf.distribute: MirroredStrategy on two logical CPUs, MultiWorkerMirroredStrategy on two local workers."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from pipeline import checkpoints as ckpt
from pipeline import runs

CLASSES = ["apple", "banana", "cat", "fish"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_command(shared, runs_dir, name, strategy):
    return [sys.executable, "-m", "pipeline", "train", "--name", name, "--model", "cnn", "--classes", *CLASSES,
            "--per-class", "200", "--epochs-per-chunk", "2", "--data", str(shared), "--batch-size", "64",
            "--strategy", strategy, "--runs-dir", str(runs_dir)]


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus(shared, cache_dir, tmp_path):
    env = {**os.environ, "QUICKDRAW_LOGICAL_CPUS": "2", "TF_CPP_MIN_LOG_LEVEL": "3", "QUICKDRAW_CACHE": str(cache_dir)}
    proc = subprocess.run(train_command(shared, tmp_path, "mirrored", "mirrored"), env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    history = runs.read_history(tmp_path / "mirrored")
    assert [r["epoch"] for r in history] == [1, 2]
    assert history[1]["val_accuracy"] > 0.4  # it learns: four classes, chance is 0.25


@pytest.mark.slow
def test_multiworker_two_local_workers_end_identical(shared, cache_dir, tmp_path):
    ports = [free_port(), free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(2):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "QUICKDRAW_CACHE": str(cache_dir),
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        runs_dir = tmp_path / f"worker{index}"
        procs.append(subprocess.Popen(train_command(shared, runs_dir, "multi", "multiworker"), env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=900)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    chief = tmp_path / "worker0" / "multi"
    assert [r["epoch"] for r in runs.read_history(chief)] == [1, 2]
    # The non-chief writes no run record; compare its final weights through the chief's checkpoint and
    # the weights each worker reported at the end (written next to its run folder).
    values0 = ckpt.Checkpoint.load(ckpt.epoch_checkpoints(chief)[2]).model
    other = np.load(tmp_path / "worker1" / "multi" / "final_weights.npz")
    assert sorted(other.files) == sorted(values0)
    for key, value in values0.items():
        np.testing.assert_allclose(value, other[key], rtol=1e-6, atol=1e-7, err_msg=key)
