"""The dashboard driven in Chromium: start `streamlit run dashboard`, open its pages, wait for them,
pick options, replay a drawing on the Draw page's canvas, read the guesses shown. Shared by the
browser tests of the dashboard (tests/test_dashboard_browser.py, tests/test_probes_browser.py); the
`browser` and `page` fixtures are in tests/conftest.py."""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

import pytest

from dashboard.server import running_dashboard


@contextlib.contextmanager
def streamlit_server(runs_dir: Path, data: Path):
    """`streamlit run dashboard` over `runs_dir` on a free port; yields its base URL."""
    with contextlib.ExitStack() as stack:
        try:  # only a server that does not start is this fixture's failure; the test's errors pass through
            base = stack.enter_context(running_dashboard(runs_dir, data, runs_dir.parent / "streamlit.log", timeout=90))
        except RuntimeError as exc:
            pytest.fail(str(exc))
        yield base


def open_page(page, base: str, name: str):
    page.goto(f"{base}/{name}" if name != "runs" else base)
    page.wait_for_selector("h2", timeout=60_000)
    wait_idle(page)


def wait_idle(page, timeout: float = 60.0) -> None:
    """Wait until the page is connected and no script run is in progress, as Streamlit's own end-to-end
    tests do: its stApp element carries data-test-connection-state and data-test-script-state. Right after
    a widget interaction the state can still read notRunning (the rerun's first message has not arrived),
    so callers wait for what the interaction shows (expect) before or instead of this."""
    from playwright.sync_api import expect

    app = page.get_by_test_id("stApp")
    expect(app).to_have_attribute("data-test-connection-state", "CONNECTED", timeout=timeout * 1000)
    expect(app).to_have_attribute("data-test-script-state", "notRunning", timeout=timeout * 1000)


def wait_table(page, text: str) -> None:
    """The Runs table is drawn on a canvas once its data arrived; its hidden accessible copy (a <table>)
    is filled from the same data at the same time."""
    from playwright.sync_api import expect

    expect(page.get_by_test_id("stDataFrame").first).to_contain_text(text, timeout=60_000)


def pick(page, key: str, option: str, typed: str | None = None) -> None:
    """Choose `option` in the selectbox or multiselect of widget key `key` (a multiselect's list is first
    filtered by typing `typed`). A rerun still redrawing the page - a page's own refresh fragment, or the
    rerun of the previous interaction, which the page reads idle before its first message arrives - can
    close the list just opened: then open it again."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    opener = page.locator(f".st-key-{key}").get_by_role("combobox")
    for _attempt in range(5):
        opener.click()
        if typed is not None:
            opener.fill(typed)
        try:
            page.get_by_role("option", name=option, exact=True).click(timeout=5_000)
            break
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
            wait_idle(page)
    else:
        raise AssertionError(f"{key} never offered {option!r}")
    wait_idle(page)


def screenshot(page, tmp_path: Path, name: str, readme: bool = False) -> None:
    """Into the test's folder; the README's pictures (readme=True, the shipped runs) also into
    $QUICKDRAW_SCREENSHOTS when set."""
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
    folder = os.environ.get("QUICKDRAW_SCREENSHOTS")
    if folder and readme:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"dashboard-{name}.png"), full_page=True)


def shared_drawing(shared: Path, cls: str, index: int) -> list:
    with open(shared / "simplified" / f"{cls.replace(' ', '_')}.ndjson", encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i == index:
                return json.loads(line)["drawing"]
    raise AssertionError(f"no drawing {index} of {cls}")


def replay_drawing(page, drawing: list) -> None:
    """Each stroke as mouse down, moves through its points, mouse up, on the Fabric upper canvas."""
    # The Draw page's canvas is a components-v2 element: in the page (an open shadow root), no iframe.
    canvas = page.locator("canvas.upper-canvas").first
    canvas.wait_for(timeout=60_000)
    box = canvas.bounding_box()
    scale = (min(box["width"], box["height"]) - 30) / 255.0
    for stroke in drawing:
        points = list(zip(stroke[0], stroke[1], strict=True))
        x0, y0 = points[0]
        page.mouse.move(box["x"] + 15 + x0 * scale, box["y"] + 15 + y0 * scale)
        page.mouse.down()
        for x, y in points[1:]:
            page.mouse.move(box["x"] + 15 + x * scale, box["y"] + 15 + y * scale, steps=3)
        page.mouse.up()
        time.sleep(0.3)  # deliberate pacing: a pause between strokes, as a person drawing leaves one


def shown_top(page, slot: int) -> list[tuple[str, float]]:
    items = page.locator(f".st-key-predictions-{slot} li").all_inner_texts()
    top = []
    for item in items:
        label, _, prob = item.strip().rpartition(" (")
        top.append((label, float(prob.rstrip(")"))))
    return top


# True once Model 1's top-5 is the guess for all `n` strokes and the strokes that reached Python (the JSON
# in a hidden <code> under "Strokes that reached Python", in the DOM while the expander is closed) hold `n` paths.
GUESS_AND_STROKES_FOR_ALL = """(n) => {
  const box = document.querySelector('.st-key-predictions-1');
  const code = document.querySelector('.st-key-draw-strokes code');
  if (!box || !code || box.querySelectorAll('li').length !== 5) return false;
  const match = /guess for (\\d+) stroke/.exec(box.innerText);
  if (match === null || Number(match[1]) !== n) return false;
  try {
    return JSON.parse(code.textContent).filter((o) => String(o.type).toLowerCase() === 'path').length === n;
  } catch (error) {
    return false;  // the code block is re-rendered (highlighted) a moment after the guess shows
  }
}"""
