"""Train a run chunk by chunk: what `python -m pipeline train|resume|branch` (and the dashboard's
Train page, through them) run after the run exists.

`run_chunks(run_dir, chunks)` takes the run's lock (pipeline.runs.RunLock: before TensorFlow is
imported, so a second trainer is refused at once), notes a previous chunk that never ended (its
trainer died), and for each chunk loads the latest checkpoint, hands it to `train.Trainer` and
records the chunk (events, status) through pipeline.runs, the record's one writer. SIGINT/SIGTERM
ask the trainer to save and stop at the end of the current batch; the run is then "stopped" and
`resume` continues exactly where it was.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from pipeline import runs
from pipeline.checkpoints import Checkpoint, latest_checkpoint

EXIT_INTERRUPTED = {signal.SIGINT: 130, signal.SIGTERM: 143}


class StopFlag:
    """Set by SIGINT/SIGTERM; the trainer polls it after each batch."""

    def __init__(self):
        self.signum: int | None = None
        self.previous = {}

    def install(self) -> StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self.previous[sig] = signal.signal(sig, self.handle)
            except ValueError:  # not the main thread (e.g. inside a test runner thread)
                pass
        return self

    def handle(self, signum, _frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C means now
        self.signum = signum

    def requested(self) -> bool:
        return self.signum is not None

    def restore(self):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def _silent(line: str, live: bool = False) -> None:
    """The progress reporter when nobody listens."""


def run_chunks(run_dir: Path, chunks: int | None = None, epochs_per_chunk: int | None = None, report=None) -> int:
    """Train the run chunk by chunk, holding its lock, and return an exit code: 0 done, 130/143 stopped
    by SIGINT/SIGTERM (saved; resume continues).

    The plan: a chunk stopped before its last epoch is finished first; then `chunks` None continues
    the run's plan (the epoch its last `train`/`resume --chunks N` was to reach), or trains one more
    chunk when the plan is done; `chunks` N trains N chunks counting that first one, and becomes the
    plan. A run is "finished" when its plan is done. `report`, when given, gets a human-readable line
    at each chunk's start and end and after every epoch, and `live=True` batch lines in between."""
    from pipeline.train import is_chief

    chief = is_chief()
    say = report if (report is not None and chief) else _silent
    run_dir = Path(run_dir)
    lock = runs.RunLock(run_dir).acquire() if chief else None
    try:
        if lock and lock.took_over_from is not None:
            runs.append_event(run_dir, "lock_takeover", stale_pid=lock.took_over_from)
            print(f"warning: took over run '{run_dir.name}' from PID {lock.took_over_from}, which is gone (killed); "
                  "continuing from its last save", file=sys.stderr)
        from pipeline.train import configure_runtime

        configure_runtime()
        stop = StopFlag().install()
        try:
            config = runs.read_config(run_dir)
            size = epochs_per_chunk or config.epochs_per_chunk
            saved = latest_checkpoint(run_dir)
            checkpoint = Checkpoint.load(saved) if saved else None
            done = checkpoint.state.epoch if checkpoint else 0
            events = runs.read_events(run_dir)
            target = runs.unfinished_chunk_target(events) or 0
            target = target if target > done else done + size
            plan = runs.planned_epoch(events)
            until = (plan if plan and plan > done else target) if chunks is None else target + (chunks - 1) * size
            if config.max_epochs:
                until, target = min(until, config.max_epochs), min(target, config.max_epochs)
            if lock and until != plan:
                runs.append_event(run_dir, "plan", until_epoch=until, epochs_per_chunk=size)
            while True:
                code, reached, complete = _one_chunk(run_dir, config, saved, checkpoint, min(target, until), stop,
                                                     say, record=lock is not None)
                if code != 0 or complete or reached >= until:
                    return code
                target, saved, checkpoint = reached + size, None, None  # the next chunk loads what this one saved
        finally:
            stop.restore()
    finally:
        if lock:
            lock.release()


def _one_chunk(run_dir: Path, config, saved: Path | None, checkpoint: Checkpoint | None, target_epoch: int,
               stop: StopFlag, say, record: bool) -> tuple[int, int, bool]:
    """Train up to `target_epoch`: (exit code, epochs completed, whether the run is complete)."""
    from pipeline.train import STOPPED, Trainer

    events = runs.read_events(run_dir)
    unfinished = runs.open_chunk(events)
    if record and unfinished is not None:
        status = runs.read_status(run_dir)
        runs.append_event(run_dir, "crash_detected", chunk=unfinished, last_status=status.get("state"),
                          last_epoch=status.get("epoch"), last_batch=status.get("batch"), pid=status.get("pid"))
    chunk = runs.count_chunks(events) + 1
    if checkpoint is None:
        saved = latest_checkpoint(run_dir)
        if saved is None:
            runs.refuse_retraining_a_record(run_dir)
        checkpoint = Checkpoint.load(saved) if saved else None
    trainer = Trainer(run_dir, config, checkpoint, chunk, target_epoch, stop.requested, say)
    state = trainer.state
    where = (f"resuming from {saved.name} at epoch {state.epoch + 1}, batch {state.batch}" if saved
             else "from the start")
    say(f"run {run_dir.name}, chunk {chunk}: up to epoch {target_epoch} on {len(trainer.train_indices):,} training "
        f"drawings, {where}, lr {state.schedule['lr']:.3g}")
    if record:
        runs.append_event(run_dir, "chunk_start", chunk=chunk, pid=os.getpid(), epoch=state.epoch + 1,
                          batch=state.batch, target_epoch=target_epoch, resumed_from=saved.name if saved else None,
                          lr=state.schedule["lr"])
        if saved:
            runs.append_event(run_dir, "resume_point", chunk=chunk, checkpoint=saved.name, epoch=state.epoch + 1,
                              batch=state.batch, plateau={k: state.schedule[k] for k in ("lr", "best", "wait")})
    already_complete = trainer.complete
    try:
        result = trainer.run()
    except Exception as exc:
        if record:
            message = f"{type(exc).__name__}: {exc}"
            runs.append_event(run_dir, "error", chunk=chunk, message=message)
            runs.write_status(run_dir, "crashed", pid=os.getpid(), chunk=chunk, message=message)
        raise
    if result == STOPPED:
        name = signal.Signals(stop.signum).name
        resume = f"`python -m pipeline resume {run_dir.name}` (or the Train page's Resume tab) continues"
        if record:
            runs.append_event(run_dir, "signal_stop", signal=name, chunk=chunk, epoch=state.epoch + 1,
                              batch=state.batch)
            trainer.status("stopped", message=f"stopped by {name} in epoch {state.epoch + 1}; {resume}",
                           epochs_target=target_epoch)
        say(f"stopped by {name} in epoch {state.epoch + 1}, batch {state.batch}: saved; {resume} from here")
        code = EXIT_INTERRUPTED.get(stop.signum, 1)
    else:
        code = 0
        if already_complete:
            trainer.status("finished", message="the run is complete", run_complete=True)
        else:
            trainer.status("finished", run_complete=trainer.complete, epochs_target=target_epoch,
                           metrics=state.history[-1] if state.history else None)
    if record:
        runs.append_event(run_dir, "chunk_end", chunk=chunk, epoch=state.epoch, batch=state.batch, exit_code=code)
    if code == 0:
        say(f"chunk {chunk} done at epoch {state.epoch}"
            + (f"; best val top-3 {state.best['val_top3']:.4f} at epoch {state.best['epoch']} "
               f"(its model: {run_dir / 'model'})" if state.best else ""))
    if code == 0 and config.max_epochs and state.epoch >= config.max_epochs and record:
        runs.append_event(run_dir, "finished", epoch=state.epoch)
    return code, state.epoch, trainer.complete
