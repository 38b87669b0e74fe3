"""The web/ drawing page in real headless Chromium (Playwright + Debian's chromium).

(a) model parity TF.js vs Keras, (b) preprocessing parity web/preprocess.js vs pipeline.predict, with
the constants of the exporter's preprocess.json (and other values of them),
(c) end to end: real drawings replayed as mouse strokes on the page vs pipeline.predict,
(d) a screenshot in the test output, (e) empty / dot / huge drawing / broken model / preprocess.json
lacking a constant: messages, no errors,
(f) the committed page: its default model on real drawings, and the Draw page's 40 replays
(tests/draw_replay.py, brisk and at a human pace) - every stroke arrives, the guess is pipeline.predict's.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from draw_replay import BRISK, HUMAN, REPLAYS, Outcome, replay, replay_set, stroke_problems, summary

from pipeline import raster, strokes
from pipeline.browser import find_chromium
from pipeline.export import BLANK_TFJS_PAGE, export_run, preprocess_for, static_server, tfjs_predict
from pipeline.predict import Predictor, prepare_input
from pipeline.runs import read_classes

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "preprocess_cases.json"
TOO_SMALL_FIXTURE = REPO / "tests" / "fixtures" / "too_small_cases.json"
WEB_FILES = ("index.html", "app.js", "preprocess.js", "style.css")

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def _require_browser() -> None:
    if find_chromium() is None:
        pytest.skip("no Chromium found (install Debian's chromium or `python -m playwright install chromium`)")
    if not (REPO / "web" / "vendor" / "tf.min.js").exists():
        pytest.skip("web/vendor/tf.min.js is missing: run `make web`")


@pytest.fixture(scope="module")
def site(trained_runs, tmp_path_factory):
    """A copy of web/ with both trained runs exported (and a broken model), served on 127.0.0.1."""
    _require_browser()
    web = tmp_path_factory.mktemp("site")
    (web / "models").mkdir()
    for name in WEB_FILES:
        shutil.copy(REPO / "web" / name, web / name)
    shutil.copytree(REPO / "web" / "vendor", web / "vendor")
    for kind in ("cnn", "mobilenet"):
        export_run(trained_runs[kind], web_dir=web, verify=False)
    # A model whose files are damaged: the page must say so, not throw.
    broken = web / "models" / "broken"
    shutil.copytree(web / "models" / trained_runs["cnn"].name, broken)
    (broken / "model.json").write_text("{ this is not a model")
    index = json.loads((web / "models" / "index.json").read_text())
    index["models"].append({**index["models"][0], "name": "broken", "path": "models/broken"})
    (web / "models" / "index.json").write_text(json.dumps(index))
    with static_server(web, pages={"/blank.html": BLANK_TFJS_PAGE}) as base:
        yield SimpleNamespace(dir=web, base=base, runs=trained_runs)


@pytest.fixture(scope="module")
def committed_site():
    """web/ as committed, served: enough for tests of web/preprocess.js, which need no trained run."""
    _require_browser()
    with static_server(REPO / "web") as base:
        yield SimpleNamespace(dir=REPO / "web", base=base)


@pytest.fixture(scope="module")
def browser(browser):
    """tests/conftest.py's Chromium, for a web/ that has its vendored files."""
    _require_browser()
    return browser


class Console:
    """Errors a page reports: console.error messages and uncaught exceptions."""

    def __init__(self, page):
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))


def open_page(browser, site, query: str = ""):
    page = browser.new_page(viewport={"width": 1100, "height": 800})
    console = Console(page)
    page.goto(f"{site.base}/index.html{query}")
    page.wait_for_function("document.body.dataset.model !== undefined", timeout=60_000)
    return page, console


def load_lines(path: Path, limit: int) -> list[dict]:
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            out.append(json.loads(line))
            if len(out) == limit:
                break
    return out


def class_file(folder: Path, name: str, suffix: str) -> Path | None:
    for candidate in (name, name.replace(" ", "_")):
        path = folder / f"{candidate}{suffix}"
        if path.exists():
            return path
    return None


# ---------------------------------------------------------------- (a) model parity
@pytest.mark.parametrize("backend", ["cpu", "webgl"])
@pytest.mark.parametrize("kind", ["cnn", "mobilenet"])
def test_tfjs_outputs_equal_keras_on_real_bitmaps(kind, backend, site, browser, shared):
    run = site.runs[kind]
    classes = read_classes(run)
    # The last 10 drawings of each class: beyond the first 300 the small runs trained on.
    images = np.concatenate([np.load(class_file(shared / "bitmaps", c, ".npy"), mmap_mode="r")[-10:]
                             for c in classes]).reshape(-1, 28, 28, 1)
    assert len(images) == 100
    keras_probs = Predictor.from_run(run).probabilities(images)
    page = browser.new_page()
    try:
        page.goto(f"{site.base}/blank.html")
        tfjs_probs = tfjs_predict(page, f"{site.base}/models/{run.name}/model.json", images, backend=backend)
    finally:
        page.close()
    diff = float(np.abs(keras_probs - tfjs_probs).max())
    print(f"\n{kind} on {backend}: max |TF.js - Keras| = {diff:.3g} over {len(images)} real bitmaps")
    assert diff <= 1e-4
    assert np.array_equal(keras_probs.argmax(1), tfjs_probs.argmax(1))


# ---------------------------------------------------------------- (b) preprocessing parity
_JS_PREPARE = """
({drawings, preprocess}) => {
  const P = window.QuickDrawPreprocess;
  const images = [], simplified = [];
  for (const d of drawings) {
    const out = P.prepare(d, preprocess);
    images.push(...out.image);
    simplified.push(out.simplified);
  }
  const u8 = Uint8Array.from(images);
  let s = '';
  for (let i = 0; i < u8.length; i += 8192) s += String.fromCharCode.apply(null, u8.subarray(i, i + 8192));
  return {images: btoa(s), simplified};
}
"""


def js_prepare(page, drawings, preprocess=None):
    """web/preprocess.js's images (N, H, W) and simplified strokes, for `preprocess` (a preprocess.json;
    the exporter's for bitmap28 by default)."""
    preprocess = preprocess or preprocess_for("bitmap28", 28)
    result = page.evaluate(_JS_PREPARE, {"drawings": drawings, "preprocess": preprocess})
    images = np.frombuffer(base64.b64decode(result["images"]), np.uint8)
    size = preprocess["input"]["height"]
    return images.reshape(len(drawings), size, size, -1).squeeze(-1), result["simplified"]


def real_stroke_drawings(shared, simplified_count=160, raw_count=40) -> list:
    """Real drawings from ../shared: simplified ones across many classes, and some raw ones."""
    drawings = []
    files = sorted((shared / "simplified").glob("*.ndjson"))
    for path in files[:simplified_count // 4]:
        drawings += [r["drawing"] for r in load_lines(path, 4)]
    raw_files = sorted((shared / "raw").glob("*.ndjson"))
    for path in raw_files[:raw_count // 2]:
        drawings += [r["drawing"] for r in load_lines(path, 2)]
    return drawings[:simplified_count + raw_count]


def test_js_preprocessing_matches_python_on_real_drawings(committed_site, browser, shared):
    from pipeline.strokes import to_google, to_simplified

    drawings = real_stroke_drawings(shared)
    assert len(drawings) == 200
    python = np.stack([prepare_input(d, "bitmap28")[..., 0] for d in drawings]).astype(np.int16)
    page = browser.new_page()
    try:
        page.goto(f"{committed_site.base}/index.html")
        js, js_simplified = js_prepare(page, drawings)
    finally:
        page.close()
    mad = float(np.abs(js.astype(np.int16) - python).mean())
    same_strokes = np.mean([js_s == to_google(to_simplified(d)) for js_s, d in zip(js_simplified, drawings, strict=True)])
    per_drawing = np.abs(js.astype(np.int16) - python).mean(axis=(1, 2))
    print(f"\nJS vs Python on {len(drawings)} real drawings: mean abs diff {mad:.3f} grey levels "
          f"(worst drawing {per_drawing.max():.3f}); identical simplification {same_strokes:.1%}")
    # The issue allows 2.0 (a 2D canvas gets about 1.8); this cairo-style renderer measures about 0.1.
    assert mad <= 0.5
    assert same_strokes >= 0.97


def test_shared_fixture_cases_match_both_sides(committed_site, browser, monkeypatch):
    """tests/fixtures/preprocess_cases.json: Python still produces it and JavaScript reproduces it with
    the exporter's preprocess.json; with other values of the constants in Python (and so in the file)
    JavaScript follows Python away from the fixture."""
    cases = json.loads(FIXTURE.read_text())["cases"]
    from pipeline.strokes import to_google, to_simplified

    for case in cases:
        assert to_google(to_simplified(case["drawing"])) == case["simplified"], case["name"]
        assert prepare_input(case["drawing"], "bitmap28").ravel().tolist() == case["bitmap28"], case["name"]
        assert prepare_input(case["drawing"], "strokes", 32).ravel().tolist() == case["strokes32"], case["name"]
    drawings = [c["drawing"] for c in cases]
    monkeypatch.setattr(strokes, "RDP_EPSILON", 6.0)
    monkeypatch.setattr(strokes, "SIMPLIFIED_SIDE", 127)
    monkeypatch.setattr(raster, "COLOUR_STEP", 60)
    other = preprocess_for("strokes", 32)
    other_python = [prepare_input(d, "strokes", 32)[..., 0] for d in drawings]
    other_simplified = [to_google(to_simplified(d)) for d in drawings]
    monkeypatch.undo()
    page = browser.new_page()
    try:
        page.goto(f"{committed_site.base}/index.html")
        bitmaps, simplified = js_prepare(page, drawings)
        coloured, _ = js_prepare(page, drawings, preprocess_for("strokes", 32))
        changed, changed_simplified = js_prepare(page, drawings, other)
    finally:
        page.close()
    for i, case in enumerate(cases):
        assert simplified[i] == case["simplified"], case["name"]
        bitmap_diff = np.abs(bitmaps[i].astype(int).ravel() - case["bitmap28"]).mean()
        colour_diff = np.abs(coloured[i].astype(int).ravel() - case["strokes32"]).mean()
        other_diff = np.abs(changed[i].astype(int) - other_python[i]).mean()
        print(f"{case['name']:18} bitmap28 {bitmap_diff:.3f}  strokes32 {colour_diff:.3f}  other constants {other_diff:.3f}")
        assert bitmap_diff <= 0.5 and colour_diff <= 0.5, case["name"]
        assert changed_simplified[i] == other_simplified[i] and other_diff <= 0.5, case["name"]
    assert not np.array_equal(changed, coloured)


_JS_VERDICTS = """
({drawings, preprocess}) => drawings.map((d) => {
  try {
    window.QuickDrawPreprocess.prepare(d, preprocess);
    return 'guessed';
  } catch (error) {
    return error.name;
  }
})
"""


def test_too_small_rule_is_the_same_in_javascript_and_python(committed_site, browser, monkeypatch):
    """tests/fixtures/too_small_cases.json: web/preprocess.js refuses exactly the drawings
    pipeline.predict refuses (taps, tiny scribbles), with the threshold of every committed model's
    preprocess.json; with other thresholds in Python (and so in the file) both sides move together."""
    cases = json.loads(TOO_SMALL_FIXTURE.read_text())["cases"]
    drawings = [case["drawing"] for case in cases]
    expected = ["DrawingTooSmall" if case["too_small"] else "guessed" for case in cases]

    def python_verdicts() -> list[str]:
        out = []
        for drawing in drawings:
            try:
                prepare_input(drawing, "bitmap28")
                out.append("guessed")
            except strokes.DrawingTooSmall:
                out.append("DrawingTooSmall")
        return out

    assert python_verdicts() == expected
    others = {}
    for limit in (1.5, 12.0):
        monkeypatch.setattr(strokes, "MIN_EXTENT", limit)
        others[limit] = (preprocess_for("bitmap28", 28), python_verdicts())
    monkeypatch.undo()
    committed = [json.loads(path.read_text()) for path in sorted((REPO / "web" / "models").glob("*/preprocess.json"))]
    assert committed
    page = browser.new_page()
    try:
        page.goto(f"{committed_site.base}/index.html")
        for preprocess in [preprocess_for("bitmap28", 28), *committed]:
            assert page.evaluate(_JS_VERDICTS, {"drawings": drawings, "preprocess": preprocess}) == expected
        for limit, (preprocess, python) in others.items():
            js = page.evaluate(_JS_VERDICTS, {"drawings": drawings, "preprocess": preprocess})
            assert js == python != expected, limit
    finally:
        page.close()
    print(f"\n{len(cases)} drawings: {expected.count('DrawingTooSmall')} too small on both sides; "
          f"thresholds 1.5 and 12 px: {[v.count('DrawingTooSmall') for _, v in others.values()]} refused")


# ---------------------------------------------------------------- (c) end to end
def draw(page, strokes, box, margin=30):
    """Replay Google-simplified strokes (0..255) as mouse strokes inside the canvas box."""
    scale = (min(box["width"], box["height"]) - 2 * margin) / 255.0
    for xs, ys in ((s[0], s[1]) for s in strokes):
        points = [(box["x"] + margin + x * scale, box["y"] + margin + y * scale) for x, y in zip(xs, ys, strict=True)]
        page.mouse.move(*points[0])
        page.mouse.down()
        for point in points[1:]:
            page.mouse.move(*point)
        page.mouse.up()


def clear(page):
    page.evaluate("window.quickdraw.clear()")
    page.wait_for_selector('[data-testid="predictions"][data-strokes="0"]', state="attached")


def wait_for_predictions(page, strokes: int):
    page.wait_for_selector(f'[data-testid="predictions"][data-strokes="{strokes}"] li', state="attached",
                           timeout=30_000)
    return page.eval_on_selector_all('[data-testid="predictions"] li',
                                     "items => items.map(li => [li.dataset.label, parseFloat(li.dataset.prob)])")


def test_replayed_drawings_get_the_same_top1_as_python(site, browser, shared):
    run = site.runs["cnn"]
    predictor = Predictor.from_run(run)
    # Round-robin over the run's classes that ../shared has strokes for (some have only bitmaps).
    pools = [load_lines(p, 100) for p in (class_file(shared / "simplified", c, ".ndjson") for c in predictor.classes)
             if p is not None]
    assert len(pools) >= 3, "too few of the run's classes have simplified drawings in ../shared"
    drawings = [pool[i]["drawing"] for i in range(100) for pool in pools if i < len(pool)][:100]
    assert len(drawings) == 100
    page, console = open_page(browser, site, f"?model={run.name}&backend=cpu")
    assert page.get_attribute("body", "data-model") == run.name
    box = page.locator('[data-testid="drawing-canvas"]').bounding_box()
    agree = 0
    for drawing in drawings:
        clear(page)
        draw(page, drawing, box)
        top = wait_for_predictions(page, len(drawing))
        captured = page.evaluate("window.quickdraw.strokes()")
        assert [len(s) for s in captured] == [len(s[0]) for s in drawing]
        replayed = [[[p[0] for p in s], [p[1] for p in s], [p[2] for p in s]] for s in captured]
        python_top = predictor.predict(replayed, top=5)
        agree += top[0][0] == python_top[0][0]
        assert len(top) == 5 and abs(sum(p for _, p in top) - sum(p for _, p in python_top)) < 0.05
    page.close()
    print(f"\npage top-1 == pipeline.predict top-1 for {agree}/100 replayed drawings")
    assert agree >= 95
    assert console.errors == []


# ---------------------------------------------------------------- (d) screenshot
def test_screenshot_of_a_drawing_and_its_guesses(site, browser, shared, tmp_path):
    run = site.runs["cnn"]
    drawing = load_lines(class_file(shared / "simplified", "cat", ".ndjson"), 1)[0]["drawing"]
    page, console = open_page(browser, site, f"?model={run.name}")
    draw(page, drawing, page.locator('[data-testid="drawing-canvas"]').bounding_box())
    top = wait_for_predictions(page, len(drawing))
    path = tmp_path / "quickdraw-page.png"
    page.screenshot(path=str(path), full_page=True)
    page.close()
    assert path.stat().st_size > 10_000 and len(top) == 5
    print(f"\nscreenshot: {path} (top-1 {top[0][0]} {top[0][1]:.2f})")
    assert console.errors == []


# ---------------------------------------------------------------- (e) awkward input
def test_empty_dot_huge_drawing_and_broken_model_give_messages_not_errors(site, browser):
    from playwright.sync_api import expect

    run = site.runs["cnn"]
    page, console = open_page(browser, site, f"?model={run.name}")
    status = page.locator('[data-testid="status"]')
    assert "Draw something" in status.inner_text()
    assert page.locator('[data-testid="predictions"] li').count() == 0
    options = page.eval_on_selector_all('[data-testid="model-picker"] option', "os => os.map(o => o.value)")
    assert run.name in options and site.runs["mobilenet"].name in options
    assert page.locator('[data-testid="class-list"] li').count() == len(read_classes(run))
    assert "CC BY 4.0" in page.inner_text("footer") and "Quick, Draw!" in page.inner_text("footer")

    box = page.locator('[data-testid="drawing-canvas"]').bounding_box()
    page.mouse.click(box["x"] + 100, box["y"] + 100)  # a single tap: too small to guess, no guess shown
    page.wait_for_selector('[data-testid="predictions"][data-strokes="1"]', state="attached")
    expect(status).to_contain_text("Too small to guess: draw a bit more")
    assert page.locator('[data-testid="predictions"] li').count() == 0
    assert status.get_attribute("data-state") == "ok"

    clear(page)  # a stroke that leaves the canvas far behind (pointer capture keeps it)
    page.mouse.move(box["x"] + 50, box["y"] + 50)
    page.mouse.down()
    for x, y in ((1090, 790), (5, 790), (box["x"] + 60, box["y"] + 300)):
        page.mouse.move(x, y, steps=5)
    page.mouse.up()
    assert len(wait_for_predictions(page, 1)) == 5
    assert "Guessing with" in status.inner_text()
    assert page.evaluate("window.quickdraw.predictStrokes([[[0, 90000, -40000], [5, -70000, 80000]]])")[0]["label"]

    page.click('[data-testid="undo"]')
    page.wait_for_selector('[data-testid="predictions"][data-strokes="0"]', state="attached")
    assert "Draw something" in status.inner_text()
    bad = page.evaluate("window.quickdraw.predictStrokes([[[0, 1e9], [0, 1]]]).then(() => 'ok', e => e.name + ': ' + e.message)")
    assert bad.startswith("DrawingError") and "1e+6" in bad or "1e6" in bad
    page.close()
    assert console.errors == []

    page, console = open_page(browser, site, "?model=broken")
    assert page.get_attribute("body", "data-model") == "failed"
    message = page.locator('[data-testid="status"]').inner_text()
    assert "Could not load model \"broken\"" in message and "export" in message
    page.close()
    assert console.errors == []


def test_page_refuses_a_model_whose_preprocess_json_lacks_a_constant(browser, tmp_path):
    """The page has no copy of the pipeline's constants to fall back on: a preprocess.json without
    one stops that model at load with the reason on the page, and no uncaught error."""
    index = json.loads((REPO / "web" / "models" / "index.json").read_text())
    entry = next(m for m in index["models"] if m["name"] == index["default"])
    web = tmp_path / "web"
    (web / "models").mkdir(parents=True)
    for name in WEB_FILES:
        shutil.copy(REPO / "web" / name, web / name)
    shutil.copytree(REPO / "web" / "vendor", web / "vendor")
    shutil.copytree(REPO / "web" / entry["path"], web / entry["path"])
    preprocess = json.loads((web / entry["path"] / "preprocess.json").read_text())
    del preprocess["geometry"]["line_width"]
    (web / entry["path"] / "preprocess.json").write_text(json.dumps(preprocess))
    (web / "models" / "index.json").write_text(json.dumps({"default": entry["name"], "models": [entry]}))
    with static_server(web) as base:
        page, console = open_page(browser, SimpleNamespace(base=base), "?backend=cpu")
        status = page.locator('[data-testid="status"]')
        message, state = status.inner_text(), status.get_attribute("data-state")
        model = page.get_attribute("body", "data-model")
        page.close()
    print(f"\n{message}")
    assert model == "failed" and state == "error"
    assert f'Could not load model "{entry["name"]}"' in message
    assert "preprocess.json lacks geometry.line_width" in message
    assert console.errors == []


# ---------------------------------------------------------------- (f) the committed web/
def test_committed_page_recognises_real_drawings_with_its_default_model(browser, shared, tmp_path):
    """web/ as committed (plus `make web`'s TF.js), as a fresh clone serves it: it opens on the
    shipped default model and guesses real stroke drawings (a different source from the bitmaps it
    trained on) as pipeline.predict does. Its screenshot is the README's picture of web/."""
    index = json.loads((REPO / "web" / "models" / "index.json").read_text())
    default = index["default"]
    predictor = Predictor.from_run(REPO / "runs" / default)
    drawings = [(name, line["drawing"]) for name in predictor.classes
                if (path := class_file(shared / "simplified", name, ".ndjson")) is not None
                for line in load_lines(path, 10)]
    assert len(drawings) >= 50, "too few of the default model's classes have strokes in ../shared"
    python = [predictor.predict(d, top=1)[0][0] for _, d in drawings]
    # For the picture: a cat the model knows (some drawings in the data are barely cats).
    name, drawing = next((n, d) for (n, d), guess in zip(drawings, python, strict=True) if n == guess == "cat")
    with static_server(REPO / "web") as base:
        page, console = open_page(browser, SimpleNamespace(base=base), "?backend=cpu")
        assert page.get_attribute("body", "data-model") == default
        tops = page.evaluate("async ds => { const out = []; for (const d of ds) "
                             "out.push((await window.quickdraw.predictStrokes(d))[0].label); return out; }",
                             [d for _, d in drawings])
        draw(page, drawing, page.locator('[data-testid="drawing-canvas"]').bounding_box())
        shown = wait_for_predictions(page, len(drawing))
        page.screenshot(path=str(tmp_path / "quickdraw-page.png"), full_page=True)
        page.close()
    target = os.environ.get("QUICKDRAW_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "quickdraw-page.png", Path(target) / "quickdraw-page.png")
    correct = sum(t == n for t, (n, _) in zip(tops, drawings, strict=True)) / len(drawings)
    agree = sum(a == b for a, b in zip(tops, python, strict=True)) / len(drawings)
    print(f"\nweb/ default {default}: top-1 {correct:.3f} on {len(drawings)} real stroke drawings, "
          f"agreement with pipeline.predict {agree:.3f}; the drawn {name} shown as {shown[0][0]}")
    assert console.errors == []
    assert agree >= 0.95 and correct >= 0.6 and shown[0][0] == name


@pytest.fixture(scope="module")
def committed_replays(shared):
    """The Draw page's 40 replays for web/'s default model, with pipeline.predict's top-1 of each."""
    default = json.loads((REPO / "web" / "models" / "index.json").read_text())["default"]
    predictor = Predictor.from_run(REPO / "runs" / default)
    drawings = replay_set(shared, predictor.classes)
    assert len(drawings) == REPLAYS, f"only {len(drawings)} drawings of {default}'s classes in {shared}/simplified"
    return {"model": default, "drawings": drawings,
            "python": [predictor.predict(drawing, top=1)[0][0] for _, drawing in drawings]}


@pytest.mark.parametrize("pace", [BRISK, HUMAN], ids=lambda pace: pace.name)
def test_committed_page_gets_every_stroke_of_40_replayed_drawings(pace, committed_replays, browser):
    """The same 40 drawings at the same paces as the Draw page's replays (tests/test_dashboard_browser.py),
    on one page cleared between drawings: every point drawn is captured and the page's top-1 equals
    pipeline.predict's on the original strokes."""
    outcomes = []
    with static_server(REPO / "web") as base:
        page, console = open_page(browser, SimpleNamespace(base=base), "?backend=cpu")
        assert page.get_attribute("body", "data-model") == committed_replays["model"]
        box = page.locator('[data-testid="drawing-canvas"]').bounding_box()
        for (name, drawing), python in zip(committed_replays["drawings"], committed_replays["python"], strict=True):
            clear(page)
            drawn, last_up = replay(page, drawing, box, pace)
            top = wait_for_predictions(page, len(drawing))
            latency = time.perf_counter() - last_up
            captured = [np.asarray(s, float)[:, :2] for s in page.evaluate("window.quickdraw.strokes()")]
            outcomes.append(Outcome(name, len(drawing), stroke_problems(drawn, captured), top[0][0], python, latency))
        page.close()
    print("\n" + summary("web/ (" + committed_replays["model"] + ")", pace, outcomes))
    lost = [f"#{i} {o.name}: {'; '.join(o.problems)}" for i, o in enumerate(outcomes) if o.lost_strokes]
    assert not lost, "whole strokes drawn were not captured:\n" + "\n".join(lost)
    incomplete = [f"#{i} {o.name}: {'; '.join(o.problems)}" for i, o in enumerate(outcomes) if o.problems]
    assert not incomplete, "strokes were captured without the points drawn:\n" + "\n".join(incomplete)
    assert sum(o.page_top1 == o.python_top1 for o in outcomes) >= REPLAYS - 2
    assert console.errors == []
