"""Metrics of a trained run: `python -m pipeline evaluate RUN [--data DIR] [--checkpoint best|last]`.

Without --data: the run's held-out test split. With --data: every drawing in a folder of
`<class>.npy` numpy_bitmap files or `<class>.ndjson` stroke files (laid out like
../shared/quickdraw/bitmaps, simplified or raw); stroke files go through pipeline.predict, the same
path as the canvas. Writes runs/<run>/eval.json (the dashboard's Evaluate page reads it): top-1,
top-3, MAP@3 (the Kaggle metric), per-class accuracy, the confusion matrix, the top confusions and a
sample of misclassified drawings with what the model said.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pipeline.errors import QuickDrawError
from pipeline.files import atomic_write_json
from pipeline.predict import Predictor

MISCLASSIFIED_SAMPLES = 48


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


def _evaluate_folder(predictor: Predictor, folder: Path):
    from pipeline.formats import iter_ndjson, read_numpy_bitmap

    if not folder.is_dir():
        raise QuickDrawError(f"--data {folder} is not a folder; point it at a folder of <class>.npy or <class>.ndjson files.")
    classes = predictor.classes
    known = {c.lower() for c in classes}
    skipped = sorted(c for c in _folder_classes(folder) if c.lower() not in known)
    images, labels = [], []
    found_any = False
    for index, cls in enumerate(classes):
        path = _find_file(folder, cls)
        if path is None:
            continue
        found_any = True
        if path.suffix == ".npy":
            if predictor.representation != "bitmap28":
                raise QuickDrawError(
                    f"{folder} holds numpy_bitmap files but run '{predictor.name}' was trained on the "
                    f"'{predictor.representation}' representation, which needs strokes: use a folder of "
                    "simplified or raw .ndjson files.")
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
    if not found_any:
        raise QuickDrawError(f"{folder} has no file for any of the run's {len(classes)} classes "
                             f"(looked for e.g. {classes[0].replace(' ', '_')}.npy or .ndjson).")
    return np.concatenate(images), np.concatenate(labels), skipped


def evaluate_run(run_dir: Path | str, data: str | Path | None = None, checkpoint: str = "best",
                 write: bool = True, progress: Callable[[int, int], None] | None = None) -> dict:
    """Evaluate and (by default) write runs/<run>/eval.json; returns the same dict. `progress`, when
    given, is called with (drawings evaluated, drawings in all) as the evaluation goes."""
    run_dir = Path(run_dir)
    say = progress or (lambda _done, _total: None)
    predictor = Predictor.from_run(run_dir, checkpoint)
    if data is None:
        from pipeline.datasets import load_dataset
        from pipeline.runs import read_config

        dataset = load_dataset(read_config(run_dir))
        indices = dataset.indices("test")
        if len(indices) == 0:
            raise QuickDrawError("the run's test split is empty; raise --per-class or evaluate with --data DIR.")
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

        images, skipped, source = image_of, [], "test split"
    else:
        images, labels, skipped = _evaluate_folder(predictor, Path(data))
        say(0, len(labels))
        probs = predictor.probabilities(images)
        source = str(data)
    say(len(labels), len(labels))
    result = metrics_from_probabilities(probs, labels, predictor.classes)
    result.update({"run": run_dir.name, "checkpoint": checkpoint, "data": source, "skipped_classes": skipped,
                   "evaluated_at": time.time(),
                   "misclassified": _misclassified(probs, labels, images, predictor.classes)})
    if write:
        atomic_write_json(run_dir / "eval.json", result)
    return result


def evaluation_summary(result: dict) -> dict:
    """The headline numbers of an evaluation (without the matrix and images): what
    `python -m pipeline evaluate` prints last and writes as its result record."""
    summary = {k: result.get(k) for k in ("run", "checkpoint", "data", "top1", "top3", "map3", "balanced_top1", "n")}
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
