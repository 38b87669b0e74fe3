"""web/'s TF.js backend choice in real headless Chromium: the page prefers the WebAssembly backend
(XNNPACK, SIMD; single-threaded from a plain static server), loads it from vendor/ only, predicts
what the plain-JavaScript cpu backend predicts, and falls back without hanging when wasm is missing.
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
import subprocess
import time
import urllib.parse
from contextlib import contextmanager
from pathlib import Path

import pytest

from pipeline.browser import find_chromium
from pipeline.export import static_server

REPO = Path(__file__).resolve().parents[1]
WEB = REPO / "web"
WASM_FILES = ("tf-backend-wasm.min.js", "tfjs-backend-wasm.wasm", "tfjs-backend-wasm-simd.wasm",
              "tfjs-backend-wasm-threaded-simd.wasm")
TOLERANCE = 1e-4
N_DRAWINGS = 20
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


def _require_browser() -> None:
    if find_chromium() is None:
        pytest.skip("no Chromium found (install Debian's chromium or `python -m playwright install chromium`)")
    missing = [name for name in ("tf.min.js", *WASM_FILES) if not (WEB / "vendor" / name).exists()]
    if missing:
        pytest.skip(f"web/vendor/ lacks {', '.join(missing)}: run `make web`")


@pytest.fixture(scope="module")
def browser(browser):
    """tests/conftest.py's Chromium, for a web/ that has its vendored files."""
    _require_browser()
    return browser


@pytest.fixture(scope="module")
def default_model() -> dict:
    index = json.loads((WEB / "models" / "index.json").read_text())
    entry = next(m for m in index["models"] if m["name"] == index["default"])
    labels = json.loads((WEB / entry["path"] / "labels.json").read_text())
    return {"name": entry["name"], "path": entry["path"], "labels": labels}


@pytest.fixture(scope="module")
def real_drawings(shared, default_model) -> list[tuple[str, list]]:
    """N_DRAWINGS real stroke drawings from ../shared/quickdraw/simplified, spread evenly over the
    default model's classes that have strokes there (the first few drawings of each)."""
    folder = shared / "simplified"
    if not folder.is_dir():
        pytest.skip(f"{folder} is missing: no real stroke drawings to predict")
    files = [(label, path) for label in default_model["labels"]
             if (path := next((p for p in (folder / f"{label}.ndjson", folder / f"{label.replace(' ', '_')}.ndjson")
                               if p.exists()), None)) is not None]
    if not files:
        pytest.skip(f"none of {default_model['name']}'s classes has strokes in {folder}")
    per_class = math.ceil(N_DRAWINGS / len(files))
    out = []
    for label, path in files:
        with open(path, encoding="utf-8") as fh:
            out.extend((label, json.loads(line)["drawing"]) for line in itertools.islice(fh, per_class))
    if len(out) < N_DRAWINGS:
        pytest.skip(f"only {len(out)} drawings of {default_model['name']}'s classes in {folder}")
    return out[:N_DRAWINGS]


class Recorder:
    """Every request a browser context makes (pages and their workers), and the page's errors."""

    def __init__(self, context):
        self.urls: list[str] = []
        self.errors: list[str] = []
        self.seconds = 0.0  # page load to model ready
        context.on("request", lambda r: self.urls.append(r.url))

    def watch(self, page):
        page.on("console", lambda m: self.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

    def non_local(self) -> list[str]:
        return [u for u in self.urls if not is_local(u)]


def is_local(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme in ("data", "about"):
        return True
    if parts.scheme == "blob":  # blob:http://127.0.0.1:port/uuid - made by the page itself
        return is_local(url[len("blob:"):])
    return parts.scheme in ("http", "https", "ws", "wss") and parts.hostname in LOCAL_HOSTS


@contextmanager
def open_page(browser, base: str, query: str = "", timeout_ms: int = 90_000):
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    recorder = Recorder(context)
    page = context.new_page()
    recorder.watch(page)
    try:
        started = time.perf_counter()
        page.goto(f"{base}/index.html{query}")
        page.wait_for_function("document.body.dataset.model !== undefined", timeout=timeout_ms)
        recorder.seconds = time.perf_counter() - started
        yield page, recorder
    finally:
        context.close()


_PREDICT_ALL = """async ds => { const out = [];
  for (const d of ds) out.push(await window.quickdraw.predictStrokes(d));
  return {backend: tf.getBackend(), shown: document.body.dataset.backend, model: window.quickdraw.model(), tops: out}; }"""


def predict_all(page, drawings) -> dict:
    return page.evaluate(_PREDICT_ALL, [d for _, d in drawings])


def assert_same_predictions(got: dict, reference: dict) -> float:
    """Identical top-1 and, rank by rank, top-5 probabilities within TOLERANCE (sorted probabilities
    move by at most the largest change of any one, so near-ties cannot make this flaky)."""
    worst = 0.0
    assert len(got["tops"]) == len(reference["tops"])
    for i, (a, b) in enumerate(zip(got["tops"], reference["tops"], strict=True)):
        assert a[0]["label"] == b[0]["label"], f"drawing {i}: top-1 {a[0]['label']} vs {b[0]['label']}"
        diffs = [abs(x["prob"] - y["prob"]) for x, y in zip(a, b, strict=True)]
        worst = max(worst, *diffs)
    assert worst <= TOLERANCE, f"largest top-5 probability difference {worst:.3g} > {TOLERANCE}"
    return worst


def wasm_binaries_fetched(urls: list[str]) -> list[str]:
    return sorted({Path(urllib.parse.urlsplit(u).path).name for u in urls if u.endswith(".wasm")})


# ---------------------------------------------------------------- the committed page, plain static server
@pytest.mark.slow
@pytest.mark.browser
def test_committed_page_prefers_wasm_and_matches_the_cpu_backend_offline(browser, default_model, real_drawings):
    with static_server(WEB) as base:
        with open_page(browser, base) as (page, wasm):
            status_before = page.get_attribute('[data-testid="status"]', "data-state")
            out_wasm = predict_all(page, real_drawings)
            threads = page.evaluate("() => tf.getBackend() === 'wasm' ? tf.wasm.getThreadsCount() : null")
        with open_page(browser, base, "?backend=cpu") as (page, cpu):
            out_cpu = predict_all(page, real_drawings)
    assert wasm.non_local() == [] and cpu.non_local() == [], "requests left localhost"
    assert out_wasm["model"] == out_cpu["model"] == default_model["name"]
    assert out_wasm["backend"] == out_wasm["shown"] == "wasm", "the page did not pick the wasm backend by default"
    assert out_cpu["backend"] == out_cpu["shown"] == "cpu"
    # No cross-origin isolation here: the single-threaded SIMD binary, from vendor/ next to the page.
    assert wasm_binaries_fetched(wasm.urls) == ["tfjs-backend-wasm-simd.wasm"]
    assert any(u == f"{base}/vendor/tfjs-backend-wasm-simd.wasm" for u in wasm.urls)
    assert threads == 1
    assert wasm.errors == [] and cpu.errors == [] and status_before == "ok"
    worst = assert_same_predictions(out_wasm, out_cpu)
    correct = sum(t[0]["label"] == name for t, (name, _) in zip(out_wasm["tops"], real_drawings, strict=True))
    print(f"\n{default_model['name']}: wasm (SIMD, {threads} thread) vs cpu on {len(real_drawings)} real drawings: "
          f"identical top-1, max top-5 probability difference {worst:.2g}; {correct} correct; "
          f"{len(wasm.urls)} requests, all local; page ready in {wasm.seconds:.1f} s (wasm), {cpu.seconds:.1f} s (cpu)")


def _other_shipped_models() -> list[str]:
    try:
        index = json.loads((WEB / "models" / "index.json").read_text())
    except (OSError, ValueError):
        return []
    return [m["name"] for m in index.get("models", []) if m["name"] != index.get("default")]


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.parametrize("model", _other_shipped_models())
def test_other_shipped_models_run_on_wasm_as_on_cpu(model, browser, real_drawings):
    """The wasm backend has no per-op fallback: a model using a kernel it lacks would fail to load
    in the page by default. Every model the page lists must work there."""
    drawings = real_drawings[:10]
    with static_server(WEB) as base:
        with open_page(browser, base, f"?model={model}") as (page, rec):
            out = predict_all(page, drawings)
        with open_page(browser, base, f"?model={model}&backend=cpu") as (page, cpu_rec):
            reference = predict_all(page, drawings)
    assert rec.non_local() == [] and cpu_rec.non_local() == []
    assert out["model"] == reference["model"] == model
    assert out["backend"] == "wasm" and reference["backend"] == "cpu"
    assert rec.errors == [] and cpu_rec.errors == []
    worst = assert_same_predictions(out, reference)
    print(f"\n{model}: wasm vs cpu on {len(drawings)} real drawings, max top-5 probability difference {worst:.2g}")


# ---------------------------------------------------------------- cross-origin isolated: threads
ISOLATION = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp"}


@pytest.mark.slow
@pytest.mark.browser
def test_cross_origin_isolated_page_uses_threaded_wasm_with_the_same_predictions(browser, real_drawings):
    drawings = real_drawings[:5]
    with static_server(WEB, headers=ISOLATION) as base:
        with open_page(browser, base) as (page, rec):
            isolated = page.evaluate("() => self.crossOriginIsolated")
            out = predict_all(page, drawings)
        with open_page(browser, base, "?backend=cpu") as (page, cpu_rec):
            reference = predict_all(page, drawings)
    assert rec.non_local() == [] and cpu_rec.non_local() == []
    assert isolated is True
    assert out["backend"] == "wasm" and reference["backend"] == "cpu"
    assert wasm_binaries_fetched(rec.urls) == ["tfjs-backend-wasm-threaded-simd.wasm"]
    assert rec.errors == [] and cpu_rec.errors == []
    assert_same_predictions(out, reference)


# ---------------------------------------------------------------- wasm missing: fall back, never hang
@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.parametrize("missing", ["binaries", "bundle"])
def test_page_falls_back_when_wasm_is_missing(missing, browser, default_model, real_drawings, tmp_path):
    site = tmp_path / "web"
    (site / "models").mkdir(parents=True)
    for name in ("index.html", "app.js", "preprocess.js", "style.css"):
        shutil.copy(WEB / name, site / name)
    shutil.copytree(WEB / "vendor", site / "vendor")
    shutil.copytree(WEB / default_model["path"], site / default_model["path"])
    index = json.loads((WEB / "models" / "index.json").read_text())
    index["models"] = [m for m in index["models"] if m["name"] == default_model["name"]]
    (site / "models" / "index.json").write_text(json.dumps(index))
    gone = [f for f in WASM_FILES if f.endswith(".wasm")] if missing == "binaries" else ["tf-backend-wasm.min.js"]
    for name in gone:
        (site / "vendor" / name).unlink()
    drawings = real_drawings[:3]
    with static_server(site) as base:
        with open_page(browser, base, timeout_ms=60_000) as (page, rec):
            out = predict_all(page, drawings)
            state = page.get_attribute('[data-testid="status"]', "data-state")
        with open_page(browser, base, "?backend=cpu") as (page, _):
            reference = predict_all(page, drawings)
    assert out["model"] == default_model["name"] and state == "ok"
    assert out["backend"] in ("webgl", "cpu") and out["shown"] == out["backend"]
    assert rec.non_local() == []
    # The only errors are the browser's own notes of the missing files (404s).
    assert all("404" in e for e in rec.errors), rec.errors
    assert_same_predictions(out, reference)
    print(f"\nwithout the wasm {missing}: fell back to {out['backend']}, ready in {rec.seconds:.1f} s")


# ---------------------------------------------------------------- packaging (no browser)
def test_wasm_backend_is_pinned_vendored_by_make_web_and_loaded_by_the_page():
    package = json.loads((WEB / "package.json").read_text())
    lock = json.loads((WEB / "package-lock.json").read_text())
    assert package["dependencies"]["@tensorflow/tfjs-backend-wasm"] == "4.22.0"
    assert package["dependencies"]["@tensorflow/tfjs"] == "4.22.0"
    assert lock["packages"][""]["dependencies"]["@tensorflow/tfjs-backend-wasm"] == "4.22.0"
    assert lock["packages"]["node_modules/@tensorflow/tfjs-backend-wasm"]["version"] == "4.22.0"
    if shutil.which("make") is None:
        pytest.skip("no make")
    plan = subprocess.run(["make", "-n", "-B", "web"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    for name in WASM_FILES:
        assert f"@tensorflow/tfjs-backend-wasm/dist/{name} web/vendor/{name}" in plan, f"`make web` does not copy {name}"
    if shutil.which("git") is not None:
        ignored = subprocess.run(["git", "check-ignore", "-q", "web/vendor/tfjs-backend-wasm-simd.wasm"], cwd=REPO)
        assert ignored.returncode == 0, "web/vendor/ is not git-ignored"
    html = (WEB / "index.html").read_text()
    tf_at, wasm_at, app_at = (html.index(f'src="{s}"') for s in ("vendor/tf.min.js", "vendor/tf-backend-wasm.min.js",
                                                                  "app.js"))
    assert tf_at < wasm_at < app_at
