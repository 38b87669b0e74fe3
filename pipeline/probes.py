"""Probe drawings: a few named drawings followed through training (issue 12 §4).

Used by `python -m pipeline probe RUN SET` (score a run's saved model), `python -m pipeline probe-set
NAME --from FILE.ndjson --label LABEL` (create a set from a stroke file), `python -m pipeline train ...
--probes SET...` (the trainer scores every listed set at each epoch end through `score_epoch`), and by
the dashboard's Draw page (save the current drawing into a set) and Probes page.

A probe set is `runs/probes/<name>.ndjson`: one JSON object per line, append-only -
`{"id", "label", "drawing", "source", "added"}`. `drawing` is the drawing in Google's *simplified*
form (what `pipeline.strokes.to_simplified` makes of canvas strokes or a file's raw strokes: the form
`pipeline.predict` feeds every model, and unambiguous where canvas pixels could pass for simplified
coordinates; stroke timing is not kept). `label` is an official class name (pipeline/categories.py);
`id` is a hash of label and drawing, so a drawing keeps its identity across runs and sets.

Scores go to `runs/<run>/probes.jsonl` (pipeline.runs.append_probe_scores), one line per (set, epoch):
`{"time", "set", "epoch", "chunk", "source": "train"|"saved-model", "checkpoint", "top1",
"scored", "drawings": [{"id", "label", "prob", "top1", "top1_prob"}]}` - `prob` is the probability of
the drawing's label (null when the run does not know that class), `top1` the run's guess. `source`
"train" lines come from the trainer with the in-memory model, so a resume that set a drawing back
shows as a drop after a `chunk_start`; "saved-model" lines come from `probe RUN SET` (model/model.keras,
`epoch` from model/meta.json), for runs trained without probes. Preprocessing is pipeline.predict's.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.categories import canonical
from pipeline.errors import DrawingError, QuickDrawError
from pipeline.files import append_json_line, read_json_lines
from pipeline.formats import iter_ndjson
from pipeline.predict import Predictor
from pipeline.runs import PROBES_FOLDER, append_probe_scores, now_iso, read_probe_scores
from pipeline.strokes import to_google, to_simplified

_SET_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")  # like run names: one safe path component


@dataclass(frozen=True)
class Probe:
    """One drawing of a probe set, in the set's order."""

    id: str
    label: str
    drawing: list  # Google's simplified form [[x...], [y...]] per stroke
    source: str = ""
    added: str = ""


# ---------------------------------------------------------------- sets: where, which, reading
def probes_dir(runs_dir: Path | str) -> Path:
    return Path(runs_dir) / PROBES_FOLDER


def validate_set_name(name: str) -> str:
    if not isinstance(name, str) or not _SET_NAME_RE.match(name):
        raise QuickDrawError(f"'{name}' is not a valid probe set name: use letters, digits, '.', '_' or '-' "
                             "(at most 80 characters), e.g. my-cats.")
    return name


def set_path(runs_dir: Path | str, name: str) -> Path:
    return probes_dir(runs_dir) / f"{validate_set_name(name)}.ndjson"


def list_sets(runs_dir: Path | str) -> list[str]:
    folder = probes_dir(runs_dir)
    return sorted(p.stem for p in folder.glob("*.ndjson")) if folder.is_dir() else []


def check_sets(runs_dir: Path | str, names) -> tuple[str, ...]:
    """The names, each an existing non-empty set; else one QuickDrawError naming the set and the fix
    (used by `train --probes` and `probe` before TensorFlow loads)."""
    for name in names:
        path = set_path(runs_dir, name)
        if not path.is_file() or not read_set(runs_dir, name):
            known = ", ".join(list_sets(runs_dir)) or "none yet"
            raise QuickDrawError(f"no probe set '{name}' in {probes_dir(runs_dir)} (sets: {known}); create one with "
                                 f"`python -m pipeline probe-set {name} --from DRAWINGS.ndjson --label LABEL` or "
                                 "the Draw page's 'Save to probe set'.")
    return tuple(names)


def read_set(runs_dir: Path | str, name: str) -> list[Probe]:
    """The probes of a set in the order they were added ([] when there is no such set)."""
    fields = {"id", "label", "drawing", "source", "added"}
    return [Probe(**{k: v for k, v in record.items() if k in fields})
            for record in read_json_lines(set_path(runs_dir, name)) if "drawing" in record and "label" in record]


# ---------------------------------------------------------------- sets: writing
def probe_id(label: str, drawing: list) -> str:
    text = json.dumps([label, drawing], separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def make_probe(drawing, label: str, source: str = "", form: str = "auto") -> Probe:
    """A probe from a drawing in any form pipeline.strokes reads (canvas objects: form "raw" or
    Fabric objects; a file's strokes: "auto"), the label checked against the 345 official classes.
    DrawingError for a drawing the models could not take (empty, too small to guess)."""
    label = canonical(label)
    strokes = to_simplified(drawing, form, refuse_too_small=True)
    google = to_google(strokes)
    return Probe(probe_id(label, google), label, google, source, now_iso())


def add_probes(runs_dir: Path | str, name: str, probes: list[Probe]) -> Path:
    """Append probes to set `name` (created when new); a drawing already in the set (same id) is skipped.
    Each line is one fsync'ed write (pipeline.files), so a reader never sees half a probe."""
    path = set_path(runs_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    known = {p.id for p in read_set(runs_dir, name)}
    for probe in probes:
        if probe.id not in known:
            append_json_line(path, {"id": probe.id, "label": probe.label, "drawing": probe.drawing,
                                    "source": probe.source, "added": probe.added})
            known.add(probe.id)
    return path


def add_drawing(runs_dir: Path | str, name: str, drawing, label: str, source: str = "draw page",
                form: str = "auto") -> Probe:
    """Save one drawing (e.g. the Draw page's canvas) into set `name` with its intended label."""
    probe = make_probe(drawing, label, source, form)
    add_probes(runs_dir, name, [probe])
    return probe


def probes_from_file(path: Path | str, label: str | None = None, limit: int | None = None) -> list[Probe]:
    """Probes from a stroke file (Google's simplified or raw .ndjson, read by pipeline.formats): the
    label is `label`, else each record's `word`. Records whose drawing the models could not take are
    skipped; a file without a usable drawing, or a label that is not a class, is a QuickDrawError."""
    path = Path(path)
    label = canonical(label) if label else None  # a misspelt label fails first, naming the closest class
    if not path.is_file():
        raise QuickDrawError(f"no file {path}; a probe set is made from an .ndjson stroke file "
                             "(one {\"drawing\": [[x...], [y...]], \"word\": ...} per line).")
    probes = []
    for record in iter_ndjson(path, limit=limit):
        word = label or record.get("word")
        if not word:
            raise QuickDrawError(f"{path}: a drawing has no \"word\"; name its class with --label.")
        try:
            probes.append(make_probe(record["drawing"], word, source=path.name))
        except DrawingError:  # too small to guess: no model would take it
            continue
    if not probes:
        raise QuickDrawError(f"{path} holds no usable drawing; a probe set is made from an .ndjson stroke file "
                             "like the dataset's simplified/<class>.ndjson.")
    return probes


def create_set_from_file(runs_dir: Path | str, name: str, path: Path | str, label: str | None = None,
                         limit: int | None = None) -> list[Probe]:
    """Set `name` made (or extended) from a stroke file; returns the set's probes."""
    add_probes(runs_dir, name, probes_from_file(path, label, limit))
    return read_set(runs_dir, name)


# ---------------------------------------------------------------- scoring
def score_probes(predictor: Predictor, probes: list[Probe]) -> list[dict]:
    """Per probe: its label's probability (None when the model lacks that class) and the top-1 guess."""
    if not probes:
        return []
    images = np.stack([predictor.prepare(p.drawing) for p in probes])
    probabilities = predictor.probabilities(images)
    index = {c: i for i, c in enumerate(predictor.classes)}
    rows = []
    for probe, probs in zip(probes, probabilities, strict=True):
        best = int(np.argmax(probs))
        prob = float(probs[index[probe.label]]) if probe.label in index else None
        rows.append({"id": probe.id, "label": probe.label, "prob": None if prob is None else round(prob, 6),
                     "top1": predictor.classes[best], "top1_prob": round(float(probs[best]), 6)})
    return rows


def score_record(set_name: str, rows: list[dict], epoch: int | None, chunk: int | None, source: str,
                 checkpoint: str | None = None) -> dict:
    """One line of probes.jsonl; `top1` is the share of the set's drawings guessed right."""
    right = sum(r["top1"] == r["label"] for r in rows)
    return {"set": set_name, "epoch": epoch, "chunk": chunk, "source": source, "checkpoint": checkpoint,
            "top1": right / len(rows) if rows else None, "scored": len(rows), "drawings": rows}


def score_epoch(run_dir: Path, model, config, epoch: int, chunk: int) -> None:
    """The trainer's epoch-end hook: score every probe set of `config.probes` with the in-memory model
    into run_dir/probes.jsonl (source "train"). A set deleted since the run started is skipped."""
    if not config.probes:
        return
    runs_dir = Path(run_dir).parent
    predictor = Predictor(model, list(config.classes), config.representation, config.image_size,
                          config.time_channel, name=Path(run_dir).name)
    for name in config.probes:
        probes = read_set(runs_dir, name)
        if probes:
            append_probe_scores(run_dir, score_record(name, score_probes(predictor, probes), epoch, chunk, "train"))


def score_saved_model(run_dir: Path, set_name: str, checkpoint: str = "best", predictor: Predictor | None = None,
                      runs_dir: Path | str | None = None) -> dict:
    """Score set `set_name` with the run's saved model (`python -m pipeline probe RUN SET`) and append it
    to run_dir/probes.jsonl (source "saved-model", epoch from model/meta.json for 'best')."""
    run_dir = Path(run_dir)
    runs_dir = Path(runs_dir) if runs_dir is not None else run_dir.parent
    probes = read_set(runs_dir, check_sets(runs_dir, [set_name])[0])
    predictor = predictor or Predictor.from_run(run_dir, checkpoint)
    return append_probe_scores(run_dir, score_record(set_name, score_probes(predictor, probes),
                                                     saved_model_epoch(run_dir, checkpoint), None, "saved-model",
                                                     checkpoint))


def saved_model_epoch(run_dir: Path, checkpoint: str = "best") -> int | None:
    """The epoch of the model `probe` scores: model/meta.json's for 'best', the history's last for 'last'."""
    from pipeline.runs import model_epoch, read_history

    if checkpoint == "best":
        return model_epoch(run_dir)
    history = read_history(run_dir)
    return int(history[-1]["epoch"]) if history else None


# ---------------------------------------------------------------- reading scores (the Probes page)
def latest_scores(run_dir: Path, set_name: str) -> list[dict]:
    """The run's records of one set, one per (epoch, source), the latest kept (an epoch trained again
    after a crash replaces the earlier one, as in history.csv), in epoch order."""
    latest: dict = {}
    for record in read_probe_scores(run_dir):
        if record.get("set") == set_name and record.get("epoch") is not None:
            latest[(record["epoch"], record.get("source"))] = record
    return sorted(latest.values(), key=lambda r: (r["epoch"], r.get("source") != "train"))


def probability_table(run_dir: Path, set_name: str) -> list[dict]:
    """Long-form rows for plotting: epoch, chunk, source, id, label, prob, top1, right."""
    return [{"epoch": record["epoch"], "chunk": record.get("chunk"), "source": record.get("source"),
             **row, "right": row["top1"] == row["label"]}
            for record in latest_scores(run_dir, set_name) for row in record["drawings"]]


def learned_epoch(rows: list[dict]) -> int | None:
    """When a drawing was learned: the first epoch of its training scores (`probability_table` rows of
    one drawing) from which every later one guesses its label; None when the last one does not."""
    learned = None
    for row in sorted((r for r in rows if r.get("source") == "train"), key=lambda r: r["epoch"]):
        if not row["right"]:
            learned = None
        elif learned is None:
            learned = row["epoch"]
    return learned


def sets_scored(run_dir: Path) -> list[str]:
    return sorted({r["set"] for r in read_probe_scores(run_dir)})


def top1_by_run(run_dirs: dict[str, Path], set_name: str) -> list[dict]:
    """Across runs: each run's latest score of the set (the highest epoch; a training score before a
    saved-model score of the same epoch), with its per-drawing guesses, for a side-by-side table."""
    rows = []
    for run, run_dir in run_dirs.items():
        records = latest_scores(run_dir, set_name)
        if records:
            last = records[-1]
            rows.append({"run": run, "epoch": last["epoch"], "source": last.get("source"), "top1": last["top1"],
                         "guesses": {d["id"]: d["top1"] for d in last["drawings"]}})
    return rows


__all__ = ["Probe", "add_drawing", "add_probes", "check_sets", "create_set_from_file", "learned_epoch", "list_sets", "make_probe",
           "probability_table", "probes_dir", "probes_from_file", "read_set", "saved_model_epoch", "score_epoch",
           "score_probes", "score_record", "score_saved_model", "set_path", "sets_scored", "top1_by_run",
           "validate_set_name"]
