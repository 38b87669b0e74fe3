"""`python -m pipeline simplify` and `rasterize` on real files."""

from __future__ import annotations

import json

import numpy as np

from pipeline.cli import main
from pipeline.raster import render_bitmap
from pipeline.strokes import from_google


def test_rasterize_simplified_file_matches_google(shared, tmp_path, capsys):
    source = shared / "pairs" / "cat.ndjson"
    out = tmp_path / "cat.npy"
    assert main(["rasterize", str(source), str(out)]) == 0
    rows = np.load(out, allow_pickle=False)
    expected = np.array([json.loads(line)["bitmap"] for line in source.read_text().splitlines()], np.uint8)
    assert rows.dtype == np.uint8 and rows.shape == expected.shape
    np.testing.assert_array_equal(rows, expected)
    assert "rendered" in capsys.readouterr().out


def test_simplify_then_rasterize_raw_with_garbage_lines(shared, tmp_path, capsys):
    lines = (shared / "raw" / "cat.ndjson").read_text().splitlines()[:20]
    source = tmp_path / "raw.ndjson"
    source.write_text("\n".join(lines[:10] + ["{not json", '{"drawing": [[[1, "x"]]]}'] + lines[10:]) + "\n")
    simplified = tmp_path / "simple.ndjson"
    assert main(["simplify", str(source), str(simplified)]) == 0
    assert "skipped 2" in capsys.readouterr().out
    records = [json.loads(line) for line in simplified.read_text().splitlines()]
    assert len(records) == 20 and records[0]["word"] == "cat" and "key_id" in records[0]
    out = tmp_path / "raw.npy"
    assert main(["rasterize", str(source), str(out), "--size", "64", "--colour-coded"]) == 0
    rows = np.load(out, allow_pickle=False)
    assert rows.shape == (20, 64 * 64)
    out28 = tmp_path / "raw28.npy"
    assert main(["rasterize", str(simplified), str(out28)]) == 0
    np.testing.assert_array_equal(np.load(out28)[0], render_bitmap(from_google(records[0]["drawing"])).ravel())


def test_missing_input_is_one_line(tmp_path, capsys):
    assert main(["rasterize", str(tmp_path / "nope.ndjson"), str(tmp_path / "x.npy")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "nope.ndjson" in err
