"""Metrics of a trained run: `python -m pipeline evaluate RUN [--data DIR] [--checkpoint best|last]`.

Without --data: the run's held-out test split, written to runs/<run>/eval.json (the run's "test
top-1" everywhere). With --data: every drawing in a folder of `<class>.npy` numpy_bitmap files or
`<class>.ndjson` stroke files (laid out like ../shared/quickdraw/bitmaps, simplified or raw); stroke
files go through pipeline.predict, the same path as the canvas. A folder's evaluation is written
beside, to runs/<run>/evals/<folder-slug>.json (`evaluation_path`), with the folder's absolute path
inside, and never replaces the test split's. Each holds top-1, top-3, MAP@3 (the Kaggle metric),
per-class accuracy, the confusion matrix, the top confusions and a sample of misclassified drawings
with what the model said; `list_evaluations(run_dir)` says which evaluations a run has.

`compare_evaluations(a, b)` (`compare_test_splits(run_dir_a, run_dir_b)` for two runs' eval.json) says
which classes changed between two runs' test-split evaluations, for the Evaluate page's "Compare with
another run": per-class top-1 of A and B and their delta, the confusion matrix difference A - B and the
confusion pairs that changed most. Both must cover the same classes (in any order): a model of other
classes makes other mistakes, so a difference over the shared classes would not say what changed.

`pair_drawings(run_dir, true, pred)` predicts the run's test drawings of one class again with its
model and returns every one predicted as `pred` (eval.json keeps only a sample of the mistakes), for
the Evaluate page's gallery filtered to one true -> predicted pair.

`check_evaluation` makes the checks that need no model (the run's model file, its data or the
folder) so the command line refuses a mistake before it loads TensorFlow.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import QuickDrawError, RunError
from pipeline.files import atomic_write_json, read_json
from pipeline.predict import Predictor, check_run_model

MISCLASSIFIED_SAMPLES = 48
TEST_SPLIT = "test split"  # the `data` of a test-split evaluation


def metrics_from_probabilities(probs: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict:
    """top-1, top-3, MAP@3, per-class accuracy and confusion matrix."""
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    if n == 0:
        raise QuickDrawError("nothing to evaluate: no drawing of a class the model knows.")
    top3 = np.argsort(-probs, axis=1, kind="stable")[:, :3]
    hits = top3 == labels[:, None]
    predicted = top3[:, 0]
    map3 = float(np.sum(hits * np.array([1.0, 1 / 2, 1 / 3])[: hits.shape[1]]) / n)
    k = len(classes)
    confusion = np.bincount(labels * k + predicted, minlength=k * k).reshape(k, k)
    per_class = {}
    for i, name in enumerate(classes):
        mask = labels == i
        if mask.any():
            per_class[name] = {"n": int(mask.sum()), "top1": float(np.mean(predicted[mask] == i)),
                               "top3": float(np.mean(hits[mask].any(axis=1)))}
    off_diagonal = confusion.copy()
    np.fill_diagonal(off_diagonal, 0)
    order = np.argsort(-off_diagonal, axis=None, kind="stable")[:15]
    top_confusions = [{"true": classes[i // k], "pred": classes[i % k], "count": int(off_diagonal.flat[i])}
                      for i in order if off_diagonal.flat[i] > 0]
    # Class-balanced accuracy: the mean of per-class top-1, so frequent classes do not hide weak ones.
    balanced = float(np.mean([v["top1"] for v in per_class.values()]))
    return {
        "top1": float(np.mean(predicted == labels)), "top3": float(np.mean(hits.any(axis=1))), "map3": map3,
        "balanced_top1": balanced, "n": int(n), "classes": list(classes), "per_class": per_class, "confusion": confusion.tolist(),
        "top_confusions": top_confusions,
    }


def _misclassified(probs, labels, images, classes, limit=MISCLASSIFIED_SAMPLES) -> list[dict]:
    predicted = probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    picks = wrong[np.linspace(0, len(wrong) - 1, min(limit, len(wrong))).astype(int)] if len(wrong) else []
    out = []
    for i in picks:
        order = np.argsort(-probs[i])[:3]
        image = np.asarray(images(i) if callable(images) else images[i], dtype=np.uint8)
        out.append({"true": classes[int(labels[i])], "pred": classes[int(predicted[i])],
                    "top": [[classes[j], round(float(probs[i, j]), 5)] for j in order],
                    "shape": list(image.shape), "image": image.reshape(-1).tolist()})
    return out


def _find_file(folder: Path, cls: str) -> Path | None:
    for stem in dict.fromkeys((cls, cls.replace(" ", "_"), cls.replace("_", " "))):
        for ext in (".npy", ".ndjson", ".ndjson.gz"):
            path = folder / f"{stem}{ext}"
            if path.exists():
                return path
    return None


def _folder_classes(folder: Path) -> set[str]:
    names = set()
    for path in folder.iterdir():
        for ext in (".npy", ".ndjson", ".ndjson.gz"):
            if path.name.endswith(ext):
                names.add(path.name[: -len(ext)].replace("_", " "))
    return names


def folder_files(folder: Path | str, classes: list[str], representation: str, run: str = "RUN"):
    """([(class index, class, file)] for the run's classes found in `folder`, [the folder's classes the
    run does not know]); QuickDrawError for a missing folder, one with none of the run's classes, or
    numpy bitmaps for a model of the strokes representation. Reads names only, no file's content."""
    folder = Path(folder)
    if not folder.is_dir():
        raise QuickDrawError(f"--data {folder} is not a folder; point it at a folder of <class>.npy or "
                             "<class>.ndjson files.")
    known = {c.lower() for c in classes}
    skipped = sorted(c for c in _folder_classes(folder) if c.lower() not in known)
    found = [(index, cls, path) for index, cls in enumerate(classes) if (path := _find_file(folder, cls))]
    if not found:
        raise QuickDrawError(f"{folder} has no file for any of the {len(classes)} classes of run '{run}' "
                             f"(looked for e.g. {classes[0].replace(' ', '_')}.npy or .ndjson).")
    if representation != "bitmap28" and any(path.suffix == ".npy" for _, _, path in found):
        raise QuickDrawError(
            f"{folder} holds numpy_bitmap files but run '{run}' was trained on the "
            f"'{representation}' representation, which needs strokes: use a folder of "
            "simplified or raw .ndjson files.")
    return found, skipped


def _evaluate_folder(predictor: Predictor, folder: Path):
    from pipeline.formats import iter_ndjson, read_numpy_bitmap

    found, skipped = folder_files(folder, predictor.classes, predictor.representation, predictor.name)
    images, labels = [], []
    for index, _cls, path in found:
        if path.suffix == ".npy":
            rows = read_numpy_bitmap(path)
            images.append(np.asarray(rows, dtype=np.uint8).reshape(-1, 28, 28, 1))
            labels.append(np.full(len(rows), index))
        else:
            batch = []
            for record in iter_ndjson(path):
                try:
                    batch.append(predictor.prepare(record["drawing"]))
                except ValueError:
                    continue
            if batch:
                images.append(np.stack(batch))
                labels.append(np.full(len(batch), index))
    if not images:
        raise QuickDrawError(f"{folder} has files of the classes of run '{predictor.name}' but no usable drawing "
                             "in them.")
    return np.concatenate(images), np.concatenate(labels), skipped


# ---------------------------------------------------------------- where evaluations live
def folder_slug(folder: Path | str) -> str:
    """The file name (without .json) of a folder's evaluation: the folder's last two names, readable,
    and a hash of its absolute path, so two folders called `bitmaps` never share a file."""
    path = Path(folder).resolve()
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(path.parts[-2:]).lstrip("/")).strip("._-")[:60]
    return f"{readable or 'folder'}-{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"


def evaluation_path(run_dir: Path | str, data: Path | str | None = None) -> Path:
    """Where an evaluation is written: runs/<run>/eval.json for the test split (data None), else
    runs/<run>/evals/<folder-slug>.json."""
    run_dir = Path(run_dir)
    return run_dir / "eval.json" if data is None else run_dir / "evals" / f"{folder_slug(data)}.json"


@dataclass(frozen=True)
class EvaluationInfo:
    """One stored evaluation of a run, for pages that must say which one they show."""

    kind: str  # "test" (the run's test split, eval.json) or "folder" (evaluate --data DIR)
    data: str  # "test split", or the folder's absolute path
    label: str  # for people: "test split" or "folder <name> (<absolute path>)"
    path: Path  # the JSON file with everything (per-class, confusion, misclassified drawings)
    checkpoint: str | None
    evaluated_at: float | None
    top1: float | None
    top3: float | None
    map3: float | None
    balanced_top1: float | None
    n: int | None


def list_evaluations(run_dir: Path | str) -> list[EvaluationInfo]:
    """The run's stored evaluations: the test split first (when evaluated), then folders, newest
    first. An eval.json written by a folder evaluation before evals/ existed is listed as that
    folder's. Unreadable files are left out; never raises."""
    run_dir = Path(run_dir)
    files = [run_dir / "eval.json"] + sorted((run_dir / "evals").glob("*.json"))
    found = []
    for path in files:
        if not path.is_file():
            continue
        try:
            result = read_json(path)
        except (RunError, OSError):
            continue
        if not isinstance(result, dict):
            continue
        data = str(result.get("data") or TEST_SPLIT)
        kind = "test" if data == TEST_SPLIT else "folder"
        label = TEST_SPLIT if kind == "test" else f"folder {Path(data).name} ({data})"
        numbers = {key: result.get(key) for key in ("top1", "top3", "map3", "balanced_top1", "n")}
        found.append(EvaluationInfo(kind=kind, data=data, label=label, path=path, checkpoint=result.get("checkpoint"),
                                    evaluated_at=result.get("evaluated_at"), **numbers))
    return sorted(found, key=lambda e: (e.kind != "test", -(e.evaluated_at or 0)))


def check_evaluation(run_dir: Path | str, data: Path | str | None = None, checkpoint: str = "best") -> None:
    """The checks of an evaluation that need no model, so a mistake is refused before TensorFlow
    loads: the run has a model for `checkpoint`, and its data (test split) or the folder has files
    for its classes."""
    from pipeline.runs import read_classes, read_config

    run_dir = Path(run_dir)
    check_run_model(run_dir, checkpoint)
    config = read_config(run_dir)
    if data is None:
        from pipeline.datasets import dataset_spec, source_for

        spec = dataset_spec(config)
        for cls in spec.classes:
            source_for(spec, cls)
    else:
        folder_files(data, read_classes(run_dir), config.representation, run_dir.name)


def _test_split(run_dir: Path):
    """(the run's cached dataset, the indices of its test split): the drawings `evaluate RUN` scores."""
    from pipeline.datasets import load_dataset
    from pipeline.runs import read_config

    dataset = load_dataset(read_config(run_dir))
    indices = dataset.indices("test")
    if len(indices) == 0:
        raise QuickDrawError(f"run '{run_dir.name}' has an empty test split (too few drawings per class); "
                             f"evaluate a folder instead: `python -m pipeline evaluate {run_dir.name} --data DIR`.")
    return dataset, indices


def evaluate_run(run_dir: Path | str, data: str | Path | None = None, checkpoint: str = "best",
                 write: bool = True, progress: Callable[[int, int], None] | None = None) -> dict:
    """Evaluate and (by default) write the result to `evaluation_path(run_dir, data)` - eval.json for
    the test split, evals/<folder-slug>.json for a folder; returns the same dict. `progress`, when
    given, is called with (drawings evaluated, drawings in all) as the evaluation goes."""
    run_dir = Path(run_dir)
    say = progress or (lambda _done, _total: None)
    predictor = Predictor.from_run(run_dir, checkpoint)
    if data is None:
        dataset, indices = _test_split(run_dir)
        parts = []
        for s in range(0, len(indices), 2048):
            say(s, len(indices))
            parts.append(predictor.probabilities(dataset.images[np.sort(indices[s:s + 2048])]))
        probs = np.concatenate(parts)
        labels = np.concatenate([np.asarray(dataset.labels[np.sort(indices[s:s + 2048])])
                                 for s in range(0, len(indices), 2048)])
        sorted_indices = np.concatenate([np.sort(indices[s:s + 2048]) for s in range(0, len(indices), 2048)])

        def image_of(i):
            return dataset.images[sorted_indices[i]]

        images, skipped, source = image_of, [], TEST_SPLIT
    else:
        images, labels, skipped = _evaluate_folder(predictor, Path(data))
        say(0, len(labels))
        probs = predictor.probabilities(images)
        source = str(Path(data).resolve())
    say(len(labels), len(labels))
    result = metrics_from_probabilities(probs, labels, predictor.classes)
    result.update({"run": run_dir.name, "checkpoint": checkpoint, "data": source,
                   "kind": "test" if data is None else "folder", "skipped_classes": skipped,
                   "evaluated_at": time.time(),
                   "misclassified": _misclassified(probs, labels, images, predictor.classes)})
    if write:
        path = evaluation_path(run_dir, data)
        path.parent.mkdir(exist_ok=True)
        atomic_write_json(path, result)
    return result


def evaluation_summary(result: dict) -> dict:
    """The headline numbers of an evaluation (without the matrix and images): what
    `python -m pipeline evaluate` prints last and writes as its result record."""
    summary = {k: result.get(k) for k in ("run", "kind", "checkpoint", "data", "top1", "top3", "map3",
                                          "balanced_top1", "n")}
    summary["skipped_classes"] = result.get("skipped_classes", [])
    return summary


def format_report(result: dict) -> str:
    lines = [f"evaluated {result['n']} drawings ({result['data']}, checkpoint {result['checkpoint']})",
             f"top-1 {result['top1']:.4f}   top-3 {result['top3']:.4f}   MAP@3 {result['map3']:.4f}   "
             f"class-balanced top-1 {result['balanced_top1']:.4f}"]
    if result.get("skipped_classes"):
        lines.append(f"skipped classes the model does not know: {', '.join(result['skipped_classes'])}")
    worst = sorted(result["per_class"].items(), key=lambda kv: kv[1]["top1"])[:5]
    if worst:
        lines.append("weakest classes: " + ", ".join(f"{name} {v['top1']:.2f}" for name, v in worst))
    if result["top_confusions"]:
        lines.append("top confusions: " + ", ".join(f"{c['true']}->{c['pred']} ({c['count']})"
                                                   for c in result["top_confusions"][:5]))
    return "\n".join(lines)


# ---------------------------------------------------------------- every test drawing of one pair
@dataclass(frozen=True)
class PairDrawings:
    """The test-split drawings of one true class that a run's model predicts as one class: every one
    that eval.json's confusion matrix counts in that cell, where its `misclassified` keeps a sample."""

    run: str
    true: str
    pred: str
    indices: np.ndarray  # rows of the run's dataset (pipeline.datasets.load_dataset), ascending
    images: np.ndarray  # uint8 (k, H, W, C): the model inputs
    top: list[list[tuple[str, float]]]  # the model's top 3 (class, probability) for each drawing
    class_drawings: int  # test drawings of the true class


def _class_index(classes: list[str], name: str, run: str) -> int:
    if name not in classes:
        raise QuickDrawError(f"run '{run}' has no class '{name}'; its classes are {', '.join(classes)}.")
    return classes.index(name)


def pair_drawings(run_dir: Path | str, true: str, pred: str, checkpoint: str = "best",
                  predictor: Predictor | None = None) -> PairDrawings:
    """Every drawing of class `true` in the run's test split that its model (`checkpoint`, or the given
    `predictor` of that run, e.g. a page's cached one) predicts as `pred`. The split and the model
    inputs are evaluate's own (`_test_split`) and so is the model call (`Predictor.probabilities`), so
    the count equals eval.json's confusion cell as long as eval.json was made with this model. Only
    the true class's drawings are predicted: a few hundred, well under a second for the CNN."""
    run_dir = Path(run_dir)
    predictor = predictor or Predictor.from_run(run_dir, checkpoint)
    true_index = _class_index(predictor.classes, true, run_dir.name)
    pred_index = _class_index(predictor.classes, pred, run_dir.name)
    dataset, indices = _test_split(run_dir)
    of_class = indices[np.asarray(dataset.labels[indices]) == true_index]  # ascending, as evaluate reads them
    probs = predictor.probabilities(dataset.images[of_class]) if len(of_class) else np.zeros((0, len(predictor.classes)))
    chosen = np.flatnonzero(probs.argmax(axis=1) == pred_index)
    top = [[(predictor.classes[j], round(float(probs[i, j]), 5)) for j in np.argsort(-probs[i], kind="stable")[:3]]
           for i in chosen]
    return PairDrawings(run=run_dir.name, true=true, pred=pred, indices=of_class[chosen],
                        images=np.asarray(dataset.images[of_class[chosen]], dtype=np.uint8), top=top,
                        class_drawings=len(of_class))


def pair_drawings_inputs(run_dir: Path | str, checkpoint: str = "best") -> list[Path]:
    """The files `pair_drawings` depends on - the model, config.json and the data file of every class
    (the dataset cache is built from them) - so a caller can key a cache on their modification times.
    QuickDrawError (RunError) when the run has no such model or its data is missing."""
    from pipeline.checkpoints import latest_checkpoint
    from pipeline.datasets import dataset_spec, source_for
    from pipeline.runs import read_config

    run_dir = Path(run_dir)
    check_run_model(run_dir, checkpoint)
    model = run_dir / "model" / "model.keras"
    if checkpoint == "last":
        model = latest_checkpoint(run_dir) or model
    spec = dataset_spec(read_config(run_dir))
    return [model, run_dir / "config.json", *(source_for(spec, cls)[1] for cls in spec.classes)]


# ---------------------------------------------------------------- comparing two runs' test splits
@dataclass(frozen=True)
class EvaluationComparison:
    """Two test-split evaluations side by side, over A's class order (B's rows and columns reordered)."""

    run_a: str
    run_b: str
    classes: list[str]
    per_class: list[dict]  # {class, n_a, n_b, top1_a, top1_b, delta (A - B)}, best delta first
    confusion_a: np.ndarray  # counts, rows true, columns predicted
    confusion_b: np.ndarray
    difference: np.ndarray  # confusion_a - confusion_b
    changed_confusions: list[dict]  # {true, pred, a, b, delta}: off-diagonal pairs, largest |delta| first
    same_drawings: bool  # every class has as many test drawings in A as in B (same data and split)
    top1_a: float
    top1_b: float


def classes_of_test_split(run_dir: Path | str) -> list[str] | None:
    """The classes of a run's test-split evaluation (runs/<run>/eval.json), None when it has none or it
    is unreadable: which runs can be compared with which."""
    try:
        result = read_json(Path(run_dir) / "eval.json")
    except (RunError, OSError):
        return None
    if not isinstance(result, dict) or str(result.get("data") or TEST_SPLIT) != TEST_SPLIT:
        return None
    classes = result.get("classes")
    return list(classes) if isinstance(classes, list) else None


def compare_evaluations(a: dict, b: dict, top: int = 20) -> EvaluationComparison:
    """Evaluation A against B (both as pipeline.evaluate writes them, test split): per-class top-1 delta
    A - B sorted best first, confusion difference A - B and the `top` off-diagonal pairs whose count
    changed most. QuickDrawError when either is not a test-split evaluation or their classes differ."""
    name_a, name_b = str(a.get("run") or "A"), str(b.get("run") or "B")
    for name, result in ((name_a, a), (name_b, b)):
        if str(result.get("data") or TEST_SPLIT) != TEST_SPLIT:
            raise QuickDrawError(f"the evaluation of '{name}' is of the folder {result.get('data')}, not the test "
                                 f"split; compare test splits (`python -m pipeline evaluate {name}` writes it).")
    classes, classes_b = list(a["classes"]), list(b["classes"])
    if set(classes) != set(classes_b):
        only_a, only_b = sorted(set(classes) - set(classes_b)), sorted(set(classes_b) - set(classes))
        raise QuickDrawError(
            f"runs '{name_a}' and '{name_b}' were evaluated on different classes (only in {name_a}: "
            f"{', '.join(only_a) or 'none'}; only in {name_b}: {', '.join(only_b) or 'none'}); compare runs "
            "trained on the same classes.")
    order = [classes_b.index(c) for c in classes]  # B's rows and columns in A's class order
    confusion_a = np.asarray(a["confusion"], dtype=np.int64)
    confusion_b = np.asarray(b["confusion"], dtype=np.int64)[np.ix_(order, order)]
    difference = confusion_a - confusion_b
    per_class = []
    for name in classes:
        ca, cb = a["per_class"].get(name), b["per_class"].get(name)
        if ca is None or cb is None:  # no test drawing of the class in one of them
            continue
        per_class.append({"class": name, "n_a": ca["n"], "n_b": cb["n"], "top1_a": ca["top1"],
                          "top1_b": cb["top1"], "delta": ca["top1"] - cb["top1"]})
    per_class.sort(key=lambda row: -row["delta"])
    off_diagonal = np.abs(difference)
    np.fill_diagonal(off_diagonal, 0)
    k = len(classes)
    changed = [{"true": classes[i // k], "pred": classes[i % k], "a": int(confusion_a.flat[i]),
                "b": int(confusion_b.flat[i]), "delta": int(difference.flat[i])}
               for i in np.argsort(-off_diagonal, axis=None, kind="stable")[:top] if off_diagonal.flat[i] > 0]
    same = all(row["n_a"] == row["n_b"] for row in per_class) and len(per_class) == len(a["per_class"]) == len(b["per_class"])
    return EvaluationComparison(run_a=name_a, run_b=name_b, classes=classes, per_class=per_class,
                                confusion_a=confusion_a, confusion_b=confusion_b, difference=difference,
                                changed_confusions=changed, same_drawings=same,
                                top1_a=float(a["top1"]), top1_b=float(b["top1"]))


def compare_test_splits(run_dir_a: Path | str, run_dir_b: Path | str, top: int = 20) -> EvaluationComparison:
    """`compare_evaluations` of two runs' eval.json; QuickDrawError naming the run without one."""
    results = []
    for run_dir in (Path(run_dir_a), Path(run_dir_b)):
        path = run_dir / "eval.json"
        if not path.is_file():
            raise QuickDrawError(f"run '{run_dir.name}' has no test-split evaluation ({path}); "
                                 f"run `python -m pipeline evaluate {run_dir.name}` first.")
        results.append({**read_json(path), "run": run_dir.name})
    return compare_evaluations(*results, top=top)
