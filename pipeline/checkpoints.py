"""Training checkpoints and inference models of a run (runs/<id>/checkpoints/ and runs/<id>/model/).

Written by `python -m pipeline train|resume` (pipeline/train.py) and read by predict, evaluate,
export and `branch`. A checkpoint is one `.npz` (no pickle) holding every model variable (the
dropout seed generator's state included), every optimizer variable and a JSON training state
(position, partial-epoch sums, learning-rate schedule, best epoch, history). Each file is written
to a temp name and `os.replace`d, so whatever moment a trainer is killed, every checkpoint on disk
is complete:

    checkpoints/epoch-0007.npz   end of epoch 7 (kept, so `branch --from-epoch 7` can start there)
    checkpoints/partial.npz      the latest mid-epoch save (replaced each time)
    checkpoints/best.npz         model variables of the best epoch so far
    model/model.keras            the best epoch as an inference-only Keras model (safe-mode loadable)
"""

from __future__ import annotations

import errno
import io
import json
import re
from pathlib import Path

import numpy as np

from pipeline.errors import RunError
from pipeline.runs import atomic_write_bytes, atomic_write_json, read_config

_EPOCH_RE = re.compile(r"^epoch-(\d+)\.npz$")


def _pack(model_values, optimizer_values, state: dict) -> bytes:
    arrays = {f"m{i:05d}": np.asarray(v) for i, v in enumerate(model_values)}
    arrays.update({f"o{i:05d}": np.asarray(v) for i, v in enumerate(optimizer_values)})
    arrays["state"] = np.frombuffer(json.dumps(state).encode("utf-8"), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def read_checkpoint(path: Path) -> tuple[list[np.ndarray], list[np.ndarray], dict]:
    """(model variable values, optimizer variable values, state) of a checkpoint file."""
    try:
        with np.load(path, allow_pickle=False) as data:
            names = sorted(data.files)
            model_values = [data[n] for n in names if n.startswith("m")]
            optimizer_values = [data[n] for n in names if n.startswith("o")]
            state = json.loads(bytes(data["state"]).decode("utf-8"))
    except (OSError, ValueError, KeyError) as exc:
        raise RunError(f"checkpoint {path} is unreadable ({exc}); delete it to fall back to an older one.") from None
    return model_values, optimizer_values, state


def write_checkpoint(path: Path, model, optimizer, state: dict) -> None:
    """Atomically write a checkpoint. A full disk or read-only folder raises RunError and leaves the
    previous checkpoint untouched."""
    model_values = [v.numpy() for v in model.variables]
    optimizer_values = [v.numpy() for v in optimizer.variables] if optimizer is not None else []
    try:
        atomic_write_bytes(path, _pack(model_values, optimizer_values, state))
    except OSError as exc:
        reason = {errno.ENOSPC: "the disk is full", errno.EROFS: "the file system is read-only",
                  errno.EACCES: "permission denied"}.get(exc.errno, exc.strerror or str(exc))
        raise RunError(
            f"could not save {path}: {reason}. The previous checkpoint is intact; free space or make "
            f"{path.parent} writable, then `python -m pipeline resume`."
        ) from exc


def restore(model, optimizer, model_values, optimizer_values) -> None:
    variables = list(model.variables)
    if len(variables) != len(model_values):
        raise RunError(f"checkpoint holds {len(model_values)} model variables, the model has {len(variables)}: "
                       "it was written for a different model or model options.")
    for var, value in zip(variables, model_values, strict=True):
        if tuple(var.shape) != tuple(value.shape):
            raise RunError(f"checkpoint variable for {var.path} has shape {value.shape}, expected {tuple(var.shape)}.")
        var.assign(value)
    if optimizer is not None and optimizer_values:
        opt_vars = list(optimizer.variables)
        if len(opt_vars) != len(optimizer_values):
            raise RunError("checkpoint optimizer state does not match the optimizer; was the model changed?")
        for var, value in zip(opt_vars, optimizer_values, strict=True):
            var.assign(value)


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def epoch_checkpoints(run_dir: Path) -> dict[int, Path]:
    folder = checkpoint_dir(run_dir)
    found = {}
    if folder.is_dir():
        for path in folder.iterdir():
            match = _EPOCH_RE.match(path.name)
            if match:
                found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def epoch_checkpoint_path(run_dir: Path, epoch: int) -> Path:
    return checkpoint_dir(run_dir) / f"epoch-{epoch:04d}.npz"


def partial_checkpoint_path(run_dir: Path) -> Path:
    return checkpoint_dir(run_dir) / "partial.npz"


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The furthest saved point: the newest epoch-end checkpoint, or a mid-epoch one beyond it."""
    epochs = epoch_checkpoints(run_dir)
    latest = epochs[max(epochs)] if epochs else None
    latest_epoch = max(epochs) if epochs else 0
    partial = partial_checkpoint_path(run_dir)
    if partial.exists():
        try:
            _, _, state = read_checkpoint(partial)
        except RunError:
            state = None
        # A partial save belongs to the epoch after `state["epoch"]` completed epochs.
        if state is not None and state.get("epoch", -1) >= latest_epoch and state.get("batch", 0) > 0:
            return partial
    return latest


def save_best_model(run_dir: Path, model, meta: dict) -> None:
    """model/model.keras (inference only: no optimizer) and model/meta.json, both atomic."""
    folder = Path(run_dir) / "model"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".model.keras.tmp.keras"
    try:
        model.save(tmp)
        data = tmp.read_bytes()
    finally:
        tmp.unlink(missing_ok=True)
    atomic_write_bytes(folder / "model.keras", data)
    atomic_write_json(folder / "meta.json", meta)


def load_run_model(run_dir: Path, checkpoint: str = "best"):
    """A Keras model of the run for inference: 'best' is model/model.keras (safe mode), 'last' the
    latest training checkpoint's weights in the model rebuilt from config.json."""
    from pipeline.models import build_model, input_shape_for, load_inference_model

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
    model_values, _, _ = read_checkpoint(path)
    restore(model, None, model_values, [])
    return model


def init_source_path(source: str, runs_dir: Path) -> Path:
    """The model file a warm start (`train --init-from SOURCE`) reads: a run's best model, or a saved
    Keras model file (.keras, or a notebook's legacy .h5)."""
    candidate = Path(source)
    if candidate.suffix in (".keras", ".h5"):
        if not candidate.is_file():
            raise RunError(f"--init-from {source}: no such model file; give a .keras/.h5 file or a run name.")
        return candidate
    run_model = Path(runs_dir) / source / "model" / "model.keras"
    if not run_model.is_file():
        raise RunError(f"--init-from {source}: no run '{source}' with a trained model in {runs_dir} and not a "
                       ".keras/.h5 file; `python -m pipeline runs` lists the runs.")
    return run_model


def warm_start(model, source: str, runs_dir: Path) -> Path:
    """Copy another model's weights into `model` (same architecture and classes), leaving the optimizer
    and schedule fresh. A different architecture is an error naming the first variable that does not
    fit, never a silent partial copy."""
    import keras

    path = init_source_path(source, runs_dir)
    try:
        if path.suffix == ".keras":
            donor = keras.models.load_model(path, compile=False, safe_mode=True)
        else:
            donor = keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for unreadable files
        raise RunError(f"--init-from {path}: cannot load the model ({type(exc).__name__}: {exc}).") from None
    # Weights in layer order; the donor may lack our weight-free preprocessing layers (a notebook's
    # model scaled its input outside), which is why order, not layer names, is matched.
    ours, theirs = model.weights, donor.weights
    for index, variable in enumerate(ours):
        if index >= len(theirs):
            raise RunError(f"--init-from {path}: it has {len(theirs)} weights, this model needs {len(ours)} "
                           f"(first missing: {variable.path}); use the same --model, options and classes.")
        if tuple(variable.shape) != tuple(theirs[index].shape):
            raise RunError(f"--init-from {path}: weight {variable.path} has shape {tuple(variable.shape)} here but "
                           f"{tuple(theirs[index].shape)} in the source ({theirs[index].path}); use the same "
                           "--model, options and classes.")
    if len(theirs) != len(ours):
        raise RunError(f"--init-from {path}: it has {len(theirs)} weights, this model {len(ours)}; use the same "
                       "--model, options and classes.")
    for variable, value in zip(ours, donor.get_weights(), strict=True):
        variable.assign(value)
    return path
