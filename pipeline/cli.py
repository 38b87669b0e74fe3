"""The command line: `python -m pipeline COMMAND ...` (`--help` on every command).

The only module that parses arguments. Handlers import what they use lazily, so `--help` and the
data commands start without loading TensorFlow. User mistakes exit 2 with one readable line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
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
    from pipeline.chunks import run_chunks

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
        model_options=json.loads(args.model_options) if args.model_options else {},
        max_epochs=args.max_epochs,
        schedule=args.schedule, warmup_epochs=args.warmup_epochs, label_smoothing=args.label_smoothing,
        weight_decay=args.weight_decay, augment=args.augment, augment_shift=args.augment_shift,
        augment_scale=args.augment_scale, augment_rotate=args.augment_rotate, init_from=args.init_from,
        resume_mode=args.resume_mode,
    )
    if config.init_from:
        from pipeline.checkpoints import init_source_path

        init_source_path(config.init_from, _runs_dir(args))  # a wrong source fails before the run exists
    run_dir = runs.create_run(config, _runs_dir(args))
    return run_chunks(run_dir, chunks=args.chunks, report=_say)


def cmd_resume(args) -> int:
    from pipeline.chunks import run_chunks
    from pipeline.runs import resolve_run

    run_dir = resolve_run(_runs_dir(args), args.run)
    return run_chunks(run_dir, chunks=args.chunks, epochs_per_chunk=args.epochs_per_chunk, report=_say)


def cmd_branch(args) -> int:
    from pipeline.chunks import run_chunks
    from pipeline.runs import branch_run, resolve_run

    parent = resolve_run(_runs_dir(args), args.run)
    run_dir = branch_run(parent, args.name, from_epoch=args.from_epoch, learning_rate=args.lr,
                         epochs_per_chunk=args.epochs_per_chunk)
    print(f"branched {parent.name} -> {run_dir.name}")
    if args.chunks:
        return run_chunks(run_dir, chunks=args.chunks, report=_say)
    return 0


def cmd_evaluate(args) -> int:
    from pipeline.evaluate import evaluate_run, evaluation_summary, format_report
    from pipeline.runs import resolve_run

    progress = _progress(args)
    run_dir = resolve_run(_runs_dir(args), args.run)
    progress.progress("loading the model", force=True)
    result = evaluate_run(run_dir, data=args.data, checkpoint=args.checkpoint,
                          progress=lambda done, total: progress.progress("evaluating", done=done, total=total))
    print(format_report(result))
    summary = evaluation_summary(result)
    print(json.dumps(summary))
    progress.result(summary)
    return 0


def cmd_predict(args) -> int:
    from pipeline.formats import iter_ndjson
    from pipeline.predict import Predictor
    from pipeline.runs import resolve_run

    predictor = Predictor.from_run(resolve_run(_runs_dir(args), args.run), checkpoint=args.checkpoint)
    for i, record in enumerate(iter_ndjson(args.drawings)):
        guesses = predictor.predict(record["drawing"], top=args.top)
        print(json.dumps({"index": i, "word": record.get("word"),
                          "top": [{"label": label, "prob": round(prob, 6)} for label, prob in guesses]}))
    return 0


def cmd_export(args) -> int:
    from pipeline.export import export_run
    from pipeline.runs import resolve_run

    progress = _progress(args)
    result = export_run(resolve_run(_runs_dir(args), args.run), checkpoint=args.checkpoint,
                        out_dir=args.out, quantize=args.quantize, verify=not args.no_verify,
                        make_default=args.make_default, progress=lambda stage: progress.progress(stage, force=True))
    print(json.dumps(result.to_json(), indent=2))
    progress.result(result.to_json())
    if not result.registered:
        progress.error(result.message)
        return 1
    return 0


def cmd_import_logs(args) -> int:
    from pipeline.seedlogs import import_logs

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
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description="Quick Draw Lab: data, training, evaluation and export.")
    parser.add_argument("--progress", metavar="FILE.jsonl",
                        help="also append the command's progress, result and error as JSON lines to FILE "
                             "(what the dashboard's background jobs read; see pipeline/jobs.py)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, func, help_text):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func)
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
    runs_dir_option(p)

    p = add("resume", cmd_resume, "continue a run from its last saved point (mid-epoch included)")
    p.add_argument("run", metavar="NAME")
    p.add_argument("--chunks", type=_positive_int, default=1)
    p.add_argument("--epochs-per-chunk", type=_positive_int)
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

    p = add("export", cmd_export, "export a run to a TensorFlow.js graph model for web/")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best")
    p.add_argument("--out", help="output folder (default web/models/<run>)")
    p.add_argument("--quantize", choices=("none", "float16", "uint8"), default="none")
    p.add_argument("--no-verify", action="store_true", help="skip the headless-Chromium comparison with Keras")
    p.add_argument("--make-default", action="store_true", help="make it the page's default model (index.json)")
    runs_dir_option(p)

    p = add("import-logs", cmd_import_logs, "turn a folder of Keras CSVLogger files (train_log.csv, train_log_1.csv, ...) into a chunked run")
    p.add_argument("dir", metavar="DIR")
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
    # TensorFlow's C++ notices (oneDNN, CPU features) are noise on a command line; errors still show.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    # With --progress, a failure is also an error record of the progress file (for the dashboard).
    report = _progress(args) if args.progress else None
    if report is not None:
        report.start()
    try:
        return int(args.func(args) or 0)
    except QuickDrawError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if report is not None:
            report.error(str(exc))
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
        if report is not None:  # a bug: the traceback follows in the log
            report.error(f"{type(exc).__name__}: {exc}")
        raise
