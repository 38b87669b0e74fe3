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


# ---------------------------------------------------------------- printed output: notebooks and text logs
# Notebooks written here the way Jupyter saves model.fit's output: progress redraws with "\r" (TF1 also
# "\x08" backspaces), the text split across stream outputs (a list of lines, or one string), a
# ReduceLROnPlateau message where each Keras prints it. Metric values are a function of the global epoch
# `g`, and the bars before an epoch's final line show other values, so the tests see which line counts.
import json  # noqa: E402

from pipeline.seedlogs import parse_text_log, read_notebook, resolve_redraws  # noqa: E402


def metrics(g: int) -> dict:
    return {"loss": round(3.0 - 0.02 * g, 4), "accuracy": round(0.30 + 0.005 * g, 4),
            "top3": round(0.50 + 0.005 * g, 4), "val_loss": round(3.1 - 0.02 * g, 4),
            "val_accuracy": round(0.29 + 0.005 * g, 4), "val_top3": round(0.49 + 0.005 * g, 4)}


def tf1_epoch(n: int, planned: int, g: int, *, reduce_to=None, stop_at=None, samples=734400) -> str:
    """TF1 Keras in Jupyter: header, redraws (backspaces over the previous bar, then \\r), final line."""
    m = metrics(g)
    out, width = f"Epoch {n}/{planned}\n", 0
    for seen in range(9728, samples, 9728 * 9):
        if stop_at is not None and seen > stop_at:
            break
        done = 30 * seen // samples
        bar = f"{seen:>6}/{samples} [{'=' * done}>{'.' * (29 - done)}] - ETA: 5:{seen % 60:02d} - loss: " \
              f"{m['loss'] + 0.7:.4f} - acc: {m['accuracy'] - 0.1:.4f} - top_3_accuracy: {m['top3'] - 0.1:.4f}"
        out += "\x08" * width + "\r" + bar
        width = len(bar)
    if stop_at is not None:
        return out
    final = (f"{samples}/{samples} [==============================] - 308s 420us/sample - loss: {m['loss']:.4f} - "
             f"acc: {m['accuracy']:.4f} - top_3_accuracy: {m['top3']:.4f} - val_loss: {m['val_loss']:.4f} - "
             f"val_acc: {m['val_accuracy']:.4f} - val_top_3_accuracy: {m['val_top3']:.4f}")
    out += "\x08" * width + "\r" + final + "\n"
    out += f"\nEpoch {n:05d}: val_loss improved from 3.00000 to {m['val_loss']:.5f}, saving model to seed.h5\n"
    if reduce_to is not None:
        out += f"\nEpoch {n:05d}: ReduceLROnPlateau reducing learning rate to {reduce_to}.\n"
    return out


def k3_epoch(n: int, planned: int, g: int, *, lr=None, reduce_to=None, stop_at=None, steps=5738) -> str:
    """Keras 3 in Jupyter: header, "\\r" redraws, the ReduceLROnPlateau message before the final line
    (its callback runs before the progress bar's), the final line with val_ metrics (and learning_rate
    when a callback put it in the logs)."""
    m = metrics(g)
    out = f"Epoch {n}/{planned}\n"
    for seen in (1, *range(250, steps, 500), steps):
        if stop_at is not None and seen > stop_at:
            return out
        out += (f"\r{seen:>4}/{steps} {'━' * (20 * seen // steps)}{' ' * (20 - 20 * seen // steps)} "
                f"{'0s' if seen == steps else '1:02'} 8ms/step - accuracy: {m['accuracy'] - 0.1:.4f} - "
                f"loss: {m['loss'] + 0.5:.4f} - top_3_accuracy: {m['top3'] - 0.1:.4f}")
    if reduce_to is not None:
        out += f"\nEpoch {n}: ReduceLROnPlateau reducing learning rate to {reduce_to}.\n"
    out += (f"\r{steps}/{steps} ━━━━━━━━━━━━━━━━━━━━ 48s 8ms/step - accuracy: {m['accuracy']:.4f} - "
            f"loss: {m['loss']:.4f} - top_3_accuracy: {m['top3']:.4f} - val_accuracy: {m['val_accuracy']:.4f} - "
            f"val_loss: {m['val_loss']:.4f} - val_top_3_accuracy: {m['val_top3']:.4f}")
    if lr is not None:
        out += f" - learning_rate: {lr:.4e}" if lr < 1e-3 else f" - learning_rate: {lr:.4f}"
    return out + "\n"


def stream_outputs(text: str, piece: int = 997) -> list[dict]:
    """How Jupyter stores a cell's stdout: several stream outputs (cut anywhere, even mid-line), their
    text a list of lines ending in "\\n" or one string."""
    outputs = []
    for k, start in enumerate(range(0, len(text), piece)):
        part = text[start:start + piece]
        outputs.append({"output_type": "stream", "name": "stdout",
                        "text": part.splitlines(keepends=True) if k % 2 == 0 else part})
    return outputs


def code_cell(count, outputs=(), source="model.fit(x, y, validation_split=0.1, callbacks=callbacks)") -> dict:
    return {"cell_type": "code", "execution_count": count, "metadata": {}, "source": [source],
            "outputs": list(outputs)}


def notebook(cells: list[dict]) -> dict:
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": {"name": "python3"}},
            "cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# Quick, Draw! CNN"]}, *cells]}


INTERRUPT = {"output_type": "error", "ename": "KeyboardInterrupt", "evalue": "",
             "traceback": ["\x1b[0;31m---------------------------------------------------------------\x1b[0m",
                           "\x1b[0;31mKeyboardInterrupt\x1b[0m                         Traceback (most recent call last)"]}
EVALUATE = "\r313/313 ━━━━━━━━━━━━━━━━━━━━ 1s 3ms/step - accuracy: 0.9999 - loss: 0.0001\n"


def keras3_notebook() -> dict:
    """Four fit cells, stored out of execution order: A (In [4]) 20/20 epochs with two plateaus and
    learning_rate printed, then model.evaluate; B (In [7]) 25 of 30 epochs, interrupted in its 26th;
    C (In [9]) 6 epochs, the kernel gone in the 7th, its stream cut mid-line; D (In [11]) truncated by
    Colab after 5 epochs. Plus a cell that prints nothing, a cell never run, and an evaluate cell."""
    a, lr = "", 0.001
    for n in range(1, 21):
        reduce_to = {8: 0.0005000000237487257, 15: 0.0002500000118743628}.get(n)
        a += k3_epoch(n, 20, n, lr=lr, reduce_to=reduce_to)
        lr = reduce_to or lr
    a += EVALUATE
    b = "".join(k3_epoch(n, 30, 20 + n) for n in range(1, 26)) + k3_epoch(26, 30, 46, stop_at=2000)
    c = "".join(k3_epoch(n, 10, 45 + n) for n in range(1, 7)) + k3_epoch(7, 10, 52, stop_at=3000)
    c = c[:-12]  # the stream stops mid-line
    d = "".join(k3_epoch(n, 40, 51 + n) for n in range(1, 6)) + k3_epoch(6, 40, 57, stop_at=1000)
    d += "\nBuffered data was truncated after reaching the output size limit."
    return notebook([
        code_cell(1, source="import keras"),  # prints nothing
        code_cell(7, [*stream_outputs(b), INTERRUPT]),
        code_cell(None),  # never run
        code_cell(4, stream_outputs(a)),
        code_cell(5, [{"output_type": "stream", "name": "stdout", "text": EVALUATE},
                      {"output_type": "execute_result", "execution_count": 5, "metadata": {},
                       "data": {"text/plain": ["[0.93, 0.71, 0.88]"]}}], source="model.evaluate(x_test, y_test)"),
        code_cell(9, stream_outputs(c, piece=1499)),
        code_cell(11, stream_outputs(d)),
    ])


def tf1_notebook() -> dict:
    """TF1: 30 epochs with plateaus after epochs 12 and 21 (no lr printed); a cell whose loop calls
    fit twice (3 epochs each); a fit cut mid-line inside its 4th epoch (the kernel died)."""
    first = "".join(tf1_epoch(n, 30, n, reduce_to={12: 0.0005000000237487257, 21: 0.0002500000118743628}.get(n))
                    for n in range(1, 31))
    loop = "".join(tf1_epoch(n, 3, 30 + n) for n in range(1, 4)) + "".join(tf1_epoch(n, 3, 33 + n) for n in range(1, 4))
    cut = "".join(tf1_epoch(n, 10, 36 + n) for n in range(1, 4)) + tf1_epoch(4, 10, 40, stop_at=9728 * 19)
    cut = cut[:-9]
    return notebook([code_cell(2, stream_outputs(first)), code_cell(3, stream_outputs(loop, piece=333)),
                     code_cell(4, stream_outputs(cut))])


def write_notebook(folder, name, nb) -> object:
    path = folder / name
    path.write_text(json.dumps(nb, indent=1), encoding="utf-8")
    return path


def expected_row(g: int) -> dict:
    return metrics(g)


def test_resolve_redraws():
    assert resolve_redraws("\r 1/9 x\r 9/9 final") == " 9/9 final"
    assert resolve_redraws("first bar\x08\x08\x08\x08\x08\x08\x08\x08\x08\rsecond\x08\x08\x08\x08\x08\x08\r") == "second"
    assert resolve_redraws("abcdef\x08\x08\x08XYZ") == "abcXYZ"
    assert resolve_redraws("line\r") == "line"


def test_keras3_notebook_chunks_and_history(tmp_path):
    path = write_notebook(tmp_path, "train.ipynb", keras3_notebook())
    chunks = read_notebook(path)
    assert [c.source for c in chunks] == ["cell 5 (In [4])", "cell 3 (In [7])", "cell 7 (In [9])", "cell 8 (In [11])"]
    assert [len(c.rows) for c in chunks] == [20, 25, 6, 5]
    assert [c.planned for c in chunks] == [20, 30, 10, 40]
    assert chunks[0].stop is None and chunks[3].stop is None and chunks[3].truncated
    assert chunks[1].stop == {"epoch": 26, "batch": 1750, "signal": "SIGINT", "cause": "KeyboardInterrupt"}
    assert chunks[2].stop["epoch"] == 7 and chunks[2].stop["signal"] is None and "ends inside" in chunks[2].stop["cause"]

    run = import_logs(path, tmp_path / "runs", name="k3-notebook")
    history = runs.read_history(run)
    assert [r["epoch"] for r in history] == list(range(1, 57))  # 20 + 25 + 6 + 5, the partial epochs left out
    assert [r["chunk"] for r in history] == [1] * 20 + [2] * 25 + [3] * 6 + [4] * 5
    for row in history:
        assert {k: row[k] for k in metrics(1)} == pytest.approx(expected_row(row["epoch"])), row["epoch"]
    # Keras 3 prints the rate each epoch used: the reduction after epoch 8 shows from epoch 9 on.
    assert [r["lr"] for r in history[:20]] == pytest.approx([0.001] * 8 + [0.0005] * 7 + [0.00025] * 5)
    assert all(r["lr"] is None for r in history[20:])  # not printed, no plateau: unknown
    assert all(r["started"] is None for r in history)

    events = runs.read_events(run)
    starts = [e for e in events if e["event"] == "chunk_start"]
    assert [(e["chunk"], e["epoch"], e["source"]) for e in starts] == [
        (1, 1, "cell 5 (In [4])"), (2, 21, "cell 3 (In [7])"), (3, 46, "cell 7 (In [9])"), (4, 52, "cell 8 (In [11])")]
    stops = [e for e in events if e["event"] == "signal_stop"]
    assert [(e["chunk"], e["epoch"], e["batch"], e["signal"]) for e in stops] == [(2, 46, 1750, "SIGINT"),
                                                                                 (3, 52, 2750, None)]
    ends = [e for e in events if e["event"] == "chunk_end"]
    assert [(e["chunk"], e["epoch"]) for e in ends] == [(1, 20), (2, 45), (3, 51), (4, 56)]
    assert ends[3].get("truncated") and not ends[0].get("truncated")
    assert events[0]["event"] == "created" and events[1]["event"] == "imported"

    summary = runs.summarize_run(run)
    assert (summary.status, summary.chunks, summary.epochs, summary.imported) == ("finished", 4, 56, True)
    assert summary.best_epoch == 56 and summary.best_val_top3 == pytest.approx(metrics(56)["val_top3"])
    assert runs.run_state(run).state == "finished"
    assert "chunk 2 stopped in epoch 46" in runs.read_status(run)["message"]


def test_tf1_notebook(tmp_path):
    run = import_logs(write_notebook(tmp_path, "seed.ipynb", tf1_notebook()), tmp_path / "runs", name="tf1")
    history = runs.read_history(run)
    assert [r["epoch"] for r in history] == list(range(1, 40))  # 30 + 3 + 3 + 3 done in the cut fit
    assert [r["chunk"] for r in history] == [1] * 30 + [2] * 3 + [3] * 3 + [4] * 3
    for row in history:
        assert {k: row[k] for k in metrics(1)} == pytest.approx(expected_row(row["epoch"])), row["epoch"]
    # TF1 prints no rate: unknown until the first plateau, the new rate from the epoch after its message.
    assert [r["lr"] for r in history[:30]] == [None] * 12 + [0.0005000000237487257] * 9 + [0.0002500000118743628] * 9
    assert all(r["lr"] is None for r in history[30:])
    stops = [e for e in runs.read_events(run) if e["event"] == "signal_stop"]
    assert [(e["chunk"], e["epoch"], e["batch"], e["signal"]) for e in stops] == [(4, 40, 9728 * 19, None)]
    summary = runs.summarize_run(run)
    assert (summary.status, summary.chunks, summary.epochs) == ("finished", 4, 39)


def test_text_log(tmp_path):
    """A plain log (`python train.py > train.log`): Keras 3 without dynamic display writes each update on
    a line of its own; two fits, the second restarting at Epoch 1, then a third cut by Ctrl-C."""
    text = "2024-05-01 10:00:00.123 I tensorflow/core/platform/cpu_feature_guard.cc:210] This TensorFlow binary...\n"
    for n in range(1, 5):
        text += k3_epoch(n, 4, n, reduce_to=0.0005 if n == 2 else None).replace("\r", "\n")
    text += EVALUATE.replace("\r", "")
    for n in range(1, 4):
        text += k3_epoch(n, 3, 4 + n).replace("\r", "\n")
    text += k3_epoch(1, 5, 8).replace("\r", "\n") + k3_epoch(2, 5, 9, stop_at=3000).replace("\r", "\n")
    text += "\nTraceback (most recent call last):\n  File \"train.py\", line 40, in <module>\nKeyboardInterrupt\n"
    log = tmp_path / "train.log"
    log.write_text(text, encoding="utf-8")
    chunks = parse_text_log(text, "train.log")
    assert [len(c.rows) for c in chunks] == [4, 3, 1]
    run = import_logs(log, tmp_path / "runs", name="from-log")
    history = runs.read_history(run)
    assert [r["epoch"] for r in history] == list(range(1, 9))
    assert [r["chunk"] for r in history] == [1] * 4 + [2] * 3 + [3]
    assert [r["lr"] for r in history] == [None, None, 0.0005, 0.0005, None, None, None, None]
    for row in history:
        assert {k: row[k] for k in metrics(1)} == pytest.approx(expected_row(row["epoch"]))
    stops = [e for e in runs.read_events(run) if e["event"] == "signal_stop"]
    assert [(e["chunk"], e["epoch"], e["signal"], e["source"]) for e in stops] == [(3, 9, "SIGINT", "train.log (fit 3)")]


def test_cli_imports_a_notebook_and_refuses_one_without_fit_output(tmp_path):
    path = write_notebook(tmp_path, "train.ipynb", keras3_notebook())
    proc = subprocess.run([sys.executable, "-m", "pipeline", "import-logs", str(path), "--name", "nb", "--model", "cnn",
                           "--runs-dir", str(tmp_path / "runs")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert len(runs.read_history(tmp_path / "runs" / "nb")) == 56
    empty = write_notebook(tmp_path, "empty.ipynb", notebook([code_cell(1, stream_outputs("hello\n")), code_cell(None)]))
    proc = subprocess.run([sys.executable, "-m", "pipeline", "import-logs", str(empty), "--name", "empty",
                           "--runs-dir", str(tmp_path / "runs")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "no Keras training output" in proc.stderr and "Epoch N/M" in proc.stderr
    assert not (tmp_path / "runs" / "empty").exists()  # nothing created


def test_import_errors_name_the_fix(tmp_path):
    bad = tmp_path / "broken.ipynb"
    bad.write_text('{"cells": [', encoding="utf-8")
    with pytest.raises(QuickDrawError, match="not a Jupyter notebook"):
        import_logs(bad, tmp_path / "runs", name="bad")
    with pytest.raises(QuickDrawError, match="no such file or folder"):
        import_logs(tmp_path / "missing.ipynb", tmp_path / "runs", name="missing")
    log = tmp_path / "notes.txt"
    log.write_text("nothing trained here\n", encoding="utf-8")
    with pytest.raises(QuickDrawError, match="no 'Epoch N/M' line"):
        import_logs(log, tmp_path / "runs", name="notes")
    path = write_notebook(tmp_path, "train.ipynb", keras3_notebook())
    import_logs(path, tmp_path / "runs", name="twice")
    with pytest.raises(QuickDrawError, match="already exists"):
        import_logs(path, tmp_path / "runs", name="twice")
