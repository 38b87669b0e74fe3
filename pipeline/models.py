"""The model registry: the seed's CNN, Keras' MobileNet, and our own, each with its preprocessing inside.

`python -m pipeline train --model cnn|mobilenet|qdnet ...` builds them through `build_model`.
Every model takes uint8-valued images (H, W, C) - exactly what the rasteriser produces - and
returns softmax probabilities. Scaling and resizing are built-in Keras layers inside the model,
so a saved model, its TF.js export and the web page all carry the same preprocessing, and
safe-mode loading works (no Lambda layers).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.errors import QuickDrawError

if TYPE_CHECKING:
    import keras

# Keras (and so TensorFlow) is imported inside the functions that build or load a model, not here:
# the registry and `model_spec` answer "is this a model?" without loading TensorFlow, so the command
# line refuses a wrong --model at once (pipeline/cli.py checks its arguments before TensorFlow).


# The arithmetic a model trains in. "mixed_bfloat16": layers compute in bfloat16 while the variables
# (and so checkpoints, gradients and the optimizer) stay float32, and the softmax head stays float32.
# On a CPU with AVX512-BF16 (or AMX) oneDNN runs bfloat16 convolutions and matrix products at twice
# the float32 rate: the seed's CNN trains about 1.45x faster here, qdnet about 1.25x, but MobileNet's
# depthwise convolutions and batch norms have no such kernels and it trains at 0.56x
# (bench/bench_train.py): "auto" uses it only for the models whose spec says it is faster.
PRECISIONS = ("float32", "mixed_bfloat16")
BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_bfloat16(cpuinfo: str | None = None) -> bool:
    """Whether this machine's CPU has bfloat16 dot-product instructions (Linux: /proc/cpuinfo's flags)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
                cpuinfo = handle.read()
        except OSError:
            return False
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return any(flag in flags for flag in BFLOAT16_CPU_FLAGS)


def resolve_precision(choice: str, model: str) -> str:
    """"auto" (train's default) becomes mixed_bfloat16 for a model that trains faster in it
    (`ModelSpec.bfloat16_faster`) on a CPU that computes bfloat16 natively, else float32; the result is
    what the run's config.json records."""
    if choice == "auto":
        return "mixed_bfloat16" if model_spec(model).bfloat16_faster and cpu_has_bfloat16() else "float32"
    return check_precision(choice)


def check_precision(precision: str) -> str:
    """`precision` when it is one of PRECISIONS, else the one-line error naming what `--precision` takes."""
    if precision not in PRECISIONS:
        raise QuickDrawError(f"unknown precision '{precision}'; use auto, {', '.join(PRECISIONS)}.")
    return precision


@dataclass(frozen=True)
class ModelSpec:
    name: str
    build: Callable[..., keras.Model]
    learning_rate: float
    description: str
    options: tuple[str, ...] = ()
    bfloat16_faster: bool = False  # measured: trains faster in mixed_bfloat16 on a CPU with bfloat16 instructions


def _probabilities(num_classes: int):
    """The softmax head, computed in float32 under any precision: cross-entropy takes the log of these
    probabilities, and bfloat16's 8-bit mantissa would round small ones away."""
    from keras import layers

    return layers.Dense(num_classes, activation="softmax", name="probabilities", dtype="float32")


def build_cnn(num_classes: int, input_shape: tuple[int, int, int]) -> keras.Model:
    """The seed's CNN exactly: Conv 16/32/64 (3x3, same, relu) each + 2x2 max-pool, Dense 128, softmax.

    141,012 parameters for 340 classes on 28x28x1 input.
    """
    import keras
    from keras import layers

    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Rescaling(1.0 / 255.0, name="scale")(inputs)
    # Every layer is named: checkpoints key variables by these names (pipeline.checkpoints), and
    # Keras' automatic names (conv2d_7) depend on how many models the process built before.
    for stage, filters in enumerate((16, 32, 64), start=1):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{stage}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{stage}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(128, activation="relu", name="hidden")(x)
    outputs = _probabilities(num_classes)(x)
    return keras.Model(inputs, outputs, name="cnn")


def build_mobilenet(num_classes: int, input_shape: tuple[int, int, int], alpha: float = 0.5,
                    input_size: int | None = None, dropout: float = 0.1) -> keras.Model:
    """Keras' MobileNet (v1) from scratch (no ImageNet weights: nothing is downloaded).

    `input_size` (32-128) is the side the network sees; the model resizes its input to it with a
    built-in Resizing layer. For 28 px bitmaps use 32: upsampling further adds cost, not detail.
    """
    import keras
    from keras import layers

    size = int(input_size or max(32, input_shape[0]))
    if not 32 <= size <= 128:
        raise QuickDrawError(f"mobilenet input_size must be between 32 and 128, got {size}.")
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    if (input_shape[0], input_shape[1]) != (size, size):
        x = layers.Resizing(size, size, interpolation="bilinear", name="resize")(x)
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale")(x)
    base = keras.applications.MobileNet(
        input_shape=(size, size, input_shape[2]), alpha=alpha, include_top=False,
        weights=None, pooling="avg",
    )
    for layer in base.layers:
        if isinstance(layer, layers.BatchNormalization):
            # Keras' 0.99 moving averages lag by epochs when an epoch is ~100 steps (from scratch on
            # small data), and validation sits near chance while training accuracy climbs.
            layer.momentum = 0.9
    x = base(x)
    if dropout:
        x = layers.Dropout(dropout, name="head_dropout")(x)
    outputs = _probabilities(num_classes)(x)
    return keras.Model(inputs, outputs, name="mobilenet")


def build_qdnet(num_classes: int, input_shape: tuple[int, int, int], width: int = 32,
                dropout: float = 0.25, blocks: int = 1, dense: int | None = None) -> keras.Model:
    """Ours: the seed's three-stage layout, twice as wide, with batch norm and dropout.

    Conv width/2w/4w (3x3, same) each + batch norm + ReLU + 2x2 max-pool, dropout, Dense 8w, dropout,
    softmax. Batch norm's moving averages use momentum 0.9, not Keras' 0.99: with ~100 steps an
    epoch on small datasets the 0.99 averages lag the weights by epochs, and validation accuracy
    swings by tens of points (measured on the 56 classes of ../shared).
    """
    import keras
    from keras import layers

    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Rescaling(1.0 / 255.0, name="scale")(inputs)
    if not 1 <= int(blocks) <= 3:
        raise QuickDrawError(f"qdnet blocks (convolutions per stage) must be 1-3, got {blocks}.")
    for stage, filters in enumerate((width, width * 2, width * 4), start=1):
        for block in range(1, int(blocks) + 1):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{stage}_{block}")(x)
            x = layers.BatchNormalization(momentum=0.9, name=f"bn{stage}_{block}")(x)
            x = layers.ReLU(name=f"relu{stage}_{block}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{stage}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(dropout, name="dropout1")(x)
    x = layers.Dense(int(dense or width * 8), activation="relu", name="hidden")(x)
    x = layers.Dropout(dropout, name="dropout2")(x)
    outputs = _probabilities(num_classes)(x)
    return keras.Model(inputs, outputs, name="qdnet")


REGISTRY: dict[str, ModelSpec] = {
    "cnn": ModelSpec("cnn", build_cnn, 0.002, "the seed's 141k-parameter CNN (Adam 0.002)", bfloat16_faster=True),
    "mobilenet": ModelSpec("mobilenet", build_mobilenet, 0.002,
                           "Keras MobileNet v1 from scratch; options alpha (0.25-1.0), input_size (32-128)",
                           ("alpha", "input_size", "dropout")),
    "qdnet": ModelSpec("qdnet", build_qdnet, 0.002,
                       "ours: the seed's layout twice as wide with batch norm and dropout; options width, "
                       "dropout, blocks (convolutions per stage), dense (units of the hidden dense layer)",
                       ("width", "dropout", "blocks", "dense"), bfloat16_faster=True),
}


def model_spec(name: str) -> ModelSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise QuickDrawError(f"unknown model '{name}'; choose one of: {', '.join(REGISTRY)}.") from None


def build_model(name: str, num_classes: int, input_shape: tuple[int, int, int], precision: str = "float32",
                **options) -> keras.Model:
    """Build a registered model in `precision` (PRECISIONS); unknown options are a clear error, not
    silently ignored. The variables are float32 in every precision, so weights move freely between
    a mixed_bfloat16 model and its float32 twin (what a run saves as model/model.keras)."""
    spec = model_spec(name)
    check_precision(precision)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        allowed = ", ".join(spec.options) or "none"
        raise QuickDrawError(f"model '{name}' has no option(s) {', '.join(unknown)} (options: {allowed}).")
    if num_classes < 2:
        raise QuickDrawError(f"a classifier needs at least 2 classes, got {num_classes}.")
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)  # Keras' global policy, for the layers built now only
    try:
        return spec.build(num_classes, tuple(int(v) for v in input_shape), **options)
    finally:
        keras.config.set_dtype_policy(previous)


def input_shape_for(representation: str, image_size: int, time_channel: bool = False) -> tuple[int, int, int]:
    if representation == "bitmap28":
        return (28, 28, 1)
    if representation == "strokes":
        return (image_size, image_size, 2 if time_channel else 1)
    raise QuickDrawError(f"unknown representation '{representation}'; use bitmap28 or strokes.")


def load_inference_model(path) -> keras.Model:
    """Load a saved model in Keras' safe mode (no arbitrary code), without compiling."""
    import keras

    return keras.models.load_model(path, compile=False, safe_mode=True)
