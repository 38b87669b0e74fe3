"""The training loop: one chunk of one run, state in, state out. Driven by pipeline/chunks.py
(`python -m pipeline train|resume|branch`), which holds the run's lock and records the chunk.

`Trainer(run_dir, config, checkpoint, ...)` builds the model and optimizer, restores the checkpoint
(a `pipeline.checkpoints.Checkpoint`: variables by name and the `TrainState`) and `run()` trains
until `until_epoch` epochs are complete, saving a checkpoint at the end of every epoch and every `save_every_batches`
batches (default: about every 5 minutes): model and optimizer variables, the learning-rate
schedule's state (what the seed lost on every resume), epoch and batch position, the partial epoch's
metric sums, best-epoch and early-stopping state, and the history. The data order of an epoch is a
pure function of (seed, epoch), so a resume mid-epoch replays exactly the batches that were left. A
stop request (SIGINT/SIGTERM, see chunks.py) is honoured at the end of the current batch after
saving; `kill -9` loses at most the batches since the last save.

The loop is our own (pipeline/steps.py: `tf.function` steps run through `strategy.run`), not `model.fit`:
Keras 3's fit does not work under MultiWorkerMirroredStrategy on TF 2.19, and our own loop makes exact
mid-epoch resume straightforward.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np

from pipeline import probes, recipe, runs
from pipeline.checkpoints import (
    Checkpoint,
    TrainState,
    epoch_checkpoint_path,
    partial_checkpoint_path,
    save_best_model,
    warm_start,
)
from pipeline.datasets import batches, epoch_order, iter_batches, load_dataset
from pipeline.errors import QuickDrawError
from pipeline.runs import RunConfig
from pipeline.steps import METRIC_NAMES, build_steps

# How often status.json is refreshed during an epoch (the dashboard's live view reads it);
# $QUICKDRAW_STATUS_INTERVAL overrides it (0: after every batch).
STATUS_INTERVAL_SECONDS = float(os.environ.get("QUICKDRAW_STATUS_INTERVAL", "2.0"))
STOPPED = 1  # run()'s result when a stop was requested (chunks.py maps it to the signal's exit code)


def make_strategy(name: str):
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


def epoch_line(row: dict, best: bool = False) -> str:
    """One line per finished epoch, as `python -m pipeline train|resume` prints it."""
    return (f"epoch {row['epoch']:>3} (chunk {row['chunk']})  loss {row['loss']:.4f}  acc {row['accuracy']:.4f}  "
            f"top3 {row['top3']:.4f} | val loss {row['val_loss']:.4f}  acc {row['val_accuracy']:.4f}  "
            f"top3 {row['val_top3']:.4f} | lr {row['lr']:.3g} | {row['ended'] - row['started']:.1f} s"
            + ("  * best" if best else ""))


def _silent(line: str, live: bool = False) -> None:
    """The progress reporter when nobody listens."""


class Trainer:
    """One chunk of one run. `stop_requested()` is polled after every batch; `report(line, live)` gets
    human-readable progress (live=True: a transient batch line a terminal may overwrite)."""

    def __init__(self, run_dir: Path, config: RunConfig, checkpoint: Checkpoint | None, chunk: int,
                 until_epoch: int, stop_requested=lambda: False, report=_silent):
        import keras
        import tensorflow as tf

        from pipeline.models import build_model, input_shape_for

        self.tf, self.keras, self.run_dir, self.config = tf, keras, Path(run_dir), config
        self.chunk, self.until_epoch = chunk, until_epoch
        self.chief, self.stop_requested, self.report = is_chief(), stop_requested, report
        self.strategy = make_strategy(config.strategy)
        self.dataset = load_dataset(config)
        self.train_indices, self.val_indices = self.dataset.indices("train"), self.dataset.indices("val")
        if len(self.train_indices) == 0 or len(self.val_indices) == 0:
            raise QuickDrawError("the dataset has no training or validation drawings; raise --per-class.")
        keras.utils.set_random_seed(config.seed)
        shape = input_shape_for(config.representation, config.image_size, config.time_channel)
        with self.strategy.scope():
            self.model = build_model(config.model, len(config.classes), shape, precision=config.precision,
                                     **config.model_options)
            self.optimizer = recipe.make_optimizer(config)
            self.optimizer.build(self.model.trainable_variables)
        # What model/model.keras holds: float32 whatever the training precision, so evaluation, prediction
        # and the TF.js export compute as they always did (the variables are float32 either way).
        self.saved_model = self.model if config.precision == "float32" else build_model(
            config.model, len(config.classes), shape, **config.model_options)
        if checkpoint is None:
            self.state = TrainState.initial(config.learning_rate, config.seed)
            if config.init_from:
                warm_start(self.model, config.init_from, self.run_dir.parent)
        elif config.resume_mode == "weights":
            # The seed's way of resuming: the saved model, a new optimizer, a new plateau schedule.
            checkpoint.restore(self.model)
            self.state = checkpoint.state
            self.state.fresh_schedule(config.learning_rate)
        else:
            checkpoint.restore(self.model, self.optimizer)
            self.state = checkpoint.state
        self.train_step, self.eval_step = build_steps(self.strategy, self.model, self.optimizer, config, shape,
                                                      one_device=config.strategy == "default")
        self.tb_writer = tf.summary.create_file_writer(str(self.run_dir / "tb")) if self.chief else None

    def _feed(self, order, batch_size: int, start_batch: int = 0):
        if self.config.strategy == "default":
            return iter_batches(self.dataset, order, batch_size, start_batch)
        options = self.tf.data.Options()
        options.experimental_distribute.auto_shard_policy = self.tf.data.experimental.AutoShardPolicy.DATA
        data = batches(self.dataset, order, batch_size, start_batch).with_options(options)
        return self.strategy.experimental_distribute_dataset(data)

    def save(self, path: Path) -> None:
        if self.chief:
            self.state.saved_at, self.state.chunk = time.time(), self.chunk
            Checkpoint.capture(self.state, self.model, self.optimizer).save(path)

    def status(self, state: str, **fields) -> None:
        if self.chief:
            runs.write_status(self.run_dir, state, pid=os.getpid(), chunk=self.chunk,
                              epoch=self.state.epoch + (1 if state == "running" else 0), batch=self.state.batch,
                              **fields)

    def run(self) -> int:
        """Train until `until_epoch` epochs are complete (or max_epochs, or early stopping); 0 when done,
        STOPPED when a stop was requested (everything saved)."""
        cfg, state = self.config, self.state
        if self.chief:
            runs.write_history(self.run_dir, state.history)  # repair: history follows the checkpoint
        target = self.until_epoch
        if cfg.max_epochs:
            target = min(target, cfg.max_epochs)
        batches_per_epoch = math.ceil(len(self.train_indices) / cfg.batch_size)
        last_save, last_status, started = time.monotonic(), 0.0, time.monotonic()
        chunk_batches, done = (target - state.epoch) * batches_per_epoch - state.batch, 0
        assigned_lr = None  # the rate last given to the optimizer in this chunk
        while state.epoch < target and not state.early_stopping.get("stopped"):
            epoch = state.epoch + 1
            partial = state.partial or {"loss": 0.0, "top1": 0.0, "top3": 0.0, "n": 0.0, "started": time.time()}
            state.partial = partial
            for images, labels in self._feed(epoch_order(self.train_indices, cfg.seed, epoch), cfg.batch_size,
                                             start_batch=state.batch):
                state.schedule["lr"] = recipe.batch_lr(cfg, state.schedule, epoch, state.batch, batches_per_epoch)
                if state.schedule["lr"] != assigned_lr:  # an op per batch costs more than the comparison
                    assigned_lr = state.schedule["lr"]
                    self.optimizer.learning_rate.assign(assigned_lr)
                global_batch = self.tf.constant(_batch_len(labels), self.tf.float32)
                key = recipe.augmentation_seed(cfg.seed, epoch, state.batch)
                sums = self.train_step(images, labels, global_batch, key).numpy()
                for name, value in zip(METRIC_NAMES, sums, strict=True):
                    partial[name] += float(value)
                state.batch, done, now = state.batch + 1, done + 1, time.monotonic()
                due = (cfg.save_every_batches and state.batch % cfg.save_every_batches == 0) or (
                    not cfg.save_every_batches and now - last_save >= cfg.save_every_seconds)
                stop = self.stop_requested()
                if stop or (due and state.batch < batches_per_epoch):
                    self.save(partial_checkpoint_path(self.run_dir))
                    last_save = now
                    if self.chief:
                        runs.append_event(self.run_dir, "checkpoint", chunk=self.chunk, epoch=epoch, batch=state.batch)
                if stop:
                    return STOPPED
                if now - last_status >= STATUS_INTERVAL_SECONDS:
                    last_status = now
                    eta = round((now - started) / done * (chunk_batches - done), 1)
                    metrics = _mean_metrics(partial)
                    self.status("running", batches_per_epoch=batches_per_epoch, epochs_target=target,
                                eta_seconds=eta, metrics=metrics)
                    self.report(f"epoch {epoch} batch {state.batch}/{batches_per_epoch}  loss {metrics['loss']:.4f}"
                                f"  acc {metrics['accuracy']:.4f}  top3 {metrics['top3']:.4f} | chunk ETA {eta:.0f} s",
                                live=True)
            self._end_epoch(epoch, partial)
            last_save = time.monotonic()
        if not self.chief:
            # Non-chief workers keep no run record; they leave their final replica weights so a
            # cluster can be checked for agreement (tests/test_distributed.py).
            np.savez(self.run_dir / "final_weights.npz", **Checkpoint.capture(state, self.model).model)
        return 0

    @property
    def complete(self) -> bool:
        """No epoch left to train: early stopping fired or max_epochs is reached."""
        max_epochs = self.config.max_epochs
        return bool(self.state.early_stopping.get("stopped") or (max_epochs and self.state.epoch >= max_epochs))

    def _evaluate(self, indices) -> dict:
        totals = np.zeros(4)
        for images, labels in self._feed(np.asarray(indices), 1024):
            totals += self.eval_step(images, labels).numpy()
        return _mean_metrics(dict(zip(METRIC_NAMES, totals, strict=True)))

    def _end_epoch(self, epoch: int, partial: dict) -> None:
        cfg, state = self.config, self.state
        train, val = _mean_metrics(partial), self._evaluate(self.val_indices)
        row = {"epoch": epoch, "chunk": self.chunk, "started": round(partial["started"], 3),
               "ended": round(time.time(), 3), "loss": train["loss"], "accuracy": train["accuracy"],
               "top3": train["top3"], "val_loss": val["loss"], "val_accuracy": val["accuracy"],
               "val_top3": val["top3"], "lr": state.schedule["lr"]}
        state.history = [r for r in state.history if r["epoch"] < epoch] + [row]
        state.epoch, state.batch, state.partial = epoch, 0, None
        if cfg.schedule == "plateau":
            state.schedule = recipe.plateau_step(state.schedule, val["loss"], cfg.lr_factor, cfg.lr_patience,
                                                 cfg.lr_min)
        improved = runs.best_row(state.history)["epoch"] == epoch
        if improved:
            state.best = {"epoch": epoch, "val_top3": val["top3"], "val_accuracy": val["accuracy"],
                          "val_loss": val["loss"]}
        stopper = state.early_stopping
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
            if self.saved_model is not self.model:
                self.saved_model.set_weights(self.model.get_weights())
            save_best_model(self.run_dir, self.saved_model, {"epoch": epoch, "chunk": self.chunk, **row})
        self.save(epoch_checkpoint_path(self.run_dir, epoch))
        partial_checkpoint_path(self.run_dir).unlink(missing_ok=True)
        runs.write_history(self.run_dir, state.history)
        probes.score_epoch(self.run_dir, self.model, cfg, epoch, self.chunk)  # the config's probe sets, if any
        with self.tb_writer.as_default(step=epoch):
            for key in runs.METRIC_COLUMNS:
                self.tf.summary.scalar(key, row[key])
        self.tb_writer.flush()
        if stopper["stopped"]:
            runs.append_event(self.run_dir, "early_stop", epoch=epoch, best_epoch=state.best["epoch"])


def _batch_len(labels) -> int:
    if hasattr(labels, "values"):  # PerReplica under a distribution strategy
        return int(sum(int(v.shape[0]) for v in labels.values))
    return int(labels.shape[0])


def _mean_metrics(totals: dict) -> dict:
    n = max(totals["n"], 1.0)
    return {"loss": totals["loss"] / n, "accuracy": totals["top1"] / n, "top3": totals["top3"] / n}
