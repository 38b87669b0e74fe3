"""Training data: pick classes and a cap per class, render once into a memory-mapped uint8 cache,
split deterministically, feed Keras through tf.data. Used by `python -m pipeline train` (and
evaluate, and the benchmarks); the cache lives in $QUICKDRAW_CACHE (default data/cache).

Memory: the seed loaded every class with np.load, concatenated float64 arrays and converted them to
float32 - 13-19 GB for 340 x 3000 drawings. Here the images stay uint8 on disk (`images.npy`,
memory-mapped) and only the current batch is read and cast, inside the model.

Split: each drawing goes to train, validation or test by a hash of its identity (Google's key_id,
else the drawing's own bytes), so a drawing keeps its split when classes or caps change, and the
same drawings rendered two ways (bitmap28 / strokes) share one split.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline import formats
from pipeline.errors import DataFormatError, DrawingError, QuickDrawError
from pipeline.files import atomic_write_json, read_json
from pipeline.raster import render_many, render_pool
from pipeline.strokes import from_google

if TYPE_CHECKING:
    from pipeline.runs import RunConfig

CACHE_VERSION = 1
SPLITS = {"train": 0, "val": 1, "test": 2}
STROKE_SOURCES = ("simplified", "raw", "binary")
RENDER_CHUNK = 2000


@dataclass(frozen=True)
class DatasetSpec:
    classes: tuple[str, ...]
    per_class: int
    representation: str = "bitmap28"   # bitmap28 | strokes
    image_size: int = 28
    source: str = "auto"               # auto | numpy_bitmap | simplified | raw | binary
    data_root: str = "data"
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    time_channel: bool = False
    recognized_only: bool = False
    # How bitmap rows without a key_id are hashed into splits: "rows64" (vectorised, current) or
    # "blake2b" (per row; the first runs of this project). A run keeps its scheme for life.
    split_scheme: str = "rows64"

    @property
    def size(self) -> int:
        return 28 if self.representation == "bitmap28" else int(self.image_size)

    @property
    def channels(self) -> int:
        return 2 if (self.representation == "strokes" and self.time_channel) else 1


# ---------------------------------------------------------------- a run's dataset
def dataset_spec(config: RunConfig) -> DatasetSpec:
    """The DatasetSpec of a run's config (pipeline.runs.RunConfig)."""
    return DatasetSpec(
        classes=tuple(config.classes), per_class=config.per_class, representation=config.representation,
        image_size=config.image_size, source=config.source, data_root=config.data_root,
        val_fraction=config.val_fraction, test_fraction=config.test_fraction, time_channel=config.time_channel,
        split_scheme=config.split_scheme,
    )


def cache_root() -> Path:
    """Where caches are built: $QUICKDRAW_CACHE, else data/cache."""
    return Path(os.environ.get("QUICKDRAW_CACHE", "data/cache"))


def load_dataset(config: RunConfig) -> CachedDataset:
    """A run's cached dataset, built on first use (train, evaluate, export and the benchmarks)."""
    return build_cache(dataset_spec(config), cache_root())


# ---------------------------------------------------------------- sources
def source_for(spec: DatasetSpec, cls: str) -> tuple[str, Path]:
    """(format, file) that feeds a class: the spec's source, or with `auto` the best one present."""
    root = Path(spec.data_root)
    if spec.source != "auto":
        candidates = (spec.source,)
    elif spec.representation == "bitmap28":
        candidates = ("numpy_bitmap",) + STROKE_SOURCES
    elif spec.time_channel:
        candidates = ("raw", "simplified", "binary")
    else:
        candidates = STROKE_SOURCES
    for fmt in candidates:
        path = formats.find_class_file(root, fmt, cls)
        if path is not None:
            return fmt, path
    wanted = "stroke" if spec.representation == "strokes" else "bitmap or stroke"
    raise QuickDrawError(
        f"no {wanted} data for class '{cls}' under {root} (looked for {', '.join(candidates)}); fetch it with "
        f"`python -m pipeline download '{cls}' --format {candidates[0]} --per-class {spec.per_class} "
        f"--data {root}` (the data folder of a run is its config.json's data_root).")


def split_of(key: bytes, val_fraction: float, test_fraction: float) -> int:
    """0 train, 1 val, 2 test, from a hash of the drawing's identity (stable across specs)."""
    u = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") / 2.0 ** 64
    if u < test_fraction:
        return SPLITS["test"]
    if u < test_fraction + val_fraction:
        return SPLITS["val"]
    return SPLITS["train"]


def split_codes(u: np.ndarray, val_fraction: float, test_fraction: float) -> np.ndarray:
    """0 train, 1 val, 2 test for uniform numbers in [0, 1)."""
    codes = np.full(len(u), SPLITS["train"], np.uint8)
    codes[u < test_fraction + val_fraction] = SPLITS["val"]
    codes[u < test_fraction] = SPLITS["test"]
    return codes


def row_uniforms(rows: np.ndarray) -> np.ndarray:
    """A uniform number in [0, 1) per 784-byte bitmap row, from a 64-bit hash of its bytes computed
    for all rows at once (a per-row blake2b costs more than everything else in a cache build)."""
    words = np.ascontiguousarray(rows, dtype=np.uint8).view(np.uint64)  # (n, 98)
    h = np.full(len(words), 0x9E3779B97F4A7C15, np.uint64)
    with np.errstate(over="ignore"):
        for column in words.T:
            h ^= column
            h *= np.uint64(0xBF58476D1CE4E5B9)
            h ^= h >> np.uint64(31)
    return (h >> np.uint64(11)).astype(np.float64) / float(2 ** 53)


def _drawing_key(record: dict) -> bytes:
    key = record.get("key_id")
    if key not in (None, ""):
        return str(key).encode()
    return json.dumps(record.get("drawing"), separators=(",", ":")).encode()


def _stroke_records(fmt: str, path: Path, spec: DatasetSpec):
    recognized = True if spec.recognized_only else None
    if fmt == "binary":
        return formats.iter_binary(path, recognized=recognized)
    return formats.iter_ndjson(path, recognized=recognized)


# ---------------------------------------------------------------- the cache
class CachedDataset:
    """A built cache: `images` (N, H, W, C) uint8 memmap, `labels` int32, `split` uint8 (0/1/2)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        if not (self.path / "meta.json").exists():
            raise QuickDrawError(f"{self.path} is not a complete cache (no meta.json: its build was interrupted "
                                 "or is still running); run the build again, which finishes it.")
        self.meta = json.loads((self.path / "meta.json").read_text())
        self.classes = list(self.meta["classes"])
        self.images = np.load(self.path / "images.npy", mmap_mode="r", allow_pickle=False)
        self.labels = np.load(self.path / "labels.npy", allow_pickle=False)
        self.split = np.load(self.path / "split.npy", allow_pickle=False)

    def __len__(self) -> int:
        return len(self.labels)

    def indices(self, name: str) -> np.ndarray:
        if name not in SPLITS:
            raise QuickDrawError(f"unknown split '{name}'; use train, val or test.")
        return np.flatnonzero(self.split == SPLITS[name]).astype(np.int64)


def _fingerprint(spec: DatasetSpec) -> str:
    """Cache key: the spec plus the identity (path, size, mtime) of every source file."""
    files = []
    for cls in spec.classes:
        fmt, path = source_for(spec, cls)
        stat = path.stat()
        files.append([cls, fmt, str(path.resolve()), stat.st_size, int(stat.st_mtime)])
    blob = json.dumps({"spec": asdict(spec), "files": files, "version": CACHE_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


class _PartialArrays:
    """The memmaps of a cache being built and its `progress.json`: the one resume mechanism of both
    resumable builders (`build_cache`, `build_blocks`). `files` maps a name to (file, dtype, shape);
    `plan` (JSON) names what is being built. `open()` reuses the files ("r+") and returns the progress
    recorded when progress.json names this plan and every file is there with its dtype and shape, else
    removes the record and creates the files afresh, returning {}. `record(**progress)` flushes every
    memmap first and then writes progress.json atomically, so whatever it says is on disk is."""

    def __init__(self, folder: Path, plan: dict, files: dict[str, tuple[str, type, tuple]]):
        self.folder, self.plan, self.files, self.arrays = Path(folder), plan, files, {}

    def open(self) -> dict:
        progress = self._recorded()
        if progress is None:
            (self.folder / "progress.json").unlink(missing_ok=True)  # never a record of files about to change
            self.folder.mkdir(parents=True, exist_ok=True)
        for name, (file, dtype, shape) in self.files.items():
            self.arrays[name] = np.lib.format.open_memmap(self.folder / file, mode="r+" if progress is not None
                                                          else "w+", dtype=dtype, shape=shape)
        return progress or {}

    def _recorded(self) -> dict | None:
        try:
            recorded = read_json(self.folder / "progress.json")
        except (OSError, QuickDrawError):
            return None
        if recorded.get("plan") != self.plan:
            return None
        for file, dtype, shape in self.files.values():
            try:
                array = np.load(self.folder / file, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError):
                return None
            if array.dtype != np.dtype(dtype) or array.shape != tuple(shape):
                return None
        return {key: value for key, value in recorded.items() if key != "plan"}

    def __getitem__(self, name: str) -> np.memmap:
        return self.arrays[name]

    def record(self, **progress) -> None:
        for array in self.arrays.values():
            array.flush()
        atomic_write_json(self.folder / "progress.json", {"plan": self.plan, **progress})

    def close(self) -> None:
        for array in self.arrays.values():
            array.flush()
        self.arrays.clear()


def build_cache(spec: DatasetSpec, cache_root: Path | str, workers: int | None = None,
                progress=None) -> CachedDataset:
    """Render `spec` once into `cache_root/<fingerprint>/` (reused when it exists) and open it.

    Built in `cache_root/.building-<fingerprint>/` and renamed into place when complete, so a half
    cache is never used. The build is resumable: every second or so, between classes whose drawings
    are all rendered, the memmaps are flushed and `progress.json` records the classes done (written
    atomically); a build killed after that continues from there on the next call instead of starting
    over. Concurrent builders of one spec take turns (a flock on `.lock-<fingerprint>`).
    `progress(done_classes, total_classes, class_name)` is called as classes are read."""
    import fcntl

    if spec.representation not in ("bitmap28", "strokes"):
        raise QuickDrawError(f"unknown representation '{spec.representation}'; use bitmap28 or strokes.")
    if spec.per_class <= 0:
        raise QuickDrawError("per_class must be at least 1.")
    cache_root = Path(cache_root)
    fingerprint = _fingerprint(spec)
    final = cache_root / fingerprint
    if (final / "meta.json").exists():
        return CachedDataset(final)
    cache_root.mkdir(parents=True, exist_ok=True)
    with open(cache_root / f".lock-{fingerprint}", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if (final / "meta.json").exists():  # another builder finished it while we waited
            return CachedDataset(final)
        building = cache_root / f".building-{fingerprint}"
        building.mkdir(exist_ok=True)
        _build_into(building, spec, fingerprint, workers, progress)
        shutil.rmtree(final, ignore_errors=True)  # a folder without meta.json is no cache
        os.replace(building, final)
    return CachedDataset(final)


CHECKPOINT_SECONDS = 1.0  # how often a build records its progress (each record flushes the memmaps)


def _build_into(folder: Path, spec: DatasetSpec, fingerprint: str, workers: int | None, progress) -> None:
    size, channels = spec.size, spec.channels
    capacity = spec.per_class * len(spec.classes)
    partial = _PartialArrays(folder, {"fingerprint": fingerprint, "capacity": capacity}, {
        "images": ("images.tmp.npy", np.uint8, (capacity, size, size, channels)),
        "labels": ("labels.tmp.npy", np.int32, (capacity,)), "split": ("split.tmp.npy", np.uint8, (capacity,))})
    state = {"classes_done": 0, "position": 0, "per_class": {}, "sources": {}, "skipped": {}, **partial.open()}
    images, labels, split = partial["images"], partial["labels"], partial["split"]
    per_class_counts, sources, skipped = state["per_class"], state["sources"], state["skipped"]
    workers = workers or os.cpu_count() or 1
    stroke_classes = any(source_for(spec, cls)[0] != "numpy_bitmap" for cls in spec.classes)
    position = state["position"]
    last_checkpoint = time.monotonic()
    # Drawings of consecutive classes are rendered together, by one pool of processes for the whole
    # build: a class of a few dozen drawings alone would leave the cores waiting on each other.
    pending: list = []  # the drawings of rows pending_start... of images
    pending_start = 0
    with render_pool(workers) if workers > 1 and stroke_classes else contextlib.nullcontext() as pool:
        for label, cls in enumerate(spec.classes):
            if label < state["classes_done"]:
                continue
            fmt, path = source_for(spec, cls)
            sources[cls] = f"{fmt}:{path}"
            start = position
            if fmt == "numpy_bitmap":
                if spec.representation != "bitmap28":
                    raise QuickDrawError(f"class '{cls}' only has numpy_bitmap data, which has no strokes; the "
                                         "strokes representation needs simplified or raw files.")
                rows = formats.read_numpy_bitmap(path)[:spec.per_class]
                n = len(rows)
                images[start:start + n] = np.asarray(rows).reshape(n, 28, 28, 1)
                if spec.split_scheme == "blake2b":
                    keys = [bytes(row) for row in np.asarray(rows)]
                else:
                    keys = None
                    split[start:start + n] = split_codes(row_uniforms(np.asarray(rows)), spec.val_fraction,
                                                         spec.test_fraction)
                skipped[cls] = 0
            else:
                # Google's JSON where raster's fast paths take it (simplified drawings), else the strokes
                # parsed here to keep only usable drawings.
                as_json = fmt != "raw" and (spec.representation == "bitmap28" or not spec.time_channel)
                drawings, keys, bad = [], [], 0
                for record in _stroke_records(fmt, path, spec):
                    try:
                        strokes = from_google(record["drawing"])
                        if not strokes:
                            raise DrawingError("empty")
                    except (DrawingError, KeyError, TypeError):
                        bad += 1
                        continue
                    drawings.append(record["drawing"] if as_json else strokes)
                    keys.append(_drawing_key(record))
                    if len(drawings) >= spec.per_class:
                        break
                n = len(drawings)
                if pending and pending_start + len(pending) != start:  # a numpy_bitmap class came between
                    _render_into(images, pending_start, pending, spec, workers, pool)
                    pending = []
                if not pending:
                    pending_start = start
                pending.extend(drawings)
                if len(pending) >= workers * RENDER_CHUNK:
                    _render_into(images, pending_start, pending, spec, workers, pool)
                    pending = []
                skipped[cls] = bad
            if n == 0:
                raise DataFormatError(f"class '{cls}' has no usable drawings in {path}; check or re-download it.")
            labels[start:start + n] = label
            if keys is not None:
                split[start:start + n] = [split_of(k, spec.val_fraction, spec.test_fraction) for k in keys]
            per_class_counts[cls] = n
            position += n
            if not pending and time.monotonic() - last_checkpoint >= CHECKPOINT_SECONDS:
                # Every row so far is rendered: record it, so a killed build resumes after this class.
                partial.record(**{**state, "classes_done": label + 1, "position": position})
                last_checkpoint = time.monotonic()
            if progress:
                progress(label + 1, len(spec.classes), cls)
        if pending:
            _render_into(images, pending_start, pending, spec, workers, pool)
    partial.close()
    del images
    # Trim to what was found (classes can have fewer drawings than the cap): rewrite the header only.
    _truncate_npy(folder / "images.tmp.npy", folder / "images.npy", (position, size, size, channels))
    np.save(folder / "labels.npy", labels[:position])
    np.save(folder / "split.npy", split[:position])
    counts = {name: int((split[:position] == code).sum()) for name, code in SPLITS.items()}
    del labels, split
    for name in ("labels.tmp.npy", "split.tmp.npy", "progress.json"):
        (folder / name).unlink(missing_ok=True)
    meta = {"spec": asdict(spec), "classes": list(spec.classes), "count": position,
            "per_class": per_class_counts, "sources": sources, "skipped": skipped,
            "splits": counts, "version": CACHE_VERSION}
    atomic_write_json(folder / "meta.json", meta)


def _render_into(images, start: int, drawings: list, spec: DatasetSpec, workers: int, pool) -> None:
    render_many(drawings, spec.size, spec.representation == "strokes", spec.time_channel, workers=workers,
                chunk=RENDER_CHUNK, executor=pool, out=images[start:start + len(drawings)])


def _truncate_npy(source: Path, target: Path, shape: tuple) -> None:
    """Give a uint8 .npy a smaller first dimension without copying gigabytes: rewrite its header."""
    import io

    npy = np.lib.format
    header_io = {(1, 0): (npy.read_array_header_1_0, npy.write_array_header_1_0),
                 (2, 0): (npy.read_array_header_2_0, npy.write_array_header_2_0)}
    with open(source, "r+b") as handle:
        version = npy.read_magic(handle)
        fits = version in header_io  # (3, 0) is only for unicode field names: never a uint8 image array
        if fits:
            read_header, write_header = header_io[version]
            read_header(handle)
            data_offset = handle.tell()
            header = io.BytesIO()
            write_header(header, {"descr": "|u1", "fortran_order": False, "shape": tuple(shape)})
            # The header keeps its length when the first dimension shrinks (numpy pads it for growth).
            fits = len(header.getvalue()) == data_offset
        if fits:
            handle.seek(0)
            handle.write(header.getvalue())
            handle.truncate(data_offset + int(np.prod(shape)))
    if fits:
        os.replace(source, target)
        return
    # The header would change length (rare): copy in blocks instead.
    rows = np.load(source, mmap_mode="r", allow_pickle=False)[:shape[0]]
    out = np.lib.format.open_memmap(target, mode="w+", dtype=np.uint8, shape=shape)
    for begin in range(0, shape[0], 65536):
        out[begin:begin + 65536] = rows[begin:begin + 65536]
    out.flush()
    del out, rows
    source.unlink()


# ---------------------------------------------------------------- block-built caches (resumable)
BLOCK_FORMAT = 2  # part of the plan progress.json records: a folder of another format is started over


def build_blocks(folder: Path | str, count: int, size: int, make_block, identity: dict, classes,
                 block_size: int = 10000, workers: int | None = None, progress=None) -> tuple[CachedDataset, int]:
    """Render `count` colour-coded drawings into the cache folder `folder`, block by block, resumably;
    returns (the dataset, the block this call started from: 0 unless it resumed a killed build).
    `bench/bench_scale.py` builds its million drawings with it.

    `make_block(start, stop) -> (drawings, labels, split codes)` gives rows start..stop-1 and must be a
    pure function of its arguments: a resumed build asks again only for the blocks not yet done.
    `identity` (JSON) names what the cache holds; a folder whose progress names another identity or
    shape is started over. The images go straight from the render_pool workers into a uint8 memmap
    (`images.npy`), never an in-memory array; after each block the three memmaps are flushed and then
    `progress.json` records the blocks done (atomically), so a killed build loses at most the block in
    flight. `meta.json` is written last: until it exists `CachedDataset` refuses the folder.
    `progress(blocks_done, blocks_total)` is called after each block."""
    folder = Path(folder)
    if count <= 0 or block_size <= 0:
        raise QuickDrawError(f"a block-built cache needs at least one drawing and block (got {count}, {block_size}).")
    shape = (count, size, size, 1)
    plan = {"format": BLOCK_FORMAT, "identity": identity, "shape": list(shape), "block_size": block_size}
    blocks = -(-count // block_size)
    if (folder / "meta.json").exists() and read_json(folder / "meta.json").get("plan") == plan:
        return CachedDataset(folder), blocks
    (folder / "meta.json").unlink(missing_ok=True)  # another plan's: this folder is no such cache any more
    partial = _PartialArrays(folder, plan, {"images": ("images.npy", np.uint8, shape),
                                            "labels": ("labels.npy", np.int32, (count,)),
                                            "split": ("split.npy", np.uint8, (count,))})
    done = resumed_from = int(partial.open().get("blocks_done", 0))
    images, labels, split = partial["images"], partial["labels"], partial["split"]
    from concurrent.futures import ThreadPoolExecutor

    workers = workers or os.cpu_count() or 1
    spans = [(b * block_size, min(count, (b + 1) * block_size)) for b in range(done, blocks)]
    # The next block is made in a thread while the workers render this one (make_block is the parent's
    # work; the waiting main thread holds no GIL).
    with render_pool(workers) as pool, ThreadPoolExecutor(1) as maker:
        upcoming = maker.submit(make_block, *spans[0]) if spans else None
        for number, (start, stop) in enumerate(spans):
            drawings, block_labels, block_split = upcoming.result()
            if number + 1 < len(spans):
                upcoming = maker.submit(make_block, *spans[number + 1])
            if len(drawings) != stop - start:
                raise ValueError(f"make_block({start}, {stop}) gave {len(drawings)} drawings, not {stop - start}.")
            render_many(drawings, size, colour_coded=True, workers=workers, chunk=RENDER_CHUNK, executor=pool,
                        out=images[start:stop])
            labels[start:stop] = block_labels
            split[start:stop] = block_split
            done += 1
            partial.record(blocks_done=done)
            if progress:
                progress(done, blocks)
    all_split = np.asarray(split)
    meta = {"classes": list(classes), "count": count, "plan": plan, "version": CACHE_VERSION,
            "splits": {name: int((all_split == code).sum()) for name, code in SPLITS.items()}}
    partial.close()
    del images, labels, split, all_split
    atomic_write_json(folder / "meta.json", meta)
    return CachedDataset(folder), resumed_from


# ---------------------------------------------------------------- feeding
def epoch_order(indices, seed: int, epoch: int) -> np.ndarray:
    """The shuffled order of an epoch: a pure function of (seed, epoch), so resume replays it."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(np.asarray(indices))


def _gather(images, chunk: np.ndarray) -> np.ndarray:
    # Sorted reads from the memmap are sequential-ish on disk; then restore the shuffled order.
    sort = np.argsort(chunk, kind="stable")
    block = np.empty((len(chunk),) + images.shape[1:], np.uint8)
    block[sort] = images[chunk[sort]]
    return block


def iter_batches(dataset: CachedDataset, order, batch_size: int, start_batch: int = 0, prefetch: int = 3):
    """(uint8 images, int32 labels) numpy batches in `order` from batch `start_batch`, read ahead by
    a background thread. The single-device trainer's feed: a tf.data pipeline costs ~3x more per batch
    on a CPU, which matters for a model as small as the seed's CNN."""
    import queue
    import threading

    order = np.asarray(order, dtype=np.int64)
    starts = range(start_batch * batch_size, len(order), batch_size)
    images, labels = dataset.images, dataset.labels
    ready: queue.Queue = queue.Queue(maxsize=prefetch)
    stop = threading.Event()

    def produce():
        try:
            for begin in starts:
                chunk = order[begin:begin + batch_size]
                item = (_gather(images, chunk), labels[chunk])
                while not stop.is_set():
                    try:
                        ready.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as exc:  # surfaced in the consumer, not lost in the thread
            ready.put(exc)
            return
        ready.put(None)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


def batches(dataset: CachedDataset, order, batch_size: int, start_batch: int = 0, prefetch: int = 4):
    """tf.data of (uint8 images (B, H, W, C), int32 labels (B,)) in `order`, from batch `start_batch`;
    the feed for tf.distribute strategies, which shard a tf.data pipeline across replicas/workers."""
    import tensorflow as tf

    order = np.asarray(order, dtype=np.int64)
    starts = np.arange(start_batch * batch_size, len(order), batch_size)
    images, labels = dataset.images, dataset.labels
    _, h, w, c = images.shape

    def load(i):
        begin = int(starts[int(i)])
        chunk = order[begin:begin + batch_size]
        return _gather(images, chunk), labels[chunk]

    data = tf.data.Dataset.range(len(starts)).map(
        lambda i: tf.numpy_function(load, [i], (tf.uint8, tf.int32), stateful=False),
        num_parallel_calls=2, deterministic=True)
    data = data.map(lambda x, y: (tf.ensure_shape(x, (None, h, w, c)), tf.ensure_shape(y, (None,))))
    return data.prefetch(prefetch)
