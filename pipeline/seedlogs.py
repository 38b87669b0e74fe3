"""Bring a notebook's training into runs/: `python -m pipeline import-logs PATH --name NAME --model cnn`.

PATH is one of:

- a folder of Keras CSVLogger files. The seed trained in 10-epoch chunks and kept one file per chunk
  (`train_log.csv`, `train_log_1.csv`, ...); each file becomes a chunk (a single .csv file: one chunk).
- a Jupyter notebook (`.ipynb`, read as JSON: nbformat 4, or 3's worksheets). Its fit cells are the
  code cells whose outputs hold `Epoch N/M` lines, in execution order (the cells' recorded
  `iopub.execute_input` times when every fit cell has one, else `execution_count`; cells never run
  are skipped). Each `fit` call in a cell is one chunk.
- a plain text log (anything else): a restart at `Epoch 1/M`, a lower epoch counter or another M
  starts a new chunk.

From printed output, each epoch's row is its last progress line (`\r` redraws and `\x08` backspaces
resolved: the last redraw counts) once it shows all steps (`734400/734400 [===] - 308s ...` in TF1,
`5738/5738 ━━━ 48s 8ms/step ...` in TF2/Keras 3) and ends with the newline Keras writes; its
`- name: value` pairs map to our columns (COLUMN_ALIASES: `acc`/`accuracy`, `top_3_accuracy`/
`top_k_categorical_accuracy`/`top3`, `val_*`, `lr`/`learning_rate`; unknown names ignored, missing
ones empty). `Epoch N: ReduceLROnPlateau reducing learning rate to X.` (TF1 prints `Epoch 000N`)
sets `lr` to X from epoch N+1 of that chunk on, unless a row prints its own rate; the rate at the
start of a `fit` is not printed, so it stays empty until then. Epochs are numbered globally: each
chunk continues after the last epoch shown before it, its first printed epoch being the next one.
An output that stops inside an epoch - a `KeyboardInterrupt`, the kernel gone, a stream cut mid-line
- leaves that epoch out of the history and records a `signal_stop` event in its chunk (`signal`
"SIGINT" for a KeyboardInterrupt, else none; `cause` says which; `epoch` the global epoch it stopped
in, `batch` the last step shown); another exception is an `error` event. Jupyter's truncation
notices ("Output truncated", "Buffered data was truncated...", "IOPub data rate exceeded") are gaps:
the epochs they hid are missing rows, the chunk's events carry `truncated: true`, and an output that
ends after one is not called an interruption.

The run gets its history, `created`/`imported`/`chunk_start`/`chunk_end` events and status `finished`,
no checkpoints. With `--keras-model FILE.h5` the seed's saved model comes along (wrapped so it takes
0-255 images like ours) and can be evaluated, tested on the canvas and exported like any other run.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import runs
from pipeline.errors import QuickDrawError
from pipeline.runs import RunConfig

_FILE_RE = re.compile(r"^(?P<stem>.+?)(?:_(?P<n>\d+))?\.csv$")
COLUMN_ALIASES = {
    "loss": ("loss",),
    "accuracy": ("accuracy", "acc", "categorical_accuracy", "sparse_categorical_accuracy"),
    "top3": ("top_3_accuracy", "top3", "top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy",
             "top_3_categorical_accuracy", "top3_accuracy"),
    "val_loss": ("val_loss",),
    "val_accuracy": ("val_accuracy", "val_acc", "val_categorical_accuracy", "val_sparse_categorical_accuracy"),
    "val_top3": ("val_top_3_accuracy", "val_top3", "val_top_k_categorical_accuracy",
                 "val_sparse_top_k_categorical_accuracy", "val_top_3_categorical_accuracy", "val_top3_accuracy"),
    "lr": ("lr", "learning_rate"),
}
_ALIAS_TO_COLUMN = {alias: ours for ours, aliases in COLUMN_ALIASES.items() for alias in aliases}
WHAT_IMPORTS = "a folder of Keras CSVLogger files, a Jupyter notebook (.ipynb) or a text log of model.fit's output"

# Printed Keras output (TF1 and TF2/Keras 3).
_HEADER_RE = re.compile(r"^\s*Epoch\s+(\d+)/(\d+)\s*$")
_PROGRESS_RE = re.compile(r"^\s*(\d+)/(\d+|Unknown)(?=\s|$)(.*)$")
_METRIC_RE = re.compile(r"(?:^|\s)-\s+([A-Za-z_][\w.]*):\s+([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|-?inf)(?=\s|$)")
_REDUCE_RE = re.compile(r"Epoch\s+0*(\d+):\s+ReduceLROnPlateau reducing learning rate to\s+([-+0-9.eE]+)")
_INTERRUPT_RE = re.compile(r"^\s*KeyboardInterrupt\b")
_EXCEPTION_RE = re.compile(r"^\s*([A-Za-z_][\w.]*(?:Error|Exception|Exit)):?\s*(.*)$")
_TRUNCATED_RE = re.compile(r"Output (?:is )?truncated|Buffered data was truncated[^\n]*|IOPub data rate exceeded",
                           re.IGNORECASE)
_GAP = "\x00gap\x00"


@dataclass
class LogChunk:
    """One chunk of imported training: `rows` carry `epoch` numbered from 1 within the chunk."""

    source: str
    rows: list[dict] = field(default_factory=list)
    planned: int | None = None  # the M of `Epoch N/M`
    stop: dict | None = None  # {"epoch" (within the chunk), "batch", "signal", "cause"}
    error: str | None = None
    truncated: bool = False


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


# ---------------------------------------------------------------- printed output
def resolve_redraws(line: str) -> str:
    """What a line shows once its progress-bar redraws are done: the last non-empty redraw after a
    `\r` (a `\x08` moves back over the redraw's own text, as on a terminal)."""
    shown = ""
    for segment in line.split("\r"):
        chars: list[str] = []
        cursor = 0
        for ch in segment:
            if ch == "\x08":
                cursor = max(0, cursor - 1)
            elif cursor < len(chars):
                chars[cursor] = ch
                cursor += 1
            else:
                chars.append(ch)
                cursor += 1
        text = "".join(chars)
        if text.strip():
            shown = text
    return shown


def _text_items(text: str) -> list[tuple]:
    """A stream's text as items: ("line", text, ended_by_newline), ("gap",), ("interrupt",), ("error", msg)."""
    text = _TRUNCATED_RE.sub(_GAP + "\n", text)
    parts = text.split("\n")
    items: list[tuple] = []
    after_traceback = False
    for index, raw in enumerate(parts):
        terminated = index < len(parts) - 1
        if _GAP in raw:
            before = resolve_redraws(raw.split(_GAP)[0])
            if before.strip():
                items.append(("line", before, False))  # cut by the notice
            items.append(("gap",))
            continue
        line = resolve_redraws(raw)
        if not line.strip():
            continue
        if _INTERRUPT_RE.match(line):
            items.append(("interrupt",))
            after_traceback = False
            continue
        if line.startswith("Traceback (most recent call last)"):
            after_traceback = True
            continue
        match = _EXCEPTION_RE.match(line) if after_traceback and not line.startswith(" ") else None
        if match:
            items.append(("error", f"{match.group(1)}: {match.group(2)}".rstrip(": ")))
            after_traceback = False
            continue
        items.append(("line", line, terminated))
    return items


def _output_text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


def _cell_items(cell: dict) -> list[tuple]:
    """A notebook cell's outputs as items, in order; consecutive pieces of one stream are joined first
    (Jupyter splits a line across stream outputs)."""
    items: list[tuple] = []
    pending, pending_name = "", None

    def flush():
        nonlocal pending
        if pending:
            items.extend(_text_items(pending))
        pending = ""

    for output in cell.get("outputs") or []:
        if not isinstance(output, dict):
            continue
        kind = output.get("output_type")
        if kind == "stream":
            name = output.get("name", output.get("stream"))
            if name != pending_name:
                flush()
                pending_name = name
            pending += _output_text(output.get("text"))
            continue
        flush()
        pending_name = None
        if kind in ("error", "pyerr"):
            ename = str(output.get("ename", ""))
            if ename == "KeyboardInterrupt":
                items.append(("interrupt",))
            else:
                items.append(("error", f"{ename}: {output.get('evalue', '')}".rstrip(": ")))
        elif kind in ("execute_result", "display_data", "pyout"):
            data = output.get("data") or {}
            text = _output_text(data.get("text/plain", output.get("text")))
            if text:
                items.extend(_text_items(text + "\n"))
    flush()
    return items


def _metrics(rest: str) -> dict:
    values = {}
    for name, value in _METRIC_RE.findall(rest):
        ours = _ALIAS_TO_COLUMN.get(name)
        if ours is not None and ours not in values:
            values[ours] = float(value)
    return values


class _ChunkBuilder:
    """Turns a sequence of items into chunks: one per `fit` call (a restart of the epoch counter)."""

    def __init__(self):
        self.chunks: list[LogChunk] = []
        self.chunk: LogChunk | None = None
        self.base = 0
        self.last_n = 0
        self.epoch: dict | None = None  # the open epoch: n, total, line (values, step, complete)
        self.reductions: list[tuple[int, float]] = []  # (epoch within the chunk, new lr)
        self.interrupted = False
        self.gap_before_header = False
        self.gap_in_epoch = False

    def feed(self, item: tuple, where: str) -> None:
        """Take the next item; `where` names the source of a chunk that starts here."""
        kind = item[0]
        if kind == "gap":
            if self.chunk is None:
                self.gap_before_header = True
            else:
                self.chunk.truncated = True
                if self.epoch is not None and not self.epoch["complete"]:
                    self.gap_in_epoch = True
            return
        if kind == "interrupt":
            self.interrupted = self.chunk is not None
            return
        if kind == "error":
            if self.chunk is not None:
                self.chunk.error = item[1]
            return
        text, terminated = item[1], item[2]
        header = _HEADER_RE.match(text)
        if header:
            n, total = int(header.group(1)), int(header.group(2))
            if self.chunk is None or n <= self.last_n or total != self.chunk.planned:
                self.close()
                self.chunk = LogChunk(source=where, planned=total)
                self.base = 0 if self.gap_before_header else n - 1
                self.gap_before_header = False
            else:
                self._finish_epoch()
            self.last_n = n
            self.epoch = {"n": n - self.base, "total": None, "values": None, "step": 0, "complete": False}
            self.gap_in_epoch = False
            return
        reduce = _REDUCE_RE.search(text)
        if reduce and self.chunk is not None:
            try:
                self.reductions.append((int(reduce.group(1)) - self.base, float(reduce.group(2).rstrip("."))))
            except ValueError:
                pass
            return
        progress = _PROGRESS_RE.match(text)
        if progress and self.epoch is not None:
            step, total, rest = int(progress.group(1)), progress.group(2), progress.group(3)
            epoch = self.epoch
            if epoch["total"] is None:
                epoch["total"] = total
            elif total != epoch["total"] and total != "Unknown" and epoch["total"] != "Unknown":
                return  # another progress bar (model.evaluate, predict) after the epoch
            values = _metrics(rest)
            complete = terminated and (total == "Unknown" or step >= int(total)) and "loss" in values
            if epoch["complete"] and not (complete and set(values) >= set(epoch["values"])):
                return  # the epoch's row is known; a later bar with fewer metrics is something else
            epoch.update(values=values, step=step, complete=complete)

    def _finish_epoch(self) -> bool:
        epoch, self.epoch = self.epoch, None
        if epoch is None or self.chunk is None:
            return True
        if epoch["complete"]:
            self.chunk.rows.append({"epoch": epoch["n"], **epoch["values"]})
            return True
        self.epoch = epoch
        return False

    def close(self) -> None:
        chunk = self.chunk
        if chunk is None:
            return
        open_epoch = self.epoch
        if open_epoch is not None and open_epoch["complete"] and chunk.rows and open_epoch["n"] < (chunk.planned or 0):
            # Stopped in the last epoch's validation: its bar is full but lacks the val_ metrics the others have.
            previous = {k for k in chunk.rows[-1] if k.startswith("val_")}
            if previous - set(open_epoch["values"]):
                open_epoch["complete"] = False
        finished = self._finish_epoch()
        stopped_in = self.epoch
        if stopped_in is None and chunk.rows and chunk.rows[-1]["epoch"] >= (chunk.planned or 0):
            self.interrupted, chunk.error = False, None  # the fit ran to its end; what failed came after it
        if self.interrupted or chunk.error is not None or (not finished and not self.gap_in_epoch):
            last = chunk.rows[-1]["epoch"] if chunk.rows else 0
            epoch_n = stopped_in["n"] if stopped_in is not None else last + 1
            batch = stopped_in["step"] if stopped_in is not None else 0
            if self.interrupted:
                chunk.stop = {"epoch": epoch_n, "batch": batch, "signal": "SIGINT", "cause": "KeyboardInterrupt"}
            elif chunk.error is None:
                chunk.stop = {"epoch": epoch_n, "batch": batch, "signal": None,
                              "cause": "the output ends inside the epoch (kernel disconnected or died, or a cut stream)"}
            else:
                chunk.stop = {"epoch": epoch_n, "batch": batch, "signal": None, "cause": chunk.error}
        lr = None
        reductions = sorted(self.reductions)
        for row in chunk.rows:
            for at, value in reductions:
                if at < row["epoch"]:
                    lr = value
            if "lr" not in row and lr is not None:
                row["lr"] = lr
        self.chunks.append(chunk)
        self.chunk, self.epoch, self.reductions = None, None, []
        self.interrupted = self.gap_in_epoch = False
        self.last_n = 0


def parse_text_log(text: str, source: str = "log") -> list[LogChunk]:
    """The chunks of a plain text log of model.fit's output (see the module docstring)."""
    builder = _ChunkBuilder()
    for item in _text_items(text):
        builder.feed(item, source)
    builder.close()
    if len(builder.chunks) > 1:
        for number, chunk in enumerate(builder.chunks, start=1):
            chunk.source = f"{source} (fit {number})"
    return builder.chunks


def _cell_order(cells: list[tuple[int, dict]]) -> list[tuple[int, dict]]:
    """Fit cells in the order they ran: by their recorded start time when every one has it, else by
    execution_count (cells without one never ran and are skipped, unless no cell has one)."""
    def started(cell):
        timing = (cell.get("metadata") or {}).get("execution") or {}
        return timing.get("iopub.execute_input") or timing.get("shell.execute_reply.started")

    if cells and all(isinstance(started(c), str) for _, c in cells):
        return sorted(cells, key=lambda t: (started(t[1]), t[0]))
    counted = [(i, c) for i, c in cells if isinstance(_count(c), int)]
    if not counted:
        return cells
    return sorted(counted, key=lambda t: (_count(t[1]), t[0]))


def _count(cell: dict):
    return cell.get("execution_count", cell.get("prompt_number"))


def read_notebook(path: Path) -> list[LogChunk]:
    """The chunks of a notebook's printed training (see the module docstring)."""
    path = Path(path)
    try:
        notebook = json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except json.JSONDecodeError as exc:
        raise QuickDrawError(f"{path} is not a Jupyter notebook (invalid JSON at line {exc.lineno}: {exc.msg}); "
                             "give the .ipynb file as Jupyter saved it, or its output as a text log.") from None
    if not isinstance(notebook, dict):
        raise QuickDrawError(f"{path} is not a Jupyter notebook (no cells); give the .ipynb file as Jupyter saved it.")
    cells = notebook.get("cells")
    if cells is None:  # nbformat 3
        cells = [c for sheet in notebook.get("worksheets") or [] if isinstance(sheet, dict)
                 for c in sheet.get("cells") or []]
    fit_cells = []
    for index, cell in enumerate(cells if isinstance(cells, list) else []):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        items = _cell_items(cell)
        if any(item[0] == "line" and _HEADER_RE.match(item[1]) for item in items):
            fit_cells.append((index, {**cell, "_items": items}))
    chunks: list[LogChunk] = []
    for index, cell in _cell_order(fit_cells):
        count = _count(cell)
        where = f"cell {index + 1}" + (f" (In [{count}])" if count is not None else "")
        builder = _ChunkBuilder()
        for item in cell["_items"]:
            builder.feed(item, where)
        builder.close()
        chunks.extend(builder.chunks)
    if not chunks:
        raise QuickDrawError(f"{path} has no Keras training output: no code cell's output has an 'Epoch N/M' line "
                             "(import-logs reads what model.fit prints with verbose=1 or 2; run the fit cells and "
                             "save the notebook with its outputs).")
    return chunks


def read_source(path: Path) -> tuple[str, list[LogChunk]]:
    """(kind, chunks) of what import-logs was given: "csv", "notebook" or "text"."""
    path = Path(path)
    if path.is_dir():
        return "csv", [LogChunk(source=f.name, rows=[{"epoch": i, **row} for i, row in enumerate(read_chunk(f), 1)])
                       for f in chunk_files(path)]
    if not path.is_file():
        raise QuickDrawError(f"{path}: no such file or folder; give {WHAT_IMPORTS}.")
    if path.suffix.lower() == ".csv":
        return "csv", [LogChunk(source=path.name, rows=[{"epoch": i, **row}
                                                        for i, row in enumerate(read_chunk(path), 1)])]
    if path.suffix.lower() == ".ipynb":
        return "notebook", read_notebook(path)
    chunks = parse_text_log(path.read_text(encoding="utf-8", errors="replace"), path.name)
    if not chunks:
        raise QuickDrawError(f"{path} has no Keras training output: no 'Epoch N/M' line (give {WHAT_IMPORTS}).")
    return "text", chunks


def import_logs(path: Path, runs_dir: Path, name: str, model: str = "cnn", keras_model: str | None = None,
                classes_file: str | None = None) -> Path:
    """Create run `name` from training logs (see the module docstring); everything is read and checked
    before the run is created."""
    path = Path(path)
    classes: tuple[str, ...] = ()
    if classes_file:
        classes = tuple(line.strip() for line in Path(classes_file).read_text(encoding="utf-8").splitlines() if line.strip())
    if keras_model and not classes:
        raise QuickDrawError("--keras-model needs --classes-file (the class names in the model's output order).")
    run_dir = runs.run_path(runs_dir, name)
    if (run_dir / "config.json").exists():
        raise QuickDrawError(f"run '{name}' already exists; pick another --name.")
    kind, chunks = read_source(path)
    config = RunConfig(name=name, model=model, classes=classes, per_class=0, imported_from=str(path.resolve()),
                       created=runs.now_iso())
    runs.create_run(config, runs_dir)
    runs.append_event(run_dir, "imported", source=str(path), format=kind, files=[c.source for c in chunks])
    history, epoch, stops = [], 0, []
    for number, chunk in enumerate(chunks, start=1):
        offset = epoch
        extra = {"truncated": True} if chunk.truncated else {}
        runs.append_event(run_dir, "chunk_start", chunk=number, epoch=offset + 1, batch=0, source=chunk.source,
                          lr=chunk.rows[0].get("lr") if chunk.rows else None,
                          **({"epochs_planned": chunk.planned} if chunk.planned else {}), **extra)
        for row in chunk.rows:
            epoch = max(epoch, offset + row["epoch"])
            history.append({**row, "epoch": offset + row["epoch"], "chunk": number})
        batch = 0
        if chunk.stop is not None:
            stopped_in = offset + chunk.stop["epoch"]
            batch = chunk.stop["batch"]
            stops.append(f"chunk {number} stopped in epoch {stopped_in}")
            if chunk.error is not None:
                runs.append_event(run_dir, "error", chunk=number, epoch=stopped_in, batch=batch, message=chunk.error)
            else:
                runs.append_event(run_dir, "signal_stop", signal=chunk.stop["signal"], chunk=number, epoch=stopped_in,
                                  batch=batch, cause=chunk.stop["cause"], source=chunk.source)
        runs.append_event(run_dir, "chunk_end", chunk=number, epoch=epoch, batch=batch, **extra)
    runs.write_history(run_dir, history)
    if keras_model:
        _import_model(run_dir, Path(keras_model), classes, history)
    message = f"imported from {path}" + (f" ({'; '.join(stops)})" if stops else "")
    runs.write_status(run_dir, "finished", epoch=epoch, message=message)
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
