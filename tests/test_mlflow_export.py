"""`python -m pipeline export-mlflow`: shipped runs (and a branch of one) written into a real SQLite
MLflow store in tmp_path and read back through MlflowClient."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import runs
from pipeline.errors import QuickDrawError
from pipeline.files import read_json

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402

from pipeline import mlflow_export  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ("cnn-56", "cnn-56-seed1")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two shipped runs copied (without TensorBoard files), a branch of the first with a tiny record of
    its own, all exported once into the default store of that runs folder; the child given first."""
    runs_dir = tmp_path_factory.mktemp("mlflow") / "runs"
    for name in SHIPPED:
        shutil.copytree(REPO / "runs" / name, runs_dir / name, ignore=shutil.ignore_patterns("tb"))
    parent = runs.read_config(runs_dir / "cnn-56")
    child = dataclasses.replace(parent, name="cnn-56-branch", parent={"run": "cnn-56", "epoch": 3},
                                learning_rate=0.0005, model_options={"width": 48, "head": {"dropout": 0.3}})
    run_dir = runs_dir / "cnn-56-branch"
    run_dir.mkdir()
    runs.write_config(run_dir, child)
    history = [row for row in runs.read_history(runs_dir / "cnn-56") if row["epoch"] <= 3]
    history += [dict(history[-1], epoch=4, chunk=1, started=2000.0, ended=2010.5, val_top3=0.5, lr=0.0005),
                dict(history[-1], epoch=5, chunk=2, started=3000.0, ended=3020.25, val_top3=0.6, lr=0.0005)]
    runs.write_history(run_dir, history)
    for event in ({"event": "branch", "time": 1500.0, "parent": "cnn-56", "epoch": 3},
                  {"event": "chunk_start", "time": 1999.0, "chunk": 1, "epoch": 4},
                  {"event": "signal_stop", "time": 2011.0, "chunk": 1, "epoch": 5, "batch": 7, "signal": "SIGINT"},
                  {"event": "chunk_end", "time": 2011.5, "chunk": 1, "epoch": 4, "exit_code": 130},
                  {"event": "chunk_start", "time": 2999.0, "chunk": 2, "epoch": 5},
                  {"event": "chunk_end", "time": 3021.0, "chunk": 2, "epoch": 5, "exit_code": 0}):
        runs.append_event(run_dir, event.pop("event"), **event)
    runs.write_status(run_dir, "finished")
    uri = mlflow_export.default_tracking_uri(runs_dir)
    results = mlflow_export.export_runs(runs_dir, ["cnn-56-branch", *SHIPPED])
    return runs_dir, uri, MlflowClient(tracking_uri=uri), {r.run: r for r in results}


def exported(client, name):
    found = client.search_runs(client.get_experiment_by_name("quick-draw-lab").experiment_id,
                               filter_string=f"tags.`quickdraw.run` = '{name}'")
    assert len(found) == 1, f"{name}: {len(found)} MLflow runs"
    return found[0]


def test_the_default_store_is_one_sqlite_file_beside_the_runs(store):
    runs_dir, uri, _client, results = store
    assert uri == "sqlite:///" + str((runs_dir / ".mlflow" / "mlflow.db").resolve())
    assert (runs_dir / ".mlflow" / "mlflow.db").is_file()
    assert mlflow_export.ui_command(uri).startswith("mlflow ui --backend-store-uri sqlite:///")
    assert {r.name for r in runs.list_runs(runs_dir)} == set(results)  # the store is no run
    assert set(results) == {"cnn-56", "cnn-56-seed1", "cnn-56-branch"}


def test_config_becomes_params_flattened_and_short(store):
    runs_dir, _uri, client, _results = store
    params = exported(client, "cnn-56-branch").data.params
    assert params["model"] == "cnn" and params["learning_rate"] == "0.0005" and params["seed"] == "0"
    assert params["model_options.width"] == "48" and params["model_options.head.dropout"] == "0.3"
    assert params["parent.run"] == "cnn-56" and params["parent.epoch"] == "3"
    assert params["versions.tensorflow"] == runs.read_config(runs_dir / "cnn-56").versions["tensorflow"]
    assert params["classes.count"] == "56" and params["classes"].startswith("The Eiffel Tower, The Mona Lisa")
    assert all(len(value) <= mlflow_export.PARAM_LIMIT for value in params.values())
    assert exported(client, "cnn-56").data.params["model_options"] == "{}"
    assert exported(client, "cnn-56").data.params["save_every_batches"] == "null"


def test_long_class_lists_are_cut_with_a_pointer_to_the_artifact():
    params = mlflow_export.config_params({"classes": [f"class number {i}" for i in range(100)], "x": "y" * 900})
    assert params["classes.count"] == "100"
    assert params["classes"].endswith("(100 classes in classes.json)") and len(params["classes"]) <= 500
    assert len(params["x"]) <= 500 and params["x"].endswith("(whole: config.json)")


def test_every_history_row_is_a_metric_at_its_epoch_and_end_time(store):
    runs_dir, _uri, client, _results = store
    for name in (*SHIPPED, "cnn-56-branch"):
        history = runs.read_history(runs_dir / name)
        run_id = exported(client, name).info.run_id
        for key in ("loss", "val_top3", "lr"):
            metrics = sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
            assert [m.step for m in metrics] == [row["epoch"] for row in history]
            assert [m.value for m in metrics] == pytest.approx([row[key] for row in history])
            assert [m.timestamp for m in metrics] == [int(round(row["ended"] * 1000)) for row in history]
    evaluation = read_json(runs_dir / "cnn-56" / "eval.json")
    meta = read_json(runs_dir / "cnn-56" / "model" / "meta.json")
    (test_top1,) = client.get_metric_history(exported(client, "cnn-56").info.run_id, "test_top1")
    assert test_top1.value == pytest.approx(evaluation["top1"]) and test_top1.step == meta["epoch"]
    assert test_top1.timestamp == int(round(evaluation["evaluated_at"] * 1000))


def test_chunks_and_interruptions_are_tags(store):
    runs_dir, _uri, client, _results = store
    tags = exported(client, "cnn-56-seed1").data.tags
    events = runs.read_events(runs_dir / "cnn-56-seed1")
    assert tags["quickdraw.chunks"] == str(sum(e["event"] == "chunk_start" for e in events))
    stops = [e for e in events if e["event"] in ("signal_stop", "crash_detected")]
    assert tags["quickdraw.interruptions"] == str(len(stops)) and len(stops) >= 2
    assert tags["quickdraw.chunk.1.first_epoch"] == "1" and tags["quickdraw.chunk.2.end"] == "signal SIGTERM"
    assert "crash detected" in tags[f"quickdraw.interruption.{len(stops)}"]
    assert tags["quickdraw.state"] == "finished" and tags["mlflow.runName"] == "cnn-56-seed1"
    branch = exported(client, "cnn-56-branch").data.tags
    assert branch["quickdraw.chunks"] == "2" and branch["quickdraw.interruptions"] == "1"
    assert (branch["quickdraw.chunk.1.first_epoch"], branch["quickdraw.chunk.1.last_epoch"]) == ("1", "4")
    assert (branch["quickdraw.chunk.2.first_epoch"], branch["quickdraw.chunk.2.last_epoch"]) == ("5", "5")
    assert branch["quickdraw.chunk.1.end"] == "signal SIGINT" and branch["quickdraw.chunk.2.end"] == "finished"
    assert "SIGINT stop in chunk 1 at epoch 5 batch 7" in branch["quickdraw.interruption.1"]


def test_a_branch_is_a_child_of_its_parents_mlflow_run(store):
    _runs_dir, _uri, client, results = store
    parent, child = exported(client, "cnn-56"), exported(client, "cnn-56-branch")
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child.data.tags["quickdraw.parent"] == "cnn-56" and child.data.tags["quickdraw.parent_epoch"] == "3"
    assert "mlflow.parentRunId" not in parent.data.tags
    assert results["cnn-56-branch"].parent_run_id == parent.info.run_id


def test_model_classes_and_confusion_matrix_are_artifacts(store, tmp_path):
    runs_dir, _uri, client, _results = store
    run_id = exported(client, "cnn-56").info.run_id
    top = {a.path for a in client.list_artifacts(run_id)}
    assert {"classes.json", "config.json", "history.csv", "events.jsonl", "model", "eval"} <= top
    assert {a.path for a in client.list_artifacts(run_id, "model")} == {"model/model.keras", "model/meta.json"}
    assert {"eval/eval.json", "eval/confusion.csv"} <= {a.path for a in client.list_artifacts(run_id, "eval")}
    local = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="eval/confusion.csv",
                                                     tracking_uri=_uri, dst_path=str(tmp_path)))
    lines = local.read_text().splitlines()
    evaluation = read_json(runs_dir / "cnn-56" / "eval.json")
    assert len(lines) == 57 and lines[0].split(",")[1] == "The Eiffel Tower"
    assert [int(v) for v in lines[1].split(",")[1:]] == evaluation["confusion"][0]
    model = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="model/model.keras",
                                                     tracking_uri=_uri, dst_path=str(tmp_path)))
    assert model.read_bytes() == (runs_dir / "cnn-56" / "model" / "model.keras").read_bytes()


def test_reexport_replaces_the_run_and_keeps_children_attached(store):
    runs_dir, uri, client, _results = store
    old = exported(client, "cnn-56").info.run_id
    (result,) = mlflow_export.export_runs(runs_dir, ["cnn-56"], tracking_uri=uri)
    new = exported(client, "cnn-56").info.run_id  # exactly one active MLflow run of that name
    assert new == result.run_id != old and result.replaced == [old] and result.children == ["cnn-56-branch"]
    assert client.get_run(old).info.lifecycle_stage == "deleted"
    assert exported(client, "cnn-56-branch").data.tags["mlflow.parentRunId"] == new
    assert len(client.get_metric_history(new, "val_top3")) == len(runs.read_history(runs_dir / "cnn-56"))


def test_the_command_line(store, tmp_path):
    runs_dir, _uri, _client, _results = store
    uri = "sqlite:///" + str(tmp_path / "other.db")
    proc = subprocess.run([sys.executable, "-m", "pipeline", "export-mlflow", "cnn-56-seed1", "--runs-dir",
                           str(runs_dir), "--tracking-uri", uri], capture_output=True, text=True, timeout=300,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "cnn-56-seed1: MLflow run" in proc.stdout and f"mlflow ui --backend-store-uri {uri}" in proc.stdout
    assert "tensorflow" not in proc.stderr.lower() and "Creating initial" not in proc.stderr
    runs_found = MlflowClient(tracking_uri=uri).search_runs(
        MlflowClient(tracking_uri=uri).get_experiment_by_name("quick-draw-lab").experiment_id)
    assert [r.data.tags["quickdraw.run"] for r in runs_found] == ["cnn-56-seed1"]
    assert runs_found[0].info.artifact_uri.startswith((tmp_path / "artifacts").as_uri())


def test_a_missing_run_or_mlflow_is_one_line(store, monkeypatch, capsys):
    from pipeline import cli

    runs_dir, _uri, _client, _results = store
    assert cli.main(["export-mlflow", "nope", "--runs-dir", str(runs_dir)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    monkeypatch.setattr(mlflow_export.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(QuickDrawError, match=r"pip install -r requirements-mlflow.txt"):
        mlflow_export.require_mlflow()
    assert cli.main(["export-mlflow", "cnn-56", "--runs-dir", str(runs_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install -r requirements-mlflow.txt" in err
