"""The command line a newcomer meets first (issue "A newcomer's first hour"): every mistake is one
line (`error: ...`, exit 2) that arrives before TensorFlow loads and names a command that works; a
`train` that failed on its data can be run again; TensorFlow's start-up chatter stays off the terminal.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline import runs
from pipeline.categories import canonical
from pipeline.errors import QuickDrawError, RunError

REPO = Path(__file__).resolve().parents[1]

# Runs the CLI in a fresh interpreter and reports on stdout whether TensorFlow (or Keras) was imported.
PROBE = """
import sys
from pipeline.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:  # argparse's mistakes
    code = exc.code
print("TENSORFLOW-LOADED" if {"tensorflow", "keras"} & set(sys.modules) else "TENSORFLOW-NOT-LOADED")
sys.exit(code)
"""


def run_cli(*args, env_extra=None, probe=True, timeout=300):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_CPP", "GLOG"))}
    env.update(env_extra or {})
    command = [sys.executable, "-c", PROBE, *args] if probe else [sys.executable, "-m", "pipeline", *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def assert_one_line_error(proc, *fragments):
    """Exit 2, stderr is exactly one line starting `error:` (no traceback, no TensorFlow noise), and
    TensorFlow was never imported."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "TENSORFLOW-NOT-LOADED" in proc.stdout, "TensorFlow was imported before the mistake was refused"
    return lines[0]


def make_run(runs_dir: Path, name: str = "tiny", classes=("apple", "cat"), data_root: str | Path = "/nowhere",
             model_file: bool = True, **status) -> Path:
    """A run record without training: config, an empty history and (optionally) a placeholder
    model/model.keras, enough for every check made before TensorFlow loads."""
    config = runs.make_config(name=name, model="cnn", classes=tuple(classes), per_class=50, data_root=str(data_root))
    run_dir = runs.create_run(config, runs_dir)
    if model_file:
        (run_dir / "model").mkdir()
        (run_dir / "model" / "model.keras").write_bytes(b"placeholder")
    if status:
        runs.write_status(run_dir, **status)
    return run_dir


@pytest.fixture
def runs_dir(tmp_path):
    path = tmp_path / "runs"
    path.mkdir()
    return path


# ---------------------------------------------------------------- class names
def test_a_misspelt_class_gets_the_closest_official_name():
    with pytest.raises(QuickDrawError, match=r"^unknown class 'dgo'; did you mean 'dog'\?"):
        canonical("dgo")
    with pytest.raises(QuickDrawError, match=r"did you mean 'The Eiffel Tower'\?"):
        canonical("eiffel tower")
    with pytest.raises(QuickDrawError, match=r"did you mean 'cat'\?"):
        canonical("cta")
    with pytest.raises(QuickDrawError, match="'zzqx' is not a Quick, Draw! class; `python -m pipeline classes`"):
        canonical("zzqx")
    assert canonical(" Alarm_Clock ") == "alarm clock" and canonical("the eiffel tower") == "The Eiffel Tower"


# ---------------------------------------------------------------- mistakes: one line, before TensorFlow
def test_unknown_run_names_are_refused_before_tensorflow(runs_dir, tmp_path):
    drawings = tmp_path / "d.ndjson"
    drawings.write_text('{"drawing": [[[0, 10], [0, 10]]]}\n')
    for args in (["predict", "nope", str(drawings)], ["evaluate", "nope"], ["export", "nope"], ["resume", "nope"],
                 ["branch", "nope", "--name", "b"]):
        proc = run_cli(*args, "--runs-dir", str(runs_dir))
        assert_one_line_error(proc, "no run 'nope'", "`python -m pipeline runs` lists them")


def test_training_mistakes_are_refused_before_tensorflow_and_create_no_run(runs_dir, shared):
    base = ["train", "--name", "x2", "--per-class", "50", "--runs-dir", str(runs_dir)]
    proc = run_cli(*base, "--model", "cnnn", "--classes", "cat", "dog", "--data", str(shared))
    assert_one_line_error(proc, "unknown model 'cnnn'; choose one of: cnn")
    proc = run_cli(*base, "--model", "cnn", "--classes", "cat", "dgo", "--data", str(shared))
    assert_one_line_error(proc, "unknown class 'dgo'; did you mean 'dog'?")
    proc = run_cli(*base, "--model", "cnn", "--classes", "cat", "dog", "--data", str(shared),
                   "--model-options", "{width: 3}")
    assert_one_line_error(proc, "--model-options is not JSON")
    proc = run_cli(*base, "--model", "qdnet", "--classes", "cat", "dog", "--data", str(shared),
                   "--model-options", '{"alpha": 0.5}')
    assert_one_line_error(proc, "model 'qdnet' has no option(s) alpha")
    proc = run_cli(*base, "--model", "cnn", "--classes", "cat", "dog", "--data", str(shared), "--schedule", "cosine")
    assert_one_line_error(proc, "give --max-epochs too")
    proc = run_cli(  # argparse's own mistakes are one line too
"train", "--name", "x2", "--model", "cnn", "--classes", "cat", "--runs-dir", str(runs_dir))
    assert_one_line_error(proc, "the following arguments are required: --per-class", "train --help")
    assert not (runs_dir / "x2").exists()


def test_missing_training_data_is_refused_before_the_run_exists(runs_dir, shared):
    """The issue's first report: `train --data /nonexistent` created the run, and the same command with
    the right --data was then refused. Now the data is checked first, and the message names the class,
    format and folder and the download command that fetches them."""
    base = ["train", "--name", "x2", "--model", "cnn", "--per-class", "50", "--runs-dir", str(runs_dir)]
    proc = run_cli(*base, "--classes", "cat", "dog", "--data", "/nonexistent")
    assert_one_line_error(proc, "for classes 'cat', 'dog' under /nonexistent (it does not exist)",
                          "`python -m pipeline download cat dog --format numpy_bitmap --per-class 50 "
                          "--data /nonexistent`")
    assert not (runs_dir / "x2").exists()
    # Some classes present, one missing in the chosen format: only that one is named (quoted for a shell).
    proc = run_cli(*base, "--classes", "cat", "alarm clock", "dog", "--source", "raw", "--data", str(shared))
    line = assert_one_line_error(proc, "no raw files for 2 of the 3 classes: 'alarm clock', 'dog'",
                                 f"download 'alarm clock' dog --format raw --per-class 50 --data {shared}`")
    assert "looked in raw/" in line and not (runs_dir / "x2").exists()


def test_prediction_input_mistakes_are_one_line_before_tensorflow(runs_dir, shared, tmp_path):
    """The issue's second report: `predict RUN cat.npy`, and a file whose every line is bad, exited 0
    and printed nothing."""
    make_run(runs_dir)
    bitmap = shared / "bitmaps" / "cat.npy"
    line = assert_one_line_error(run_cli("predict", "tiny", str(bitmap), "--runs-dir", str(runs_dir)),
                                 f"{bitmap} is a .npy bitmap file", "not a stroke file", "predict takes an .ndjson")
    assert f"`python -m pipeline evaluate tiny --data {bitmap.parent}`" in line
    bad = tmp_path / "bad.ndjson"
    bad.write_text('{"word": "cat"}\n[1, 2]\n')
    assert_one_line_error(run_cli("predict", "tiny", str(bad), "--runs-dir", str(runs_dir)),
                          "0 of 2 lines were drawings; line 1 has no \"drawing\" field")
    bad.write_text('not json\n{"drawing": [[[1, 2], [3]]]}\n\n')
    assert_one_line_error(run_cli("predict", "tiny", str(bad), "--runs-dir", str(runs_dir)),
                          "0 of 2 lines were drawings; line 1 is not JSON")
    bad.write_text("")
    assert_one_line_error(run_cli("predict", "tiny", str(bad), "--runs-dir", str(runs_dir)), "the file is empty")
    assert_one_line_error(run_cli("predict", "tiny", str(tmp_path / "missing.ndjson"), "--runs-dir", str(runs_dir)),
                          "no file", "missing.ndjson")
    make_run(runs_dir, "untrained", model_file=False)
    assert_one_line_error(run_cli("predict", "untrained", str(bad), "--runs-dir", str(runs_dir)),
                          "run 'untrained' has no model/model.keras yet")


def test_evaluation_mistakes_are_one_line_before_tensorflow(runs_dir, tmp_path):
    make_run(runs_dir, data_root=tmp_path / "gone")
    assert_one_line_error(run_cli("evaluate", "tiny", "--data", str(tmp_path / "nowhere"), "--runs-dir",
                                  str(runs_dir)), "is not a folder")
    (tmp_path / "other").mkdir()
    np.save(tmp_path / "other" / "dog.npy", np.zeros((3, 784), np.uint8))
    assert_one_line_error(run_cli("evaluate", "tiny", "--data", str(tmp_path / "other"), "--runs-dir",
                                  str(runs_dir)), "has no file for any of the 2 classes of run 'tiny'")
    # The test split's data is gone: the message names the download command, not a --data that
    # `evaluate` would read as "evaluate this folder instead".
    line = assert_one_line_error(run_cli("evaluate", "tiny", "--runs-dir", str(runs_dir)),
                                 "no bitmap or stroke data for class 'apple'", "`python -m pipeline download 'apple'")
    assert "point --data" not in line


def test_resume_advice_names_commands_resume_accepts(runs_dir, tmp_path):
    """`resume` has no --data: a run whose data is gone gets the download command, not "--data"."""
    make_run(runs_dir, data_root=tmp_path / "gone", model_file=False)
    line = assert_one_line_error(run_cli("resume", "tiny", "--runs-dir", str(runs_dir)),
                                 f"`python -m pipeline download 'apple' --format numpy_bitmap --per-class 50 "
                                 f"--data {tmp_path / 'gone'}`")
    assert "point --data" not in line


def test_every_command_in_a_message_exists_with_those_options():
    """Each `python -m pipeline COMMAND --option ...` quoted in pipeline/ names a real command and only
    options that command accepts (e.g. no --data for resume)."""
    from pipeline.cli import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    checked = 0
    for path in sorted((REPO / "pipeline").glob("*.py")):
        for match in re.finditer(r"`python -m pipeline ([a-z][a-z-]*)([^`]*)`", path.read_text()):
            name, rest = match.groups()
            assert name in commands.choices, f"{path.name}: `python -m pipeline {name}` is no command"
            accepted = {o for a in commands.choices[name]._actions for o in a.option_strings}
            for option in re.findall(r"(?<![\w-])--[a-z][a-z-]*", rest):
                assert option in accepted, f"{path.name}: `{name}` has no option {option}: {match.group(0)}"
            checked += 1
    assert checked >= 10


# ---------------------------------------------------------------- a run that never trained can be retried
def test_a_run_that_never_trained_is_recreated_and_a_trained_one_refused(runs_dir, shared):
    run_dir = make_run(runs_dir, "x2", model_file=False)  # how a `train` that died on its data left it
    runs.append_event(run_dir, "plan", until_epoch=10, epochs_per_chunk=10)
    assert runs.run_state(run_dir).state == "created"
    runs.ensure_recreatable(run_dir)
    config = runs.make_config(name="x2", model="qdnet", classes=("cat", "dog", "fish"), per_class=80,
                              data_root=str(shared))
    assert runs.recreate_run(config, runs_dir) == run_dir
    assert runs.read_config(run_dir).classes == ("cat", "dog", "fish") and runs.read_config(run_dir).model == "qdnet"
    events = runs.read_events(run_dir)
    assert [e["event"] for e in events] == ["recreated"] and events[0]["previous_state"] == "created"
    kept = run_dir / events[0]["previous_events"]
    assert [json.loads(line)["event"] for line in kept.read_text().splitlines()] == ["created", "plan"]
    assert runs.run_state(run_dir).state == "created" and runs.read_history(run_dir) == []

    # A first chunk that crashed before an epoch ended: retried too.
    runs.append_event(run_dir, "chunk_start", chunk=1, pid=1, epoch=1, batch=0)
    runs.write_status(run_dir, "crashed", message="ValueError: bad")
    assert runs.run_state(run_dir).state == "crashed"
    runs.ensure_recreatable(run_dir)
    runs.recreate_run(config, runs_dir)
    assert runs.run_state(run_dir).state == "created"  # the crashed chunk belongs to the replaced events

    # With a trained epoch, a saved training state or a trainer holding it: refused, naming resume.
    runs.write_history(run_dir, [{"epoch": 1, "chunk": 1, "val_top3": 0.5}])
    runs.write_status(run_dir, "finished")
    with pytest.raises(RunError, match=r"1 trained epoch\(s\) \(finished\); `python -m pipeline resume x2` continues"):
        runs.ensure_recreatable(run_dir)
    runs.write_history(run_dir, [])
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "partial.npz").write_bytes(b"")
    with pytest.raises(RunError, match="a saved training state .*`python -m pipeline resume x2`"):
        runs.ensure_recreatable(run_dir)  # e.g. a branch before its first chunk (created, with a checkpoint)
    (run_dir / "checkpoints" / "partial.npz").unlink()
    runs.write_status(run_dir, "created")
    with runs.RunLock(run_dir):
        with pytest.raises(RunError, match="being trained"):
            runs.ensure_recreatable(run_dir)
    runs.ensure_recreatable(run_dir)


def test_train_over_a_trained_run_is_refused_before_tensorflow(runs_dir, shared):
    run_dir = make_run(runs_dir, "x2")
    runs.write_history(run_dir, [{"epoch": 1, "chunk": 1, "val_top3": 0.5}])
    runs.write_status(run_dir, "finished")
    proc = run_cli("train", "--name", "x2", "--model", "cnn", "--classes", "cat", "dog", "--per-class", "50",
                   "--data", str(shared), "--runs-dir", str(runs_dir))
    assert_one_line_error(proc, "run 'x2' already exists", "`python -m pipeline resume x2` continues it")


@pytest.mark.slow
def test_the_same_train_command_retries_a_run_that_never_trained(runs_dir, shared, cache_dir):
    """The issue's reproduction, end to end: the stuck run of a failed `train` is trained by the same
    command with the right --data, and the terminal shows no TensorFlow start-up noise."""
    make_run(runs_dir, "x2", classes=("cat", "dog"), model_file=False)  # what the failed train used to leave
    command = ["train", "--name", "x2", "--model", "cnn", "--classes", "cat", "dog", "--per-class", "50",
               "--epochs-per-chunk", "1", "--data", str(shared), "--runs-dir", str(runs_dir)]
    proc = run_cli(*command, env_extra={"QUICKDRAW_CACHE": str(cache_dir), "TF_CPP_MIN_LOG_LEVEL": "0"}, probe=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr  # no cuInit, cuDNN/cuBLAS factories, absl::InitializeLog...
    assert "never trained an epoch: its config is replaced" in proc.stdout
    run_dir = runs_dir / "x2"
    assert runs.read_config(run_dir).data_root == str(shared) and len(runs.read_history(run_dir)) == 1
    assert runs.read_events(run_dir)[0]["event"] == "recreated"
    proc = run_cli(*command)
    assert_one_line_error(proc, "1 trained epoch(s)", "`python -m pipeline resume x2`")


# ---------------------------------------------------------------- TensorFlow's chatter
@pytest.fixture(scope="module")
def untrained_run(tmp_path_factory):
    """A run with a real (untrained) model/model.keras: predict and evaluate load TensorFlow for it."""
    from pipeline.checkpoints import save_best_model
    from pipeline.models import build_model

    runs_dir = tmp_path_factory.mktemp("runs")
    run_dir = make_run(runs_dir, "real", model_file=False)
    save_best_model(run_dir, build_model("cnn", 2, (28, 28, 1)), {"epoch": 0})
    return run_dir


@pytest.mark.slow
def test_tensorflow_start_up_noise_is_hidden_unless_verbose(untrained_run, shared, tmp_path):
    drawings = tmp_path / "d.ndjson"
    with open(shared / "simplified" / "cat.ndjson") as fh:
        drawings.write_text("".join(next(fh) for _ in range(2)) + "junk\n")
    args = ["predict", "real", str(drawings), "--runs-dir", str(untrained_run.parent)]
    # TF_CPP_MIN_LOG_LEVEL=0 in the environment: the CLI still keeps the terminal clean without --verbose.
    proc = run_cli(*args, env_extra={"TF_CPP_MIN_LOG_LEVEL": "0"}, probe=False)
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["line"] for line in proc.stdout.splitlines()] == [1, 2]
    assert proc.stderr.splitlines() == ["note: skipped 1 of 3 lines that were not drawings (first: line 3 is not "
                                        "JSON (Expecting value at column 1))"]
    verbose = run_cli("--verbose", *args, probe=False)
    assert verbose.returncode == 0 and len(verbose.stderr.splitlines()) > 1  # TensorFlow's own lines are shown
    assert verbose.stdout == proc.stdout


def test_load_tensorflow_keeps_native_stderr_off_the_terminal_until_released(tmp_path):
    """The mechanism, on stand-in `tensorflow`/`keras` packages whose import writes to fd 2 the way
    TF's C++ static initialisers do: what C code writes on fd 2 from the import on is captured (kept
    for --verbose and for a bug's report), Python's sys.stderr still reaches the terminal, and fd 2 is
    the terminal again once released."""
    fake = tmp_path / "fake"
    for name in ("tensorflow", "keras"):
        (fake / name).mkdir(parents=True)
        (fake / name / "__init__.py").write_text(
            f"import os\nos.write(2, b'E0000 noise from {name}\\n')\n"
            + ("import tensorflow\n" if name == "keras" else "import logging\nget_logger = logging.getLogger\n"))
    script = ("import os, sys\nfrom pipeline.cli import load_tensorflow, release_native_stderr\n"
              "load_tensorflow(verbose=sys.argv[1] == 'v')\nos.write(2, b'XLA service initialized\\n')\n"
              "print('python line', file=sys.stderr)\ncaptured = release_native_stderr()\n"
              "os.write(2, b'restored\\n')\nprint(repr(captured))\n")
    env = {**os.environ, "PYTHONPATH": f"{fake}{os.pathsep}{REPO}"}
    quiet = subprocess.run([sys.executable, "-c", script, "q"], env=env, capture_output=True, text=True, cwd=REPO)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == "python line\nrestored\n"
    assert all(t in quiet.stdout for t in ("noise from keras", "noise from tensorflow", "XLA service initialized"))
    loud = subprocess.run([sys.executable, "-c", script, "v"], env=env, capture_output=True, text=True, cwd=REPO)
    assert loud.returncode == 0, loud.stderr
    assert "noise from tensorflow" in loud.stderr and "XLA service initialized" in loud.stderr
    assert loud.stdout.strip() == "''"
