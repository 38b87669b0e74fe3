"""The dataset cache: uint8 on disk, memory-mapped, split by drawing identity, fed in batches."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline import formats
from pipeline.datasets import (
    CachedDataset,
    DatasetSpec,
    batches,
    build_blocks,
    build_cache,
    cache_root,
    dataset_spec,
    epoch_order,
    iter_batches,
    load_dataset,
    split_of,
)
from pipeline.errors import QuickDrawError
from pipeline.raster import render_many


@pytest.fixture
def spec(shared):
    return DatasetSpec(classes=("apple", "cat", "fish"), per_class=300, data_root=str(shared))


def test_bitmap_cache_is_uint8_memmap_with_googles_rows(spec, shared, tmp_path):
    ds = build_cache(spec, tmp_path)
    assert isinstance(ds.images, np.memmap) and ds.images.dtype == np.uint8
    assert ds.images.shape == (900, 28, 28, 1)
    assert np.bincount(ds.labels).tolist() == [300, 300, 300]
    rows = np.load(shared / "bitmaps" / "cat.npy", mmap_mode="r")[:300]
    np.testing.assert_array_equal(ds.images[ds.labels == 1].reshape(300, 784), rows)
    splits = {name: len(ds.indices(name)) for name in ("train", "val", "test")}
    assert sum(splits.values()) == 900 and splits["val"] > 50 and splits["test"] > 50
    assert build_cache(spec, tmp_path).path == ds.path  # reused, not rebuilt
    assert not list(tmp_path.glob(".building-*"))


def test_split_is_stable_when_classes_or_caps_change(spec, tmp_path):
    small = build_cache(spec, tmp_path)
    bigger = build_cache(DatasetSpec(classes=("fish", "apple", "cat", "eye"), per_class=400,
                                     data_root=spec.data_root), tmp_path)
    # The first 300 cat drawings keep their split whatever else is in the dataset.
    np.testing.assert_array_equal(small.split[small.labels == 1], bigger.split[bigger.labels == 2][:300])


def test_same_drawings_two_representations_share_the_split(shared, tmp_path):
    common = dict(classes=("cat", "teapot"), per_class=200, source="simplified", data_root=str(shared))
    bitmap = build_cache(DatasetSpec(representation="bitmap28", **common), tmp_path)
    strokes = build_cache(DatasetSpec(representation="strokes", image_size=48, **common), tmp_path)
    assert strokes.images.shape == (400, 48, 48, 1)
    np.testing.assert_array_equal(bitmap.split, strokes.split)
    np.testing.assert_array_equal(bitmap.labels, strokes.labels)


def test_epoch_order_and_batches_resume_mid_epoch(spec, tmp_path):
    ds = build_cache(spec, tmp_path)
    order = epoch_order(ds.indices("train"), seed=3, epoch=2)
    np.testing.assert_array_equal(order, epoch_order(ds.indices("train"), seed=3, epoch=2))
    assert not np.array_equal(order, epoch_order(ds.indices("train"), seed=3, epoch=3))
    full = [(x.numpy(), y.numpy()) for x, y in batches(ds, order, 64)]
    later = [(x.numpy(), y.numpy()) for x, y in batches(ds, order, 64, start_batch=3)]
    assert len(later) == len(full) - 3
    for (xa, ya), (xb, yb) in zip(full[3:], later, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    x, y = full[0]
    assert x.dtype == np.uint8 and y.dtype == np.int32
    np.testing.assert_array_equal(x, ds.images[order[:64]])


def test_missing_class_names_the_download_command(tmp_path):
    spec = DatasetSpec(classes=("cat", "zebra"), per_class=10, data_root=str(tmp_path / "empty"))
    with pytest.raises(QuickDrawError, match="python -m pipeline download 'cat'"):
        build_cache(spec, tmp_path)


def test_split_fractions():
    codes = np.array([split_of(str(i).encode(), 0.1, 0.2) for i in range(20000)])
    assert abs((codes == 2).mean() - 0.2) < 0.02 and abs((codes == 1).mean() - 0.1) < 0.02


def test_numpy_feed_equals_the_tf_data_feed(spec, tmp_path):
    ds = build_cache(spec, tmp_path)
    order = epoch_order(ds.indices("train"), seed=1, epoch=1)
    fed = list(iter_batches(ds, order, 50, start_batch=2))
    piped = [(x.numpy(), y.numpy()) for x, y in batches(ds, order, 50, start_batch=2)]
    assert len(fed) == len(piped) > 0
    for (xa, ya), (xb, yb) in zip(fed, piped, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    early = iter_batches(ds, order, 50)
    next(early)
    early.close()  # a trainer stopping mid-epoch: the reader thread ends, nothing hangs


def test_old_runs_keep_their_split_scheme(spec, tmp_path):
    from dataclasses import replace

    new = build_cache(spec, tmp_path)
    old = build_cache(replace(spec, split_scheme="blake2b"), tmp_path)
    assert new.path != old.path
    np.testing.assert_array_equal(new.labels, old.labels)
    assert 0.6 < (new.split == 0).mean() < 0.95 and 0.6 < (old.split == 0).mean() < 0.95


def _config(shared, **changes):
    # The RunConfig attributes a run's dataset is chosen by.
    from types import SimpleNamespace

    fields = dict(classes=["cat", "apple"], per_class=50, representation="strokes", image_size=32,
                  source="simplified", data_root=str(shared), val_fraction=0.1, test_fraction=0.1,
                  time_channel=False, split_scheme="rows64")
    return SimpleNamespace(**{**fields, **changes})


def test_a_runs_dataset_is_chosen_here(shared, tmp_path, monkeypatch):
    config = _config(shared)
    spec = dataset_spec(config)
    assert spec == DatasetSpec(classes=("cat", "apple"), per_class=50, representation="strokes", image_size=32,
                               source="simplified", data_root=str(shared))
    monkeypatch.delenv("QUICKDRAW_CACHE", raising=False)
    assert str(cache_root()) == "data/cache"
    monkeypatch.setenv("QUICKDRAW_CACHE", str(tmp_path / "cache"))
    assert cache_root() == tmp_path / "cache"
    ds = load_dataset(config)
    assert ds.path.parent == tmp_path / "cache" and ds.images.shape == (100, 32, 32, 1)
    assert load_dataset(config).path == ds.path


def _first_drawings(path, fmt, n):
    reader = formats.iter_binary if fmt == "binary" else formats.iter_ndjson
    return [record["drawing"] for record in reader(path, limit=n)]


@pytest.mark.parametrize("representation, source, time_channel", [
    ("bitmap28", "simplified", False), ("strokes", "simplified", False), ("strokes", "raw", True),
    ("bitmap28", "raw", False)])
def test_cache_rows_are_render_many_of_each_class(shared, tmp_path, representation, source, time_channel):
    # Rendering is raster's: the cache holds render_many's pixels, class after class, on any number of
    # workers (small classes are rendered together). Raw classes with one-point strokes included.
    classes = ("triangle", "line", "peanut") if source == "raw" else ("apple", "teapot", "cat")
    spec = DatasetSpec(classes=classes, per_class=60, representation=representation, image_size=40,
                       source=source, time_channel=time_channel, data_root=str(shared))
    one = build_cache(spec, tmp_path / "one", workers=1)
    two = build_cache(spec, tmp_path / "two", workers=2)
    np.testing.assert_array_equal(np.asarray(one.images), np.asarray(two.images))
    for label, cls in enumerate(classes):
        path = formats.find_class_file(shared, source, cls)
        drawings = _first_drawings(path, source, 60)
        expected = render_many(drawings, spec.size, representation == "strokes", time_channel, workers=1)
        np.testing.assert_array_equal(two.images[two.labels == label], expected)


def test_stroke_classes_between_bitmap_classes(shared, tmp_path):
    # auto: apple and cat come from numpy_bitmap, the others are rendered; rows stay in class order.
    spec = DatasetSpec(classes=("line", "apple", "stairs", "cat", "octagon"), per_class=40, data_root=str(shared))
    ds = build_cache(spec, tmp_path, workers=2)
    assert ds.meta["sources"]["apple"].startswith("numpy_bitmap:")
    assert ds.meta["sources"]["line"].split(":")[0] != "numpy_bitmap"
    for label, cls in enumerate(spec.classes):
        fmt = ds.meta["sources"][cls].split(":")[0]
        path = formats.find_class_file(shared, fmt, cls)
        if fmt == "numpy_bitmap":
            expected = np.load(path)[:40].reshape(-1, 28, 28, 1)
        else:
            expected = render_many(_first_drawings(path, fmt, 40), 28, workers=1)
        np.testing.assert_array_equal(ds.images[ds.labels == label], expected)


# ---------------------------------------------------------------- block-built caches (bench_scale's)
BENCH = Path(__file__).resolve().parents[1] / "bench"
# A build of BLOCKS blocks, run in a child process so it can be killed: the drawings are bench_scale's
# jittered real drawings, a pure function of the block.
BLOCKS, BLOCK = 40, 300
BUILD_SCRIPT = f"""
import sys
sys.path.insert(0, {str(BENCH)!r})
from bench_scale import JitteredDrawings
from pipeline.datasets import build_blocks
make = JitteredDrawings(__import__("pathlib").Path(sys.argv[2]) / "simplified")
build_blocks(sys.argv[1], {BLOCKS * BLOCK}, 32, make, {{"test": 1}}, ["a", "b"], block_size={BLOCK}, workers=2)
"""


def _jittered(shared):
    sys.path.insert(0, str(BENCH))
    try:
        from bench_scale import JitteredDrawings
    finally:
        sys.path.remove(str(BENCH))
    return JitteredDrawings(shared / "simplified")


def _blocks_recorded(folder: Path) -> int:
    try:
        return json.loads((folder / "progress.json").read_text())["blocks_done"]
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.slow
def test_a_killed_block_build_resumes_and_is_never_used_half_written(shared, tmp_path):
    killed = tmp_path / "killed"
    child = subprocess.Popen([sys.executable, "-c", BUILD_SCRIPT, str(killed), str(shared)],
                             start_new_session=True, env={**os.environ, "PYTHONPATH": str(BENCH.parent)})
    deadline = time.monotonic() + 300
    while _blocks_recorded(killed) < 3 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.killpg(child.pid, signal.SIGKILL)  # the build and its render workers, mid-way
    child.wait()
    done = _blocks_recorded(killed)
    assert 3 <= done < BLOCKS, f"the build was not killed mid-way ({done} of {BLOCKS} blocks done)"
    assert not (killed / "meta.json").exists()
    with pytest.raises(QuickDrawError, match="not a complete cache"):
        CachedDataset(killed)

    make = _jittered(shared)
    resumed, resumed_from = build_blocks(killed, BLOCKS * BLOCK, 32, make, {"test": 1}, ["a", "b"],
                                         block_size=BLOCK, workers=2)
    assert resumed_from == done  # continued, not started over
    fresh, fresh_from = build_blocks(tmp_path / "fresh", BLOCKS * BLOCK, 32, make, {"test": 1}, ["a", "b"],
                                     block_size=BLOCK, workers=2)
    assert fresh_from == 0
    np.testing.assert_array_equal(resumed.images, fresh.images)
    np.testing.assert_array_equal(resumed.labels, fresh.labels)
    np.testing.assert_array_equal(resumed.split, fresh.split)
    assert resumed.images[-1].max() > 0 and len(resumed.indices("train")) > 0.7 * BLOCKS * BLOCK
    # Complete: opened again as it is; another plan in the same folder starts over.
    assert build_blocks(killed, BLOCKS * BLOCK, 32, make, {"test": 1}, ["a", "b"], block_size=BLOCK)[1] == BLOCKS
    other, other_from = build_blocks(killed, 500, 32, make, {"test": 2}, ["a", "b"], block_size=BLOCK, workers=1)
    assert other_from == 0 and other.images.shape == (500, 32, 32, 1)


def test_block_build_rows_are_render_many_of_the_blocks(shared, tmp_path):
    make = _jittered(shared)
    dataset, _ = build_blocks(tmp_path, 700, 48, make, {"test": 3}, ["a", "b"], block_size=300, workers=2)
    for start, stop in ((0, 300), (300, 600), (600, 700)):
        drawings, labels, split = make(start, stop)
        np.testing.assert_array_equal(dataset.images[start:stop], render_many(drawings, 48, colour_coded=True,
                                                                              workers=1))
        np.testing.assert_array_equal(dataset.labels[start:stop], labels)
        np.testing.assert_array_equal(dataset.split[start:stop], split)
    assert dataset.meta["count"] == 700 and sum(dataset.meta["splits"].values()) == 700


CACHE_SCRIPT = """
import sys
from pipeline import formats
from pipeline.datasets import DatasetSpec, build_cache
classes = tuple(formats.available_classes(sys.argv[2], "simplified"))
spec = DatasetSpec(classes=classes, per_class=80, source="simplified", data_root=sys.argv[2])
build_cache(spec, sys.argv[1], workers=1)
"""


@pytest.mark.slow
def test_a_killed_cache_build_continues_where_it_stopped(shared, tmp_path):
    """build_cache of every simplified class of ../shared, killed with SIGKILL once it has recorded
    progress: nothing is used half-built, and the next build starts after the recorded classes and
    ends with the same cache as an uninterrupted build."""
    classes = tuple(formats.available_classes(shared, "simplified"))
    assert len(classes) > 100
    spec = DatasetSpec(classes=classes, per_class=80, source="simplified", data_root=str(shared))
    root = tmp_path / "killed"
    child = subprocess.Popen([sys.executable, "-c", CACHE_SCRIPT, str(root), str(shared)], start_new_session=True,
                             env={**os.environ, "PYTHONPATH": str(BENCH.parent)})
    deadline = time.monotonic() + 600
    recorded = []
    while not recorded and child.poll() is None and time.monotonic() < deadline:
        recorded = list(root.glob(".building-*/progress.json"))
        time.sleep(0.005)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    assert recorded, "the build finished (or failed) before recording any progress"
    done = json.loads(recorded[0].read_text())["classes_done"]
    assert 0 < done < len(classes)
    assert not [path for path in root.iterdir() if not path.name.startswith(".")]  # no cache in place

    calls = []
    resumed = build_cache(spec, root, workers=1, progress=lambda i, total, cls: calls.append(i))
    assert calls[0] == done + 1  # the classes recorded were not read again
    fresh = build_cache(spec, tmp_path / "fresh", workers=1)
    np.testing.assert_array_equal(resumed.images, fresh.images)
    np.testing.assert_array_equal(resumed.labels, fresh.labels)
    np.testing.assert_array_equal(resumed.split, fresh.split)
    assert resumed.meta == fresh.meta
    assert not list(root.glob(".building-*")) and not list((resumed.path).glob("*.tmp.npy"))
