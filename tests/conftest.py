"""Shared fixtures: the real Quick, Draw! data in ../shared/quickdraw (or $QUICKDRAW_SHARED)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("QUICKDRAW_SHARED", REPO.parent / "shared" / "quickdraw"))

# Quiet TensorFlow's start-up chatter in test output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def shared() -> Path:
    """The read-only shared data folder; tests that need it skip with the reason when absent."""
    if not (SHARED / "README.md").exists():
        pytest.skip(f"real Quick, Draw! data not found at {SHARED} (set QUICKDRAW_SHARED to its folder)")
    return SHARED


@pytest.fixture
def shared_subdir(shared):
    def get(name: str) -> Path:
        path = shared / name
        if not path.is_dir():
            pytest.skip(f"{path} is missing from the shared data")
        return path

    return get


# Ten of the 56 bitmap classes of ../shared, each with at least 800 drawings.
SMALL_CLASSES = ("apple", "banana", "cat", "fish", "house", "bicycle", "eye", "diamond", "rainbow", "tree")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """Dataset caches for the whole session, so runs sharing a dataset render it once. $QUICKDRAW_CACHE
    points there until the session ends, then is put back as it was."""
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("QUICKDRAW_CACHE", str(path))
        yield path


def train_small_run(runs_dir, name, model, shared, *, classes=SMALL_CLASSES, per_class=300, epochs=3,
                    model_options=None, **kw):
    """A real run trained through the pipeline on ../shared bitmaps (seconds, not minutes)."""
    from pipeline import runs
    from pipeline.chunks import run_chunks

    config = runs.make_config(name=name, model=model, classes=tuple(classes), per_class=per_class,
                              data_root=str(shared), epochs_per_chunk=epochs, batch_size=64,
                              model_options=model_options or {}, **kw)
    run_dir = runs.create_run(config, runs_dir)
    assert run_chunks(run_dir, chunks=1) == 0
    return run_dir


@pytest.fixture(scope="session")
def trained_runs(shared, cache_dir, tmp_path_factory):
    """{"cnn": run_dir, "mobilenet": run_dir}: small runs trained for real on ../shared bitmaps
    (10 classes x 300 drawings, 3 epochs) in a session-wide runs folder."""
    runs_dir = tmp_path_factory.mktemp("runs")
    return {
        "cnn": train_small_run(runs_dir, "cnn-small", "cnn", shared, epochs=4),
        "mobilenet": train_small_run(runs_dir, "mobilenet-small", "mobilenet", shared, epochs=8,
                                     model_options={"alpha": 0.25, "input_size": 32}),
    }


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium through Playwright (Debian's chromium, or Playwright's own); skipped without one."""
    from pipeline.browser import find_chromium, launch_kwargs

    if find_chromium() is None:
        pytest.skip("no Chromium found (install Debian's chromium or `python -m playwright install chromium`)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(**launch_kwargs())
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    yield page
    context.close()
