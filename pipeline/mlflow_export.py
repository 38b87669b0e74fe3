"""Runs that open in MLflow too: `python -m pipeline export-mlflow RUN... [--tracking-uri URI]`.

Each run record (runs/README.md) becomes one MLflow run, read-only from the record's side:

- params: config.json flattened (`model_options.width`, `versions.tensorflow`, `parent.run`), every
  value a string (JSON for numbers, booleans and null) of at most PARAM_LIMIT characters; the class
  list as `classes.count` plus `classes` (the names, cut short with a pointer to classes.json when
  they do not fit). The whole config.json is an artifact too.
- metrics: every history.csv row, `step` = the global epoch, timestamp = the epoch's `ended` (ms);
  eval.json's headline numbers as `test_top1`/`test_top3`/`test_map3`/`test_balanced_top1` at the
  best model's epoch, timestamp `evaluated_at`.
- tags: `quickdraw.run` (the run's name: how a run is found again), `quickdraw.state`,
  `quickdraw.chunks`, `quickdraw.interruptions` (signal stops plus detected crashes, from
  events.jsonl), `quickdraw.chunk.<n>.first_epoch`/`.last_epoch`/`.end` (`finished`, `signal SIGTERM`,
  `crashed`, `exit N`, `open`), `quickdraw.interruption.<i>` (one line each), `quickdraw.parent`/
  `quickdraw.parent_epoch` and `mlflow.parentRunId` for a branch, `quickdraw.best_epoch`.
- artifacts: `model/model.keras` + `model/meta.json` (the best model), `classes.json`,
  `config.json`, `history.csv`, `events.jsonl`, `eval/eval.json`, `eval/confusion.csv` (rows: true
  class, columns: predicted) and `eval/confusion.png` when matplotlib is installed.

Re-exporting replaces: the run is written as a new MLflow run, and only when it is complete are the
older MLflow runs tagged with the same `quickdraw.run` deleted (MLflow's soft delete; `mlflow gc
--backend-store-uri URI` purges them) and the exported children of that run (tag `quickdraw.parent`)
re-pointed at the new one - MLflow params cannot change once logged, so an in-place update is not
possible. A parent is looked up in the store by its `quickdraw.run` tag: runs given together are
exported parents first, and a parent exported later adopts its children then.

The default store is one SQLite file, `<runs>/.mlflow/mlflow.db`, with artifacts in
`<runs>/.mlflow/artifacts/` (a dot folder, so run listings skip it): MLflow 3 deprecates its
file-system store and defaults to SQLite itself, and `mlflow ui --backend-store-uri
sqlite:///runs/.mlflow/mlflow.db` opens it (`ui_command`). MLflow is optional
(requirements-mlflow.txt): without it `require_mlflow` raises a one-line QuickDrawError.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import QuickDrawError, RunError
from pipeline.files import read_json
from pipeline.runs import (
    METRIC_COLUMNS,
    best_row,
    read_classes,
    read_config,
    read_events,
    read_history,
    resolve_run,
    run_state,
)

INSTALL = "pip install -r requirements-mlflow.txt"
EXPERIMENT = "quick-draw-lab"
# MLflow 3 accepts 6000 characters in a param value; older servers and stores took 500. Longer values
# are cut to this, with the whole value in an artifact (config.json, classes.json).
PARAM_LIMIT = 500
TAG_LIMIT = 5000
RUN_TAG = "quickdraw.run"
PARENT_TAG = "quickdraw.parent"
PARENT_RUN_ID = "mlflow.parentRunId"
STATUS = {"finished": "FINISHED", "stopped": "KILLED", "crashed": "FAILED", "damaged": "FAILED",
          "created": "FINISHED", "running": "RUNNING"}
TEST_METRICS = ("top1", "top3", "map3", "balanced_top1")


def require_mlflow() -> None:
    """QuickDrawError naming the pip command unless MLflow can be imported (checked without importing)."""
    if importlib.util.find_spec("mlflow") is None:
        raise QuickDrawError(f"export-mlflow needs MLflow, an optional dependency: `{INSTALL}` "
                             "(or `pip install mlflow`).")


def default_store(runs_dir: Path | str) -> Path:
    """The SQLite file of the default store: <runs>/.mlflow/mlflow.db."""
    return Path(runs_dir) / ".mlflow" / "mlflow.db"


def default_tracking_uri(runs_dir: Path | str) -> str:
    return "sqlite:///" + str(default_store(runs_dir).resolve())


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///PATH` URI, else None."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):])


def ui_command(uri: str) -> str:
    """The `mlflow ui` command that opens a store (a path inside the working folder kept relative)."""
    db = sqlite_path(uri)
    if db is not None:
        try:
            uri = "sqlite:///" + str(db.resolve().relative_to(Path.cwd().resolve()))
        except ValueError:
            pass
    return f"mlflow ui --backend-store-uri {uri}"


# ---------------------------------------------------------------- what a run record says
def param_value(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= PARAM_LIMIT else text[:PARAM_LIMIT - 30] + "... (whole: config.json)"


def flatten(data: dict, prefix: str = "") -> dict[str, object]:
    """Nested dicts as dotted keys; an empty dict stays visible as `{}`."""
    flat: dict[str, object] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def config_params(config: dict) -> dict[str, str]:
    """config.json as MLflow params: flattened, strings, the class list as a count plus the names."""
    config = dict(config)
    classes = list(config.pop("classes", []) or [])
    params = {key: param_value(value) for key, value in flatten(config).items()}
    params["classes.count"] = str(len(classes))
    names = ", ".join(classes)
    if len(names) > PARAM_LIMIT:
        suffix = f" ... ({len(classes)} classes in classes.json)"
        names = names[:PARAM_LIMIT - len(suffix)].rsplit(", ", 1)[0] + suffix
    params["classes"] = names
    return params


def history_metrics(history: list[dict]) -> list[tuple[str, float, int, int]]:
    """(key, value, timestamp ms, step) for every metric of every history row."""
    out = []
    for row in history:
        ended = row.get("ended") or row.get("started") or 0.0
        for key in METRIC_COLUMNS:
            value = row.get(key)
            if isinstance(value, int | float):
                out.append((key, float(value), int(round(ended * 1000)), int(row["epoch"])))
    return out


def chunk_tags(history: list[dict], events: list[dict]) -> dict[str, str]:
    """Chunks and interruptions as tags: counts, each chunk's epochs and how it ended, each stop."""
    tags: dict[str, str] = {}
    chunks: dict[int, dict] = {}
    for event in events:
        kind, chunk = event.get("event"), event.get("chunk")
        if kind == "chunk_start" and chunk is not None:
            chunks.setdefault(chunk, {})["end"] = "open"
        elif kind == "chunk_end" and chunk is not None:
            code = event.get("exit_code", 0)
            entry = chunks.setdefault(chunk, {})
            if entry.get("end") != "crashed":
                entry["end"] = "finished" if code == 0 else entry.get("signal") or f"exit {code}"
        elif kind == "signal_stop" and chunk is not None:
            chunks.setdefault(chunk, {})["signal"] = f"signal {event.get('signal', '?')}"
        elif kind == "crash_detected" and chunk is not None:
            chunks.setdefault(chunk, {})["end"] = "crashed"
    for row in history:
        entry = chunks.setdefault(int(row.get("chunk") or 0), {})
        entry["first"] = min(entry.get("first", row["epoch"]), row["epoch"])
        entry["last"] = max(entry.get("last", row["epoch"]), row["epoch"])
    interruptions = [e for e in events if e.get("event") in ("signal_stop", "crash_detected")]
    tags["quickdraw.chunks"] = str(sum(1 for e in events if e.get("event") == "chunk_start"))
    tags["quickdraw.interruptions"] = str(len(interruptions))
    for chunk, entry in sorted(chunks.items()):
        if not chunk:
            continue
        if "first" in entry:
            tags[f"quickdraw.chunk.{chunk}.first_epoch"] = str(entry["first"])
            tags[f"quickdraw.chunk.{chunk}.last_epoch"] = str(entry["last"])
        if "end" in entry:
            tags[f"quickdraw.chunk.{chunk}.end"] = entry["end"]
    for index, event in enumerate(interruptions, 1):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.get("time", 0)))
        if event["event"] == "signal_stop":
            text = (f"{when}: {event.get('signal', 'signal')} stop in chunk {event.get('chunk')} at epoch "
                    f"{event.get('epoch')} batch {event.get('batch')} (saved)")
        else:
            text = (f"{when}: crash detected in chunk {event.get('chunk')}, last seen at epoch "
                    f"{event.get('last_epoch')} batch {event.get('last_batch')}")
        tags[f"quickdraw.interruption.{index}"] = text
    return tags


def confusion_csv(evaluation: dict) -> str:
    """eval.json's confusion matrix as CSV: a header of predicted classes, a row per true class."""
    classes, matrix = evaluation.get("classes") or [], evaluation.get("confusion") or []
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["true \\ predicted", *classes])
    for name, row in zip(classes, matrix, strict=False):
        writer.writerow([name, *row])
    return out.getvalue()


def confusion_png(evaluation: dict, path: Path) -> bool:
    """The confusion matrix as a picture (row-normalised); False when matplotlib is not installed."""
    if importlib.util.find_spec("matplotlib") is None:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    classes = evaluation.get("classes") or []
    matrix = np.asarray(evaluation.get("confusion") or [], dtype=float)
    if matrix.ndim != 2 or not matrix.size:
        return False
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    side = max(4.0, 0.16 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(side, side), dpi=100)
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=6)
    ax.set_yticks(range(len(classes)), classes, fontsize=6)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{evaluation.get('run', '')} test top-1 {evaluation.get('top1', 0):.4f}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


# ---------------------------------------------------------------- the export
@dataclass
class MlflowExport:
    """One exported run: its MLflow run id, what it replaced, its parent's MLflow run (if found)."""

    run: str
    run_id: str
    experiment_id: str
    replaced: list[str] = field(default_factory=list)
    parent: str | None = None
    parent_run_id: str | None = None
    children: list[str] = field(default_factory=list)  # exported children re-pointed at this run
    params: int = 0
    metrics: int = 0
    artifacts: list[str] = field(default_factory=list)


def export_order(run_dirs: list[Path]) -> list[Path]:
    """Parents before their children among the runs given (otherwise in the given order)."""
    by_name = {d.name: d for d in run_dirs}
    parents = {d.name: (read_config(d).parent or {}).get("run") for d in run_dirs}
    ordered: list[Path] = []

    def visit(name: str, seen: tuple = ()):
        if by_name[name] in ordered or name in seen:
            return
        parent = parents.get(name)
        if parent in by_name:
            visit(parent, (*seen, name))
        ordered.append(by_name[name])

    for d in run_dirs:
        visit(d.name)
    return ordered


def _experiment(client, name: str, uri: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage != "active":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    db = sqlite_path(uri)
    location = (db.parent / "artifacts").resolve().as_uri() if db is not None else None
    return client.create_experiment(name, artifact_location=location)


def _find(client, experiment_id: str, tag: str, value: str) -> list:
    escaped = value.replace("'", "\\'")
    return client.search_runs([experiment_id], filter_string=f"tags.`{tag}` = '{escaped}'",
                              max_results=1000)


def _log_batches(client, run_id: str, metrics=(), params=(), tags=()) -> None:
    from mlflow.entities import Metric, Param, RunTag

    params = [Param(k, v) for k, v in params]
    tags = [RunTag(k, v) for k, v in tags]
    for i in range(0, len(params), 100):
        client.log_batch(run_id, params=params[i:i + 100], synchronous=True)
    for i in range(0, len(tags), 100):
        client.log_batch(run_id, tags=tags[i:i + 100], synchronous=True)
    metrics = [Metric(k, v, ts, step) for k, v, ts, step in metrics]
    for i in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[i:i + 1000], synchronous=True)


def export_run(run_dir: Path, client, experiment_id: str) -> MlflowExport:
    """Write one run record as a new MLflow run, then retire the older MLflow runs of that name."""
    run_dir = Path(run_dir)
    name = run_dir.name
    config = read_config(run_dir).to_json()
    history = read_history(run_dir)
    events = read_events(run_dir)
    state = run_state(run_dir)
    evaluation = read_json(run_dir / "eval.json") if (run_dir / "eval.json").exists() else None
    meta = read_json(run_dir / "model" / "meta.json") if (run_dir / "model" / "meta.json").exists() else None
    classes = read_classes(run_dir)

    parent = (config.get("parent") or {}).get("run")
    tags = {RUN_TAG: name, "quickdraw.state": state.state, "quickdraw.model": str(config.get("model")),
            "quickdraw.source": str(run_dir.resolve()), "quickdraw.exported_at": str(round(time.time(), 3)),
            **chunk_tags(history, events)}
    if state.message:
        tags["quickdraw.state_message"] = state.message[:TAG_LIMIT]
    best = meta or best_row(history)
    if best and best.get("epoch") is not None:
        tags["quickdraw.best_epoch"] = str(best["epoch"])
    parent_run_id = None
    if parent:
        tags[PARENT_TAG] = parent
        tags["quickdraw.parent_epoch"] = str((config.get("parent") or {}).get("epoch"))
        found = _find(client, experiment_id, RUN_TAG, parent)
        if found:
            parent_run_id = max(found, key=lambda r: r.info.start_time or 0).info.run_id
            tags[PARENT_RUN_ID] = parent_run_id

    metrics = history_metrics(history)
    if evaluation:
        step = int((meta or {}).get("epoch") or (history[-1]["epoch"] if history else 0))
        stamp = int(round(float(evaluation.get("evaluated_at") or time.time()) * 1000))
        metrics += [(f"test_{key}", float(evaluation[key]), stamp, step) for key in TEST_METRICS
                    if isinstance(evaluation.get(key), int | float)]

    times = [e["time"] for e in events if isinstance(e.get("time"), int | float)]
    ended = [row["ended"] for row in history if row.get("ended")]
    start = min(times) if times else (history[0]["started"] if history else time.time())
    end = max(ended + times) if (ended or times) else start
    previous = [r.info.run_id for r in _find(client, experiment_id, RUN_TAG, name)]

    run = client.create_run(experiment_id, start_time=int(start * 1000), run_name=name)
    run_id = run.info.run_id
    result = MlflowExport(run=name, run_id=run_id, experiment_id=experiment_id, parent=parent,
                          parent_run_id=parent_run_id)
    try:
        params = config_params(config)
        _log_batches(client, run_id, metrics=metrics, params=params.items(), tags=tags.items())
        result.params, result.metrics = len(params), len(metrics)
        result.artifacts = _log_artifacts(client, run_id, run_dir, config, classes, evaluation)
        client.set_terminated(run_id, STATUS.get(state.state, "FINISHED"), end_time=int(end * 1000))
    except BaseException:
        client.delete_run(run_id)  # the older export (if any) stays the current one
        raise
    for old in previous:
        client.delete_run(old)
    result.replaced = previous
    for child in _find(client, experiment_id, PARENT_TAG, name):
        if child.info.run_id != run_id:
            client.set_tag(child.info.run_id, PARENT_RUN_ID, run_id)
            result.children.append(child.data.tags.get(RUN_TAG, child.info.run_id))
    return result


def _log_artifacts(client, run_id: str, run_dir: Path, config: dict, classes: list[str],
                   evaluation: dict | None) -> list[str]:
    logged = []

    def log(path: Path, folder: str | None = None):
        client.log_artifact(run_id, str(path), folder)
        logged.append(f"{folder}/{path.name}" if folder else path.name)

    with tempfile.TemporaryDirectory(prefix="quickdraw-mlflow-") as tmp:
        tmp = Path(tmp)
        (tmp / "classes.json").write_text(json.dumps(classes, indent=2) + "\n")
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        log(tmp / "classes.json")
        log(tmp / "config.json")
        for name in ("history.csv", "events.jsonl"):
            if (run_dir / name).exists():
                log(run_dir / name)
        for name in ("model.keras", "meta.json"):
            if (run_dir / "model" / name).exists():
                log(run_dir / "model" / name, "model")
        if evaluation:
            log(run_dir / "eval.json", "eval")
            if evaluation.get("confusion"):
                (tmp / "confusion.csv").write_text(confusion_csv(evaluation))
                log(tmp / "confusion.csv", "eval")
                if confusion_png(evaluation, tmp / "confusion.png"):
                    log(tmp / "confusion.png", "eval")
    return logged


def export_runs(runs_dir: Path | str, names: list[str], tracking_uri: str | None = None,
                experiment: str = EXPERIMENT, report=None) -> list[MlflowExport]:
    """Export runs (by name, parents first) to an MLflow store (default: `default_tracking_uri`)."""
    require_mlflow()
    run_dirs = [resolve_run(runs_dir, name) for name in names]  # every name checked before MLflow loads
    for run_dir in run_dirs:
        read_config(run_dir)
    uri = tracking_uri or default_tracking_uri(runs_dir)
    db = sqlite_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    try:
        experiment_id = _experiment(client, experiment, uri)
    except Exception as exc:
        if type(exc).__name__ == "MlflowException":
            raise RunError(f"MLflow store {uri}: {exc}") from None
        raise
    results = []
    for run_dir in export_order(run_dirs):
        result = export_run(run_dir, client, experiment_id)
        results.append(result)
        if report:
            report(result)
    return results
