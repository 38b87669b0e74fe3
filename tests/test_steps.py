"""The compiled train and eval steps (pipeline.steps): one trace for every batch size on one device,
XLA as an option that trains the same numbers and is refused under op determinism."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import runs, steps
from pipeline.errors import QuickDrawError

SHAPE = (28, 28, 1)


def make_steps(monkeypatch, jit: bool):
    import keras
    import tensorflow as tf

    from pipeline.models import build_model

    monkeypatch.setenv("QUICKDRAW_JIT_COMPILE", "1" if jit else "0")
    monkeypatch.delenv("QUICKDRAW_DETERMINISTIC", raising=False)
    config = runs.make_config(name="s", model="cnn", classes=("cat", "dog", "fish"), per_class=10)
    keras.utils.set_random_seed(0)
    model = build_model("cnn", 3, SHAPE)
    optimizer = keras.optimizers.Adam(0.002)
    optimizer.build(model.trainable_variables)
    train_step, eval_step = steps.build_steps(tf.distribute.get_strategy(), model, optimizer, config, SHAPE,
                                              one_device=True)
    return model, train_step, eval_step


def batch(size: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (size, *SHAPE), dtype=np.uint8), rng.integers(0, 3, size).astype(np.int32)


def run_train(train_step, images, labels):
    import tensorflow as tf

    return train_step(images, labels, tf.constant(float(len(labels))), tf.constant([0, 1], tf.int64)).numpy()


def test_one_trace_serves_every_batch_size(monkeypatch):
    _, train_step, eval_step = make_steps(monkeypatch, jit=False)
    for size in (16, 5):  # a full batch, then an epoch's short last batch
        sums = run_train(train_step, *batch(size))
        assert sums[3] == size and 0 <= sums[1] <= sums[2] <= size
        assert eval_step(*batch(size + 3))[3] == size + 3
    assert train_step.experimental_get_tracing_count() == 1
    assert eval_step.experimental_get_tracing_count() == 1


@pytest.mark.slow
def test_xla_option_trains_the_same_numbers(monkeypatch):
    results = []
    for jit in (False, True):
        model, train_step, eval_step = make_steps(monkeypatch, jit)
        sums = [run_train(train_step, *batch(16, seed)) for seed in (1, 2, 3)]
        results.append((np.array(sums), [w.copy() for w in model.get_weights()], eval_step(*batch(16, 9)).numpy()))
    (sums_graph, weights_graph, eval_graph), (sums_xla, weights_xla, eval_xla) = results
    np.testing.assert_allclose(sums_xla, sums_graph, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(eval_xla, eval_graph, rtol=1e-4, atol=1e-4)
    for a, b in zip(weights_xla, weights_graph, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def test_xla_is_opt_in_and_refused_under_determinism(monkeypatch):
    monkeypatch.delenv("QUICKDRAW_JIT_COMPILE", raising=False)
    monkeypatch.setenv("QUICKDRAW_DETERMINISTIC", "1")
    assert steps.jit_compile_requested() is False
    monkeypatch.setenv("QUICKDRAW_JIT_COMPILE", "1")
    with pytest.raises(QuickDrawError, match="QUICKDRAW_DETERMINISTIC"):
        steps.jit_compile_requested()
    monkeypatch.delenv("QUICKDRAW_DETERMINISTIC")
    assert steps.jit_compile_requested() is True
    with pytest.raises(QuickDrawError, match="--strategy default only"):
        steps.jit_compile_requested(one_device=False)
