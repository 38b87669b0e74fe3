"""Chunked, resumable training that loses nothing: `python -m pipeline train|resume|branch`.

A chunk is one trainer invocation of up to `epochs_per_chunk` epochs. Everything needed to carry on
exactly is saved at the end of every epoch and every `save_every_batches` batches (default: about
every 5 minutes): model and optimizer variables, the ReduceLROnPlateau state (best value, wait
counter, current rate - what the seed lost on every resume), epoch and batch position, the partial
epoch's metric sums, best-epoch and early-stopping state, and the history. The data order of an
epoch is a pure function of (seed, epoch), so a resume mid-epoch replays exactly the batches that
were left. SIGINT/SIGTERM stop at the end of the current batch after saving; `kill -9` loses at
most the batches since the last save.

The loop is our own (a `tf.function` step run through `strategy.run`), not `model.fit`: Keras 3's
fit does not work under MultiWorkerMirroredStrategy on TF 2.19, and our own loop makes exact
mid-epoch resume straightforward.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

from pipeline import checkpoints as ckpt
from pipeline import recipe, runs
from pipeline.errors import QuickDrawError, RunError
from pipeline.models import model_spec
from pipeline.runs import RunConfig

# How often status.json is refreshed during an epoch (the dashboard's live view reads it);
# $QUICKDRAW_STATUS_INTERVAL overrides it (0: after every batch).
STATUS_INTERVAL_SECONDS = float(os.environ.get("QUICKDRAW_STATUS_INTERVAL", "2.0"))
EXIT_INTERRUPTED = {signal.SIGINT: 130, signal.SIGTERM: 143}


# ---------------------------------------------------------------- configuration
def library_versions() -> dict:
    import keras
    import tensorflow as tf

    return {"python": sys.version.split()[0], "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": np.__version__}


def make_config(*, name: str, model: str, classes: tuple[str, ...], per_class: int,
                representation: str = "bitmap28", image_size: int | None = None, source: str = "auto",
                data_root: str | None = None, epochs_per_chunk: int = 10, batch_size: int = 256,
                learning_rate: float | None = None, seed: int = 0, save_every_batches: int | None = None,
                strategy: str = "default", model_options: dict | None = None, max_epochs: int | None = None,
                **extra) -> RunConfig:
    """A validated RunConfig with the model's defaults filled in."""
    from pipeline.formats import data_root as resolve_data_root

    runs.validate_run_name(name)
    spec = model_spec(model)
    if len(set(classes)) != len(classes):
        raise QuickDrawError("the class list has duplicates; name each class once.")
    if len(classes) < 2:
        raise QuickDrawError("train needs at least 2 classes.")
    if representation == "bitmap28":
        size = 28
    elif representation == "strokes":
        size = int(image_size or 64)
        if not 28 <= size <= 256:
            raise QuickDrawError(f"--image-size must be between 28 and 256, got {size}.")
    else:
        raise QuickDrawError(f"unknown representation '{representation}'; use bitmap28 or strokes.")
    config = RunConfig(
        name=name, model=model, classes=tuple(classes), per_class=int(per_class),
        representation=representation, image_size=size, source=source,
        data_root=str(resolve_data_root(data_root)), epochs_per_chunk=int(epochs_per_chunk),
        batch_size=int(batch_size), learning_rate=float(learning_rate or spec.learning_rate), seed=int(seed),
        save_every_batches=save_every_batches, strategy=strategy, model_options=dict(model_options or {}),
        max_epochs=max_epochs, created=runs.now_iso(), versions=library_versions(),
        **{"split_scheme": "rows64", **extra},
    )
    recipe.validate(config)
    return config


def create_run(config: RunConfig, runs_dir: Path | str) -> Path:
    """Create runs/<name>/ with config.json, classes.json and a `created` event."""
    run_dir = runs.run_path(runs_dir, config.name)
    if (run_dir / "config.json").exists():
        raise RunError(f"run '{config.name}' already exists in {runs_dir}; `python -m pipeline resume "
                       f"{config.name}` continues it, or pick another --name.")
    run_dir.mkdir(parents=True, exist_ok=True)
    runs.write_config(run_dir, config)
    runs.write_history(run_dir, [])
    runs.append_event(run_dir, "created", model=config.model, classes=len(config.classes))
    runs.write_status(run_dir, "created")
    return run_dir


def branch_run(parent_dir: Path, name: str, from_epoch: int | None = None, learning_rate: float | None = None,
               epochs_per_chunk: int | None = None) -> Path:
    """A new run starting from an epoch-end checkpoint of another, remembering its parent."""
    parent_dir = Path(parent_dir)
    parent = runs.read_config(parent_dir)
    saved = ckpt.epoch_checkpoints(parent_dir)
    if not saved:
        raise RunError(f"run '{parent_dir.name}' has no epoch checkpoint to branch from; train it first.")
    epoch = from_epoch or max(saved)
    if epoch not in saved:
        raise RunError(f"run '{parent_dir.name}' has no checkpoint at epoch {epoch}; saved epochs: "
                       f"{', '.join(map(str, saved))}.")
    model_values, optimizer_values, state = ckpt.read_checkpoint(saved[epoch])
    config = dataclasses.replace(
        parent, name=runs.validate_run_name(name), parent={"run": parent_dir.name, "epoch": epoch},
        learning_rate=learning_rate or parent.learning_rate,
        epochs_per_chunk=epochs_per_chunk or parent.epochs_per_chunk,
        created=runs.now_iso(), versions=library_versions(),
    )
    run_dir = create_run(config, parent_dir.parent)
    state = dict(state)
    state["history"] = [row for row in state.get("history", []) if row["epoch"] <= epoch]
    if learning_rate:
        state["schedule"] = dict(state["schedule"], lr=float(learning_rate), wait=0)
    state["early_stopping"] = dict(state.get("early_stopping", {}), stopped=False, wait=0)
    ckpt.atomic_write_bytes(ckpt.epoch_checkpoint_path(run_dir, epoch),
                            ckpt._pack(model_values, optimizer_values, state))
    runs.write_history(run_dir, state["history"])
    runs.append_event(run_dir, "branch", parent=parent_dir.name, epoch=epoch, lr=state["schedule"]["lr"])
    return run_dir


# ---------------------------------------------------------------- state
def initial_state(config: RunConfig) -> dict:
    return {
        "epoch": 0, "batch": 0, "partial": None,
        "schedule": {"lr": config.learning_rate, "best": math.inf, "wait": 0},
        "early_stopping": {"best": -math.inf, "wait": 0, "stopped": False},
        "best": None, "history": [], "seed": config.seed,
    }


# ---------------------------------------------------------------- the trainer
class _StopFlag:
    """Set by SIGINT/SIGTERM; the loop checks it after each batch."""

    def __init__(self):
        self.signum: int | None = None
        self._previous = {}

    def install(self):
        if os.getpid() != getattr(self, "_pid", os.getpid()):
            return self
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. inside a test runner thread)
                pass
        return self

    def _handle(self, signum, _frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C means now
        self.signum = signum

    def restore(self):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _make_strategy(name: str):
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise QuickDrawError("--strategy multiworker needs TF_CONFIG describing the cluster (see README, "
                                 "'Several machines').")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise QuickDrawError(f"unknown strategy '{name}'; use default, mirrored or multiworker.")


def is_chief() -> bool:
    """In a multi-worker cluster only the chief (worker 0) writes the run record."""
    import json

    tf_config = os.environ.get("TF_CONFIG")
    if not tf_config:
        return True
    task = json.loads(tf_config).get("task", {})
    return task.get("type", "worker") in ("chief", "worker") and int(task.get("index", 0)) == 0


def configure_runtime() -> None:
    """Opt-in determinism ($QUICKDRAW_DETERMINISTIC=1) and logical CPU devices for MirroredStrategy
    on one CPU ($QUICKDRAW_LOGICAL_CPUS=N); both must happen before TensorFlow runs anything."""
    import tensorflow as tf

    if os.environ.get("QUICKDRAW_DETERMINISTIC") == "1":
        tf.config.experimental.enable_op_determinism()
    logical = int(os.environ.get("QUICKDRAW_LOGICAL_CPUS", "0") or 0)
    if logical > 1:
        cpus = tf.config.list_physical_devices("CPU")
        try:
            tf.config.set_logical_device_configuration(
                cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(logical)])
        except RuntimeError:
            pass  # already initialised: keep what exists


def dataset_spec(config: RunConfig):
    from pipeline.datasets import DatasetSpec

    return DatasetSpec(
        classes=tuple(config.classes), per_class=config.per_class, representation=config.representation,
        image_size=config.image_size, source=config.source, data_root=config.data_root,
        val_fraction=config.val_fraction, test_fraction=config.test_fraction, time_channel=config.time_channel,
        split_scheme=config.split_scheme,
    )


def cache_root() -> Path:
    return Path(os.environ.get("QUICKDRAW_CACHE", "data/cache"))


def load_dataset(config: RunConfig):
    from pipeline.datasets import build_cache

    return build_cache(dataset_spec(config), cache_root())


def _silent(line: str, live: bool = False) -> None:
    """The progress reporter when nobody listens."""


def refuse_retraining_a_record(run_dir: Path) -> None:
    """A run with recorded epochs but no checkpoint (a cloned run: checkpoints stay out of git; an
    imported seed log) must not silently start again from epoch 1 and overwrite its history."""
    recorded = runs.read_history(run_dir)
    if recorded:
        raise RunError(
            f"run '{run_dir.name}' has {len(recorded)} epoch(s) in history.csv but no training checkpoint in "
            f"{run_dir / 'checkpoints'} (checkpoints stay out of git, and imported logs have none): it can be "
            "evaluated, predicted with and exported, not trained further. Nothing was changed; to train the "
            "same settings again, start a new run with `python -m pipeline train --name NEW ...`.")


class Trainer:
    """One chunk of training of one run. Use `run_chunks`, which holds the run's lock."""

    def __init__(self, run_dir: Path, chunk: int, epochs_per_chunk: int | None, stop: _StopFlag,
                 report=_silent):
        import keras
        import tensorflow as tf

        from pipeline.datasets import epoch_order  # noqa: F401 - imported here to fail early
        from pipeline.models import build_model, input_shape_for

        self.tf, self.keras = tf, keras
        self.run_dir = Path(run_dir)
        self.chief = is_chief()
        # Human-readable progress lines (the CLI prints them; live=True marks a transient batch
        # line a terminal may overwrite); run_chunks passes _silent to non-chief workers.
        self.report = report
        self.config = runs.read_config(run_dir)
        if ckpt.latest_checkpoint(self.run_dir) is None:
            refuse_retraining_a_record(self.run_dir)
        self.chunk = chunk
        self.epochs_per_chunk = epochs_per_chunk or self.config.epochs_per_chunk
        self.stop = stop
        self.strategy = _make_strategy(self.config.strategy)
        self.dataset = load_dataset(self.config)
        self.train_indices = self.dataset.indices("train")
        self.val_indices = self.dataset.indices("val")
        if len(self.train_indices) == 0 or len(self.val_indices) == 0:
            raise QuickDrawError("the dataset has no training or validation drawings; raise --per-class.")

        keras.utils.set_random_seed(self.config.seed)
        shape = input_shape_for(self.config.representation, self.config.image_size, self.config.time_channel)
        with self.strategy.scope():
            self.model = build_model(self.config.model, len(self.config.classes), shape, **self.config.model_options)
            self.optimizer = recipe.make_optimizer(self.config)
            self.optimizer.build(self.model.trainable_variables)

        saved = ckpt.latest_checkpoint(self.run_dir)
        if saved is not None:
            model_values, optimizer_values, self.state = ckpt.read_checkpoint(saved)
            if self.config.resume_mode == "weights":
                # The seed's way of resuming: the saved model, a new optimizer, a new plateau schedule.
                ckpt.restore(self.model, None, model_values, [])
                self.state["schedule"] = initial_state(self.config)["schedule"]
            else:
                ckpt.restore(self.model, self.optimizer, model_values, optimizer_values)
            self.resumed_from = saved.name
        else:
            self.state = initial_state(self.config)
            self.resumed_from = None
            if self.config.init_from:
                ckpt.warm_start(self.model, self.config.init_from, Path(self.run_dir).parent)
        self._build_steps()
        self.tb_writer = tf.summary.create_file_writer(str(self.run_dir / "tb")) if self.chief else None

    # -------------------------------------------------------------- compiled steps
    def _build_steps(self):
        tf, keras = self.tf, self.keras
        model, optimizer, strategy = self.model, self.optimizer, self.strategy

        def metrics(labels, probs):
            labels = tf.cast(labels, tf.int32)
            per_example = keras.losses.sparse_categorical_crossentropy(labels, probs)
            top1 = tf.cast(tf.math.in_top_k(labels, probs, 1), tf.float32)
            top3 = tf.cast(tf.math.in_top_k(labels, probs, 3), tf.float32)
            return per_example, top1, top3

        cfg = self.config
        num_classes = len(cfg.classes)

        def train_replica(images, labels, global_batch, key):
            images = tf.cast(images, tf.float32)
            if cfg.augment:
                images = recipe.augment_images(images, key, cfg.augment_shift, cfg.augment_scale, cfg.augment_rotate)
            with tf.GradientTape() as tape:
                probs = model(images, training=True)
                per_example, top1, top3 = metrics(labels, probs)
                if cfg.label_smoothing:
                    per_example = recipe.training_loss(tf.cast(labels, tf.int32), probs, num_classes,
                                                       cfg.label_smoothing)
                loss = tf.reduce_sum(per_example) / global_batch
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            return tf.stack([tf.reduce_sum(per_example), tf.reduce_sum(top1), tf.reduce_sum(top3),
                             tf.cast(tf.shape(labels)[0], tf.float32)])

        def eval_replica(images, labels):
            probs = model(tf.cast(images, tf.float32), training=False)
            per_example, top1, top3 = metrics(labels, probs)
            return tf.stack([tf.reduce_sum(per_example), tf.reduce_sum(top1), tf.reduce_sum(top3),
                             tf.cast(tf.shape(labels)[0], tf.float32)])

        @tf.function
        def train_step(images, labels, global_batch, key):
            sums = strategy.run(train_replica, args=(images, labels, global_batch, key))
            return strategy.reduce(tf.distribute.ReduceOp.SUM, sums, axis=None)

        @tf.function
        def eval_step(images, labels):
            sums = strategy.run(eval_replica, args=(images, labels))
            return strategy.reduce(tf.distribute.ReduceOp.SUM, sums, axis=None)

        self.train_step, self.eval_step = train_step, eval_step

    def _feed(self, order, batch_size: int, start_batch: int = 0):
        from pipeline.datasets import batches, iter_batches

        if self.config.strategy == "default":
            return iter_batches(self.dataset, order, batch_size, start_batch)
        return self._distribute(batches(self.dataset, order, batch_size, start_batch))

    def _distribute(self, dataset):
        tf = self.tf
        if self.config.strategy == "default":
            return dataset
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return self.strategy.experimental_distribute_dataset(dataset.with_options(options))

    # -------------------------------------------------------------- saving
    def _save(self, path: Path) -> None:
        if self.chief:
            self.state["saved_at"] = time.time()
            self.state["chunk"] = self.chunk
            ckpt.write_checkpoint(path, self.model, self.optimizer, self.state)

    def _status(self, state: str, **fields) -> None:
        if self.chief:
            runs.write_status(self.run_dir, state, pid=os.getpid(), chunk=self.chunk,
                              epoch=self.state["epoch"] + (1 if state == "running" else 0),
                              batch=self.state["batch"], **fields)

    # -------------------------------------------------------------- the loop
    def run(self) -> int:
        from pipeline.datasets import epoch_order

        cfg, state = self.config, self.state
        if self.chief:
            runs.write_history(self.run_dir, state["history"])  # repair: history follows the checkpoint
        start_epochs = state["epoch"]
        target = start_epochs + self.epochs_per_chunk
        if state["batch"] > 0:
            target = start_epochs + self.epochs_per_chunk  # the partial epoch counts as this chunk's first
        if cfg.max_epochs:
            target = min(target, cfg.max_epochs)
        if state["early_stopping"].get("stopped") or (cfg.max_epochs and start_epochs >= cfg.max_epochs):
            self._status("finished", message="the run is complete", run_complete=True)
            return 0
        batch_size = cfg.batch_size
        batches_per_epoch = math.ceil(len(self.train_indices) / batch_size)
        save_every = cfg.save_every_batches
        last_save = time.monotonic()
        last_status = 0.0
        batch_seconds = []
        chunk_started = time.monotonic()
        chunk_batches_total = (target - start_epochs) * batches_per_epoch - state["batch"]
        chunk_batches_done = 0

        while state["epoch"] < target:
            epoch = state["epoch"] + 1
            partial = state["partial"] or {"loss": 0.0, "top1": 0.0, "top3": 0.0, "n": 0.0, "started": time.time()}
            state["partial"] = partial
            order = epoch_order(self.train_indices, cfg.seed, epoch)
            data = self._feed(order, batch_size, start_batch=state["batch"])
            for images, labels in data:
                t0 = time.monotonic()
                state["schedule"]["lr"] = recipe.batch_lr(cfg, state["schedule"], epoch, state["batch"],
                                                          batches_per_epoch)
                self.optimizer.learning_rate.assign(state["schedule"]["lr"])
                global_batch = self.tf.constant(self._batch_len(labels), self.tf.float32)
                augmentation_key = recipe.augmentation_seed(cfg.seed, epoch, state["batch"])
                sums = self.train_step(images, labels, global_batch, augmentation_key).numpy()
                for key, value in zip(("loss", "top1", "top3", "n"), sums, strict=True):
                    partial[key] += float(value)
                state["batch"] += 1
                chunk_batches_done += 1
                batch_seconds.append(time.monotonic() - t0)
                now = time.monotonic()
                due = (save_every and state["batch"] % save_every == 0) or (
                    not save_every and now - last_save >= cfg.save_every_seconds)
                if self.stop.signum is not None or (due and state["batch"] < batches_per_epoch):
                    self._save(ckpt.partial_checkpoint_path(self.run_dir))
                    last_save = now
                    if self.chief:
                        runs.append_event(self.run_dir, "checkpoint", chunk=self.chunk, epoch=epoch, batch=state["batch"])
                if self.stop.signum is not None:
                    return self._stopped(epoch)
                if now - last_status >= STATUS_INTERVAL_SECONDS:
                    last_status = now
                    rate = (now - chunk_started) / max(chunk_batches_done, 1)
                    eta = round(rate * (chunk_batches_total - chunk_batches_done), 1)
                    metrics = self._partial_metrics(partial)
                    self._status("running", batches_per_epoch=batches_per_epoch, epochs_target=target,
                                 eta_seconds=eta, metrics=metrics)
                    self.report(f"epoch {epoch} batch {state['batch']}/{batches_per_epoch}  loss {metrics['loss']:.4f}"
                                f"  acc {metrics['accuracy']:.4f}  top3 {metrics['top3']:.4f} | chunk ETA {eta:.0f} s",
                                live=True)
            self._end_epoch(epoch, partial)
            last_save = time.monotonic()
            if state["early_stopping"].get("stopped"):
                break
        complete = bool(state["early_stopping"].get("stopped") or (cfg.max_epochs and state["epoch"] >= cfg.max_epochs))
        if not self.chief:
            # Non-chief workers keep no run record; they leave their final replica weights so a
            # cluster can be checked for agreement (tests/test_distributed.py).
            np.savez(self.run_dir / "final_weights.npz", **{f"w{i}": v.numpy() for i, v in enumerate(self.model.variables)})
        self._status("finished", run_complete=complete, metrics=state["history"][-1] if state["history"] else None)
        return 0

    @staticmethod
    def _batch_len(labels) -> int:
        if hasattr(labels, "values"):  # PerReplica under a distribution strategy
            return int(sum(int(v.shape[0]) for v in labels.values))
        return int(labels.shape[0])

    @staticmethod
    def _partial_metrics(partial: dict) -> dict:
        n = max(partial["n"], 1.0)
        return {"loss": partial["loss"] / n, "accuracy": partial["top1"] / n, "top3": partial["top3"] / n}

    def _evaluate(self, indices) -> dict:
        sums = np.zeros(4)
        for images, labels in self._feed(np.asarray(indices), 1024):
            sums += self.eval_step(images, labels).numpy()
        n = max(sums[3], 1.0)
        return {"loss": float(sums[0] / n), "accuracy": float(sums[1] / n), "top3": float(sums[2] / n)}

    def _end_epoch(self, epoch: int, partial: dict) -> None:
        cfg, state = self.config, self.state
        train_metrics = self._partial_metrics(partial)
        val = self._evaluate(self.val_indices)
        row = {
            "epoch": epoch, "chunk": self.chunk, "started": round(partial["started"], 3), "ended": round(time.time(), 3),
            "loss": train_metrics["loss"], "accuracy": train_metrics["accuracy"], "top3": train_metrics["top3"],
            "val_loss": val["loss"], "val_accuracy": val["accuracy"], "val_top3": val["top3"],
            "lr": state["schedule"]["lr"],
        }
        state["history"] = [r for r in state["history"] if r["epoch"] < epoch] + [row]
        state["epoch"], state["batch"], state["partial"] = epoch, 0, None
        if cfg.schedule == "plateau":
            state["schedule"] = recipe.plateau_step(state["schedule"], val["loss"], cfg.lr_factor, cfg.lr_patience,
                                                    cfg.lr_min)
        improved = state["best"] is None or (val["top3"], -val["loss"]) > (state["best"]["val_top3"], -state["best"]["val_loss"])
        if improved:
            state["best"] = {"epoch": epoch, "val_top3": val["top3"], "val_accuracy": val["accuracy"], "val_loss": val["loss"]}
        stopper = state["early_stopping"]
        if val["top3"] > stopper["best"]:
            stopper["best"], stopper["wait"] = val["top3"], 0
        else:
            stopper["wait"] += 1
            if cfg.early_stopping_patience and stopper["wait"] >= cfg.early_stopping_patience:
                stopper["stopped"] = True
        self.report(epoch_line(row, best=improved))
        if not self.chief:
            return
        # Order matters for crash safety: best model, then the checkpoint (the source of truth,
        # holding the history), then the derived files.
        if improved:
            ckpt.save_best_model(self.run_dir, self.model, {"epoch": epoch, "chunk": self.chunk, **row})
        self._save(ckpt.epoch_checkpoint_path(self.run_dir, epoch))
        ckpt.partial_checkpoint_path(self.run_dir).unlink(missing_ok=True)
        runs.write_history(self.run_dir, state["history"])
        self._write_tensorboard(row)
        if stopper["stopped"]:
            runs.append_event(self.run_dir, "early_stop", epoch=epoch, best_epoch=state["best"]["epoch"])

    def _write_tensorboard(self, row: dict) -> None:
        tf = self.tf
        with self.tb_writer.as_default(step=row["epoch"]):
            for key in ("loss", "accuracy", "top3", "val_loss", "val_accuracy", "val_top3", "lr"):
                tf.summary.scalar(key, row[key])
        self.tb_writer.flush()

    def _stopped(self, epoch: int) -> int:
        name = signal.Signals(self.stop.signum).name
        if self.chief:
            runs.append_event(self.run_dir, "signal_stop", signal=name, chunk=self.chunk, epoch=epoch,
                              batch=self.state["batch"])
            self._status("interrupted", message=f"stopped by {name}; `python -m pipeline resume {self.run_dir.name}` continues")
        self.report(f"stopped by {name} in epoch {epoch}, batch {self.state['batch']}: saved; "
                    f"`python -m pipeline resume {self.run_dir.name}` continues from here")
        return EXIT_INTERRUPTED.get(self.stop.signum, 1)


def _note_crash(run_dir: Path, events: list[dict]) -> None:
    """A previous chunk that started and never ended was killed (or its machine died)."""
    opened = [e for e in events if e.get("event") == "chunk_start"]
    closed = {e.get("chunk") for e in events if e.get("event") in ("chunk_end",)}
    if opened and opened[-1].get("chunk") not in closed:
        status = runs.read_status(run_dir)
        runs.append_event(run_dir, "crash_detected", chunk=opened[-1].get("chunk"),
                          last_status=status.get("state"), last_epoch=status.get("epoch"),
                          last_batch=status.get("batch"), pid=status.get("pid"))


def epoch_line(row: dict, best: bool = False) -> str:
    """One line per finished epoch, as `python -m pipeline train|resume` prints it."""
    return (f"epoch {row['epoch']:>3} (chunk {row['chunk']})  loss {row['loss']:.4f}  acc {row['accuracy']:.4f}  "
            f"top3 {row['top3']:.4f} | val loss {row['val_loss']:.4f}  acc {row['val_accuracy']:.4f}  "
            f"top3 {row['val_top3']:.4f} | lr {row['lr']:.3g} | {row['ended'] - row['started']:.1f} s"
            + ("  * best" if best else ""))


def run_chunks(run_dir: Path, chunks: int = 1, epochs_per_chunk: int | None = None, report=None) -> int:
    """Train `chunks` chunks of the run, one after another, holding its lock. Returns an exit code:
    0 done, 130/143 stopped by SIGINT/SIGTERM (saved; resume continues). `report`, when given, gets a
    human-readable line at each chunk's start and end and after every epoch, and `live=True` batch
    lines in between (every few seconds)."""
    say = report if (report is not None and is_chief()) else _silent
    run_dir = Path(run_dir)
    configure_runtime()
    lock = runs.RunLock(run_dir) if is_chief() else None
    if lock:
        lock.acquire()
        if lock.took_over_from is not None:
            runs.append_event(run_dir, "lock_takeover", stale_pid=lock.took_over_from)
            print(f"warning: took over the stale lock of run '{run_dir.name}' (PID {lock.took_over_from} is gone)",
                  file=sys.stderr)
    stop = _StopFlag().install()
    try:
        code = 0
        for _ in range(chunks):
            events = runs.read_events(run_dir)
            if lock:
                _note_crash(run_dir, events)
            chunk = runs.count_chunks(events) + 1
            trainer = Trainer(run_dir, chunk, epochs_per_chunk, stop, say)
            state = trainer.state
            where = (f"resuming from {trainer.resumed_from} at epoch {state['epoch'] + 1}, batch {state['batch']}"
                     if trainer.resumed_from else "from the start")
            say(f"run {run_dir.name}, chunk {chunk}: {trainer.epochs_per_chunk} epoch(s) of "
                f"{len(trainer.train_indices):,} training drawings, {where}, lr {state['schedule']['lr']:.3g}")
            if lock:
                runs.append_event(run_dir, "chunk_start", chunk=chunk, pid=os.getpid(), epoch=state["epoch"] + 1,
                                  batch=state["batch"], resumed_from=trainer.resumed_from,
                                  lr=state["schedule"]["lr"])
                if trainer.resumed_from:
                    runs.append_event(run_dir, "resume_point", chunk=chunk, checkpoint=trainer.resumed_from,
                                      epoch=state["epoch"] + 1, batch=state["batch"],
                                      plateau={k: state["schedule"][k] for k in ("lr", "best", "wait")})
            try:
                code = trainer.run()
            except Exception as exc:
                if lock:
                    runs.append_event(run_dir, "error", chunk=chunk, message=f"{type(exc).__name__}: {exc}")
                    runs.write_status(run_dir, "crashed", pid=os.getpid(), chunk=chunk,
                                      message=f"{type(exc).__name__}: {exc}")
                raise
            if lock:
                runs.append_event(run_dir, "chunk_end", chunk=chunk, epoch=trainer.state["epoch"],
                                  batch=trainer.state["batch"], exit_code=code)
            best = trainer.state.get("best") or {}
            if code == 0:
                say(f"chunk {chunk} done at epoch {trainer.state['epoch']}"
                    + (f"; best val top-3 {best['val_top3']:.4f} at epoch {best['epoch']} "
                       f"(its model: {run_dir / 'model'})" if best else ""))
            if code != 0 or trainer.state["early_stopping"].get("stopped"):
                break
            cfg = trainer.config
            if cfg.max_epochs and trainer.state["epoch"] >= cfg.max_epochs:
                if lock:
                    runs.append_event(run_dir, "finished", epoch=trainer.state["epoch"])
                break
        return code
    finally:
        stop.restore()
        if lock:
            lock.release()
