"""The compiled train and eval steps of `python -m pipeline train|resume|branch` (pipeline/train.py
runs them batch by batch): a `tf.function` that runs one replica's step through `strategy.run` and
sums its metric totals across replicas.

Compile settings, measured by `python bench/bench_train.py` on this 2-core CPU:
- Each step is traced once per chunk: on one device its input signature has no batch size, so the
  short last batch of an epoch (and of validation) reuses the graph instead of tracing a second one,
  and autograph is off (see below); tracing is a visible share of an epoch of the seed's CNN.
- XLA (`jit_compile`) is opt-in with $QUICKDRAW_JIT_COMPILE=1: TensorFlow 2.19's XLA CPU backend
  compiles the CNN's convolutions to code several times slower than the oneDNN kernels TensorFlow
  uses without it (Keras' own `jit_compile="auto"` stays off on a CPU-only machine too). It is
  refused with $QUICKDRAW_DETERMINISTIC=1, whose op determinism XLA does not promise, and under
  mirrored/multiworker strategies, where XLA cannot reach the replicas' variables on other devices.
"""

from __future__ import annotations

import os

from pipeline import recipe
from pipeline.errors import QuickDrawError

METRIC_NAMES = ("loss", "top1", "top3", "n")  # the order of a step's result


def jit_compile_requested(one_device: bool = True) -> bool:
    """$QUICKDRAW_JIT_COMPILE=1 compiles the steps with XLA (off by default: slower on CPU, see above)."""
    wanted = os.environ.get("QUICKDRAW_JIT_COMPILE", "0") == "1"
    if wanted and os.environ.get("QUICKDRAW_DETERMINISTIC") == "1":
        raise QuickDrawError("QUICKDRAW_JIT_COMPILE=1 cannot be combined with QUICKDRAW_DETERMINISTIC=1 (XLA does "
                             "not promise deterministic ops); unset one of them.")
    if wanted and not one_device:
        # XLA compiles the whole step for one device; the replicas' variables live on several.
        raise QuickDrawError("QUICKDRAW_JIT_COMPILE=1 works with --strategy default only; unset it for mirrored "
                             "or multiworker training.")
    return wanted


def build_steps(strategy, model, optimizer, config, input_shape: tuple[int, int, int], one_device: bool):
    """(train_step(images, labels, global_batch, key), eval_step(images, labels)), each returning the
    summed [loss, top-1 hits, top-3 hits, count] of its batch as float32. `one_device`: the inputs are
    plain (B, H, W, C) uint8 and (B,) int32 batches of any size B (the default strategy's feed)."""
    import keras
    import tensorflow as tf

    num_classes = len(config.classes)

    def sums(labels, probs, per_example):
        labels = tf.cast(labels, tf.int32)
        top1 = tf.cast(tf.math.in_top_k(labels, probs, 1), tf.float32)
        top3 = tf.cast(tf.math.in_top_k(labels, probs, 3), tf.float32)
        return tf.stack([tf.reduce_sum(per_example), tf.reduce_sum(top1), tf.reduce_sum(top3),
                         tf.cast(tf.shape(labels)[0], tf.float32)])

    def crossentropy(labels, probs):
        return keras.losses.sparse_categorical_crossentropy(tf.cast(labels, tf.int32), probs)

    def train_replica(images, labels, global_batch, key):
        images = tf.cast(images, tf.float32)
        if config.augment:
            images = recipe.augment_images(images, key, config.augment_shift, config.augment_scale,
                                           config.augment_rotate)
        with tf.GradientTape() as tape:
            probs = model(images, training=True)
            per_example = crossentropy(labels, probs)
            if config.label_smoothing:  # the loss trained on is the loss reported
                per_example = recipe.training_loss(tf.cast(labels, tf.int32), probs, num_classes,
                                                   config.label_smoothing)
            loss = tf.reduce_sum(per_example) / global_batch
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return sums(labels, probs, per_example)

    def eval_replica(images, labels):
        probs = model(tf.cast(images, tf.float32), training=False)
        return sums(labels, probs, crossentropy(labels, probs))

    batch = (tf.TensorSpec((None, *input_shape), tf.uint8), tf.TensorSpec((None,), tf.int32))
    # Under a distribution strategy the inputs are per-replica values of a tf.data pipeline whose
    # batch dimension is already unknown (datasets.batches), so they trace once without a signature.
    train_signature = [*batch, tf.TensorSpec((), tf.float32), tf.TensorSpec((2,), tf.int64)] if one_device else None
    # autograph=False: the steps have no Python control flow on tensors (Keras' own train function
    # turns autograph off too), and converting every Keras call it reaches was half of each trace.
    compile_options = {"jit_compile": jit_compile_requested(one_device), "autograph": False}

    @tf.function(input_signature=train_signature, **compile_options)
    def train_step(images, labels, global_batch, key):
        per_replica = strategy.run(train_replica, args=(images, labels, global_batch, key))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    @tf.function(input_signature=list(batch) if one_device else None, **compile_options)
    def eval_step(images, labels):
        per_replica = strategy.run(eval_replica, args=(images, labels))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    return train_step, eval_step
