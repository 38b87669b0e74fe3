"""Prediction latency: the web page in Chromium (TF.js wasm, WebGL and CPU backends) beside Python.

    python bench/bench_predict.py [--n 200] [--runs-dir DIR] [--runs RUN_DIR ...]

Trains a small cnn and mobilenet on ../shared (or uses `--runs-dir` holding runs named cnn-small and
mobilenet-small, or `--runs runs/cnn-56 runs/mobilenet-56 runs/qdnet-56` for the shipped models),
exports them with `pipeline.export`, serves a copy of web/ and, in headless Chromium,
times `window.quickdraw.predictStrokes` (preprocessing + model, exactly what a stroke triggers) on
`--n` real drawings per model and backend. The same drawings go through `Predictor.predict` in
Python. p50/p95 in milliseconds; ratios against Python. WebGL here is software-rendered (SwiftShader:
no GPU on this machine), so it says little about WebGL on a real GPU. The wasm backend runs
single-threaded with SIMD, as from any plain static server (threads need cross-origin isolation).
It also prints the backend the page picks when none is forced.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("QUICKDRAW_SHARED", REPO.parent / "shared" / "quickdraw"))
CLASSES = ("apple", "banana", "cat", "fish", "house", "bicycle", "eye", "diamond", "rainbow", "tree")
MODELS = {"cnn": {}, "mobilenet": {"alpha": 0.25, "input_size": 32}}
BACKENDS = {"wasm": "wasm (XNNPACK, SIMD, single-threaded)", "webgl": "webgl (software-rendered, SwiftShader)",
            "cpu": "cpu (plain JavaScript)"}

_TIME_JS = """
async ({drawings}) => {
  await window.quickdraw.ready;
  const times = [];
  for (const d of drawings) {
    const t0 = performance.now();
    await window.quickdraw.predictStrokes(d);
    times.push(performance.now() - t0);
  }
  return {times, backend: tf.getBackend()};
}
"""


_BACKEND_JS = """
async () => tf.getBackend() !== 'wasm' ? tf.getBackend() : 'wasm (' +
  ((await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')) ? 'SIMD' : 'no SIMD') + ', ' + tf.wasm.getThreadsCount() + ' thread(s))'
"""


def drawings(n: int) -> list:
    out = []
    files = sorted((SHARED / "simplified").glob("*.ndjson"))
    per_file = max(1, n // len(files) + 1)
    for path in files:
        with open(path, encoding="utf-8") as fh:
            for i, line in enumerate(fh):
                if i >= per_file:
                    break
                out.append(json.loads(line)["drawing"])
    return out[:n]


def train_runs(runs_dir: Path) -> dict:
    from pipeline import runs
    from pipeline.chunks import run_chunks

    os.environ.setdefault("QUICKDRAW_CACHE", str(runs_dir / "cache"))
    result = {}
    for model, options in MODELS.items():
        config = runs.make_config(name=f"{model}-small", model=model, classes=CLASSES, per_class=300,
                                  data_root=str(SHARED), epochs_per_chunk=2, batch_size=64,
                                  model_options=options)
        run_dir = runs.create_run(config, runs_dir)
        assert run_chunks(run_dir, chunks=1) == 0
        result[model] = run_dir
    return result


def percentiles(values) -> dict:
    values = np.asarray(values, dtype=np.float64)
    return {"p50_ms": float(np.percentile(values, 50)), "p95_ms": float(np.percentile(values, 95)),
            "n": int(len(values))}


def python_latency(run_dir: Path, sample: list) -> dict:
    from pipeline.predict import Predictor

    predictor = Predictor.from_run(run_dir)
    for d in sample[:5]:
        predictor.predict(d)  # warm-up: traces the model's call
    times = []
    for d in sample:
        start = time.perf_counter()
        predictor.predict(d)
        times.append((time.perf_counter() - start) * 1000)
    return percentiles(times)


def browser_latency(runs: dict, sample: list, workdir: Path) -> dict:
    from playwright.sync_api import sync_playwright

    from pipeline.browser import launch_kwargs
    from pipeline.export import export_run, static_server

    web = workdir / "web"
    (web / "models").mkdir(parents=True)
    for name in ("index.html", "app.js", "preprocess.js", "style.css"):
        shutil.copy(REPO / "web" / name, web / name)
    shutil.copytree(REPO / "web" / "vendor", web / "vendor")
    for run_dir in runs.values():
        export_run(run_dir, web_dir=web, verify=False)
    results = {}
    with static_server(web) as base, sync_playwright() as p:
        browser = p.chromium.launch(**launch_kwargs())
        try:
            page = browser.new_page()  # no ?backend=: the page's own choice
            page.goto(f"{base}/index.html")
            page.wait_for_function("document.body.dataset.model !== undefined", timeout=120_000)
            results["default"] = page.evaluate(_BACKEND_JS)
            page.close()
            for model, run_dir in runs.items():
                for backend in BACKENDS:
                    page = browser.new_page()
                    page.goto(f"{base}/index.html?model={run_dir.name}&backend={backend}")
                    page.wait_for_function("document.body.dataset.model !== undefined", timeout=120_000)
                    page.evaluate(_TIME_JS, {"drawings": sample[:5]})  # warm-up
                    out = page.evaluate(_TIME_JS, {"drawings": sample})
                    page.close()
                    if out["backend"] != backend:
                        results[(model, backend)] = {"error": f"ran on {out['backend']}"}
                        continue
                    results[(model, backend)] = percentiles(out["times"])
        finally:
            browser.close()
    return results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="predictions per model and backend")
    parser.add_argument("--runs-dir", help="folder holding runs cnn-small and mobilenet-small (else train them)")
    parser.add_argument("--runs", nargs="+", help="run folders to time instead (e.g. the shipped runs/cnn-56)")
    args = parser.parse_args(argv)
    from pipeline.browser import find_chromium

    if not (SHARED / "simplified").is_dir():
        raise SystemExit(f"no real drawings at {SHARED}; set QUICKDRAW_SHARED")
    if find_chromium() is None or not (REPO / "web" / "vendor" / "tf.min.js").exists():
        raise SystemExit("needs a Chromium and web/vendor/tf.min.js (`make web chromium`)")
    sample = drawings(args.n)
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        workdir = Path(tmp)
        if args.runs:
            runs = {Path(r).name: Path(r).resolve() for r in args.runs}
        elif args.runs_dir:
            runs = {m: Path(args.runs_dir) / f"{m}-small" for m in MODELS}
        else:
            runs = train_runs(workdir / "runs")
        python = {m: python_latency(r, sample) for m, r in runs.items()}
        browser = browser_latency(runs, sample, workdir)
    rows = []
    print(f"Prediction latency per drawing (preprocessing + model), {len(sample)} real drawings, ms")
    print(f"The page's default TF.js backend here (no ?backend=): {browser['default']}")
    print(f"{'model':10} {'where':50} {'p50':>8} {'p95':>8} {'p50 / Python':>13}")
    for model in runs:
        py = python[model]
        rows.append({"model": model, "where": "python (Predictor.predict, Keras CPU)", **py})
        print(f"{model:10} {'python (Predictor.predict, Keras CPU)':50} {py['p50_ms']:8.2f} {py['p95_ms']:8.2f} {1.0:13.2f}")
        for backend, label in BACKENDS.items():
            r = browser[(model, backend)]
            if "error" in r:
                print(f"{model:10} {'chromium ' + label:50} {r['error']}")
                continue
            rows.append({"model": model, "where": f"chromium {label}", **r, "ratio_p50": r["p50_ms"] / py["p50_ms"]})
            print(f"{model:10} {'chromium ' + label:50} {r['p50_ms']:8.2f} {r['p95_ms']:8.2f} "
                  f"{r['p50_ms'] / py['p50_ms']:13.2f}")
    return {"n": len(sample), "default_backend": browser["default"], "rows": rows}


if __name__ == "__main__":
    main()
