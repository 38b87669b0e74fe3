"""The training recipe: learning-rate schedules, the optimizer, image augmentation and the loss.

Used by the trainer (`python -m pipeline train|resume`, pipeline/train.py); every knob is a field of
RunConfig (`--schedule cosine --warmup-epochs 1 --label-smoothing 0.1 --weight-decay 1e-4
--augment`), recorded in config.json. Everything here is a pure function of the run's saved state
- the schedule of (epoch, batch) or of the plateau counters, the augmentation of
(seed, epoch, batch) through TensorFlow's stateless RNG - so a resumed chunk continues exactly where
the interrupted one stopped: no hidden random or schedule state lives outside the checkpoint.
"""

from __future__ import annotations

import math

from pipeline.errors import QuickDrawError
from pipeline.models import check_precision

SCHEDULES = ("plateau", "cosine")


def validate(config) -> None:
    """Recipe fields a user can get wrong, as one-line errors before anything trains."""
    if config.schedule not in SCHEDULES:
        raise QuickDrawError(f"unknown schedule '{config.schedule}'; use {' or '.join(SCHEDULES)}.")
    check_precision(config.precision)
    if config.resume_mode not in ("exact", "weights"):
        raise QuickDrawError(f"unknown resume mode '{config.resume_mode}'; use exact or weights.")
    if config.schedule == "cosine" and not config.max_epochs:
        raise QuickDrawError("--schedule cosine decays over the whole run: give --max-epochs too.")
    if config.max_epochs and config.warmup_epochs >= config.max_epochs:
        raise QuickDrawError(f"--warmup-epochs ({config.warmup_epochs}) must be below --max-epochs ({config.max_epochs}).")
    if not 0.0 <= config.label_smoothing < 1.0:
        raise QuickDrawError(f"--label-smoothing must be in [0, 1), got {config.label_smoothing}.")
    if config.weight_decay < 0 or config.warmup_epochs < 0:
        raise QuickDrawError("--weight-decay and --warmup-epochs cannot be negative.")
    if not (0 <= config.augment_shift <= 0.3 and 0 <= config.augment_scale <= 0.5 and 0 <= config.augment_rotate <= 45):
        raise QuickDrawError("augmentation out of range: shift 0-0.3 of the side, scale 0-0.5, rotation 0-45 degrees.")


def describe(config) -> dict:
    """The recipe of a run as one flat row (the Compare page's recipe table, the experiment's results)."""
    data = f"{len(config.classes)} classes x <= {config.per_class}, {config.representation}"
    return {
        "model": config.model,
        "options": ", ".join(f"{k}={v}" for k, v in sorted(config.model_options.items())) or "-",
        "data": data, "seed": config.seed, "epochs": config.max_epochs, "batch": config.batch_size,
        "lr": config.learning_rate,
        "schedule": config.schedule + (f" (warmup {config.warmup_epochs:g})" if config.warmup_epochs else ""),
        "label smoothing": config.label_smoothing, "weight decay": config.weight_decay,
        "augment": (f"shift {config.augment_shift:g}, scale {config.augment_scale:g}, rotate {config.augment_rotate:g}"
                    if config.augment else "none"),
        "resume": config.resume_mode, "init from": config.init_from or "-", "precision": config.precision,
    }


# ---------------------------------------------------------------- learning-rate schedules
def plateau_step(schedule: dict, val_loss: float, factor: float, patience: int, min_lr: float,
                 min_delta: float = 1e-4) -> dict:
    """Keras' ReduceLROnPlateau (mode min, cooldown 0) as a pure function of saved state."""
    schedule = dict(schedule)
    if val_loss < schedule["best"] - min_delta:
        schedule["best"] = float(val_loss)
        schedule["wait"] = 0
    else:
        schedule["wait"] += 1
        if schedule["wait"] >= patience and schedule["lr"] > min_lr:
            schedule["lr"] = float(max(schedule["lr"] * factor, min_lr))
            schedule["wait"] = 0
    return schedule


def cosine_lr(base_lr: float, min_lr: float, warmup_epochs: float, max_epochs: int, epoch: int, batch: int,
              batches_per_epoch: int) -> float:
    """The rate for batch `batch` (0-based) of epoch `epoch` (1-based): linear warmup from base/10,
    then half a cosine down to min_lr at the end of max_epochs."""
    position = (epoch - 1) + batch / max(batches_per_epoch, 1)  # epochs done before this batch
    if warmup_epochs and position < warmup_epochs:
        return float(base_lr * (0.1 + 0.9 * position / warmup_epochs))
    span = max(max_epochs - warmup_epochs, 1e-9)
    progress = min(max((position - warmup_epochs) / span, 0.0), 1.0)
    return float(min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def batch_lr(config, schedule: dict, epoch: int, batch: int, batches_per_epoch: int) -> float:
    """The learning rate of one batch under the run's schedule (the plateau rate changes per epoch)."""
    if config.schedule == "cosine":
        return cosine_lr(config.learning_rate, config.lr_min, config.warmup_epochs, config.max_epochs, epoch,
                         batch, batches_per_epoch)
    return float(schedule["lr"])


# ---------------------------------------------------------------- optimizer and loss
def make_optimizer(config):
    import keras

    if config.weight_decay:
        return keras.optimizers.AdamW(learning_rate=config.learning_rate, weight_decay=config.weight_decay)
    return keras.optimizers.Adam(learning_rate=config.learning_rate)


def training_loss(labels, probs, num_classes: int, label_smoothing: float):
    """Per-example cross-entropy against labels smoothed by `label_smoothing` (0: plain)."""
    import keras
    import tensorflow as tf

    if not label_smoothing:
        return keras.losses.sparse_categorical_crossentropy(labels, probs)
    target = tf.one_hot(labels, num_classes) * (1.0 - label_smoothing) + label_smoothing / num_classes
    return keras.losses.categorical_crossentropy(target, probs)


# ---------------------------------------------------------------- augmentation
def augmentation_seed(seed: int, epoch: int, batch: int):
    """The stateless RNG key of one batch: the same batch of a resumed epoch gets the same jitter."""
    import tensorflow as tf

    return tf.constant([int(seed), int(epoch) * 1_000_003 + int(batch)], dtype=tf.int64)


def augment_images(images, key, shift: float, scale: float, rotate_degrees: float):
    """Random affine jitter of a float batch (B, H, W, C): rotation, independent x/y scale and a shift,
    about the image centre, bilinear, zero (background) fill. `key` is a stateless RNG key."""
    import tensorflow as tf

    size = tf.shape(images)[0]
    height = tf.cast(tf.shape(images)[1], tf.float32)
    width = tf.cast(tf.shape(images)[2], tf.float32)
    keys = tf.random.experimental.stateless_split(key, 4)
    angle = tf.random.stateless_uniform([size], keys[0], -1.0, 1.0) * (rotate_degrees * math.pi / 180.0)
    scale_x = 1.0 + tf.random.stateless_uniform([size], keys[1], -scale, scale)
    scale_y = 1.0 + tf.random.stateless_uniform([size], keys[2], -scale, scale)
    offsets = tf.random.stateless_uniform([size, 2], keys[3], -shift, shift) * tf.stack([width, height])
    cos, sin = tf.cos(angle), tf.sin(angle)
    cx, cy = (width - 1.0) / 2.0, (height - 1.0) / 2.0
    # The transform maps each output pixel to the input pixel it samples: the inverse of
    # "scale, rotate about the centre, then shift".
    a0, a1 = cos / scale_x, sin / scale_x
    b0, b1 = -sin / scale_y, cos / scale_y
    ox, oy = cx + offsets[:, 0], cy + offsets[:, 1]
    a2 = cx - a0 * ox - a1 * oy
    b2 = cy - b0 * ox - b1 * oy
    zeros = tf.zeros_like(a0)
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.shape(images)[1:3], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="CONSTANT")
