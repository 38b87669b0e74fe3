"""Probe drawings in a real browser (Chromium through Playwright): draw a real cat of ../shared on the
Draw page, save it into a probe set, open the Probes page, score the set with the shipped run's saved
model and see the drawing with its score. Saves a screenshot of the Probes page (the README's picture
into $QUICKDRAW_SCREENSHOTS when set)."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import pytest
from dashboard_pages import (
    GUESS_AND_STROKES_FOR_ALL,
    open_page,
    replay_drawing,
    screenshot,
    shared_drawing,
    shown_top,
    streamlit_server,
    wait_idle,
)

from pipeline import probes, runs

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def probe_dashboard(tmp_path, shared):
    if not (REPO / "runs" / "cnn-56" / "model" / "model.keras").exists():
        pytest.skip("the shipped run runs/cnn-56 has no model")
    runs_dir = tmp_path / "runs"
    shutil.copytree(REPO / "runs" / "cnn-56", runs_dir / "cnn-56", ignore=shutil.ignore_patterns("tb", "checkpoints"))
    with streamlit_server(runs_dir, shared) as base:
        yield {"base": base, "runs_dir": runs_dir}


def test_draw_save_to_a_probe_set_then_see_it_scored(probe_dashboard, page, shared, tmp_path):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    base, runs_dir = probe_dashboard["base"], probe_dashboard["runs_dir"]
    try:
        draw_save_and_score(page, base, runs_dir, shared)
    except (AssertionError, PlaywrightTimeout):
        # What the page showed and which sets exist, for a failure under load.
        page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        print(f"probe sets: {probes.list_sets(runs_dir)}; screenshot {tmp_path / 'failure.png'}")
        raise
    page.mouse.move(0, 0)  # no tooltip in the picture
    screenshot(page, tmp_path, "probes", readme=True)


def draw_save_and_score(page, base: str, runs_dir: Path, shared: Path) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect

    open_page(page, base, "draw")
    drawing = shared_drawing(shared, "cat", 5)
    replay_drawing(page, drawing)
    with contextlib.suppress(PlaywrightTimeout):
        page.wait_for_function(GUESS_AND_STROKES_FOR_ALL, arg=len(drawing), timeout=90_000)
    wait_idle(page)
    page.get_by_text("Save to probe set", exact=True).first.click()  # the expander
    name = page.locator(".st-key-draw_probe_set input")
    name.fill("browser-cats")
    name.press("Enter")
    wait_idle(page)
    guess = shown_top(page, 1)[0][0]
    page.locator(".st-key-draw_probe_save button").click()
    expect(page.get_by_text("in probe set browser-cats: 1 drawing(s)")).to_be_visible(timeout=60_000)
    saved = probes.read_set(runs_dir, "browser-cats")
    assert [p.label for p in saved] == [guess]  # the label defaulted to the shown guess

    open_page(page, base, "probes")
    expect(page.get_by_text("1 drawing(s) in")).to_be_visible(timeout=60_000)
    page.locator(".st-key-probes_score button").first.click()
    expect(page.locator(".st-key-probes-top1").get_by_test_id("stDataFrame")).to_contain_text("cnn-56",
                                                                                             timeout=60_000)
    wait_idle(page)
    record = runs.read_probe_scores(runs_dir / "cnn-56")[-1]
    assert record["set"] == "browser-cats" and record["source"] == "saved-model"
    card = page.locator(".st-key-probe-cnn-56-0")
    expect(card.locator("img")).to_have_count(1)
    expect(card.get_by_test_id("stPlotlyChart")).to_have_count(1, timeout=30_000)
    d = record["drawings"][0]
    expect(card).to_contain_text(f"epoch {record['epoch']}: p={d['prob']:.2f}, guess {d['top1']}")
