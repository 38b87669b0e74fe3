"""The one path from a drawing to a guess: `python -m pipeline predict RUN DRAWINGS.ndjson [--top 5]`.

Used by the CLI, the dashboard's Draw page (canvas strokes), evaluation of stroke folders, and as the
reference the web page's JavaScript twin is tested against. A drawing in any form - Google's
simplified or raw strokes, the Fabric.js `Path` objects of streamlit-drawable-canvas, or parsed
Strokes - is simplified exactly as Google simplified the dataset, rendered into the representation
the model was trained on, and classified. Never a crop-and-resize of canvas pixels: that is what
made the seed's page disagree with its training data.
"""

from __future__ import annotations

import gzip
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import DrawingError, QuickDrawError
from pipeline.raster import render_bitmap, render_colour_coded
from pipeline.strokes import DrawingTooSmall, to_simplified


def prepare_input(drawing, representation: str, image_size: int = 28, time_channel: bool = False,
                  form: str = "auto") -> np.ndarray:
    """The model input (uint8, H x W x C) for a drawing in any supported form (`form`: see
    `pipeline.strokes.to_simplified`; canvas strokes in Google's list form should pass "raw").
    DrawingTooSmall (a DrawingError) for a drawing too small to guess (`strokes.check_big_enough`):
    scaled up to 255 by the simplification, a tap would become a full-width line."""
    strokes = to_simplified(drawing, form, refuse_too_small=True)
    if representation == "bitmap28":
        return render_bitmap(strokes, 28)[..., None]
    if representation == "strokes":
        image = render_colour_coded(strokes, image_size, time_channel=time_channel)
        return image if image.ndim == 3 else image[..., None]
    raise QuickDrawError(f"unknown representation '{representation}'; use bitmap28 or strokes.")


@dataclass
class Prediction:
    top: list[tuple[str, float]]
    image: np.ndarray
    probabilities: np.ndarray
    seconds: float  # prepare + model call
    model_seconds: float = 0.0  # the model call alone


class Predictor:
    """A model with its ordered classes and the preprocessing it was trained with."""

    def __init__(self, model, classes: list[str], representation: str, image_size: int, time_channel: bool = False,
                 name: str = ""):
        output = int(model.outputs[0].shape[-1])
        if output != len(classes):
            raise QuickDrawError(f"model has {output} outputs but {len(classes)} class names; classes.json does "
                                 "not belong to this model.")
        self.model, self.classes = model, list(classes)
        self.representation, self.image_size, self.time_channel = representation, image_size, time_channel
        self.name = name
        self._forward = None  # the compiled inference call for batches, built on first use
        self._forward_one = None  # the XLA-compiled call for one drawing, built on first use

    @classmethod
    def from_run(cls, run_dir: Path | str, checkpoint: str = "best") -> Predictor:
        from pipeline.runs import read_classes, read_config

        run_dir = Path(run_dir)
        config = read_config(run_dir)
        return cls(load_run_model(run_dir, checkpoint), read_classes(run_dir), config.representation,
                   config.image_size, config.time_channel, name=run_dir.name)

    def prepare(self, drawing, form: str = "auto") -> np.ndarray:
        return prepare_input(drawing, self.representation, self.image_size, self.time_channel, form)

    def probabilities(self, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """Softmax outputs for a batch of uint8 model inputs (N, H, W, C)."""
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        if len(images) == 1:
            return self._compiled_one()(images.astype(np.float32)).numpy()
        forward = self._compiled()
        out = []
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size].astype(np.float32)
            out.append(forward(chunk).numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), np.float32)

    def _compiled(self):
        """The model's inference call as one traced graph, for any batch size. Why: calling a Keras
        model eagerly pays Python overhead per layer - 7-15x slower for one drawing (MobileNet: about
        55 ms against 4 ms here), which is the Draw page's and `predict`'s common case."""
        if self._forward is None:
            import tensorflow as tf

            spec = tf.TensorSpec([None, *self.model.inputs[0].shape[1:]], tf.float32)
            model = self.model
            self._forward = tf.function(lambda images: model(images, training=False), input_signature=[spec])
        return self._forward

    def _compiled_one(self):
        """The inference call for one drawing, compiled by XLA. Why: Streamlit calls
        `keras.backend.clear_session()` after every script run, which clears TensorFlow's kernel
        cache, so the Draw page's next call of a traced graph instantiated it again: 25-55 ms for the
        CNNs and 150-300 ms for the MobileNet, against 1-4 ms. XLA's compiled program lives in its own
        cache, which survives that (measured: 1-2 ms after a clear_session); it is as fast or faster
        for one drawing, but slower for large batches on this CPU, so batches keep the graph."""
        if self._forward_one is None:
            import tensorflow as tf

            spec = tf.TensorSpec([1, *self.model.inputs[0].shape[1:]], tf.float32)
            model = self.model
            self._forward_one = tf.function(lambda images: model(images, training=False), input_signature=[spec],
                                            jit_compile=True)
        return self._forward_one

    def top_k(self, probabilities: np.ndarray, top: int = 5) -> list[tuple[str, float]]:
        order = np.argsort(-probabilities, kind="stable")[:top]
        return [(self.classes[i], float(probabilities[i])) for i in order]

    def predict_detailed(self, drawing, top: int = 5, form: str = "auto") -> Prediction:
        start = time.perf_counter()
        image = self.prepare(drawing, form)
        prepared = time.perf_counter()
        probs = self.probabilities(image[None])[0]
        end = time.perf_counter()
        return Prediction(self.top_k(probs, top), image, probs, end - start, end - prepared)

    def predict(self, drawing, top: int = 5, form: str = "auto") -> list[tuple[str, float]]:
        """Top-k (label, probability) for one drawing; DrawingError (a ValueError) for unusable input,
        DrawingTooSmall (a DrawingError) for a drawing too small to guess."""
        return self.predict_detailed(drawing, top, form).top


def check_run_model(run_dir: Path | str, checkpoint: str = "best") -> None:
    """RunError when the run has no model for `checkpoint` ('best' is model/model.keras, 'last' the
    latest training checkpoint, else the best model): the checks of `load_run_model`, made from the
    files alone, so the command line refuses before it loads TensorFlow."""
    from pipeline.checkpoints import latest_checkpoint
    from pipeline.errors import RunError

    run_dir = Path(run_dir)
    if checkpoint not in ("best", "last"):
        raise RunError(f"checkpoint must be 'best' or 'last', not '{checkpoint}'.")
    has_best = (run_dir / "model" / "model.keras").exists()
    if checkpoint == "best" and not has_best:
        raise RunError(f"run '{run_dir.name}' has no model/model.keras yet: train at least one epoch "
                       "(or use --checkpoint last for a mid-epoch save).")
    if checkpoint == "last" and not has_best and latest_checkpoint(run_dir) is None:
        raise RunError(f"run '{run_dir.name}' has no checkpoint yet; train it first "
                       f"(`python -m pipeline resume {run_dir.name}`).")


def load_run_model(run_dir: Path | str, checkpoint: str = "best"):
    """A Keras model of the run for inference: 'best' is model/model.keras (safe mode), 'last' the
    latest training checkpoint's weights in the model rebuilt from config.json."""
    from pipeline.checkpoints import Checkpoint, latest_checkpoint
    from pipeline.models import build_model, input_shape_for, load_inference_model
    from pipeline.runs import read_config

    run_dir = Path(run_dir)
    check_run_model(run_dir, checkpoint)
    best_path = run_dir / "model" / "model.keras"
    if checkpoint == "best":
        return load_inference_model(best_path)
    path = latest_checkpoint(run_dir)
    if path is None:
        return load_inference_model(best_path)
    config = read_config(run_dir)
    model = build_model(config.model, len(config.classes),
                        input_shape_for(config.representation, config.image_size, config.time_channel),
                        **config.model_options)
    Checkpoint.load(path).restore(model)
    return model


# ---------------------------------------------------------------- files of drawings (`predict RUN FILE`)
WHAT_PREDICT_TAKES = ("predict takes an .ndjson file of drawings: one JSON object per line with a \"drawing\" "
                      "of strokes [[x...], [y...]] (Google's simplified or raw form, like the dataset's "
                      "simplified/<class>.ndjson)")
NPY_MAGIC = b"\x93NUMPY"


@dataclass
class DrawingLines:
    """What one pass over a drawings file found: non-empty `lines`, the `drawings` among them, and
    the first line that was not a drawing, with the reason."""

    lines: int = 0
    drawings: int = 0
    first_problem: str = ""

    @property
    def skipped(self) -> int:
        return self.lines - self.drawings

    def reject(self, line: int, reason: str) -> None:
        """A drawing yielded by `iter_drawing_lines` that the model could not take after all (e.g. too
        small to guess): counted as not a drawing, `reason` phrased to follow "line N"."""
        self.drawings -= 1
        self.first_problem = self.first_problem or f"line {line} {reason}"

    def summary(self) -> str:
        """One phrase: '0 of 2 lines were drawings; line 1 is not JSON (...)'."""
        if not self.lines:
            return "0 of 0 lines were drawings: the file is empty"
        first = f"; {'first: ' if self.drawings else ''}{self.first_problem}" if self.first_problem else ""
        return f"{self.drawings} of {self.lines} lines were drawings{first}"


def line_problem(line: bytes):
    """(record, simplified strokes, None) for a line holding a drawing, else (None, None, why not),
    the reason phrased to follow "line N": 'is not JSON (...)', 'has no "drawing" field (...)'..."""
    try:
        record = json.loads(line)
    except UnicodeDecodeError:
        return None, None, "is not UTF-8 text (a binary file?)"
    except json.JSONDecodeError as exc:
        return None, None, f"is not JSON ({exc.msg} at column {exc.colno})"
    except (ValueError, RecursionError) as exc:
        return None, None, f"is not JSON ({exc})"
    if not isinstance(record, dict):
        return None, None, f"is a JSON {type(record).__name__}, not an object with a \"drawing\""
    if "drawing" not in record:
        keys = ", ".join(list(record)[:5]) or "none"
        return None, None, f"has no \"drawing\" field (its fields: {keys})"
    try:
        strokes = to_simplified(record["drawing"])
    except DrawingError as exc:
        return None, None, f"has an unusable \"drawing\": {exc}"
    return record, strokes, None


def iter_drawing_lines(path: Path | str, stats: DrawingLines | None = None) -> Iterator[tuple[int, dict, list]]:
    """(line number from 1, record, simplified strokes) for each line of an .ndjson (or .ndjson.gz)
    file that holds a usable drawing; the others are counted in `stats` with the first reason."""
    path = Path(path)
    stats = stats if stats is not None else DrawingLines()
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            stats.lines += 1
            record, strokes, reason = line_problem(line)
            if reason is not None:
                stats.first_problem = stats.first_problem or f"line {number} {reason}"
                continue
            stats.drawings += 1
            yield number, record, strokes


def check_drawings_file(path: Path | str, run: str = "RUN") -> None:
    """QuickDrawError (one line naming the problem and what predict takes) unless `path` is a file
    with at least one drawing; reads up to the first usable drawing, and imports no TensorFlow."""
    path = Path(path)
    if path.is_dir():
        raise QuickDrawError(f"{path} is a folder; {WHAT_PREDICT_TAKES}. To score a folder of <class>.npy or "
                             f"<class>.ndjson files: `python -m pipeline evaluate {run} --data {path}`.")
    if not path.is_file():
        raise QuickDrawError(f"no file {path}; {WHAT_PREDICT_TAKES}.")
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(NPY_MAGIC))
    except OSError as exc:
        raise QuickDrawError(f"cannot read {path} ({exc.strerror or exc}).") from None
    if head == NPY_MAGIC or path.suffix == ".npy":
        raise QuickDrawError(
            f"{path} is a .npy bitmap file (28x28 images), not a stroke file: {WHAT_PREDICT_TAKES}. To score "
            f"bitmaps, `python -m pipeline evaluate {run} --data {path.parent}` takes a folder of <class>.npy files.")
    stats = DrawingLines()
    try:
        for _ in iter_drawing_lines(path, stats):
            return
    except (OSError, EOFError) as exc:  # e.g. a .gz that is not gzip
        raise QuickDrawError(f"cannot read {path} ({exc}); {WHAT_PREDICT_TAKES}.") from None
    raise QuickDrawError(f"{os.fspath(path)}: {stats.summary()}. {WHAT_PREDICT_TAKES}.")


__all__ = ["check_drawings_file", "check_run_model", "DrawingError", "DrawingLines", "DrawingTooSmall",
           "iter_drawing_lines", "load_run_model", "Prediction", "Predictor", "prepare_input"]
