"""File-to-file conversions behind two CLI commands:

    python -m pipeline simplify RAW.ndjson OUT.ndjson
    python -m pipeline rasterize IN.ndjson OUT.npy [--size 28] [--colour-coded]

Input lines that are not valid drawings are skipped and counted (never a crash); every other field of
an input line is kept by `simplify` and ignored by `rasterize`. Outputs appear atomically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import DrawingError, QuickDrawError
from pipeline.files import atomic_output, atomic_path
from pipeline.formats import ReadStats, iter_ndjson
from pipeline.raster import MAX_SIZE, MIN_SIZE, render_many
from pipeline.strokes import from_google, simplify, to_google, to_simplified


@dataclass
class ConvertStats:
    written: int = 0
    skipped: int = 0


def simplify_file(input_path, output_path) -> ConvertStats:
    """Google's simplification of every raw drawing of an ndjson file, other fields kept."""
    input_path, output_path = Path(input_path), Path(output_path)
    stats, read = ConvertStats(), ReadStats()
    with atomic_output(output_path, "w", encoding="utf-8") as out:
        for record in iter_ndjson(input_path, stats=read):
            try:
                record["drawing"] = to_google(simplify(from_google(record["drawing"])))
            except DrawingError:
                stats.skipped += 1
                continue
            out.write(json.dumps(record, separators=(",", ":")) + "\n")
            stats.written += 1
    stats.skipped += read.skipped
    return stats


def rasterize_file(input_path, output_path, size: int = 28, colour_coded: bool = False,
                   batch: int = 20000) -> ConvertStats:
    """uint8 (N, size*size) rows, in input order, of simplified or raw drawings (raw ones are
    simplified first); Google-exact at size 28 without --colour-coded."""
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise QuickDrawError(f"--size {size} is out of range; use {MIN_SIZE}-{MAX_SIZE}.")
    input_path, output_path = Path(input_path), Path(output_path)
    stats, read = ConvertStats(), ReadStats()
    drawings = []
    for record in iter_ndjson(input_path, stats=read):
        try:
            drawings.append(to_google(to_simplified(record["drawing"])))
        except DrawingError:
            stats.skipped += 1
    with atomic_path(output_path) as temp:
        rows = np.lib.format.open_memmap(temp, mode="w+", dtype=np.uint8, shape=(len(drawings), size * size))
        for start in range(0, len(drawings), batch):
            images = render_many(drawings[start:start + batch], size, colour_coded)
            rows[start:start + len(images)] = images.reshape(len(images), -1)
        rows.flush()
        del rows
    stats.written = len(drawings)
    stats.skipped += read.skipped
    return stats
