"""A checkpoint is one typed state with variables keyed by name: round trips, and refuses a checkpoint
of another architecture naming the variable, before assigning anything."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline import recipe
from pipeline.checkpoints import Checkpoint, TrainState, model_variable_keys, optimizer_variable_keys
from pipeline.errors import RunError
from pipeline.models import build_model
from pipeline.runs import RunConfig


def model_and_optimizer(name="qdnet", classes=4, **options):
    model = build_model(name, classes, (28, 28, 1), **options)
    config = RunConfig(name="x", model=name, classes=tuple("abcd"[:classes]), per_class=1)
    optimizer = recipe.make_optimizer(config)
    optimizer.build(model.trainable_variables)
    return model, optimizer


def test_keys_are_layer_names_and_do_not_depend_on_how_many_models_were_built():
    first, _ = model_and_optimizer("cnn")
    second, optimizer = model_and_optimizer("cnn")  # Keras would auto-name its layers conv2d_3...
    keys = [key for key, _ in model_variable_keys(second)]
    assert keys == [key for key, _ in model_variable_keys(first)]
    assert keys[:2] == ["conv1/kernel", "conv1/bias"] and keys[-1] == "probabilities/bias"
    slots = [key for key, _ in optimizer_variable_keys(optimizer, second)]
    assert slots[:2] == ["iteration", "learning_rate"]
    assert "conv1/kernel:momentum" in slots and "probabilities/bias:velocity" in slots
    qdnet, _ = model_and_optimizer("qdnet")
    assert "dropout1/seed_generator_state" in [key for key, _ in model_variable_keys(qdnet)]
    mobilenet, _ = model_and_optimizer("mobilenet", alpha=0.25)
    keys = [key for key, _ in model_variable_keys(mobilenet)]
    assert len(keys) == len(set(keys)) == len(mobilenet.variables)


def test_save_load_restore_round_trip(tmp_path):
    model, optimizer = model_and_optimizer()
    for variable in model.trainable_variables:
        variable.assign(np.random.default_rng(0).normal(size=variable.shape).astype("float32"))
    state = TrainState.initial(0.002, seed=3)
    state.epoch, state.batch, state.history = 2, 5, [{"epoch": 1, "val_top3": 0.5}]
    Checkpoint.capture(state, model, optimizer).save(tmp_path / "c.npz")
    loaded = Checkpoint.load(tmp_path / "c.npz")
    assert loaded.state == state and loaded.state.schedule["best"] == math.inf
    other, other_optimizer = model_and_optimizer()
    loaded.restore(other, other_optimizer)
    for (key, a), (_, b) in zip(model_variable_keys(model), model_variable_keys(other), strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=key)


def test_a_checkpoint_of_another_architecture_names_the_variable_and_assigns_nothing(tmp_path):
    model, optimizer = model_and_optimizer("qdnet", width=16)
    Checkpoint.capture(TrainState(), model, optimizer).save(tmp_path / "c.npz")
    wider, _ = model_and_optimizer("qdnet", width=24)
    before = [v.numpy().copy() for v in wider.variables]
    with pytest.raises(RunError, match="'conv1_1/kernel' has shape"):
        Checkpoint.load(tmp_path / "c.npz").restore(wider)
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, wider.variables, strict=True))
    deeper, _ = model_and_optimizer("qdnet", width=16, blocks=2)
    with pytest.raises(RunError, match="no model variable 'conv1_2/kernel'"):
        Checkpoint.load(tmp_path / "c.npz").restore(deeper)
    cnn, _ = model_and_optimizer("cnn")
    with pytest.raises(RunError, match="no model variable 'conv1/kernel'"):
        Checkpoint.load(tmp_path / "c.npz").restore(cnn)


def test_a_positional_checkpoint_of_an_older_version_is_refused(tmp_path):
    np.savez(tmp_path / "old.npz", m00000=np.zeros(3), state=np.frombuffer(b"{}", np.uint8))
    with pytest.raises(RunError, match="by position"):
        Checkpoint.load(tmp_path / "old.npz")


def test_branched_state_keeps_history_up_to_the_branch_point():
    state = TrainState.initial(0.002, 0)
    state.history = [{"epoch": e} for e in (1, 2, 3)]
    state.early_stopping = {"best": 0.9, "wait": 4, "stopped": True}
    branch = state.branched(2, learning_rate=0.0005)
    assert [r["epoch"] for r in branch.history] == [1, 2]
    assert branch.early_stopping == {"best": 0.9, "wait": 0, "stopped": False}
    assert branch.schedule["lr"] == 0.0005 and state.schedule["lr"] == 0.002
