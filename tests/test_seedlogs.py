"""`python -m pipeline import-logs`: the seed's CSVLogger chunks and saved model become a run."""

import subprocess
import sys

import numpy as np
import pytest

from pipeline import runs
from pipeline.errors import QuickDrawError
from pipeline.seedlogs import chunk_files, import_logs

CLASSES = ["apple", "banana", "cat"]


@pytest.fixture(scope="module")
def seed_folder(shared, tmp_path_factory):
    """What the seed's notebook left behind: 3 chunks of CSVLogger logs (its column names) and its .h5
    model, trained here for real the seed's way (x/255 outside the model, model.fit, reload, fit)."""
    import keras

    from pipeline.formats import read_numpy_bitmap

    folder = tmp_path_factory.mktemp("seed")
    x = np.concatenate([np.asarray(read_numpy_bitmap(shared / "bitmaps" / f"{c}.npy")[:200]) for c in CLASSES])
    y = np.repeat(np.arange(3), 200)
    x = (x.reshape(-1, 28, 28, 1) / 255.0).astype("float32")
    model = keras.Sequential([
        keras.Input((28, 28, 1)), keras.layers.Conv2D(8, 3, activation="relu"), keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy",
                  metrics=["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(3, name="top_3_accuracy")])
    for chunk in range(3):
        name = "train_log.csv" if chunk == 0 else f"train_log_{chunk}.csv"
        model.fit(x, y, epochs=2, batch_size=64, validation_split=0.2, verbose=0,
                  callbacks=[keras.callbacks.CSVLogger(str(folder / name))])
    model.save(folder / "model.h5")
    (folder / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return folder


@pytest.mark.slow  # seed_folder trains a model with model.fit
def test_chunk_files_in_order(seed_folder):
    assert [p.name for p in chunk_files(seed_folder)] == ["train_log.csv", "train_log_1.csv", "train_log_2.csv"]


@pytest.mark.slow
def test_import_logs_with_model(seed_folder, tmp_path, shared):
    proc = subprocess.run([sys.executable, "-m", "pipeline", "import-logs", str(seed_folder), "--name", "seed",
                           "--model", "cnn", "--keras-model", str(seed_folder / "model.h5"), "--classes-file",
                           str(seed_folder / "classes.txt"), "--runs-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "seed"
    history = runs.read_history(run)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4, 5, 6]
    assert [r["chunk"] for r in history] == [1, 1, 2, 2, 3, 3]
    assert all(r["val_top3"] is not None and r["accuracy"] is not None for r in history)
    summary = runs.summarize_run(run)
    assert summary.chunks == 3 and summary.imported and summary.status == "finished"

    import json

    from pipeline.predict import Predictor
    record = json.loads((shared / "pairs" / "apple.ndjson").read_text().splitlines()[0])
    top = Predictor.from_run(run).predict(record["drawing"], top=3)
    assert sorted(label for label, _ in top) == sorted(CLASSES)


@pytest.mark.slow  # seed_folder trains a model with model.fit
def test_import_needs_classes_for_a_model(seed_folder, tmp_path):
    with pytest.raises(QuickDrawError, match="--classes-file"):
        import_logs(seed_folder, tmp_path, name="x", keras_model=str(seed_folder / "model.h5"))
    with pytest.raises(QuickDrawError, match="no .csv training logs"):
        import_logs(tmp_path, tmp_path, name="y")
