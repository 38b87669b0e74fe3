"""Bring a notebook's training into runs/: `python -m pipeline import-logs DIR --name NAME --model cnn`.

The seed trained in 10-epoch chunks and kept one Keras CSVLogger file per chunk (`train_log.csv`,
`train_log_1.csv`, ...). Each file becomes a chunk of a run with a global epoch count, so the
dashboard shows the whole story - including where resuming lost the learning-rate schedule. With
`--keras-model FILE.h5` the seed's saved model comes along (wrapped so it takes 0-255 images like
ours) and can be evaluated, tested on the canvas and exported like any other run.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from pipeline import runs
from pipeline.errors import QuickDrawError
from pipeline.runs import RunConfig

_FILE_RE = re.compile(r"^(?P<stem>.+?)(?:_(?P<n>\d+))?\.csv$")
COLUMN_ALIASES = {
    "loss": ("loss",),
    "accuracy": ("accuracy", "acc", "categorical_accuracy", "sparse_categorical_accuracy"),
    "top3": ("top_3_accuracy", "top3", "top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy"),
    "val_loss": ("val_loss",),
    "val_accuracy": ("val_accuracy", "val_acc", "val_categorical_accuracy", "val_sparse_categorical_accuracy"),
    "val_top3": ("val_top_3_accuracy", "val_top3", "val_top_k_categorical_accuracy",
                 "val_sparse_top_k_categorical_accuracy"),
    "lr": ("lr", "learning_rate"),
}


def chunk_files(folder: Path) -> list[Path]:
    """CSVLogger files in chunk order: train_log.csv, train_log_1.csv, train_log_2.csv, ..."""
    found = []
    for path in folder.glob("*.csv"):
        match = _FILE_RE.match(path.name)
        if match:
            found.append((match.group("stem"), int(match.group("n") or 0), path))
    if not found:
        raise QuickDrawError(f"{folder} has no .csv training logs (expected train_log.csv, train_log_1.csv, ...).")
    stems = {stem for stem, _, _ in found}
    stem = "train_log" if "train_log" in stems else sorted(stems)[0]
    return [path for s, _, path in sorted(found, key=lambda t: t[1]) if s == stem]


def read_chunk(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        mapping = {}
        for ours, aliases in COLUMN_ALIASES.items():
            for alias in aliases:
                if alias in header:
                    mapping[ours] = alias
                    break
        if "loss" not in mapping:
            raise QuickDrawError(f"{path} has no 'loss' column; is it a Keras CSVLogger file?")
        rows = []
        for raw in reader:
            try:
                rows.append({ours: float(raw[col]) for ours, col in mapping.items() if raw.get(col) not in (None, "")})
            except ValueError:
                continue  # a line cut short by a dying notebook
    return rows


def import_logs(folder: Path, runs_dir: Path, name: str, model: str = "cnn", keras_model: str | None = None,
                classes_file: str | None = None) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise QuickDrawError(f"{folder} is not a folder of training logs.")
    classes: tuple[str, ...] = ()
    if classes_file:
        classes = tuple(line.strip() for line in Path(classes_file).read_text(encoding="utf-8").splitlines() if line.strip())
    if keras_model and not classes:
        raise QuickDrawError("--keras-model needs --classes-file (the class names in the model's output order).")
    run_dir = runs.run_path(runs_dir, name)
    if (run_dir / "config.json").exists():
        raise QuickDrawError(f"run '{name}' already exists; pick another --name.")
    files = chunk_files(folder)
    history, epoch = [], 0
    run_dir.mkdir(parents=True, exist_ok=True)
    config = RunConfig(name=name, model=model, classes=classes, per_class=0, imported_from=str(folder.resolve()),
                       created=runs.now_iso())
    runs.write_config(run_dir, config)
    runs.append_event(run_dir, "imported", source=str(folder), files=[f.name for f in files])
    for chunk, path in enumerate(files, start=1):
        rows = read_chunk(path)
        runs.append_event(run_dir, "chunk_start", chunk=chunk, epoch=epoch + 1, batch=0, source=path.name,
                          lr=rows[0].get("lr") if rows else None)
        for row in rows:
            epoch += 1
            history.append({"epoch": epoch, "chunk": chunk, **row})
        runs.append_event(run_dir, "chunk_end", chunk=chunk, epoch=epoch, batch=0)
    runs.write_history(run_dir, history)
    if keras_model:
        _import_model(run_dir, Path(keras_model), classes, history)
    runs.write_status(run_dir, "finished", epoch=epoch, message=f"imported from {folder}")
    return run_dir


def _import_model(run_dir: Path, path: Path, classes: tuple[str, ...], history: list[dict]) -> None:
    import keras

    from pipeline.checkpoints import save_best_model

    try:
        seed_model = keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for a bad file
        raise QuickDrawError(f"could not load {path} as a Keras model ({type(exc).__name__}: {exc}).") from None
    outputs = int(seed_model.outputs[0].shape[-1])
    if outputs != len(classes):
        raise QuickDrawError(f"{path} has {outputs} outputs but the classes file names {len(classes)} classes.")
    shape = tuple(seed_model.inputs[0].shape[1:])
    if len(shape) == 2:
        shape = (*shape, 1)
    # The seed fed x/255 from outside the model; ours take 0-255 images with the scaling inside.
    inputs = keras.Input(shape=shape, name="image")
    x = keras.layers.Rescaling(1.0 / 255.0, name="scale")(inputs)
    if len(seed_model.inputs[0].shape) == 3:
        x = keras.layers.Reshape(tuple(seed_model.inputs[0].shape[1:]))(x)
    wrapped = keras.Model(inputs, seed_model(x), name="seed_model")
    last = history[-1] if history else {}
    save_best_model(run_dir, wrapped, {"epoch": last.get("epoch"), "imported_from": str(path)})
    runs.append_event(run_dir, "model_imported", source=str(path), params=int(seed_model.count_params()))
