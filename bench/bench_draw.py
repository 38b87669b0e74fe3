"""The Draw page's own latency - strokes in to top-5 - beside the bare model call it wraps.

    python bench/bench_draw.py [--n 100] [--runs runs/cnn-56 runs/qdnet-56] [--no-pair] [--browser 30]

Real drawings of each model's classes (../shared/quickdraw/simplified, the first of each class in turn)
are given to the Draw page exactly as its canvas reports them (Fabric `Path` objects, `M` then `L`
commands in canvas pixels, drawn 15 px in from the edges of the 280 px canvas) and the page itself runs:
dashboard/views/draw.py's `render` under Streamlit's AppTest, which runs a page as `streamlit run`
does (a new script thread per run, Streamlit's clean-up after it), the drawing injected in place of the
canvas, one model at a time (Model 2 "(none)"), once per drawing with the whole drawing. Its runs/ is
the folder holding the runs, so the page lists every run there as it does for a user.

Rows, p50 / p95 in milliseconds over the drawings, and each p50 as a multiple of the bare model call:
- model call: `Predictor.probabilities` on the prepared image of one drawing, timed here in a loop
  (what the README's per-model "ms / prediction" measures, minus the preprocessing);
- Predictor.predict: strokes to top-5 in Python, no Streamlit;
- page, model call: the page's own clock around the same call inside its runs;
- page, strokes in -> top-5: the page's own clock (`st.session_state["draw_timings"]`, the number it
  shows beside each guess): from its run starting with the strokes to the model's top-5 and bars handed
  to the browser - parsing, simplification, rendering, the model call and the elements before them;
- page, whole run: AppTest's wall clock of the run (everything the page draws, and Streamlit's and
  AppTest's own work).
Then the page with two models (the first two runs; `--no-pair` skips it), for Model 2's strokes in ->
top-5 (which includes Model 1's). The first runs (loading the models) are warm-up and not counted.
`--browser N` (30; 0 skips it) also runs the real thing: `streamlit run dashboard` and headless Chromium (Playwright),
N of the drawings replayed as mouse strokes on the page's canvas (no pause between moves, 100 ms
between strokes), one model chosen in the page's own selectboxes; for the final guess of each drawing
it reads the page's own clock from the page (the number shown) and times the browser's wait from the
last mouse-up to that guess on screen. On this 2-core machine the browser, the server and the page
share the cores, so these rows are slower and noisier than the in-process ones.
Target: the page's strokes in -> top-5 p50 <= 20 ms.
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
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("QUICKDRAW_SHARED", REPO.parent / "shared" / "quickdraw"))
DEFAULT_RUNS = ("runs/cnn-56", "runs/qdnet-56")
CANVAS, MARGIN = 280, 15
TARGET_MS = 20.0
WARMUP = 3
_SCRIPT = f"import sys\nsys.path.insert(0, {str(REPO)!r})\nfrom dashboard.views import draw\ndraw.render()\n"


def real_drawings(classes: list[str], n: int) -> list[tuple[str, list]]:
    """`n` simplified drawings of `classes` from ../shared, the first of each class in turn."""
    pools = []
    for name in classes:
        path = next((p for p in (SHARED / "simplified" / f"{c}.ndjson" for c in (name, name.replace(" ", "_")))
                     if p.exists()), None)
        if path is None:
            continue
        with open(path, encoding="utf-8") as fh:
            pools.append((name, [json.loads(line)["drawing"] for _, line in zip(range(n), fh, strict=False)]))
    turns = [(name, pool[i]) for i in range(n) for name, pool in pools if i < len(pool)]
    return turns[:n]


def as_canvas_objects(drawing: list) -> list[dict]:
    """A Google-simplified drawing (0..255) as the Draw page's canvas reports it."""
    scale = (CANVAS - 2 * MARGIN) / 255.0
    objects = []
    for stroke in drawing:
        points = [(round(MARGIN + x * scale, 2), round(MARGIN + y * scale, 2)) for x, y in zip(stroke[0], stroke[1],
                                                                                                 strict=True)]
        objects.append({"type": "Path", "path": [["M" if i == 0 else "L", x, y] for i, (x, y) in enumerate(points)]})
    return objects


def stats(values: list[float]) -> dict:
    array = np.asarray(values, dtype=np.float64)
    return {"p50_ms": float(np.percentile(array, 50)), "p95_ms": float(np.percentile(array, 95)), "n": len(values)}


def page_runs(models: list[str], drawings: list[list[dict]]) -> list[dict]:
    """The Draw page with `models` chosen (one or two), run once per drawing: each run's
    {"timings": the page's own draw_timings, "run_ms": AppTest's wall clock}."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_string(_SCRIPT, default_timeout=600)
    at.session_state["draw_model_1"] = models[0]
    at.session_state["draw_model_2"] = models[1] if len(models) > 1 else "(none)"
    out = []
    for i, objects in enumerate(drawings):
        at.session_state["draw_injected_objects"] = objects
        started = time.perf_counter()
        at.run()
        run_ms = (time.perf_counter() - started) * 1000
        if at.exception:
            raise RuntimeError(f"the Draw page failed: {at.exception}")
        timings = dict(at.session_state["draw_timings"])
        if [timings[slot]["run"] for slot in sorted(timings)] != models:
            raise RuntimeError(f"the page guessed with {timings}, not {models}")
        if i >= WARMUP:
            out.append({"timings": timings, "run_ms": run_ms})
    return out


def bare_times(run_dir: Path, drawings: list[list[dict]]) -> dict:
    from pipeline.predict import Predictor

    predictor = Predictor.from_run(run_dir)
    images = [predictor.prepare(objects) for objects in drawings]
    for image in images[:WARMUP]:
        predictor.probabilities(image[None])
        predictor.predict(drawings[0])
    model, predict = [], []
    for image, objects in zip(images[WARMUP:], drawings[WARMUP:], strict=True):
        started = time.perf_counter()
        predictor.probabilities(image[None])
        model.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        predictor.predict(objects, top=5)
        predict.append((time.perf_counter() - started) * 1000)
    return {"model": stats(model), "predict": stats(predict), "classes": predictor.classes}


# True once Model 1's top-5 is the guess for all `n` strokes and the page has finished that run.
_GUESS_SHOWN = """(n) => {
  const box = document.querySelector('.st-key-predictions-1');
  const clock = document.querySelector('.st-key-timing-1 [data-testid="stMetricValue"]');
  return !!box && !!clock && box.querySelectorAll('li').length === 5
    && box.innerText.includes('guess for ' + n + ' stroke');
}"""


def _choose(page, key: str, option: str) -> None:
    from playwright.sync_api import expect

    page.locator(f".st-key-{key}").click()
    page.get_by_role("option", name=option, exact=True).click()
    expect(page.locator(f".st-key-{key} input")).to_have_value(option)


def _stroke(page, box: dict, points: list[tuple[float, float]]) -> None:
    page.mouse.move(box["x"] + points[0][0], box["y"] + points[0][1])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(box["x"] + x, box["y"] + y)
    page.mouse.up()


def browser_runs(run_dir: Path, drawings: list[list[dict]], runs_dir: Path, log_path: Path) -> dict:
    """The page in `streamlit run` and Chromium: per drawing, the page's own clock for the final guess
    and the browser's wait from the last mouse-up to it."""
    from playwright.sync_api import expect, sync_playwright

    from dashboard.server import running_dashboard
    from pipeline.browser import launch_kwargs

    page_ms, model_ms, shown_ms = [], [], []
    with running_dashboard(runs_dir, SHARED, log_path) as base, sync_playwright() as p:
        browser = p.chromium.launch(**launch_kwargs())
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base}/draw")
            canvas = page.locator("canvas.upper-canvas").first
            canvas.wait_for(timeout=120_000)
            _choose(page, "draw_model_1", run_dir.name)
            _choose(page, "draw_model_2", "(none)")
            box = canvas.bounding_box()
            app = page.get_by_test_id("stApp")
            for i, objects in enumerate(drawings):
                clear = page.locator(".qd-clear").first
                if clear.is_enabled():
                    clear.click()
                    expect(page.locator(".st-key-predictions-1")).to_have_count(0, timeout=60_000)
                expect(app).to_have_attribute("data-test-script-state", "notRunning", timeout=60_000)
                strokes = [[(float(x), float(y)) for _, x, y in o["path"]] for o in objects]
                last_up = None
                for points in strokes:
                    if last_up is not None:
                        time.sleep(max(0.0, last_up + 0.1 - time.perf_counter()))  # 100 ms between strokes
                    _stroke(page, box, points)
                    last_up = time.perf_counter()
                page.wait_for_function(_GUESS_SHOWN, arg=len(strokes), timeout=120_000, polling="raf")
                shown = (time.perf_counter() - last_up) * 1000
                expect(app).to_have_attribute("data-test-script-state", "notRunning", timeout=60_000)
                model = page.locator(".st-key-model-1 h3").inner_text().strip()
                if model != run_dir.name:
                    raise RuntimeError(f"the page guessed with {model}, not {run_dir.name}")
                clock = page.locator(".st-key-timing-1 [data-testid='stMetricValue']").inner_text()
                caption = page.locator(".st-key-timing-1 [data-testid='stCaptionContainer']").inner_text()
                if i >= WARMUP:
                    page_ms.append(float(clock.split()[0]))
                    model_ms.append(float(caption.split("model call ")[1].split(" ms")[0]))
                    shown_ms.append(shown)
        finally:
            browser.close()
    return {"page": stats(page_ms), "model": stats(model_ms), "shown": stats(shown_ms)}


def runs_folder(run_dirs: list[Path], tmp: Path) -> Path:
    """The folder the page lists runs from: the runs' own folder when they share one, else links."""
    parents = {r.parent for r in run_dirs}
    if len(parents) == 1:
        return parents.pop()
    for r in run_dirs:
        (tmp / r.name).symlink_to(r)
    return tmp


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="drawings per model (after 3 of warm-up)")
    parser.add_argument("--runs", nargs="+", default=list(DEFAULT_RUNS), help="run folders (default: %(default)s)")
    parser.add_argument("--no-pair", dest="pair", action="store_false", help="skip the page with two models")
    parser.add_argument("--browser", type=int, default=30, metavar="N",
                        help="drawings per model on `streamlit run` in Chromium (default: %(default)s; 0: none)")
    args = parser.parse_args(argv)
    if not (SHARED / "simplified").is_dir():
        raise SystemExit(f"no real drawings at {SHARED}; set QUICKDRAW_SHARED")
    run_dirs = [(REPO / r if not Path(r).is_absolute() else Path(r)).resolve() for r in args.runs]
    for r in run_dirs:
        if not (r / "model" / "model.keras").exists():
            raise SystemExit(f"{r} has no model/model.keras")
    tmp = Path(tempfile.mkdtemp(prefix="bench-draw-"))
    os.environ["QUICKDRAW_RUNS"] = str(runs_folder(run_dirs, tmp))
    rows, results = [], {"n": args.n, "models": {}}
    try:
        sets = {}
        for run_dir in run_dirs:
            from pipeline.runs import read_classes

            drawings = [as_canvas_objects(d) for _, d in real_drawings(read_classes(run_dir), args.n + WARMUP)]
            sets[run_dir.name] = drawings
            bare = bare_times(run_dir, drawings)
            page = page_runs([run_dir.name], drawings)
            measured = {
                "model call (Predictor.probabilities, one drawing)": bare["model"],
                "Predictor.predict (strokes to top-5, Python)": bare["predict"],
                "page: model call (its own clock)": stats([r["timings"][1]["model_ms"] for r in page]),
                "page: strokes in -> top-5 (its own clock, shown)": stats([r["timings"][1]["path_ms"] for r in page]),
                "page: whole script run (AppTest wall clock)": stats([r["run_ms"] for r in page]),
            }
            results["models"][run_dir.name] = measured
            rows += [(run_dir.name, what, value) for what, value in measured.items()]
        if args.pair and len(run_dirs) >= 2:
            names = [r.name for r in run_dirs[:2]]
            page = page_runs(names, sets[names[0]])
            pair = stats([r["timings"][2]["path_ms"] for r in page])
            results["pair"] = {"models": names, "model2_path": pair}
            rows.append((names[1], f"page with {names[0]} as Model 1: strokes in -> Model 2's top-5", pair))
        from pipeline.browser import find_chromium

        if args.browser and find_chromium() is None:
            print("no Chromium found: the browser rows are skipped (`make chromium`)")
        elif args.browser:
            runs_dir = Path(os.environ["QUICKDRAW_RUNS"])
            for run_dir in run_dirs:
                real = browser_runs(run_dir, sets[run_dir.name][:args.browser + WARMUP], runs_dir, tmp / "streamlit.log")
                results.setdefault("browser", {})[run_dir.name] = real
                rows += [(run_dir.name, "browser: model call (the page's clock, read from the page)", real["model"]),
                         (run_dir.name, "browser: strokes in -> top-5 (the page's clock, shown)", real["page"]),
                         (run_dir.name, "browser: last mouse-up -> top-5 on screen", real["shown"])]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    command = " ".join(["python bench/bench_draw.py", *(argv if argv is not None else sys.argv[1:])])
    print(f"Draw page latency ({command}): real drawings of each model's classes as the canvas reports them, "
          f"{args.n} per model in-process (AppTest)" + (f", {args.browser} in Chromium" if "browser" in results else "")
          + "; ms")
    print(f"{'model':14} {'what':58} {'p50':>7} {'p95':>7} {'p50 / model call':>17}")
    for model, what, value in rows:
        base = results["models"][model]["model call (Predictor.probabilities, one drawing)"]["p50_ms"]
        print(f"{model:14} {what:58} {value['p50_ms']:7.2f} {value['p95_ms']:7.2f} {value['p50_ms'] / base:16.1f}x")
    verdicts = []
    for model, measured in results["models"].items():
        clocks = [("in-process", measured["page: strokes in -> top-5 (its own clock, shown)"]["p50_ms"])]
        if model in results.get("browser", {}):
            clocks.append(("in Chromium", results["browser"][model]["page"]["p50_ms"]))
        verdicts += [p50 <= TARGET_MS for _, p50 in clocks]
        print(f"{model}: the page's strokes in -> top-5, p50 " + ", ".join(
            f"{where} {p50:.1f} ms ({'PASS' if p50 <= TARGET_MS else 'FAIL'})" for where, p50 in clocks)
            + f"; target <= {TARGET_MS:g} ms")
    results["within_target"] = all(verdicts)
    return results


if __name__ == "__main__":
    raise SystemExit(0 if main()["within_target"] else 1)
