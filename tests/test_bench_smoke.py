"""Smoke runs of the data and rendering benchmarks (`--quick`): they run end to end on the real shared
data and print their tables and ratios. Targets are not asserted here (tests never assert wall-clock
times; at --quick sizes fixed start-up costs dominate) - `make bench` / `python -m bench` checks them."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load(name: str):
    """The benchmark script as a module (bench/ is scripts, not an installed package)."""
    spec = importlib.util.spec_from_file_location(f"bench_smoke_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench_data, bench_render, bench_scale = _load("bench_data"), _load("bench_render"), _load("bench_scale")
RATIO = r"(\d+\.\d+)x"


@pytest.mark.slow
def test_bench_data_quick(shared, capsys):
    code = bench_data.main(["--quick"])
    out = capsys.readouterr().out
    assert code in (0, 1), out
    assert re.search(r"^seed +10 +5000 ", out, re.M), out
    assert re.search(r"^project +20 +10000 ", out, re.M), out
    for name in ("time per drawing", "peak memory per drawing"):
        match = re.search(rf"seed/project {name}: {RATIO} \(target >= 5x: (PASS|FAIL)\)", out)
        assert match and float(match.group(1)) > 0, out


@pytest.mark.slow
def test_bench_render_quick(shared, capsys):
    code = bench_render.main(["--quick"])
    out = capsys.readouterr().out
    assert code in (0, 1), out
    for row in ("exact-28    render_bitmap, 1 core", "colour-64   render_colour_coded, 1 core",
                "cairo-64    the same drawn by cairo, 1 core", "cv2-64      Kaggle cv2.line, 1 core", "exact-28    render_many, 2 workers",
                "seed cnn    model.fit, batch 256"):
        match = re.search(rf"^{re.escape(row)}.*? +(\d+) +\d+\.\d +(\d+)$", out, re.M)
        assert match and int(match.group(1)) > 0, (row, out)
    assert re.search(rf"exact-28 \(2 workers\) / seed cnn training, wall clock: {RATIO} \(target > 1: (PASS|FAIL)\)",
                     out), out
    assert re.search(rf"colour-64 / cv2-64 per core: {RATIO} wall \(target >= 1.0: (PASS|FAIL)\)", out), out
    match = re.search(r"colour-64 vs cairo-64 mean absolute error: (\d+\.\d+) grey levels .*\(target <= 1: (PASS|FAIL)\)",
                      out)
    assert match and float(match.group(1)) > 0, out


@pytest.mark.slow
def test_bench_scale_at_a_few_thousand_drawings(shared, capsys, tmp_path):
    code = bench_scale.main(["--drawings", "3000", "--block", "1000", "--cache", str(tmp_path / "cache")])
    out = capsys.readouterr().out
    assert code in (0, 1), out
    build = re.search(r"^build: +(\d+\.\d) s, (\d+) drawings/s, (\d+) drawings/s per core", out, re.M)
    assert build and int(build.group(2)) > 0, out
    cache = re.search(r"^cache: +(\d+\.\d+) GB on disk \((\d+) bytes a drawing\)", out, re.M)
    assert cache and int(cache.group(2)) >= 64 * 64, out  # the images alone are 4096 bytes a drawing
    epoch = re.search(r"^epoch: +(\d+) training drawings in (\d+) shuffled batches", out, re.M)
    assert epoch and 2000 < int(epoch.group(1)) < 3000, out
    assert re.search(r"build \+ epoch (\d+) MB \(target <= 1536 MB: (PASS|FAIL)\)", out), out
    assert "3000 x 64 x 64 x 4 bytes = 0.05 GB" in out, out
    assert (tmp_path / "cache" / "meta.json").exists()


def test_kaggle_cv2_renderer_draws_stroke_order_intensities():
    """The cv2 side of the comparison is a real renderer: first stroke 255, eleventh and later 125."""
    drawing = [[[10, 240], [10, 10]]] + [[[10, 240], [40 + 20 * i, 40 + 20 * i]] for i in range(10)]
    image = bench_render.kaggle_cv2_render(drawing, size=256)
    assert image.shape == (256, 256)
    assert image[10, 128] == 255
    assert image[40 + 20 * 1, 128] == 255 - 2 * 13
    assert image[40 + 20 * 9, 128] == 255 - 10 * 13
    assert image[128, 5] == 0
    assert bench_render.kaggle_cv2_render(drawing, size=64).shape == (64, 64)


def test_bench_train_counts_the_cnns_flops_and_the_machines_peak():
    """The FLOP rate's two inputs: the profiler's count agrees with the CNN's multiply-adds from its layer
    shapes (2 FLOP each), and the peak is cores x 32 FLOP/cycle x a clock read from /proc/cpuinfo."""
    bench_train = _load("bench_train")
    classes = 20
    multiply_adds = (28 * 28 * 16 * 9 * 1 + 14 * 14 * 32 * 9 * 16 + 7 * 7 * 64 * 9 * 32 + 3 * 3 * 64 * 128
                     + 128 * classes)
    counted = bench_train.forward_flops("cnn", classes)
    assert 2 * multiply_adds <= counted <= 1.02 * 2 * multiply_adds  # plus biases, activations, pooling
    peak, ghz, cores = bench_train.peak_gflops()
    assert 0.5 < ghz < 10 and cores >= 1 and peak == pytest.approx(cores * 32 * ghz)


@pytest.mark.slow
def test_bench_precision_trains_both_precisions_through_the_pipeline(shared, capsys, cache_dir, monkeypatch):
    monkeypatch.setenv("QUICKDRAW_CACHE", str(cache_dir))
    result = _load("bench_precision").main(["--per-class", "60", "--epochs", "1", "--seeds", "0"])
    out = capsys.readouterr().out
    assert [run["precision"] for run in result["runs"]] == ["float32", "mixed_bfloat16"], out
    assert all(0.0 <= run["val_top1"] <= 1.0 and run["seconds"] > 0 for run in result["runs"]), out
    assert re.search(rf"mixed_bfloat16 trains {RATIO} as fast as float32; mean val top-1", out), out


def test_bench_name_remeasures_one_benchmark_and_keeps_the_others(tmp_path, monkeypatch):
    """`python -m bench NAME` rewrites its own section of RESULTS.md and keeps the others, marked with
    the time they were measured; an unknown name is refused."""
    spec = importlib.util.spec_from_file_location("bench_smoke_main", BENCH / "__main__.py")
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    (tmp_path / "fast.py").write_text("print('fast: 2.00x (target >= 1: PASS)')\n")
    monkeypatch.setattr(runner, "HERE", tmp_path)
    monkeypatch.setattr(runner, "BENCHMARKS", {"slow": ("slow.py", "the slow one"), "fast": ("fast.py", "the fast one")})
    (tmp_path / "RESULTS.md").write_text("# Benchmark results\n\nWritten by `make bench` (`python -m bench`) on "
                                         "2026-01-02 03:04 on this machine (2 cores, no GPU).\n\n## the slow one\n\n"
                                         "`python bench/slow.py` (600 s)\n\n```\nslow: 1.50x\n```\n\n## the fast one\n\n"
                                         "`python bench/fast.py` (1 s)\n\n```\nfast: 1.00x\n```\n")
    assert runner.main(["fast"]) == 0
    text = (tmp_path / "RESULTS.md").read_text()
    assert text.index("## the slow one") < text.index("## the fast one")  # the benchmarks' order
    assert "`python bench/slow.py` (measured 2026-01-02 03:04) (600 s)" in text and "slow: 1.50x" in text
    assert "fast: 2.00x" in text and "fast: 1.00x" not in text
    assert runner.main(["nonsense"]) == 2
