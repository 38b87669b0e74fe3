"""The one path from a drawing to a guess: `python -m pipeline predict RUN DRAWINGS.ndjson [--top 5]`.

Used by the CLI, the dashboard's Draw page (canvas strokes), evaluation of stroke folders, and as the
reference the web page's JavaScript twin is tested against. A drawing in any form - Google's
simplified or raw strokes, the Fabric.js `Path` objects of streamlit-drawable-canvas, or parsed
Strokes - is simplified exactly as Google simplified the dataset, rendered into the representation
the model was trained on, and classified. Never a crop-and-resize of canvas pixels: that is what
made the seed's page disagree with its training data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import DrawingError, QuickDrawError
from pipeline.raster import render_bitmap, render_colour_coded
from pipeline.strokes import to_simplified


def prepare_input(drawing, representation: str, image_size: int = 28, time_channel: bool = False,
                  form: str = "auto") -> np.ndarray:
    """The model input (uint8, H x W x C) for a drawing in any supported form (`form`: see
    `pipeline.strokes.to_simplified`; canvas strokes in Google's list form should pass "raw")."""
    strokes = to_simplified(drawing, form)
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
    seconds: float


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
        self._forward = None  # the compiled inference call, built on first use

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

    def top_k(self, probabilities: np.ndarray, top: int = 5) -> list[tuple[str, float]]:
        order = np.argsort(-probabilities, kind="stable")[:top]
        return [(self.classes[i], float(probabilities[i])) for i in order]

    def predict_detailed(self, drawing, top: int = 5, form: str = "auto") -> Prediction:
        start = time.perf_counter()
        image = self.prepare(drawing, form)
        probs = self.probabilities(image[None])[0]
        return Prediction(self.top_k(probs, top), image, probs, time.perf_counter() - start)

    def predict(self, drawing, top: int = 5, form: str = "auto") -> list[tuple[str, float]]:
        """Top-k (label, probability) for one drawing; DrawingError (a ValueError) for unusable input."""
        return self.predict_detailed(drawing, top, form).top


def load_run_model(run_dir: Path | str, checkpoint: str = "best"):
    """A Keras model of the run for inference: 'best' is model/model.keras (safe mode), 'last' the
    latest training checkpoint's weights in the model rebuilt from config.json."""
    from pipeline.checkpoints import Checkpoint, latest_checkpoint
    from pipeline.errors import RunError
    from pipeline.models import build_model, input_shape_for, load_inference_model
    from pipeline.runs import read_config

    run_dir = Path(run_dir)
    if checkpoint not in ("best", "last"):
        raise RunError(f"checkpoint must be 'best' or 'last', not '{checkpoint}'.")
    best_path = run_dir / "model" / "model.keras"
    if checkpoint == "best":
        if not best_path.exists():
            raise RunError(f"run '{run_dir.name}' has no model/model.keras yet: train at least one epoch "
                           "(or use --checkpoint last for a mid-epoch save).")
        return load_inference_model(best_path)
    path = latest_checkpoint(run_dir)
    if path is None:
        if best_path.exists():
            return load_inference_model(best_path)
        raise RunError(f"run '{run_dir.name}' has no checkpoint yet; train it first.")
    config = read_config(run_dir)
    model = build_model(config.model, len(config.classes),
                        input_shape_for(config.representation, config.image_size, config.time_channel),
                        **config.model_options)
    Checkpoint.load(path).restore(model)
    return model


__all__ = ["load_run_model", "DrawingError", "Prediction", "Predictor", "prepare_input"]
