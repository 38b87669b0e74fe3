"""The command line: `python -m pipeline COMMAND ...` (`--help` on every command).

The only module that parses arguments. Handlers import what they use lazily, so `--help` and the
data commands start without loading TensorFlow, and every command checks its arguments, run names and
files before it loads TensorFlow (`load_tensorflow`, the one place the CLI imports it): a mistake is
refused at once, as one line (`error: ...`, exit 2). TensorFlow's start-up chatter (C++ logs, CUDA
plugin registrations) is kept off the terminal unless `--verbose` asks for it.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shlex
import sys
import tempfile
from pathlib import Path

from pipeline.errors import QuickDrawError

FORMATS = ("numpy_bitmap", "simplified", "raw", "binary")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {value}")
    return value


class _Progress:
    """Training progress on stdout: a line per epoch and chunk; on a terminal, also a batch line
    that overwrites itself (skipped in logs, where it would only be noise)."""

    def __init__(self):
        self.live_width = 0

    def __call__(self, line: str, live: bool = False) -> None:
        if live:
            if sys.stdout.isatty():
                print("\r" + line.ljust(self.live_width), end="", flush=True)
                self.live_width = len(line)
            return
        if self.live_width:
            print("\r" + " " * self.live_width + "\r", end="")
            self.live_width = 0
        print(line, flush=True)  # flushed: the dashboard shows a training job's output as it comes


_say = _Progress()


def _runs_dir(args) -> Path:
    return Path(args.runs_dir or os.environ.get("QUICKDRAW_RUNS", "runs"))


def _progress(args):
    """The command's JSON-lines progress file (`--progress FILE`, pipeline.jobs.ProgressFile); a no-op
    without the option."""
    from pipeline.jobs import ProgressFile

    return ProgressFile(getattr(args, "progress", None), getattr(args, "command", None))


# ---------------------------------------------------------------- TensorFlow, quietly
# Environment that quiets TensorFlow's C++ logging, set before any import of it unless --verbose.
# Measured with TF 2.19 on a machine with CUDA libraries and no GPU: TF_CPP_MIN_LOG_LEVEL=3 silences
# the oneDNN/CPU-feature notices, `cuInit` and `Unable to register cuFFT factory`; GLOG_minloglevel
# quiets glog-based builds. No variable reaches the rest: `All log messages before
# absl::InitializeLog()`, `Unable to register cuDNN/cuBLAS factory` and `computation placer already
# registered` are written by C++ static initialisers while `import tensorflow` runs, and XLA's `XLA
# service ... initialized` / `Compiled cluster using XLA!` (the first one-drawing prediction) by absl
# before it is initialised. So `load_tensorflow` also sends file descriptor 2 - where C and C++ code
# write - to a temporary file from the import to the end of the command, while Python's sys.stderr
# (our `error:` lines, notes, warnings, tracebacks) keeps writing to the terminal.
QUIET_TENSORFLOW = {"TF_CPP_MIN_LOG_LEVEL": "3", "GLOG_minloglevel": "3"}
TENSORFLOW_LOG: list[str] = []  # what TensorFlow's C++ side wrote while it was hidden (see --verbose)


def quiet_tensorflow_environment(verbose: bool = False) -> None:
    """Set QUIET_TENSORFLOW in the environment (before TensorFlow is imported), unless verbose."""
    if not verbose:
        os.environ.update(QUIET_TENSORFLOW)


class _NativeStderr:
    """File descriptor 2 redirected to a temporary file, sys.stderr kept on the terminal."""

    def __init__(self):
        self.terminal: int | None = None  # a duplicate of the real fd 2, kept open for the process
        self.file = None
        self.python_stderr = None

    def hide(self) -> None:
        if self.file is not None:
            return
        sys.stderr.flush()
        if self.terminal is None:
            self.terminal = os.dup(2)
        self.file = tempfile.TemporaryFile()
        os.dup2(self.file.fileno(), 2)
        try:
            on_fd2 = sys.stderr.fileno() == 2
        except (AttributeError, OSError, ValueError):  # e.g. a test's captured stream
            on_fd2 = False
        if on_fd2:
            self.python_stderr = sys.stderr
            sys.stderr = io.TextIOWrapper(io.FileIO(self.terminal, "w", closefd=False), encoding=sys.stderr.encoding,
                                          errors="backslashreplace", line_buffering=True)

    def restore(self, replay: bool = False) -> str:
        """Put fd 2 and sys.stderr back; returns what was captured (written to stderr when `replay`)."""
        if self.file is None:
            return ""
        sys.stderr.flush()
        if self.python_stderr is not None:
            sys.stderr, self.python_stderr = self.python_stderr, None
        os.dup2(self.terminal, 2)
        self.file.seek(0)
        text = self.file.read().decode("utf-8", errors="replace")
        self.file.close()
        self.file = None
        TENSORFLOW_LOG.append(text)
        if replay and text:
            sys.stderr.write(text)
            sys.stderr.flush()
        return text


_native_stderr = _NativeStderr()


def load_tensorflow(verbose: bool = False) -> None:
    """Import TensorFlow and Keras - the one place the command line does - after the command checked
    its arguments. Unless `verbose`, what C++ code writes on file descriptor 2 from here to the end of
    the command is captured (`release_native_stderr`, called by `main`), and TensorFlow's Python
    logger shows errors only; a failed import shows what was captured."""
    if "tensorflow" in sys.modules:
        return
    if not verbose:
        _native_stderr.hide()
    try:
        import keras  # noqa: F401 - imports tensorflow
        import tensorflow as tf
    except BaseException:
        _native_stderr.restore(replay=True)
        raise
    if not verbose:
        tf.get_logger().setLevel("ERROR")  # e.g. AutoGraph's "could not transform <lambda>" notices


def release_native_stderr(replay: bool = False) -> str:
    """End what `load_tensorflow` hid: fd 2 back on the terminal; returns the captured text (also kept
    in TENSORFLOW_LOG, and written to stderr when `replay`, e.g. before a bug's traceback)."""
    return _native_stderr.restore(replay)


def _tensorflow(args) -> None:
    load_tensorflow(getattr(args, "verbose", False))


def _refuse_if_training(run_dir: Path) -> None:
    """Refuse at once (before TensorFlow loads) to train a run another trainer holds; the lock taken
    in pipeline.chunks stays the rule, this only spares the wait."""
    from pipeline.runs import read_lock, training_refusal

    holder = read_lock(run_dir)
    if holder:
        raise training_refusal(run_dir, holder.get("pid", "unknown"))


# ---------------------------------------------------------------- data commands
def cmd_classes(args) -> int:
    from pipeline.categories import all_categories

    for name in all_categories():
        print(name)
    return 0


def cmd_download(args) -> int:
    from tqdm import tqdm

    from pipeline import download
    from pipeline.categories import canonical
    from pipeline.files import human_size
    from pipeline.formats import data_root

    progress = _progress(args)
    root = data_root(args.data)
    classes = [canonical(c) for c in args.classes]
    base_url = args.base_url or download.DEFAULT_BASE_URL
    progress.progress("planning", done=0, total=len(classes), force=True)
    plans = [download.plan(c, args.format, root, per_class=args.per_class, base_url=base_url) for c in classes]
    known = [p.size for p in plans if p.size]
    size = human_size(sum(known)) if known else "size unknown (streamed until enough drawings)"
    if known and len(known) < len(plans):
        size += " plus streamed files of unknown size"
    print(f"{len(plans)} file(s), {size} to fetch into {root}")
    files = {}
    for index, p in enumerate(plans):
        def report(done, total, bar, index=index, p=p):
            bar.update(done - bar.n)
            progress.progress(f"downloading {p.cls}", done=done, total=total,
                              fraction=_download_fraction(plans, index, done))

        with tqdm(total=p.size, unit="B", unit_scale=True, desc=p.cls, leave=False) as bar:
            path = download.fetch_plan(p, progress=lambda done, total, bar=bar, report=report: report(done, total, bar))
        files[p.cls] = str(path)
        print(f"{p.cls}: {path}")
    progress.progress("done", fraction=1.0, force=True)
    progress.result({"root": str(root), "format": args.format, "per_class": args.per_class, "files": files})
    return 0


def _download_fraction(plans, index: int, done: int) -> float:
    """How far a download of several files is, by bytes when every size is known, else by files."""
    sizes = [p.size for p in plans]
    if all(sizes):
        return (sum(sizes[:index]) + min(done, sizes[index])) / sum(sizes)
    within = min(done / sizes[index], 1.0) if sizes[index] else 0.0
    return (index + within) / len(plans)


def cmd_simplify(args) -> int:
    from pipeline.convert import simplify_file

    stats = simplify_file(args.input, args.output)
    print(f"simplified {stats.written} drawing(s) into {args.output}" + (f"; skipped {stats.skipped} malformed line(s)" if stats.skipped else ""))
    return 0


def cmd_rasterize(args) -> int:
    from pipeline.convert import rasterize_file

    stats = rasterize_file(args.input, args.output, size=args.size, colour_coded=args.colour_coded)
    print(f"rendered {stats.written} drawing(s) at {args.size}x{args.size} into {args.output}" + (f"; skipped {stats.skipped} malformed line(s)" if stats.skipped else ""))
    return 0


# ---------------------------------------------------------------- training commands
def cmd_train(args) -> int:
    from pipeline import runs
    from pipeline.categories import canonical

    # Everything is checked before TensorFlow loads and before the run exists: the name, an existing
    # run of that name (one that never trained an epoch is replaced), the classes, model and recipe,
    # a warm start's source and the data of every class.
    runs_dir = _runs_dir(args)
    run_dir = runs.run_path(runs_dir, args.name)
    existing = (run_dir / "config.json").exists()
    if existing:
        runs.ensure_recreatable(run_dir)
    config = runs.make_config(
        name=args.name,
        model=args.model,
        classes=tuple(canonical(c) for c in args.classes),
        per_class=args.per_class,
        representation=args.representation,
        image_size=args.image_size,
        source=args.source,
        data_root=args.data,
        epochs_per_chunk=args.epochs_per_chunk,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        seed=args.seed,
        save_every_batches=args.save_every_batches,
        strategy=args.strategy,
        model_options=_model_options(args),
        max_epochs=args.max_epochs,
        schedule=args.schedule, warmup_epochs=args.warmup_epochs, label_smoothing=args.label_smoothing,
        weight_decay=args.weight_decay, augment=args.augment, augment_shift=args.augment_shift,
        augment_scale=args.augment_scale, augment_rotate=args.augment_rotate, init_from=args.init_from,
        resume_mode=args.resume_mode, probes=_probe_sets(runs_dir, args.probes), precision=args.precision,
    )
    if config.init_from:
        from pipeline.checkpoints import init_source_path

        init_source_path(config.init_from, runs_dir)  # a wrong source fails before the run exists
    check_training_data(config)
    _tensorflow(args)
    from pipeline.chunks import run_chunks

    if existing:
        run_dir = runs.recreate_run(config, runs_dir)
        _say(f"run {args.name} never trained an epoch: its config is replaced and training starts again")
    else:
        run_dir = runs.create_run(config, runs_dir)
    return run_chunks(run_dir, chunks=args.chunks, report=_say)


def _probe_sets(runs_dir: Path, names) -> tuple[str, ...]:
    from pipeline.probes import check_sets

    return check_sets(runs_dir, dict.fromkeys(names or ()))  # each set once, in the order given


def _model_options(args) -> dict:
    """--model-options as a dict, checked against the model's options (before TensorFlow loads)."""
    from pipeline.errors import QuickDrawError
    from pipeline.models import model_spec

    if not args.model_options:
        return {}
    try:
        options = json.loads(args.model_options)
    except ValueError as exc:
        raise QuickDrawError(f"--model-options is not JSON ({exc}); write e.g. "
                             "--model-options '{\"alpha\": 0.5, \"input_size\": 32}'.") from None
    if not isinstance(options, dict):
        raise QuickDrawError("--model-options must be a JSON object, e.g. '{\"width\": 48}'.")
    spec = model_spec(args.model)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise QuickDrawError(f"model '{spec.name}' has no option(s) {', '.join(unknown)} "
                             f"(options: {', '.join(spec.options) or 'none'}).")
    return options


def check_training_data(config) -> None:
    """QuickDrawError unless every class of a new run has a file in a format its representation can
    use under its data folder: one line naming the missing classes, the folder and the format, and
    the `download` command that fetches them (or --data pointing at a folder that has them)."""
    from pipeline.datasets import dataset_spec, source_for
    from pipeline.errors import QuickDrawError
    from pipeline.formats import FORMAT_DIRS

    spec = dataset_spec(config)
    missing = []
    for cls in spec.classes:
        try:
            source_for(spec, cls)
        except QuickDrawError:
            missing.append(cls)
    if not missing:
        return
    root = Path(spec.data_root)
    if root.exists() and not root.is_dir():
        raise QuickDrawError(f"--data {root} is a file; point --data at a folder of Quick, Draw! data "
                             "(numpy_bitmap/<class>.npy, simplified/<class>.ndjson ..., as `download` makes).")
    if spec.source != "auto":
        formats = (spec.source,)
    elif spec.representation == "bitmap28":
        formats = ("numpy_bitmap", "simplified", "raw", "binary")
    else:
        formats = ("simplified", "raw", "binary")
    kind = {1: f"{formats[0]} files", 3: "stroke files (simplified, raw or binary)"}.get(
        len(formats), "bitmap or stroke files (numpy_bitmap, simplified, raw or binary)")
    folders = ", ".join(f"{name}/" for fmt in formats for name in FORMAT_DIRS[fmt])
    where = "it does not exist" if not root.exists() else f"looked in {folders} and the folder itself"
    names = ", ".join(f"'{c}'" for c in missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
    which = (f"class {names}" if len(missing) == 1 else f"classes {names}" if len(missing) == len(spec.classes)
             else f"{len(missing)} of the {len(spec.classes)} classes: {names}")
    them = "it" if len(missing) == 1 else "them"
    command = " ".join(["python -m pipeline download", *(shlex.quote(c) for c in missing), "--format", formats[0],
                        "--per-class", str(spec.per_class), "--data", shlex.quote(str(root))])
    raise QuickDrawError(f"no {kind} for {which} under {root} ({where}); fetch {them} with `{command}`, "
                         f"or point --data at a folder that has {them}.")


def cmd_resume(args) -> int:
    from pipeline.runs import resolve_run

    run_dir = resolve_run(_runs_dir(args), args.run)
    _check_trainable(run_dir)
    if args.probes:
        from pipeline.runs import set_probes

        set_probes(run_dir, _probe_sets(_runs_dir(args), args.probes))
    _tensorflow(args)
    from pipeline.chunks import run_chunks

    return run_chunks(run_dir, chunks=args.chunks, epochs_per_chunk=args.epochs_per_chunk, report=_say)


def _check_trainable(run_dir: Path) -> None:
    """What refuses `resume` of a run, checked before TensorFlow loads: another trainer holds it, it is
    a record without checkpoints, or its data is gone (the message names the download command)."""
    from pipeline import runs
    from pipeline.checkpoints import latest_checkpoint
    from pipeline.datasets import dataset_spec, source_for

    _refuse_if_training(run_dir)
    if latest_checkpoint(run_dir) is None:
        runs.refuse_retraining_a_record(run_dir)
    spec = dataset_spec(runs.read_config(run_dir))
    for cls in spec.classes:
        source_for(spec, cls)


def cmd_branch(args) -> int:
    from pipeline.runs import branch_run, resolve_run

    parent = resolve_run(_runs_dir(args), args.run)
    run_dir = branch_run(parent, args.name, from_epoch=args.from_epoch, learning_rate=args.lr,
                         epochs_per_chunk=args.epochs_per_chunk)
    print(f"branched {parent.name} -> {run_dir.name}")
    if args.chunks:
        _check_trainable(run_dir)
        _tensorflow(args)
        from pipeline.chunks import run_chunks

        return run_chunks(run_dir, chunks=args.chunks, report=_say)
    return 0


def cmd_evaluate(args) -> int:
    """The test split's evaluation goes to runs/<run>/eval.json, a folder's to runs/<run>/evals/; the
    last line printed (and the --progress result record) is the summary, whose `kind` ("test" or
    "folder"), `data` and `file` say which evaluation was written where."""
    from pipeline.evaluate import (
        check_evaluation,
        evaluate_run,
        evaluation_path,
        evaluation_summary,
        format_report,
    )
    from pipeline.runs import resolve_run

    progress = _progress(args)
    run_dir = resolve_run(_runs_dir(args), args.run)
    check_evaluation(run_dir, data=args.data, checkpoint=args.checkpoint)
    progress.progress("loading the model", force=True)
    _tensorflow(args)
    result = evaluate_run(run_dir, data=args.data, checkpoint=args.checkpoint,
                          progress=lambda done, total: progress.progress("evaluating", done=done, total=total))
    written = evaluation_path(run_dir, args.data)
    print(format_report(result))
    print(f"written to {written}")
    summary = {**evaluation_summary(result), "file": str(written.absolute())}
    print(json.dumps(summary))
    progress.result(summary)
    return 0


def cmd_predict(args) -> int:
    """One JSON line per drawing of the file: `index` (0, 1, ... over the drawings), `line` (its line
    in the file), `word` and the `top` guesses. Lines that are not drawings are skipped and counted in
    a note on stderr; a file without any drawing is an error naming the first line's problem."""
    from pipeline.errors import DrawingError
    from pipeline.predict import DrawingLines, check_drawings_file, check_run_model, iter_drawing_lines
    from pipeline.runs import resolve_run

    run_dir = resolve_run(_runs_dir(args), args.run)
    check_run_model(run_dir, args.checkpoint)
    check_drawings_file(args.drawings, run=run_dir.name)
    _tensorflow(args)
    from pipeline.predict import Predictor

    predictor = Predictor.from_run(run_dir, checkpoint=args.checkpoint)
    stats = DrawingLines()
    for line, record, _strokes in iter_drawing_lines(args.drawings, stats):
        try:
            guesses = predictor.predict(record["drawing"], top=args.top)
        except DrawingError as exc:  # parsed, but not a drawing the model can take (e.g. too small)
            stats.reject(line, f"has an unusable \"drawing\": {exc}")
            continue
        print(json.dumps({"index": stats.drawings - 1, "line": line, "word": record.get("word"),
                          "top": [{"label": label, "prob": round(prob, 6)} for label, prob in guesses]}))
    if not stats.drawings:
        raise DrawingError(f"{args.drawings}: {stats.summary()}.")
    if stats.skipped:
        print(f"note: skipped {stats.skipped} of {stats.lines} lines that were not drawings (first: "
              f"{stats.first_problem})", file=sys.stderr)
    return 0


def cmd_probe(args) -> int:
    """Score a probe set with a run's saved model; appends a "saved-model" line to runs/<run>/probes.jsonl
    and prints it: the set's top-1, then one line per drawing."""
    from pipeline.predict import check_run_model
    from pipeline.probes import check_sets
    from pipeline.runs import resolve_run

    runs_dir = _runs_dir(args)
    run_dir = resolve_run(runs_dir, args.run)
    check_run_model(run_dir, args.checkpoint)
    check_sets(runs_dir, [args.set])
    _tensorflow(args)
    from pipeline.probes import score_saved_model

    record = score_saved_model(run_dir, args.set, args.checkpoint, runs_dir=runs_dir)
    right = sum(d["top1"] == d["label"] for d in record["drawings"])
    print(f"{run_dir.name} epoch {record['epoch']} on probe set {args.set}: top-1 {right}/{record['scored']}")
    for d in record["drawings"]:
        prob = "not a class of this run" if d["prob"] is None else f"{d['prob']:.3f}"
        print(f"  {d['id']}  {d['label']}: p = {prob}, guess {d['top1']} ({d['top1_prob']:.3f})")
    print(f"written to {run_dir / 'probes.jsonl'}")
    return 0


def cmd_probe_set(args) -> int:
    """Create or extend runs/probes/<name>.ndjson from a stroke file (no TensorFlow)."""
    from pipeline.probes import create_set_from_file, set_path

    runs_dir = _runs_dir(args)
    probes = create_set_from_file(runs_dir, args.name, args.source, label=args.label, limit=args.limit)
    labels = sorted({p.label for p in probes})
    print(f"probe set {args.name}: {len(probes)} drawing(s) of {', '.join(labels)} in {set_path(runs_dir, args.name)}")
    return 0


def cmd_export(args) -> int:
    from pipeline.export import export_run
    from pipeline.predict import check_run_model
    from pipeline.runs import resolve_run

    progress = _progress(args)
    run_dir = resolve_run(_runs_dir(args), args.run)
    check_run_model(run_dir, args.checkpoint)
    _tensorflow(args)
    result = export_run(run_dir, checkpoint=args.checkpoint,
                        out_dir=args.out, quantize=args.quantize, verify=not args.no_verify, web_dir=args.web,
                        make_default=args.make_default, progress=lambda stage: progress.progress(stage, force=True))
    print(json.dumps(result.to_json(), indent=2))
    progress.result(result.to_json())
    if not result.registered:
        progress.error(result.message)
        return 1
    return 0


def cmd_export_mlflow(args) -> int:
    from pipeline.mlflow_export import default_tracking_uri, export_runs, require_mlflow, ui_command
    from pipeline.runs import read_config, resolve_run

    runs_dir = _runs_dir(args)
    for name in args.runs:  # every run checked, and MLflow found, before MLflow loads
        read_config(resolve_run(runs_dir, name))
    require_mlflow()
    uri = args.tracking_uri or default_tracking_uri(runs_dir)
    if not getattr(args, "verbose", False):  # "Creating initial MLflow database tables..." is noise here
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")

    def report(result):
        notes = []
        if result.replaced:
            notes.append(f"replaces {len(result.replaced)} earlier export(s)")
        if result.parent and result.parent_run_id:
            notes.append(f"child of {result.parent}")
        elif result.parent:
            notes.append(f"parent {result.parent} is not in the store yet: export it to nest this run")
        if result.children:
            notes.append(f"adopted {', '.join(result.children)}")
        print(f"{result.run}: MLflow run {result.run_id} ({result.metrics} metric values, {result.params} params, "
              f"{len(result.artifacts)} artifacts)" + (f"; {'; '.join(notes)}" if notes else ""), flush=True)

    export_runs(runs_dir, args.runs, tracking_uri=uri, experiment=args.experiment, report=report)
    print(f"store: {uri} (experiment {args.experiment}); open it with `{ui_command(uri)}`")
    return 0


def cmd_import_logs(args) -> int:
    from pipeline.errors import QuickDrawError
    from pipeline.seedlogs import WHAT_IMPORTS, import_logs

    if args.keras_model:  # the only part that needs TensorFlow: check the files first
        if not Path(args.dir).exists():
            raise QuickDrawError(f"{args.dir}: no such file or folder; give {WHAT_IMPORTS}.")
        if not Path(args.keras_model).is_file():
            raise QuickDrawError(f"--keras-model {args.keras_model}: no such file; give the seed's saved .h5 model.")
        _tensorflow(args)
    run_dir = import_logs(Path(args.dir), _runs_dir(args), name=args.name, model=args.model,
                          keras_model=args.keras_model, classes_file=args.classes_file)
    print(f"imported {args.dir} as run {run_dir.name}")
    return 0


def cmd_run_job(args) -> int:
    from pipeline.jobs import run_job

    return run_job(Path(args.jobfile))


def cmd_runs(args) -> int:
    from pipeline.runs import list_runs

    rows = list_runs(_runs_dir(args))
    if not rows:
        print(f"no runs in {_runs_dir(args)}")
        return 0
    header = f"{'run':28} {'model':12} {'status':12} {'chunks':>6} {'epochs':>6} {'best val top-3':>14}"
    print(header)
    for r in rows:
        best = "" if r.best_val_top3 is None else f"{r.best_val_top3:.4f}"
        print(f"{r.name:28} {r.model or '?':12} {r.status:12} {r.chunks:>6} {r.epochs:>6} {best:>14}")
    return 0


# ---------------------------------------------------------------- parser
class _Parser(argparse.ArgumentParser):
    """argparse whose mistakes are one line like every other (`error: ...`, exit 2), naming --help."""

    def error(self, message):
        print(f"error: {self.prog}: {message} (`{self.prog} --help` shows the options)", file=sys.stderr)
        raise SystemExit(2)


VERBOSE_HELP = ("show TensorFlow's own start-up and C++ log lines (hidden by default; with --verbose "
                "TF_CPP_MIN_LOG_LEVEL from the environment applies)")


def build_parser() -> argparse.ArgumentParser:
    from pipeline.models import PRECISIONS  # the registry module: no TensorFlow

    parser = _Parser(prog="python -m pipeline", description="Quick Draw Lab: data, training, evaluation and export.")
    parser.add_argument("--progress", metavar="FILE.jsonl",
                        help="also append the command's progress, result and error as JSON lines to FILE "
                             "(what the dashboard's background jobs read; see pipeline/jobs.py)")
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, func, help_text):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func)
        # Also after the command (`train ... --verbose`); SUPPRESS keeps the global flag's value.
        p.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
        return p

    def runs_dir_option(p):
        p.add_argument("--runs-dir", help="folder of runs (default: runs/ or $QUICKDRAW_RUNS)")

    add("classes", cmd_classes, "print the 345 official class names")

    p = add("download", cmd_download, "download classes from Google's public Quick, Draw! bucket (or a mirror / local folder)")
    p.add_argument("classes", nargs="+", metavar="CLASS", help="class names, e.g. cat 'alarm clock' (underscores work too)")
    p.add_argument("--format", choices=FORMATS, default="numpy_bitmap")
    p.add_argument("--per-class", type=_positive_int, help="fetch only the first N drawings of each class")
    p.add_argument("--data", help="data folder (default: data/ or $QUICKDRAW_DATA)")
    p.add_argument("--base-url", help="bucket URL, a mirror, or a local folder laid out like the bucket")

    p = add("simplify", cmd_simplify, "simplify raw ndjson drawings the way Google made the simplified set")
    p.add_argument("input", metavar="RAW.ndjson")
    p.add_argument("output", metavar="OUT.ndjson")

    p = add("rasterize", cmd_rasterize, "render simplified or raw ndjson drawings to a uint8 .npy of (N, size*size) rows")
    p.add_argument("input", metavar="IN.ndjson")
    p.add_argument("output", metavar="OUT.npy")
    p.add_argument("--size", type=int, default=28, help="output side in pixels, 28-256 (default 28: Google's numpy_bitmap)")
    p.add_argument("--colour-coded", action="store_true", help="stroke order as intensity (first strokes strongest)")

    p = add("train", cmd_train, "create a run and train it in chunks")
    p.add_argument("--name", required=True)
    p.add_argument("--model", required=True, help="cnn, mobilenet, or one of ours (see `pipeline.models.REGISTRY`)")
    p.add_argument("--classes", nargs="+", required=True, metavar="CLASS")
    p.add_argument("--per-class", type=_positive_int, required=True, help="maximum drawings per class")
    p.add_argument("--epochs-per-chunk", type=_positive_int, default=10)
    p.add_argument("--chunks", type=_positive_int, default=1, help="chunks to train now (default 1)")
    p.add_argument("--max-epochs", type=_positive_int, help="stop the run for good after this many epochs")
    p.add_argument("--representation", choices=("bitmap28", "strokes"), default="bitmap28")
    p.add_argument("--image-size", type=int, help="input side for the strokes representation (default 64)")
    p.add_argument("--source", choices=("auto", "numpy_bitmap", "simplified", "raw"), default="auto")
    p.add_argument("--data", help="data folder (default: data/ or $QUICKDRAW_DATA)")
    p.add_argument("--batch-size", type=_positive_int, default=256)
    p.add_argument("--lr", type=float, help="initial learning rate (default: the model's, 0.002 for cnn)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-every-batches", type=_positive_int, help="mid-epoch save interval (default: about 5 minutes)")
    p.add_argument("--strategy", choices=("default", "mirrored", "multiworker"), default="default")
    p.add_argument("--model-options", help="JSON of model options, e.g. '{\"alpha\": 0.5, \"input_size\": 32}'")
    p.add_argument("--probes", nargs="+", metavar="SET", help="probe sets (runs/probes/SET.ndjson) to score at "
                   "each epoch end into runs/NAME/probes.jsonl")
    recipe = p.add_argument_group("recipe (recorded in config.json)")
    recipe.add_argument("--schedule", choices=("plateau", "cosine"), default="plateau",
                        help="plateau: halve the rate when val loss stalls (default); cosine: per-batch cosine "
                             "decay over --max-epochs")
    recipe.add_argument("--warmup-epochs", type=float, default=0.0, help="linear warmup before the cosine decay")
    recipe.add_argument("--label-smoothing", type=float, default=0.0, help="e.g. 0.1")
    recipe.add_argument("--weight-decay", type=float, default=0.0, help="decoupled weight decay (AdamW), e.g. 1e-4")
    recipe.add_argument("--augment", action="store_true",
                        help="random small shifts, scales and rotations of each training image")
    recipe.add_argument("--augment-shift", type=float, default=0.08, help="largest shift, fraction of the side")
    recipe.add_argument("--augment-scale", type=float, default=0.12, help="largest relative scale change, each axis")
    recipe.add_argument("--augment-rotate", type=float, default=12.0, help="largest rotation in degrees")
    recipe.add_argument("--init-from", metavar="RUN|MODEL.keras|MODEL.h5",
                        help="warm start: start from another model's weights with a fresh optimizer and schedule")
    recipe.add_argument("--resume-mode", choices=("exact", "weights"), default="exact",
                        help="exact: every chunk continues the optimizer and schedule (default); weights: every "
                             "chunk restarts them from the saved weights, as the seed's notebook did")
    recipe.add_argument("--precision", choices=("auto", *PRECISIONS), default="auto",
                        help="the arithmetic of training; auto (default): mixed_bfloat16 for cnn and qdnet where "
                             "the CPU has bfloat16 instructions (AVX512-BF16, AMX), else float32. Saved models "
                             "are float32")
    runs_dir_option(p)

    p = add("resume", cmd_resume, "continue a run from its last saved point (mid-epoch included)")
    p.add_argument("run", metavar="NAME")
    p.add_argument("--chunks", type=_positive_int, default=None,
                   help="chunks to train, counting the rest of a stopped chunk (default: to the end of the run's "
                        "plan, or one more chunk when the plan is done)")
    p.add_argument("--epochs-per-chunk", type=_positive_int)
    p.add_argument("--probes", nargs="+", metavar="SET", help="score these probe sets at each epoch end from now on "
                   "(replaces the run's list)")
    runs_dir_option(p)

    p = add("branch", cmd_branch, "start a new run from a saved point of another")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--name", required=True)
    p.add_argument("--from-epoch", type=_positive_int, help="epoch to branch from (default: the latest)")
    p.add_argument("--lr", type=float, help="learning rate for the new run")
    p.add_argument("--epochs-per-chunk", type=_positive_int)
    p.add_argument("--chunks", type=int, default=0, help="chunks to train right away (default 0)")
    runs_dir_option(p)

    p = add("evaluate", cmd_evaluate, "top-1, top-3, MAP@3, per-class accuracy and confusion matrix")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--data", help="folder of <class>.npy or <class>.ndjson files (default: the run's test split)")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best")
    runs_dir_option(p)

    p = add("predict", cmd_predict, "top-k guesses for each drawing of an ndjson file")
    p.add_argument("run", metavar="RUN")
    p.add_argument("drawings", metavar="DRAWINGS.ndjson")
    p.add_argument("--top", type=_positive_int, default=5)
    p.add_argument("--checkpoint", choices=("best", "last"), default="best")
    runs_dir_option(p)

    p = add("probe", cmd_probe, "score a probe set (runs/probes/SET.ndjson) with a run's saved model, into "
            "runs/RUN/probes.jsonl")
    p.add_argument("run", metavar="RUN")
    p.add_argument("set", metavar="SET", help="a probe set's name (`python -m pipeline probe-set` makes one)")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best",
                   help="best: model/model.keras (its epoch from model/meta.json); last: the latest checkpoint")
    runs_dir_option(p)

    p = add("probe-set", cmd_probe_set, "create (or extend) a probe set runs/probes/NAME.ndjson from a stroke file")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--from", dest="source", required=True, metavar="DRAWINGS.ndjson",
                   help="Google's simplified or raw .ndjson (e.g. the dataset's simplified/cat.ndjson)")
    p.add_argument("--label", help="the class every drawing should be (default: each line's \"word\")")
    p.add_argument("--limit", type=_positive_int, help="take only the first N drawings")
    runs_dir_option(p)

    p = add("export", cmd_export, "export a run to a TensorFlow.js graph model for web/")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best")
    p.add_argument("--out", help="output folder (default WEB/models/<run>)")
    p.add_argument("--web", metavar="WEB", help="the web page's folder (default $QUICKDRAW_WEB, else this "
                                               "repository's web/)")
    p.add_argument("--quantize", choices=("none", "float16", "uint8"), default="none")
    p.add_argument("--no-verify", action="store_true", help="skip the headless-Chromium comparison with Keras")
    p.add_argument("--make-default", action="store_true", help="make it the page's default model (index.json)")
    runs_dir_option(p)

    p = add("export-mlflow", cmd_export_mlflow, "write runs into an MLflow tracking store (needs "
            "`pip install -r requirements-mlflow.txt`); re-exporting a run replaces its MLflow run")
    p.add_argument("runs", nargs="+", metavar="RUN")
    p.add_argument("--tracking-uri", metavar="URI",
                   help="MLflow tracking URI (default: sqlite:///RUNS/.mlflow/mlflow.db, artifacts beside it; "
                        "`mlflow ui --backend-store-uri sqlite:///runs/.mlflow/mlflow.db` opens it)")
    p.add_argument("--experiment", default="quick-draw-lab", help="MLflow experiment (default quick-draw-lab)")
    runs_dir_option(p)

    p = add("import-logs", cmd_import_logs, "turn a folder of Keras CSVLogger files (train_log.csv, train_log_1.csv, "
            "...), a Jupyter notebook (.ipynb) or a text log of model.fit's output into a chunked run")
    p.add_argument("dir", metavar="PATH", help="CSVLogger folder, .ipynb notebook or text log: one chunk per file "
                   "or per fit call")
    p.add_argument("--name", required=True)
    p.add_argument("--model", default="cnn")
    p.add_argument("--keras-model", metavar="FILE.h5", help="the seed's saved Keras model, to test and export it")
    p.add_argument("--classes-file", help="text file of class names in the model's output order")
    runs_dir_option(p)

    p = add("run-job", cmd_run_job, "run a background job's commands one after another (started by pipeline.jobs)")
    p.add_argument("jobfile", metavar="JOB.json")

    p = add("runs", cmd_runs, "list runs with status and best metrics")
    runs_dir_option(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Before anything imports TensorFlow: its C++ start-up notices are noise on a command line.
    quiet_tensorflow_environment(args.verbose)
    # With --progress, a failure is also an error record of the progress file (for the dashboard).
    report = _progress(args) if args.progress else None
    if report is not None:
        report.start()
    try:
        return int(args.func(args) or 0)
    except QuickDrawError as exc:
        release_native_stderr()
        message = " ".join(str(exc).splitlines())  # one line, whatever the message holds
        print(f"error: {message}", file=sys.stderr)
        if report is not None:
            report.error(message)
        return 2
    except FileNotFoundError as exc:
        print(f"error: file not found: {exc.filename or exc}", file=sys.stderr)
        if report is not None:
            report.error(f"file not found: {exc.filename or exc}")
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        release_native_stderr(replay=True)  # a bug: what TensorFlow said may help, before the traceback
        if report is not None:  # a bug: the traceback follows in the log
            report.error(f"{type(exc).__name__}: {exc}")
        raise
    finally:
        release_native_stderr()
