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
