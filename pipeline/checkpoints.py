"""Training checkpoints and the inference model of a run (runs/<id>/checkpoints/ and runs/<id>/model/).

Written by the trainer (`python -m pipeline train|resume`, pipeline/train.py) and read by resume,
`branch` (pipeline/runs.py) and predict. A checkpoint is one `.npz` (no pickle): every model
variable and every optimizer variable, keyed by name, and the `TrainState` as JSON. Keys are
`model/<layer>/<variable>` (e.g. `model/conv2/kernel`, `model/dropout1/seed_generator_state`) and
`optimizer/<layer>/<variable>:<slot>` (e.g. `optimizer/conv2/kernel:momentum`, `optimizer/iteration`),
so a checkpoint written for another architecture is refused naming the first variable that does not
fit, never loaded into the wrong variables by position. Each file is written to a temp name and
`os.replace`d (pipeline.files), so whatever moment a trainer is killed, every checkpoint on disk is
complete:

    checkpoints/epoch-0007.npz   end of epoch 7 (kept, so `branch --from-epoch 7` can start there)
    checkpoints/partial.npz      the latest mid-epoch save (replaced each time)
    model/model.keras            the best epoch as an inference-only Keras model (safe-mode loadable)
    model/meta.json              which epoch that is, with its history row
"""

from __future__ import annotations

import dataclasses
import errno
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.errors import RunError
from pipeline.files import atomic_path, atomic_write_bytes, atomic_write_json

_EPOCH_RE = re.compile(r"^epoch-(\d+)\.npz$")


# ---------------------------------------------------------------- the training state
@dataclass
class TrainState:
    """Everything besides the variables that a resume needs to continue exactly.

    `schedule` is the learning-rate schedule's state ({lr, best, wait}: ReduceLROnPlateau's, which the
    seed lost on every resume; the cosine schedule only uses lr), `early_stopping` {best, wait,
    stopped}, `partial` the running sums of the epoch in progress ({loss, top1, top3, n, started}, None
    between epochs), `best` the best epoch so far ({epoch, val_top3, val_accuracy, val_loss}), `history`
    one row per finished epoch (as history.csv), `seed` the seed of the data order and augmentation."""

    epoch: int = 0  # completed epochs
    batch: int = 0  # batches done of epoch `epoch + 1`
    partial: dict | None = None
    schedule: dict = field(default_factory=lambda: {"lr": 0.0, "best": math.inf, "wait": 0})
    early_stopping: dict = field(default_factory=lambda: {"best": -math.inf, "wait": 0, "stopped": False})
    best: dict | None = None
    history: list[dict] = field(default_factory=list)
    seed: int = 0
    chunk: int = 0  # the chunk that saved it
    saved_at: float | None = None

    @classmethod
    def initial(cls, learning_rate: float, seed: int) -> TrainState:
        return cls(schedule={"lr": float(learning_rate), "best": math.inf, "wait": 0}, seed=int(seed))

    def fresh_schedule(self, learning_rate: float) -> None:
        """The seed's way of resuming (`--resume-mode weights`): the plateau schedule starts over."""
        self.schedule = {"lr": float(learning_rate), "best": math.inf, "wait": 0}

    def branched(self, epoch: int, learning_rate: float | None = None) -> TrainState:
        """The state a branch starting at the end of `epoch` begins with: history up to it, early
        stopping re-armed, and a new learning rate if one is given."""
        state = dataclasses.replace(self, history=[row for row in self.history if row["epoch"] <= epoch],
                                    early_stopping=dict(self.early_stopping, stopped=False, wait=0))
        if learning_rate:
            state.schedule = dict(self.schedule, lr=float(learning_rate), wait=0)
        return state

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict, source: str) -> TrainState:
        known = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(data, dict) or set(data) - known:
            extra = sorted(set(data) - known) if isinstance(data, dict) else []
            raise RunError(f"{source}: the training state has unknown field(s) {', '.join(extra) or '?'} "
                           "(written by a newer Quick Draw Lab?); upgrade, or delete the checkpoint.")
        return cls(**data)


# ---------------------------------------------------------------- variables by name
def _slot_prefix(variable) -> str:
    """How Keras 3 names an optimizer slot of `variable` (add_variable_from_reference)."""
    return variable.path.replace("/", "_") + "_"


def model_variable_keys(model) -> list[tuple[str, object]]:
    """(key, variable) for every variable of the model, keyed `<layer>/<variable>`; nested models
    (MobileNet's base) are walked into, so keys are the layers' own names."""
    keyed, seen = [], set()

    def walk(layer):
        if hasattr(layer, "layers") and layer.layers:
            for inner in layer.layers:
                walk(inner)
            return
        for variable in layer.variables:
            if id(variable) not in seen:
                seen.add(id(variable))
                keyed.append((f"{layer.name}/{variable.name}", variable))

    for layer in model.layers:
        walk(layer)
    keys = [key for key, _ in keyed]
    if len(set(keys)) != len(keys) or len(keyed) != len(model.variables):
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        raise RunError(f"model '{model.name}' has variables without a unique layer name "
                       f"({', '.join(duplicates[:3]) or 'unreached variables'}); name its layers.")
    return keyed


def optimizer_variable_keys(optimizer, model) -> list[tuple[str, object]]:
    """(key, variable) for the optimizer: its slots keyed by the model variable they belong to."""
    owners = [(_slot_prefix(variable), key) for key, variable in model_variable_keys(model)]
    owners.sort(key=lambda item: -len(item[0]))  # the longest prefix wins (conv1 vs conv1_1)
    keyed = []
    for variable in optimizer.variables:
        name = variable.name
        owner = next(((prefix, key) for prefix, key in owners if name.startswith(prefix)), None)
        keyed.append((f"{owner[1]}:{name[len(owner[0]):]}" if owner else name, variable))
    return keyed


@dataclass
class Checkpoint:
    """A training checkpoint: the state and the variables' values by key."""

    state: TrainState
    model: dict[str, np.ndarray]
    optimizer: dict[str, np.ndarray]

    @classmethod
    def capture(cls, state: TrainState, model, optimizer=None) -> Checkpoint:
        return cls(state,
                   {key: variable.numpy() for key, variable in model_variable_keys(model)},
                   {key: variable.numpy() for key, variable in optimizer_variable_keys(optimizer, model)}
                   if optimizer is not None else {})

    def save(self, path: Path) -> None:
        """Atomically; a full disk or read-only folder raises RunError and leaves the previous file."""
        arrays = {f"model/{key}": np.asarray(value) for key, value in self.model.items()}
        arrays.update({f"optimizer/{key}": np.asarray(value) for key, value in self.optimizer.items()})
        arrays["state"] = np.frombuffer(json.dumps(self.state.to_json()).encode("utf-8"), dtype=np.uint8)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        try:
            atomic_write_bytes(path, buffer.getvalue())
        except OSError as exc:
            reason = {errno.ENOSPC: "the disk is full", errno.EROFS: "the file system is read-only",
                      errno.EACCES: "permission denied"}.get(exc.errno, exc.strerror or str(exc))
            raise RunError(f"could not save {path}: {reason}. The previous checkpoint is intact; free space or "
                           f"make {path.parent} writable, then `python -m pipeline resume {Path(path).parent.parent.name}`.") from exc

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        try:
            with np.load(path, allow_pickle=False) as data:
                names = list(data.files)
                if any(re.fullmatch(r"m\d{5}", n) for n in names):
                    raise RunError(f"checkpoint {path} stores variables by position (an older Quick Draw Lab); "
                                   "it cannot be resumed safely. Branch from a newer checkpoint or train a new run.")
                model = {n[len("model/"):]: data[n] for n in names if n.startswith("model/")}
                optimizer = {n[len("optimizer/"):]: data[n] for n in names if n.startswith("optimizer/")}
                state = json.loads(bytes(data["state"]).decode("utf-8"))
        except (OSError, ValueError, KeyError) as exc:
            raise RunError(f"checkpoint {path} is unreadable ({exc}); delete it to fall back to an older one.") from None
        return cls(TrainState.from_json(state, str(path)), model, optimizer)

    def restore(self, model, optimizer=None) -> None:
        """Assign the saved values by key; any missing, extra or misshapen variable is a RunError naming
        it, before anything is assigned."""
        pairs = _match("model", self.model, model_variable_keys(model))
        if optimizer is not None:
            pairs += _match("optimizer", self.optimizer, optimizer_variable_keys(optimizer, model))
        for variable, value in pairs:
            variable.assign(value)


def _match(kind: str, saved: dict[str, np.ndarray], wanted: list[tuple[str, object]]) -> list[tuple]:
    pairs = []
    for key, variable in wanted:
        if key not in saved:
            raise RunError(f"the checkpoint has no {kind} variable '{key}' (it holds {len(saved)}, this model "
                           f"{len(wanted)}): it was written for a different model or model options.")
        if tuple(saved[key].shape) != tuple(variable.shape):
            raise RunError(f"checkpoint {kind} variable '{key}' has shape {tuple(saved[key].shape)}, this model's "
                           f"{tuple(variable.shape)}: it was written for a different model, options or classes.")
        pairs.append((variable, saved[key]))
    extra = sorted(set(saved) - {key for key, _ in wanted})
    if extra:
        raise RunError(f"the checkpoint's {kind} variable '{extra[0]}' has no place in this model: it was written "
                       "for a different model or model options.")
    return pairs


# ---------------------------------------------------------------- where they live
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
            state = Checkpoint.load(partial).state
        except RunError:
            state = None
        # A partial save belongs to the epoch after `state.epoch` completed epochs.
        if state is not None and state.epoch >= latest_epoch and state.batch > 0:
            return partial
    return latest


# ---------------------------------------------------------------- the inference model
def save_best_model(run_dir: Path, model, meta: dict) -> None:
    """model/model.keras (inference only: no optimizer) and model/meta.json, both atomic."""
    folder = Path(run_dir) / "model"
    with atomic_path(folder / "model.keras") as tmp:
        model.save(tmp)
    atomic_write_json(folder / "meta.json", meta)


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
    # Weights in layer order, not by name: a notebook's model has its own layer names and may lack our
    # weight-free preprocessing layers (it scaled its input outside); shapes are checked one by one.
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
