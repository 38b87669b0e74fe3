"""Train page of `streamlit run dashboard`: start, resume, branch or stop runs.

Training never runs inside the Streamlit script: the page starts `python -m pipeline download ...`
(for classes not on disk yet, only the drawings needed) followed by `python -m pipeline train ...`
as one background job (pipeline.jobs.start) and shows live progress from the run's status.json
(pipeline.runs.run_state) and the job's progress file, refreshed every 2 seconds by a fragment; the
job's log is shown as it is. All state is in files, so a reload or a closed tab loses nothing.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import streamlit as st

from dashboard import common
from pipeline import jobs
from pipeline import runs as runs_mod
from pipeline.errors import QuickDrawError
from pipeline.probes import list_sets

OFFLINE_HINT = ("Offline? Put the files in the data folder (`--data DIR` or $QUICKDRAW_DATA, laid out like the "
                "bucket: numpy_bitmap/<class>.npy) or point `--base-url` at a mirror.")


@st.cache_data(show_spinner=False)
def model_choices() -> dict[str, str]:
    """{name: description} of pipeline.models.REGISTRY (imports Keras once per process)."""
    from pipeline.models import REGISTRY

    return {name: spec.description for name, spec in REGISTRY.items()}


def local_classes(fmt: str) -> set[str]:
    """Classes whose `fmt` file is in the data folder (numpy_bitmap for bitmap28, simplified for strokes)."""
    try:
        from pipeline.formats import available_classes

        return set(available_classes(common.data_root(), fmt))
    except (ImportError, QuickDrawError, OSError):
        return set()


def download_format(representation: str) -> str:
    return "numpy_bitmap" if representation == "bitmap28" else "simplified"


def train_steps(*, name: str, model: str, classes: list[str], per_class: int, representation: str,
                epochs_per_chunk: int, chunks: int, missing: list[str], data_root: Path,
                model_options: str = "", batch_size: int = 256, probes: list[str] | tuple = ()) -> list[list[str]]:
    """The background job's steps: download what is missing (only `per_class` drawings), then train."""
    steps = []
    if missing:
        steps.append(jobs.download_step(missing, download_format(representation), per_class=per_class, data=data_root))
    steps.append(jobs.train_step(name=name, model=model, classes=classes, per_class=per_class,
                                 representation=representation, epochs_per_chunk=epochs_per_chunk, chunks=chunks,
                                 batch_size=batch_size, data=data_root, model_options=model_options, probes=probes))
    return steps


def _start(job_id: str, kind: str, steps: list[list[str]], run: str) -> None:
    try:
        jobs.start(common.runs_dir(), job_id, kind, steps, run=run)
    except QuickDrawError as exc:
        st.error(str(exc))
        return
    common.flash(f"Started {kind} of {run} in the background; progress below.")
    st.rerun()


def _start_form(summaries: list[dict]) -> None:
    from pipeline.categories import all_categories

    st.subheader("Start a run")
    choices = model_choices()
    c1, c2, c3 = st.columns(3)
    model = c1.selectbox("Model", list(choices), key="train_model", help="pipeline.models.REGISTRY")
    c1.caption(choices.get(model, ""))
    representation = c2.selectbox("Representation", ["bitmap28", "strokes"], key="train_representation",
                                  help="bitmap28: Google's 28x28 bitmaps; strokes: rendered from simplified strokes "
                                       "with stroke order as intensity")
    name = c3.text_input("Run name", key="train_name", placeholder=f"{model}-run")
    fmt = download_format(representation)
    local = local_classes(fmt)
    categories = list(all_categories())
    classes = st.multiselect(
        f"Classes ({len(local)} of {len(categories)} on disk as {fmt}, marked ✓)", categories, key="train_classes",
        format_func=lambda c: f"✓ {c}" if c in local else c, placeholder="type to search the 345 categories")
    c1, c2, c3, c4 = st.columns(4)
    per_class = c1.number_input("Drawings per class", 10, 200_000, 1000, step=100, key="train_per_class")
    epochs = c2.number_input("Epochs per chunk", 1, 500, 10, key="train_epochs")
    chunks = c3.number_input("Chunks now", 1, 100, 1, key="train_chunks")
    batch = c4.number_input("Batch size", 8, 4096, 256, step=8, key="train_batch")
    options = st.text_input("Model options (JSON)", key="train_options",
                            placeholder='e.g. {"alpha": 0.25, "input_size": 32} for mobilenet')
    probe_sets = st.multiselect("Probe sets", list_sets(common.runs_dir()), key="train_probes",
                                help="scored at every epoch end (runs/<run>/probes.jsonl); see the Probes page")
    missing = [c for c in classes if c not in local]
    if missing:
        st.caption(f"Will download {len(missing)} class(es) first ({per_class} drawings each, {fmt}) into "
                   f"`{common.data_root()}`: {', '.join(missing[:12])}{' ...' if len(missing) > 12 else ''}")
    if st.button("Start training", key="train_start", type="primary"):
        try:
            runs_mod.validate_run_name(name.strip())
            if (common.runs_dir() / name.strip()).exists():
                raise QuickDrawError(f"run '{name.strip()}' already exists; resume it below or pick another name.")
            if len(classes) < 2:
                raise QuickDrawError("pick at least 2 classes.")
        except QuickDrawError as exc:
            st.error(str(exc))
            return
        steps = train_steps(name=name.strip(), model=model, classes=classes, per_class=int(per_class),
                            representation=representation, epochs_per_chunk=int(epochs), chunks=int(chunks),
                            missing=missing, data_root=common.data_root(), model_options=options,
                            batch_size=int(batch), probes=probe_sets)
        _start(f"train-{name.strip()}", "train", steps, name.strip())


def _resume_branch_stop(summaries: list[dict]) -> None:
    # A run's record without checkpoints (cloned: they stay out of git; imported logs) can't train on.
    trainable = [r for r in summaries if r["status"] != "damaged" and not r.get("imported")
                 and (r.get("checkpoints") or not r.get("epochs"))]
    idle = [r["name"] for r in trainable if r["status"] != "running"]
    running = [r["name"] for r in summaries if r["status"] == "running"]
    records = [r["name"] for r in summaries if r["status"] != "damaged" and r not in trainable]
    if records:
        st.caption(f"Without training checkpoints, so not listed here (evaluate, draw with or export them): "
                   f"{', '.join(records)}.")
    tab_resume, tab_branch, tab_stop = st.tabs(["Resume", "Branch", "Stop"])
    with tab_resume:
        if not idle:
            st.caption("No stopped run to resume.")
        else:
            run = st.selectbox("Run", idle, key="resume_run")
            st.caption(plan_caption(common.run_dir_of(run)))
            c1, c2 = st.columns(2)
            chunks = c1.number_input("Chunks (0: to the end of its plan)", 0, 100, 0, key="resume_chunks",
                                     help="A stopped chunk's remaining epochs come first and count as one chunk.")
            epochs = c2.number_input("Epochs per chunk (0: as configured)", 0, 500, 0, key="resume_epochs")
            if st.button("Resume", key="resume_start"):
                _start(f"train-{run}", "train", [jobs.resume_step(run, int(chunks), int(epochs))], run)
    with tab_branch:
        parents = [r["name"] for r in trainable if r.get("epochs")]
        if not parents:
            st.caption("No run with a finished epoch to branch from.")
        else:
            parent = st.selectbox("From run", parents, key="branch_parent")
            c1, c2, c3, c4 = st.columns(4)
            name = c1.text_input("New name", key="branch_name")
            from_epoch = c2.number_input("From epoch (0: latest)", 0, 100_000, 0, key="branch_epoch")
            lr = c3.number_input("Learning rate (0: keep)", 0.0, 1.0, 0.0, format="%.5f", key="branch_lr")
            chunks = c4.number_input("Chunks now", 0, 100, 1, key="branch_chunks")
            if st.button("Branch", key="branch_start"):
                try:
                    runs_mod.validate_run_name(name.strip())
                except QuickDrawError as exc:
                    st.error(str(exc))
                else:
                    step = jobs.branch_step(parent, name.strip(), int(chunks), from_epoch=int(from_epoch),
                                            lr=float(lr))
                    _start(f"train-{name.strip()}", "train", [step], name.strip())
    with tab_stop:
        if not running:
            st.caption("No run is training.")
        else:
            run = st.selectbox("Running run", running, key="stop_run")
            st.caption("SIGTERM: the trainer saves at the end of the current batch and stops; resume continues.")
            if st.button("Stop", key="stop_start", type="primary"):
                try:
                    pid = jobs.stop_run(common.run_dir_of(run))
                except QuickDrawError as exc:
                    st.error(str(exc))
                else:
                    common.flash(f"Sent SIGTERM to {run} (PID {pid}).")
                    st.rerun()


def plan_caption(run_dir: Path) -> str:
    """Where the run stands against its plan, e.g. "epoch 2 of a plan of 4; stopped in chunk 1"."""
    events = common.events(run_dir)
    done = len(common.history(run_dir))
    plan = runs_mod.planned_epoch(events)
    state = runs_mod.run_state(run_dir).state
    if plan and done < plan:
        return f"{done} of the {plan} planned epochs done ({state}): resuming continues to epoch {plan}."
    return f"{done} epoch(s) done, its plan is complete: resuming trains one more chunk."


def _status_panel(run_dir: Path) -> None:
    run_state = runs_mod.run_state(run_dir)
    status, state = run_state.status, run_state.state
    # Live statuses carry the batch's metrics, final ones the last history row (with times): show metrics.
    metrics = {k: status["metrics"][k] for k in runs_mod.METRIC_COLUMNS
               if isinstance(status.get("metrics"), dict) and isinstance(status["metrics"].get(k), int | float)}
    target = runs_mod.planned_epoch(common.events(run_dir)) or status.get("epochs_target")
    if target is None:
        with contextlib.suppress(QuickDrawError, OSError, ValueError):
            target = runs_mod.read_config(run_dir).max_epochs
    st.markdown(f"**{run_dir.name}** - {state}, chunk {status.get('chunk', '-')}, "
                f"epoch {status.get('epoch', '-')}" + (f"/{target}" if target else "")
                + (f", ETA {common.format_seconds(status.get('eta_seconds'))}" if state == "running" else ""))
    batches = status.get("batches_per_epoch")
    if state == "running" and batches:
        batch = int(status.get("batch") or 0)
        st.progress(min(batch / batches, 1.0), text=f"batch {batch}/{batches}")
    if metrics and state == "running":  # an ended run's numbers are on the Runs and Compare pages
        cols = st.columns(len(metrics))
        for col, (key, value) in zip(cols, metrics.items(), strict=True):
            col.metric(runs_mod.METRIC_LABELS.get(key, key), f"{value:.4g}" if key == "lr" else f"{value:.4f}")
    if state == "stopped":
        st.caption(f"Stopped; everything up to batch {status.get('batch', 0)} of epoch {status.get('epoch', '-')} "
                   "is saved. Resume it from the **Resume** tab below: it continues to the end of its plan.")
    elif state in ("crashed", "damaged") and run_state.message:
        st.caption(run_state.message)
    elif status.get("message"):
        st.caption(status["message"])


def _job_run_dir(run: str) -> Path | None:
    try:
        return runs_mod.run_path(common.runs_dir(), run)
    except QuickDrawError:
        return None


@st.fragment(run_every=2)
def live_progress() -> None:
    """Everything running or recently started, read from files on every tick."""
    summaries = common.run_summaries()
    running = [r for r in summaries if r["status"] == "running"]
    recent = [(job, jobs.job_status(job)) for job in jobs.list_jobs(common.runs_dir(), "train")]
    recent = [(job, status) for job, status in recent
              if status.state == "running" or (job.ended or time.time()) > time.time() - 3600]
    # A run that starts or stops training changes the Resume/Branch/Stop lists outside this fragment.
    common.rerun_when_changed("train_running", sorted(r["name"] for r in running))
    st.subheader("Progress")
    if not running and not recent:
        st.caption(f"Nothing training. Updated {time.strftime('%H:%M:%S')}.")
        return
    for r in running:
        _status_panel(Path(r["path"]))
    shown = {r["name"] for r in running}
    for job, status in recent[:5]:
        run = job.run or job.id
        run_dir = _job_run_dir(run)
        if run not in shown and run_dir is not None and (run_dir / "status.json").exists():
            shown.add(run)  # a job that ended: where its run stands now (finished, stopped, ...)
            _status_panel(run_dir)
        with st.expander(f"job {job.id}: {status.state}", expanded=status.state != "done"):
            if status.state == "running" and status.command == "download":
                st.progress(status.fraction or 0.0, text=status.stage or "downloading...")
            elif status.state == "running" and not (run_dir and (run_dir / "status.json").exists()):
                st.progress(0.0, text="starting...")
            if status.state == "failed" and status.message:
                st.error(status.message + (f"  \n{OFFLINE_HINT}" if status.command == "download" else ""))
            elif status.state == "stopped":
                st.caption(status.message)
            st.code(jobs.log_tail(job, 12) or "(no output yet)", language=None)
            if status.state == "running" and st.button("Stop this job", key=f"stop_job_{job.id}"):
                jobs.stop(job)
    st.caption(f"Updated {time.strftime('%H:%M:%S')}.")


def render() -> None:
    st.header("Train")
    common.show_flash()
    summaries = common.run_summaries()
    live_progress()
    _start_form(summaries)
    st.divider()
    st.subheader("Resume, branch or stop")
    _resume_branch_stop(summaries)
