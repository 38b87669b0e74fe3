"""One million colour-coded drawings on this machine: build the 64 px cache, then stream one epoch.

    python bench/bench_scale.py [--drawings 100000] [--workers 2] [--block 10000] [--cache DIR] [--keep]

The drawings are made from the real simplified drawings of ../shared/quickdraw/simplified (or
$QUICKDRAW_SHARED) by a random small affine jitter each (rotation up to +-0.15 rad, scale 0.85-1.05
per axis, shear up to +-0.1, shift up to +-12 units; coordinates rounded and clipped to 0..255, so
they stay Google's simplified form), labels spread uniformly over 340 synthetic classes: the
benchmark measures throughput and memory, not accuracy. The cache is built by
pipeline.datasets.build_blocks (resumable, block by block, straight into a uint8 memmap through the
render_pool workers); then one shuffled epoch of the training split is streamed in batches of 256 by
pipeline.datasets.iter_batches, as the trainer reads it.

Reported: build time, drawings per second (per core = over `--workers` processes), cache size on disk
(64 x 64 bytes a drawing: about 4.1 GB at a million), and the peak resident memory of the whole
process (this process and its render workers, RssAnon: page cache and the memory-mapped cache file
excluded) during build and epoch, against the 1.5 GB target and beside what the seed's in-memory float
arrays would need. The cache goes to a temporary folder under /tmp (removed at the end unless --keep);
with --cache DIR an interrupted build there is resumed.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.memory import PeakMemory  # noqa: E402

SHARED = Path(os.environ.get("QUICKDRAW_SHARED", REPO.parent / "shared" / "quickdraw"))
CLASSES = 340
BATCH_SIZE = 256
MEMORY_TARGET_MB = 1536
SEED = 13


# ---------------------------------------------------------------- the drawings
class JitteredDrawings:
    """`make_block(start, stop)` for build_blocks: jittered copies of real drawings, a pure function of
    (seed, start, stop). All source points live in flat arrays, so a block is transformed at once and
    only cut into Google's JSON lists at the end."""

    def __init__(self, folder: Path, seed: int = SEED):
        from pipeline.formats import iter_ndjson

        xs, ys, stroke_ends, drawing_strokes = [], [], [], [0]
        for path in sorted(folder.glob("*.ndjson")):
            for record in iter_ndjson(path):
                strokes = [s for s in record["drawing"] if len(s) >= 2 and len(s[0]) and len(s[0]) == len(s[1])]
                if not strokes:
                    continue
                for stroke in strokes:
                    xs += stroke[0]
                    ys += stroke[1]
                    stroke_ends.append(len(xs))
                drawing_strokes.append(len(stroke_ends))
        if len(drawing_strokes) < 2:
            raise SystemExit(f"no simplified drawings under {folder}")
        self.xs, self.ys = np.array(xs, np.float64), np.array(ys, np.float64)
        self.stroke_ends = np.array(stroke_ends, np.int64)
        self.stroke_starts = np.concatenate([[0], self.stroke_ends[:-1]])
        self.drawing_strokes = np.array(drawing_strokes, np.int64)
        self.seed = seed

    def __len__(self) -> int:
        return len(self.drawing_strokes) - 1

    def __call__(self, start: int, stop: int):
        from pipeline.datasets import split_codes

        n = stop - start
        rng = np.random.default_rng([self.seed, start, stop])
        source = rng.integers(0, len(self), n)
        # The strokes of the chosen drawings, in order, and the points of those strokes.
        first, last = self.drawing_strokes[source], self.drawing_strokes[source + 1]
        per_drawing = last - first
        strokes = np.repeat(first - np.cumsum(per_drawing) + per_drawing, per_drawing) + np.arange(per_drawing.sum())
        lengths = self.stroke_ends[strokes] - self.stroke_starts[strokes]
        points = (np.repeat(self.stroke_starts[strokes] - np.cumsum(lengths) + lengths, lengths)
                  + np.arange(lengths.sum()))
        owner = np.repeat(np.repeat(np.arange(n), per_drawing), lengths)
        angle, shear = rng.uniform(-0.15, 0.15, n), rng.uniform(-0.1, 0.1, n)
        scale_x, scale_y = rng.uniform(0.85, 1.05, n), rng.uniform(0.85, 1.05, n)
        shift = rng.uniform(-12, 12, (2, n))
        cos, sin = np.cos(angle), np.sin(angle)
        # [x', y'] = R(angle) @ [[sx, shear], [0, sy]] @ ([x, y] - centre) + centre + shift
        a, b = cos * scale_x, cos * shear - sin * scale_y
        c, d = sin * scale_x, sin * shear + cos * scale_y
        x, y = self.xs[points] - 127.5, self.ys[points] - 127.5
        new_x = a[owner] * x + b[owner] * y + 127.5 + shift[0][owner]
        new_y = c[owner] * x + d[owner] * y + 127.5 + shift[1][owner]
        new_x = np.clip(np.rint(new_x), 0, 255).astype(np.int64).tolist()
        new_y = np.clip(np.rint(new_y), 0, 255).astype(np.int64).tolist()
        ends = np.cumsum(lengths).tolist()
        drawing_ends = np.cumsum(per_drawing).tolist()
        drawings, stroke, begin = [], 0, 0
        for drawing_end in drawing_ends:
            drawing = []
            while stroke < drawing_end:
                end = ends[stroke]
                drawing.append([new_x[begin:end], new_y[begin:end]])
                begin, stroke = end, stroke + 1
            drawings.append(drawing)
        labels = rng.integers(0, CLASSES, n).astype(np.int32)
        return drawings, labels, split_codes(rng.random(n), 0.1, 0.1)


# ---------------------------------------------------------------- measuring
def _cpu_seconds() -> float:
    """CPU seconds of this process and of its reaped children (the render workers)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def disk_bytes(folder: Path) -> int:
    """Bytes the cache folder really occupies on disk (allocated blocks)."""
    return sum(path.stat().st_blocks * 512 for path in folder.iterdir() if path.is_file())


# ---------------------------------------------------------------- main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drawings", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--block", type=int, default=10_000, help="drawings per resumable block")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--cache", type=Path, help="cache folder (kept; an interrupted build there resumes)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary cache folder")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]  # other work on the machine when we start: say it beside the times
    if not (SHARED / "simplified").is_dir():
        print(f"skipped: no Quick, Draw! simplified/ at {SHARED} (set QUICKDRAW_SHARED to the shared quickdraw folder)")
        return 0
    from pipeline.datasets import build_blocks, epoch_order, iter_batches

    folder = args.cache or Path(tempfile.mkdtemp(prefix="bench-scale-", dir="/tmp"))
    try:
        with PeakMemory(interval=0.05, children=True) as memory:
            make_block = JitteredDrawings(SHARED / "simplified")
            identity = {"bench": "scale", "seed": SEED, "sources": len(make_block), "classes": CLASSES}
            cpu, start = _cpu_seconds(), time.perf_counter()
            dataset, resumed_from = build_blocks(folder, args.drawings, args.size, make_block, identity,
                                                 [f"class{i:03d}" for i in range(CLASSES)],
                                                 block_size=args.block, workers=args.workers)
            build_seconds, build_cpu = time.perf_counter() - start, _cpu_seconds() - cpu
            build_peak, build_own = memory.peak_mb, memory.own_peak_mb
            train = dataset.indices("train")
            start = time.perf_counter()
            seen = ink = 0
            for images, labels in iter_batches(dataset, epoch_order(train, SEED, 0), BATCH_SIZE):
                seen += len(labels)
                ink += int(images[:, args.size // 2].sum())  # touch every batch's pixels
            epoch_seconds = time.perf_counter() - start
        size_on_disk = disk_bytes(folder)
    finally:
        if args.cache is None and not args.keep:
            shutil.rmtree(folder, ignore_errors=True)

    n, cores = args.drawings, args.workers
    rate = n / build_seconds
    blocks = -(-n // args.block)
    print(f"{n} colour-coded {args.size} px drawings jittered from {len(make_block)} real simplified drawings, "
          f"{CLASSES} synthetic classes; {cores} render workers, blocks of {args.block}; {os.cpu_count()} cores "
          f"(1-minute load average {load_before:.1f} before the build)")
    if resumed_from:
        print(f"(resumed an interrupted build at block {resumed_from} of {blocks}: the build figures cover the "
              "rest only)")
    print()
    print(f"build:  {build_seconds:.1f} s, {rate:.0f} drawings/s, {rate / cores:.0f} drawings/s per core "
          f"({n / build_cpu:.0f} per CPU-second, parent and workers counted)")
    print(f"cache:  {size_on_disk / 1e9:.2f} GB on disk ({size_on_disk / n:.0f} bytes a drawing) in {folder}")
    print(f"epoch:  {seen} training drawings in {-(-seen // BATCH_SIZE)} shuffled batches of {BATCH_SIZE}, "
          f"{epoch_seconds:.1f} s ({seen / epoch_seconds:.0f} drawings/s)")
    peak = memory.peak_mb
    verdict = "PASS" if peak <= MEMORY_TARGET_MB else "FAIL"
    print(f"peak resident memory (RssAnon, this process + render workers, page cache excluded): build "
          f"{build_peak:.0f} MB (this process {build_own:.0f} MB), build + epoch {peak:.0f} MB "
          f"(target <= {MEMORY_TARGET_MB} MB: {verdict})")
    images_gb = n * args.size * args.size * 4 / 1e9
    print(f"the seed's way, all images as in-memory float32: {n} x {args.size} x {args.size} x 4 bytes = "
          f"{images_gb:.2f} GB for the images alone ({images_gb * 1e3 / peak:.1f}x this peak)")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
