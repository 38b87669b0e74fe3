"""The training recipe (pipeline/recipe.py): schedules, loss, augmentation - pure functions of state."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import recipe
from pipeline.errors import QuickDrawError
from pipeline.runs import RunConfig


def config(**fields) -> RunConfig:
    return RunConfig(name="r", model="cnn", classes=("a", "b"), per_class=10, **fields)


def test_plateau_schedule_matches_keras_reduce_lr_on_plateau():
    import keras

    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    callback = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, min_lr=0.001)
    callback.set_model(model)
    callback.on_train_begin()
    ours = {"lr": 0.01, "best": float("inf"), "wait": 0}
    for epoch, val_loss in enumerate([1.0, 0.9, 0.95, 0.93, 0.92, 0.8, 0.85, 0.86, 0.87, 0.9, 0.9, 0.9]):
        callback.on_epoch_end(epoch, {"val_loss": val_loss})
        ours = recipe.plateau_step(ours, val_loss, factor=0.5, patience=2, min_lr=0.001)
        assert ours["lr"] == pytest.approx(float(model.optimizer.learning_rate.numpy()))
        assert ours["wait"] == callback.wait


def test_cosine_schedule_warms_up_then_decays_to_the_floor_at_the_last_batch():
    steps = [(epoch, batch) for epoch in range(1, 11) for batch in range(100)]
    rates = [recipe.cosine_lr(0.01, 1e-5, 1.0, 10, epoch, batch, 100) for epoch, batch in steps]
    assert rates[0] == pytest.approx(0.001)  # warmup starts at a tenth of the base rate
    assert max(rates) == pytest.approx(0.01, rel=1e-3) and np.argmax(rates) == 100  # end of warmup
    assert all(a >= b for a, b in zip(rates[100:], rates[101:], strict=False))  # then only down
    assert rates[-1] == pytest.approx(1e-5, abs=2e-6)
    # Position, not history: the same (epoch, batch) always gives the same rate (exact resume).
    assert recipe.cosine_lr(0.01, 1e-5, 1.0, 10, 5, 37, 100) == rates[4 * 100 + 37]
    assert recipe.batch_lr(config(schedule="cosine", max_epochs=10, learning_rate=0.01, lr_min=1e-5,
                                  warmup_epochs=1.0), {"lr": 123.0}, 5, 37, 100) == rates[437]
    assert recipe.batch_lr(config(), {"lr": 0.004}, 5, 37, 100) == 0.004  # plateau: the epoch's rate


def test_label_smoothing_matches_keras():
    import keras
    import tensorflow as tf

    labels = tf.constant([0, 2, 1])
    probs = tf.nn.softmax(tf.constant([[2.0, 0.5, 0.1], [0.1, 0.2, 3.0], [1.0, 1.0, 1.0]]))
    ours = recipe.training_loss(labels, probs, 3, 0.1).numpy()
    theirs = keras.losses.CategoricalCrossentropy(label_smoothing=0.1, reduction=None)(
        tf.one_hot(labels, 3), probs).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)
    plain = recipe.training_loss(labels, probs, 3, 0.0).numpy()
    assert not np.allclose(ours, plain)


def test_augmentation_is_a_pure_function_of_its_key_and_keeps_the_drawing_in_frame():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    images = np.zeros((8, 28, 28, 1), np.float32)
    images[:, 8:20, 8:20] = rng.integers(0, 256, (8, 12, 12, 1))
    key = recipe.augmentation_seed(7, 3, 11)
    a = recipe.augment_images(tf.constant(images), key, 0.08, 0.12, 12.0).numpy()
    b = recipe.augment_images(tf.constant(images), recipe.augmentation_seed(7, 3, 11), 0.08, 0.12, 12.0).numpy()
    c = recipe.augment_images(tf.constant(images), recipe.augmentation_seed(7, 3, 12), 0.08, 0.12, 12.0).numpy()
    np.testing.assert_array_equal(a, b)  # a resumed batch gets the same jitter
    assert not np.allclose(a, c)  # the next batch another
    assert not np.allclose(a, images)
    assert a.min() >= 0 and a.max() <= 255
    # The ink stays (mostly) in the frame: small jitter, not a different drawing.
    assert a.sum() == pytest.approx(images.sum(), rel=0.3)
    identity = recipe.augment_images(tf.constant(images), key, 0.0, 0.0, 0.0).numpy()
    np.testing.assert_allclose(identity, images, atol=1e-3)


def test_a_bad_recipe_is_a_one_line_error_before_training():
    with pytest.raises(QuickDrawError, match="--max-epochs"):
        recipe.validate(config(schedule="cosine"))
    with pytest.raises(QuickDrawError, match="unknown schedule"):
        recipe.validate(config(schedule="linear"))
    with pytest.raises(QuickDrawError, match="label-smoothing"):
        recipe.validate(config(label_smoothing=1.5))
    with pytest.raises(QuickDrawError, match="warmup"):
        recipe.validate(config(schedule="cosine", max_epochs=2, warmup_epochs=2))
    with pytest.raises(QuickDrawError, match="resume mode"):
        recipe.validate(config(resume_mode="sometimes"))
    recipe.validate(config(schedule="cosine", max_epochs=10, warmup_epochs=1, label_smoothing=0.1, augment=True))
