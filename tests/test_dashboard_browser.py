"""The dashboard in a real browser: `streamlit run dashboard` driven by Playwright in Chromium.

Replays a real drawing of ../shared stroke by stroke as mouse events on the Draw page's canvas and
checks that the top-3 shown equals pipeline.predict's top-3 for the strokes the canvas reported;
replays 40 real drawings, each on a freshly opened Draw page over the shipped runs, briskly and at a
human pace (tests/draw_replay.py), and checks that every stroke drawn reaches Python with every point,
that the guess equals pipeline.predict's on the original strokes and shows within a second; starts a tiny training run from the Train page and watches it appear on Runs and Compare; opens every
page over the repository's runs/ as a fresh clone would; compares cnn-56 with mobilenet-56 on Evaluate
(a click on the difference heatmap filters the gallery); saves a screenshot of every page (into the
test's tmp folder; the README's pictures also into $QUICKDRAW_SCREENSHOTS when set).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest
from dashboard_pages import (
    GUESS_AND_STROKES_FOR_ALL,
    open_page,
    pick,
    replay_drawing,
    screenshot,
    shared_drawing,
    shown_top,
    streamlit_server,
    wait_idle,
    wait_table,
)
from draw_replay import BRISK, HUMAN, REPLAYS, Outcome, replay, replay_set, stroke_problems, summary

REPO = Path(__file__).resolve().parents[1]
PAGES = ("runs", "compare", "draw", "train", "evaluate", "export")

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def dashboard(request, tmp_path_factory, shared):
    """A `streamlit run dashboard` server over a copy of the trained fixture runs."""
    pytest.importorskip("pipeline.datasets", reason="pipeline.datasets is needed to train the fixture models")
    trained = request.getfixturevalue("trained_runs")
    runs_dir = tmp_path_factory.mktemp("browser") / "runs"
    shutil.copytree(Path(trained["cnn"]).parent, runs_dir)
    with streamlit_server(runs_dir, shared) as base:
        yield {"base": base, "runs_dir": runs_dir, "trained": trained}


@pytest.fixture(scope="module")
def shipped_dashboard(tmp_path_factory, shared, cache_dir):
    """The dashboard a fresh clone opens: a copy of the repository's runs/ (the shipped experiment);
    its dataset caches (built by the Evaluate page's pair gallery) go to the session's cache_dir."""
    runs_dir = tmp_path_factory.mktemp("shipped") / "runs"
    shutil.copytree(REPO / "runs", runs_dir, ignore=shutil.ignore_patterns("checkpoints", "cache", ".logs", ".lock"))
    with streamlit_server(runs_dir, shared) as base:
        yield {"base": base, "runs_dir": runs_dir}


def test_canvas_drawing_matches_pipeline_predict(dashboard, page, shared, tmp_path):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    from pipeline.predict import Predictor

    open_page(page, dashboard["base"], "draw")
    drawing = shared_drawing(shared, "cat", 5)
    replay_drawing(page, drawing)
    with contextlib.suppress(PlaywrightTimeout):  # on a timeout the assertions below say what arrived
        page.wait_for_function(GUESS_AND_STROKES_FOR_ALL, arg=len(drawing), timeout=90_000)
    wait_idle(page)
    strokes = page.locator(".st-key-draw-strokes code")
    objects = json.loads(strokes.first.text_content()) if strokes.count() else None
    shown = shown_top(page, 1)
    assert objects is not None and len(objects) == len(drawing), "the canvas did not report every stroke"
    model_1 = page.locator(".st-key-model-1 h3").inner_text().strip()
    run_dir = dashboard["runs_dir"] / model_1
    assert run_dir.is_dir(), model_1
    expected = Predictor.from_run(run_dir).predict(objects, top=3)
    assert [label for label, _ in shown[:3]] == [label for label, _ in expected]
    assert [p for _, p in shown[:3]] == pytest.approx([p for _, p in expected], abs=6e-4)
    screenshot(page, tmp_path, "draw")


def test_train_page_starts_a_run_that_appears_on_runs_and_compare(dashboard, page, tmp_path):
    from playwright.sync_api import expect

    base, runs_dir = dashboard["base"], dashboard["runs_dir"]

    def job_logs() -> str:
        return "\n".join(p.read_text(errors="replace")[-1500:] for p in (runs_dir / ".logs").glob("*.log"))

    open_page(page, base, "train")
    name_field = page.locator(".st-key-train_name input")
    name_field.fill("browser-tiny")
    name_field.press("Enter")
    expect(name_field).to_have_value("browser-tiny")
    wait_idle(page)
    for name in ("apple", "banana"):
        pick(page, "train_classes", f"✓ {name}", typed=name)  # ✓: on disk already
        expect(page.locator(".st-key-train_classes")).to_contain_text(name)  # chosen: shown as a tag
        wait_idle(page)
    page.keyboard.press("Escape")
    for key, value in (("train_per_class", "300"), ("train_epochs", "2")):
        field = page.locator(f".st-key-{key} input")
        field.fill(value)
        field.press("Enter")
        expect(field).to_have_value(value)
        wait_idle(page)
    page.get_by_role("button", name="Start training").click()
    # The page's Progress fragment (rerun every 2 s) shows the run's panel once its trainer wrote
    # status.json, and the job's expander says how the job ended.
    panel = page.get_by_text(re.compile(r"browser-tiny - (running|finished), chunk")).first
    ended = page.get_by_text(re.compile(r"job train-browser-tiny: (done|failed|stopped)")).first
    try:
        expect(panel.or_(ended).first).to_be_visible(timeout=240_000)
    except AssertionError:
        pytest.fail(f"the run started from the Train page never showed on the page:\n{job_logs()}")
    wait_idle(page)
    screenshot(page, tmp_path, "train", readme=True)  # live progress of a run: the README's Train picture
    try:
        expect(ended).to_be_visible(timeout=240_000)
    except AssertionError:
        pytest.fail(f"the job started from the Train page did not end:\n{job_logs()}")
    history = runs_dir / "browser-tiny" / "history.csv"
    if not (history.exists() and len(history.read_text().splitlines()) >= 2):
        pytest.fail(f"the run started from the Train page failed:\n{job_logs()}")
    download = "\n".join(p.read_text(errors="replace") for p in (runs_dir / ".logs").glob("*.log"))
    assert "pipeline download" not in download  # both classes were on disk: nothing to download
    open_page(page, base, "runs")
    compare = page.locator(".st-key-runs_compare_widget")
    # Typed, as the class picker is: the option list is filtered to it; picked for Compare as a user would.
    pick(page, "runs_compare_widget", "browser-tiny", typed="browser-tiny")
    expect(compare).to_contain_text("browser-tiny")
    wait_idle(page)
    page.keyboard.press("Escape")
    # Through the sidebar, not a new URL: the selection lives in this browser session.
    page.locator('[data-testid="stSidebarNav"] a', has_text="Compare").click()
    expect(page.locator(".js-plotly-plot").first).to_contain_text("browser-tiny", timeout=60_000)


def test_screenshot_every_page(dashboard, page, shared, tmp_path):
    for name in PAGES:
        open_page(page, dashboard["base"], name)
        if name == "draw":
            replay_drawing(page, shared_drawing(shared, "fish", 2))
            page.wait_for_selector(".st-key-predictions-2 li", timeout=90_000)
            wait_idle(page)
        if name == "compare":
            page.wait_for_selector(".js-plotly-plot", timeout=60_000)
        if name == "runs":
            wait_table(page, Path(dashboard["trained"]["cnn"]).name)
        assert page.locator('[data-testid="stException"]').count() == 0, f"{name} page raised"
        screenshot(page, tmp_path, name)
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000


def test_a_fresh_clone_opens_on_the_shipped_experiment(shipped_dashboard, page, shared, tmp_path):
    """Every page over the repository's runs/: nothing raises, Compare shows the shipped CNN and
    MobileNet without a click, Draw guesses a real drawing with web/'s default model. These are the
    README's screenshots."""
    base = shipped_dashboard["base"]
    default = json.loads((REPO / "web" / "models" / "index.json").read_text())["default"]
    for name in PAGES:
        open_page(page, base, name)
        if name == "runs":
            wait_table(page, "mobilenet-56")
            assert "damaged" not in page.locator("main").inner_text()
        if name == "compare":
            page.wait_for_selector(".js-plotly-plot", timeout=60_000)
            plot = page.locator(".js-plotly-plot").first.inner_text()
            assert "mobilenet-56" in plot and ("cnn-56" in plot.replace("mobilenet-56", "")), plot
        if name == "draw":
            replay_drawing(page, shared_drawing(shared, "cat", 2))
            page.wait_for_selector(".st-key-predictions-1 li", timeout=90_000)
            wait_idle(page)
            assert page.locator(".st-key-model-1 h3").inner_text().strip() == default
            assert shown_top(page, 1)[0][0] == "cat"
        if name == "evaluate":
            page.wait_for_selector(".js-plotly-plot", timeout=60_000)
        assert page.locator('[data-testid="stException"]').count() == 0, f"{name} page raised"
        screenshot(page, tmp_path, name, readme=name != "train")  # Train: see the test that starts a run


# ---------------------------------------------------------------- a newcomer's first hour (points 8-10)
@pytest.fixture(scope="module")
def newcomer_dashboard(tmp_path_factory, shared):
    """The shipped cnn-56 and mobilenet-56 (resumed, stopped and crashed at the same epochs), an
    unevaluated branch of cnn-56 and a 3-class run whose val top-3 is 1.0 at every epoch."""
    import dataclasses

    from test_dashboard import _make_run

    from pipeline import runs as runs_mod

    runs_dir = tmp_path_factory.mktemp("newcomer") / "runs"
    for name in ("cnn-56", "mobilenet-56"):
        shutil.copytree(REPO / "runs" / name, runs_dir / name, ignore=shutil.ignore_patterns("checkpoints", "tb", ".lock"))
    branch = runs_dir / "cnn-56-branch"
    shutil.copytree(runs_dir / "cnn-56", branch)
    (branch / "eval.json").unlink()
    config = runs_mod.read_config(branch)
    runs_mod.write_config(branch, dataclasses.replace(config, name=branch.name, parent={"run": "cnn-56", "epoch": 8}))
    three = _make_run(runs_dir, "three-classes", "cnn", 4, 4, "finished")
    runs_mod.write_history(three, [{**row, "val_top3": 1.0} for row in runs_mod.read_history(three)])
    with streamlit_server(runs_dir, shared) as base:
        yield {"base": base, "runs_dir": runs_dir}


# Every text a page draws on a canvas (the Runs table is a canvas): text, x and its measured width.
_RECORD_CANVAS_TEXT = """(() => {
  window.__drawn = [];
  const fillText = CanvasRenderingContext2D.prototype.fillText;
  CanvasRenderingContext2D.prototype.fillText = function (text, x, y, ...rest) {
    window.__drawn.push({text: String(text), x: x + this.getTransform().e, y: y + this.getTransform().f,
                         width: this.measureText(String(text)).width});
    return fillText.call(this, text, x, y, ...rest);
  };
})();"""

# The Compare figure's event marks, one per symbol drawn: run (by the colour of its curve), hover text and
# the symbol's position on the screen.
_COMPARE_MARKS = """() => {
  const gd = document.querySelector('.js-plotly-plot');
  const layout = gd._fullLayout, box = gd.getBoundingClientRect();
  const runs = Object.fromEntries(gd.data.filter((t) => t.legendgroup === t.name).map((t) => [t.line.color, t.name]));
  const marks = [];
  gd.data.forEach((t) => {
    if (!(t.legendgroup || '').startsWith('mark:') || t.showlegend !== false) return;
    t.y.forEach((y, i) => {
      if (!t.marker.size[i]) return;
      marks.push({run: runs[t.line.color], text: t.hovertext[i],
                  x: box.left + layout._size.l + layout.xaxis.l2p(layout.xaxis.d2l(t.x[i])),
                  y: box.top + layout._size.t + layout.yaxis2.l2p(y)});
    });
  });
  return {marks, annotations: layout.annotations.length, size: t_size(gd)};
  function t_size(gd) { return Math.max(...gd.data.filter((t) => (t.legendgroup || '').startsWith('mark:'))
                                                  .flatMap((t) => [].concat(t.marker.size))); }
}"""


def _hover_mark(page, index: int, attempts: int = 3) -> str:
    """The hover label shown with the mouse on mark `index`. The page may redraw the plot while the mouse
    rests there (a run's files changed and the page's watcher reran it: earlier tests share this server),
    which removes the label; so the mark's position is read afresh on an idle page and hovered again."""
    from playwright.sync_api import expect

    hover = page.locator(".hoverlayer .hovertext").first
    for attempt in range(attempts):
        wait_idle(page)
        mark = page.evaluate(_COMPARE_MARKS)["marks"][index]
        page.mouse.move(5, 5)  # off the plot first: each mark gets a fresh hover, not the previous one's label
        page.mouse.move(mark["x"], mark["y"], steps=4)
        try:
            expect(hover).to_contain_text(mark["text"].split("<br>")[0], timeout=5_000)
            return hover.text_content()
        except AssertionError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def test_every_page_opens_by_its_url_path(newcomer_dashboard, page):
    """/runs, /compare, ... opened directly show their page, not "Page not found"."""
    from playwright.sync_api import expect

    base = newcomer_dashboard["base"]
    for path, title in (("", "Runs"), ("runs", "Runs"), ("compare", "Compare"), ("train", "Train"),
                        ("evaluate", "Evaluate"), ("export", "Export"), ("draw", "Draw")):
        page.goto(f"{base}/{path}")
        expect(page.locator("h2").first).to_have_text(title, timeout=60_000)
        expect(page.get_by_text("Page not found")).to_have_count(0)


def test_runs_page_shows_dashes_counts_and_whole_parents(newcomer_dashboard, browser):
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 2400, "height": 1000})  # every column in view
    page = context.new_page()
    page.add_init_script(_RECORD_CANVAS_TEXT)
    try:
        page.goto(newcomer_dashboard["base"] + "/runs")
        table = page.get_by_test_id("stDataFrame").first
        expect(table.locator("table")).to_contain_text("cnn-56-branch", timeout=60_000)
        expect(page.get_by_text("4 runs in")).to_be_visible()
        page.wait_for_function("() => window.__drawn.some((d) => d.text === 'note')")  # the last header
        drawn = page.evaluate("window.__drawn")
        texts = {d["text"] for d in drawn}
        assert "-" in texts and "None" not in texts, "an unevaluated run's test top-1 shows '-', not None"
        headers = sorted((d["x"], d["text"]) for d in drawn if d["y"] < 30)
        start = next(x for x, t in headers if t == "parent")
        end = next(x for x, t in headers if x > start)
        parent = next(d for d in drawn if d["text"] == "cnn-56" and start - 1 <= d["x"] < end)
        assert parent["width"] < end - start - 8, "the parent column shows the whole parent's name"
        tree = page.get_by_test_id("stCode").filter(has_text="cnn-56-branch")  # the family tree, under the table
        expect(tree).to_contain_text("└─ cnn-56-branch branch from epoch 8")
        search = page.locator(".st-key-runs_search input")
        search.fill("mobilenet")
        search.press("Enter")
        expect(page.get_by_text("1 of 4 runs in")).to_be_visible(timeout=30_000)
    finally:
        context.close()


def test_compare_marks_name_their_run_and_never_overlap(newcomer_dashboard, page, tmp_path):
    """Two runs stopped, crashed and resumed at the same epochs: each mark's hover names its run (whose
    curve has its colour), no text is printed on the plot, no two symbols cover each other; the time
    axes; an accuracy axis that ends near 1; the PNG download."""
    from playwright.sync_api import expect

    open_page(page, newcomer_dashboard["base"], "compare")
    plot = page.locator(".js-plotly-plot").first
    expect(plot).to_contain_text("mobilenet-56", timeout=60_000)
    expect(plot.locator(".legendtext")).to_contain_text(["cnn-56", "mobilenet-56", "chunk start", "stopped", "crash"])
    wait_idle(page)  # the plot's final layout: the marks' positions below stay where they are
    found = page.evaluate(_COMPARE_MARKS)
    marks = found["marks"]
    assert found["annotations"] == 0
    assert {m["run"] for m in marks} == {"cnn-56", "mobilenet-56"}
    assert any("stopped (cnn-56)" in m["text"] for m in marks) and any("stopped (mobilenet-56)" in m["text"] for m in marks)
    for i, a in enumerate(marks):
        for b in marks[i + 1:]:
            assert abs(a["x"] - b["x"]) >= found["size"] or abs(a["y"] - b["y"]) >= found["size"], (a, b)
    for index in range(len(marks)):
        hover = _hover_mark(page, index)
        mark = marks[index]
        other = "mobilenet-56" if mark["run"] == "cnn-56" else "(cnn-56)"
        assert mark["text"].split("<br>")[0] in hover and mark["run"] in hover and other not in hover, (mark, hover)
    page.mouse.move(5, 5)

    for choice, title in (("time since start", "time since the run started, in minutes"),
                          ("training time", "training time (gaps between chunks removed), in minutes")):
        page.locator(".st-key-compare_axis").get_by_text(choice, exact=True).click()
        expect(plot.locator(".g-xtitle")).to_have_text(title, timeout=30_000)
    wait_idle(page)

    pick(page, "compare_runs", "three-classes", typed="three")
    page.keyboard.press("Escape")
    expect(plot.locator(".legendtext")).to_contain_text(["three-classes"], timeout=30_000)
    wait_idle(page)
    low, high = page.evaluate("() => document.querySelector('.js-plotly-plot')._fullLayout.yaxis.range")
    assert low < 1.0 <= high <= 1.05, (low, high)  # val top-3 of 1.0 shown, on an axis ending near 1

    page.get_by_role("button", name="Make PNG").click()
    download_button = page.get_by_role("button", name="Download PNG")
    expect(download_button).to_be_visible(timeout=120_000)
    with page.expect_download() as download:
        download_button.click()
    png = Path(download.value.path()).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(png[16:20], "big") == 1200
    (tmp_path / "compare.png").write_bytes(png)
    screenshot(page, tmp_path, "compare-marks")


def test_evaluate_page_says_which_evaluation_and_shows_more_mistakes(newcomer_dashboard, page):
    from playwright.sync_api import expect

    open_page(page, newcomer_dashboard["base"], "evaluate")
    expect(page.locator(".st-key-evaluate_which").get_by_role("combobox")).to_have_value("test split")
    expect(page.locator(".st-key-evaluate_which_caption")).to_contain_text("Evaluation on the test split (eval.json)")
    count = page.locator(".st-key-evaluate_gallery_count")
    expect(count).to_contain_text(re.compile(r"Showing 24 of [\d,]+ mistakes\. The evaluation kept 48 of them"),
                                  timeout=60_000)
    page.get_by_role("button", name="Show more (24 more kept)").click()
    expect(count).to_contain_text(re.compile(r"Showing 48 of [\d,]+ mistakes\."), timeout=30_000)
    expect(page.get_by_role("button", name=re.compile("Show more"))).to_have_count(0)


# ---------------------------------------------------------------- replays of 40 real drawings (issue 9 §3)
# True once Model 1's top-5 is shown for a drawing of `n` strokes: the caption under the list says
# for how many strokes that guess is, so a guess left over from an earlier stroke never counts.
_GUESS_FOR_ALL_STROKES = """(n) => {
  const box = document.querySelector('.st-key-predictions-1');
  if (!box || box.querySelectorAll('li').length < 5) return false;
  const match = /guess for (\\d+) stroke/.exec(box.innerText);
  return match !== null && Number(match[1]) === n;
}"""


@pytest.fixture(scope="module")
def draw_replays(shipped_dashboard, browser, shared):
    """The shipped dashboard with the Draw page's models loaded (one drawing guessed, not timed),
    Model 1 as the page picks it, its Predictor, the 40 drawings and pipeline.predict's top-1 of each."""
    from pipeline.predict import Predictor

    base, runs_dir = shipped_dashboard["base"], shipped_dashboard["runs_dir"]
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{base}/draw")
        canvas = page.locator("canvas.upper-canvas").first
        canvas.wait_for(timeout=60_000)
        replay(page, shared_drawing(shared, "cat", 100), canvas.bounding_box(), BRISK)
        page.wait_for_selector(".st-key-predictions-1 li", timeout=180_000)
        model_1 = page.locator(".st-key-model-1 h3").inner_text().strip()
    finally:
        page.context.close()
    predictor = Predictor.from_run(runs_dir / model_1)
    drawings = replay_set(shared, predictor.classes)
    assert len(drawings) == REPLAYS, f"only {len(drawings)} drawings of {model_1}'s classes in {shared}/simplified"
    return {"base": base, "model": model_1, "drawings": drawings,
            "python": [predictor.predict(drawing, top=1)[0][0] for _, drawing in drawings]}


def _replay_on_a_fresh_draw_page(context, replays: dict, name: str, drawing: list, python_top1: str, pace) -> Outcome:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    from pipeline.strokes import from_fabric

    outcome = Outcome(name, len(drawing), python_top1=python_top1)
    page = context.new_page()  # a new tab: a new Streamlit session (the context only shares the HTTP cache)
    try:
        page.goto(f"{replays['base']}/draw")
        canvas = page.locator("canvas.upper-canvas").first
        canvas.wait_for(timeout=60_000)
        drawn, last_up = replay(page, drawing, canvas.bounding_box(), pace)  # as soon as the canvas is there
        try:
            page.wait_for_function(_GUESS_FOR_ALL_STROKES, arg=len(drawing), timeout=5_000, polling="raf")
            outcome.latency = time.perf_counter() - last_up
        except PlaywrightTimeout:
            wait_idle(page)  # strokes are missing: record what did arrive
        code = page.locator(".st-key-draw-strokes code")  # hidden; drawn just before the guesses
        with contextlib.suppress(PlaywrightTimeout):
            code.first.wait_for(state="attached", timeout=10_000)
        objects = json.loads(code.first.text_content()) if code.count() else []
        outcome.problems = stroke_problems(drawn, from_fabric(objects))
        shown = shown_top(page, 1)
        outcome.page_top1 = shown[0][0] if shown else None
        model = page.locator(".st-key-model-1 h3")
        assert not model.count() or model.inner_text().strip() == replays["model"]
    finally:
        page.close()
    return outcome


@pytest.mark.parametrize("pace", [BRISK, HUMAN], ids=lambda pace: pace.name)
def test_draw_page_gets_every_stroke_of_40_replayed_drawings(pace, draw_replays, browser):
    """Issue 9 §3: each drawing replayed on a freshly opened Draw page as soon as its canvas appears.
    What reached Python (the strokes under the guesses) is compared with what was drawn, point by point."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        outcomes = [_replay_on_a_fresh_draw_page(context, draw_replays, name, drawing, python, pace)
                    for (name, drawing), python in zip(draw_replays["drawings"], draw_replays["python"], strict=True)]
    finally:
        context.close()
    print("\n" + summary(f"Draw page ({draw_replays['model']})", pace, outcomes))
    lost = [f"#{i} {o.name}: {'; '.join(o.problems)}" for i, o in enumerate(outcomes) if o.lost_strokes]
    assert not lost, "whole strokes drawn never reached Python:\n" + "\n".join(lost)
    incomplete = [f"#{i} {o.name}: {'; '.join(o.problems)}" for i, o in enumerate(outcomes) if o.problems]
    assert not incomplete, "strokes reached Python without the points drawn:\n" + "\n".join(incomplete)
    assert sum(o.page_top1 == o.python_top1 for o in outcomes) >= REPLAYS - 2
    latencies = [o.latency for o in outcomes]
    assert None not in latencies and max(latencies) <= 1.0, f"final guess later than 1 s after the last stroke: {latencies}"


def test_a_newcomers_first_hour_from_train_to_the_web_page(page, shared, tmp_path, monkeypatch):
    """Issue 11's walk, as a new user clicks it: start a tiny run from Train, stop it, resume it to the end
    of its plan, evaluate it, export it (as the web page's default), see it on Runs and Compare and guess a
    drawing with it on the web page. Every page must report each step's end within 5 s of the file that
    records it (status.json, eval.json, the export job's record)."""
    from playwright.sync_api import expect

    from pipeline import jobs, runs
    from pipeline.export import read_index, static_server

    runs_dir, web = tmp_path / "runs", tmp_path / "web"
    runs_dir.mkdir()
    shutil.copytree(REPO / "web", web, ignore=shutil.ignore_patterns("node_modules", "models"))
    monkeypatch.setenv("QUICKDRAW_WEB", str(web))  # exports go here, not into the repository's web/
    run_dir, lags, started = runs_dir / "walk", {}, time.time()

    def reported(step: str, happened: float) -> None:
        lags[step] = round(time.time() - happened, 2)

    def choose(key: str, value: str) -> None:
        pick(page, key, value)
        expect(page.locator(f".st-key-{key}").get_by_role("combobox")).to_have_value(value)
        wait_idle(page)

    with streamlit_server(runs_dir, shared) as base:
        open_page(page, base, "train")
        choose("train_model", "qdnet")  # slow enough per epoch to be stopped by hand in the middle
        name_field = page.locator(".st-key-train_name input")
        name_field.fill("walk")
        name_field.press("Enter")
        expect(name_field).to_have_value("walk")
        for name in ("apple", "banana"):
            pick(page, "train_classes", f"✓ {name}", typed=name)
            expect(page.locator(".st-key-train_classes")).to_contain_text(name)
            wait_idle(page)
        page.keyboard.press("Escape")
        for key, value in (("train_per_class", "2000"), ("train_epochs", "2"), ("train_chunks", "2"),
                           ("train_batch", "8")):
            field = page.locator(f".st-key-{key} input")
            field.fill(value)
            field.press("Enter")
            expect(field).to_have_value(value)
            wait_idle(page)
        page.locator(".st-key-train_start button").click()
        expect(page.get_by_text(re.compile(r"walk - running, chunk 1, epoch \d/4"))).to_be_visible(timeout=180_000)

        page.get_by_role("tab", name="Stop").click()
        page.locator(".st-key-stop_start button").click()
        expect(page.get_by_text("walk - stopped").first).to_be_visible(timeout=60_000)
        reported("stopped", runs.read_status(run_dir)["updated"])
        assert runs.run_state(run_dir).state == "stopped"
        assert len(runs.read_history(run_dir)) < 4, "the run finished before it could be stopped: use more data"
        expect(page.get_by_text("job train-walk: stopped")).to_be_visible(timeout=10_000)

        page.get_by_role("tab", name="Resume").click()
        expect(page.get_by_text("resuming continues to epoch 4")).to_be_visible(timeout=10_000)
        page.locator(".st-key-resume_start button").click()
        expect(page.get_by_text(re.compile(r"walk - finished, chunk \d, epoch 4/4"))).to_be_visible(timeout=240_000)
        reported("finished", runs.read_status(run_dir)["updated"])
        assert [r["epoch"] for r in runs.read_history(run_dir)] == [1, 2, 3, 4]
        assert runs.run_state(run_dir).state == "finished"

        open_page(page, base, "evaluate")
        page.locator(".st-key-evaluate_start button").click()
        expect(page.get_by_test_id("stMetric").first).to_contain_text("top-1", timeout=180_000)
        reported("evaluated", (run_dir / "eval.json").stat().st_mtime)

        open_page(page, base, "export")
        page.locator(".st-key-export_as_default label").click()
        page.locator(".st-key-export_start button").click()
        expect(page.get_by_text("TF.js output matches Keras")).to_be_visible(timeout=240_000)
        job = jobs.wait(jobs.read_job(runs_dir, "export-walk"), timeout=60)
        reported("exported", job.ended)  # negative when the page showed the result before the process exited
        assert jobs.job_status(job).state == "done"
        expect(page.get_by_test_id("stDataFrame").first).to_contain_text("walk", timeout=10_000)
        assert read_index(web)["default"] == "walk" and (web / "models" / "walk" / "model.json").exists()
        assert not (REPO / "web" / "models" / "walk").exists()

        open_page(page, base, "runs")
        wait_table(page, "walk")
        open_page(page, base, "compare")
        expect(page.locator(".js-plotly-plot").first).to_contain_text("walk", timeout=60_000)
        assert page.locator('[data-testid="stException"]').count() == 0

    with static_server(web) as url:
        page.goto(url)
        expect(page.get_by_test_id("model-picker")).to_have_value("walk", timeout=60_000)
        expect(page.get_by_test_id("status")).to_contain_text("Draw something", timeout=60_000)
        canvas = page.get_by_test_id("drawing-canvas")
        replay(page, shared_drawing(shared, "apple", 3), canvas.bounding_box(), BRISK)
        expect(page.get_by_test_id("predictions").locator("li").first).to_be_visible(timeout=30_000)
    print(f"first-hour walk: {time.time() - started:.0f} s; page reported each step this long after its file: {lags}")
    assert all(lag <= 5.0 for lag in lags.values()), lags


# ---------------------------------------------------------------- seed groups and what differs
def test_compare_groups_the_shipped_seeds_into_a_band_and_expands_them(shipped_dashboard, page):
    """Over the shipped runs: Runs lists the two seed groups with mean ± sd; on Compare, cnn-56 and
    cnn-56-seed1 become one mean curve with a filled band, "Show members of" adds both runs, and the
    table of what differs shows their seed only."""
    from playwright.sync_api import expect

    base = shipped_dashboard["base"]
    open_page(page, base, "runs")
    wait_table(page, "mobilenet-56")
    groups = page.get_by_test_id("stDataFrame").nth(1)
    expect(groups).to_contain_text("cnn-56 (2 seeds)", timeout=60_000)
    expect(groups).to_contain_text("qdnet-56 (2 seeds)")
    expect(groups).to_contain_text(" ± ")
    assert "cnn-56-seedway" not in groups.inner_text()

    open_page(page, base, "compare")
    plot = page.locator(".js-plotly-plot").first
    expect(plot).to_contain_text("mobilenet-56", timeout=60_000)
    for name in ("cnn-56", "cnn-56-seed1"):
        chosen = page.locator(".st-key-compare_runs [data-baseweb='tag']").all_inner_texts()
        if name in [text.strip() for text in chosen]:
            continue
        pick(page, "compare_runs", name, typed=name)
        page.keyboard.press("Escape")
        wait_idle(page)
    expect(plot.locator(".legendtext")).to_contain_text(["cnn-56 (2 seeds)"], timeout=30_000)
    wait_idle(page)
    assert plot.locator("path.js-fill").count() >= 1, "the group's band is a filled area"
    legend = plot.locator(".legendtext").all_text_contents()
    assert "cnn-56-seed1" not in legend and "cnn-56" not in legend  # folded into the group
    page.get_by_text("Show members of cnn-56 (2 seeds)").click()
    expect(plot.locator(".legendtext")).to_contain_text(["cnn-56-seed1"], timeout=30_000)
    wait_idle(page)
    assert "cnn-56 (2 seeds)" in plot.locator(".legendtext").all_text_contents()
    assert page.locator('[data-testid="stException"]').count() == 0


# ---------------------------------------------------------------- Evaluate: which classes changed (issue 12 §5)
# The difference heatmap of the Evaluate page's "Compare with another run": its size, how many class
# labels each axis shows, and where (on the screen) the cell of a true and a predicted class is.
_HEATMAP_CELL = """([trueClass, predClass]) => {
  const gd = document.querySelector('.st-key-evaluate_compare_heatmap .js-plotly-plot');
  const layout = gd._fullLayout, box = gd.getBoundingClientRect(), z = gd.calcdata[0][0].z;
  return {type: gd._fullData[0].type, rows: z.length, columns: z[0].length,
          xticks: gd.querySelectorAll('g.xtick').length, yticks: gd.querySelectorAll('g.ytick').length,
          x: box.left + layout._size.l + layout.xaxis.l2p(layout.xaxis.d2l(predClass)),
          y: box.top + layout._size.t + layout.yaxis.l2p(layout.yaxis.d2l(trueClass))};
}"""


def test_evaluate_compares_two_runs_and_a_heatmap_click_or_a_pair_filters_the_gallery(shipped_dashboard, page, shared,
                                                                                       tmp_path):
    """Over the shipped runs: cnn-56 against mobilenet-56 (56 classes) shows the per-class deltas and the
    A - B heatmap with every class labelled; hovering a cell names the pair and both counts, clicking it
    filters the misclassified gallery to that pair for A and B - every test drawing of it, "Show more" to
the last, where eval.json kept one - and so does picking a top changed pair."""
    from playwright.sync_api import expect

    from dashboard.views.evaluate import GALLERY_PAGE
    from pipeline import runs as runs_mod
    from pipeline.evaluate import compare_test_splits

    runs_dir = shipped_dashboard["runs_dir"]
    for name in ("cnn-56", "mobilenet-56"):  # their data is ../shared, wherever it is here
        config = runs_mod.read_config(runs_dir / name)
        runs_mod.write_config(runs_dir / name, dataclasses.replace(config, data_root=str(shared)))
    compared = compare_test_splits(runs_dir / "cnn-56", runs_dir / "mobilenet-56")
    first, second = compared.changed_confusions[:2]
    kept = sum((w["true"], w["pred"]) == (first["true"], first["pred"])
               for w in json.loads((runs_dir / "cnn-56" / "eval.json").read_text())["misclassified"])
    assert kept < GALLERY_PAGE < first["b"] < first["a"]  # cat -> dog: eval.json kept 1 of A's 69
    open_page(page, shipped_dashboard["base"], "evaluate")
    pick(page, "evaluate_run", "cnn-56")
    pick(page, "evaluate_compare_run", "mobilenet-56")
    heatmap = page.locator(".st-key-evaluate_compare_heatmap .js-plotly-plot")
    expect(heatmap).to_be_visible(timeout=60_000)
    expect(page.locator(".st-key-evaluate_compare_summary")).to_contain_text("A = cnn-56, B = mobilenet-56")
    wait_idle(page)
    heatmap.scroll_into_view_if_needed()
    cell = page.evaluate(_HEATMAP_CELL, [first["true"], first["pred"]])
    assert cell["type"] == "heatmap" and cell["rows"] == cell["columns"] == 56
    assert cell["xticks"] == cell["yticks"] == 56, "every class is labelled on both axes"

    page.mouse.move(5, 5)
    page.mouse.move(cell["x"], cell["y"], steps=4)
    hover = page.locator(".hoverlayer .hovertext").first
    expect(hover).to_contain_text(f"true {first['true']} -> predicted {first['pred']}: A {first['a']}, B {first['b']}, "
                                  f"A-B {first['delta']:+d}", timeout=10_000)
    page.mouse.click(cell["x"], cell["y"])
    count = page.locator(".st-key-evaluate_gallery_count")

    def showing(shown: int, pair: dict, total: int):
        return re.compile(rf"Showing {shown} of {total} {pair['true']} (?:->|→) {pair['pred']} mistakes")

    # Every test drawing of the pair, a page at a time, for A and for B.
    expect(count).to_contain_text(showing(GALLERY_PAGE, first, first["a"]), timeout=60_000)
    expect(page.locator(".st-key-evaluate_gallery_b_count")).to_contain_text(showing(GALLERY_PAGE, first, first["b"]),
                                                                             timeout=60_000)
    wait_idle(page)
    for shown in (2 * GALLERY_PAGE, first["a"]):
        page.locator(".st-key-evaluate_gallery_more button").click()
        expect(count).to_contain_text(showing(min(shown, first["a"]), first, first["a"]), timeout=30_000)
        wait_idle(page)
    expect(page.locator(".st-key-evaluate_gallery_more")).to_have_count(0)
    captions = page.locator("[data-testid='stImage']").all_inner_texts()
    assert len(captions) == first["a"] + GALLERY_PAGE, len(captions)
    assert all(text.replace("→", "->").startswith(f"{first['true']} -> {first['pred']}") for text in captions), captions
    screenshot(page, tmp_path, "evaluate-compare")
    # The README's picture: the comparison alone, from the run B picker to the filtered gallery of B.
    # Streamlit draws a chart only once it is in view: a viewport as tall as the section shows it whole.
    section = page.locator(".st-key-evaluate_compare")
    page.set_viewport_size({"width": 1400, "height": int(section.bounding_box()["height"]) + 400})
    section.scroll_into_view_if_needed()
    wait_idle(page)
    page.wait_for_timeout(1500)  # the charts' resize to the new viewport
    for folder in filter(None, (tmp_path, os.environ.get("QUICKDRAW_SCREENSHOTS"))):
        Path(folder).mkdir(parents=True, exist_ok=True)
        section.screenshot(path=str(Path(folder) / "dashboard-evaluate-compare.png"))
    page.set_viewport_size({"width": 1400, "height": 1000})

    label = f"{second['true']} -> {second['pred']} (A {second['a']}, B {second['b']}, A-B {second['delta']:+d})"
    pick(page, "evaluate_compare_pair", label)
    expect(count).to_contain_text(showing(min(GALLERY_PAGE, second["a"]), second, second["a"]), timeout=60_000)
    assert page.locator('[data-testid="stException"]').count() == 0
