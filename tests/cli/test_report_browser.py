"""The demo's report.html in a real headless Chromium: images load, no errors, all sections.

Needs Debian's ``chromium`` (``apt-get install chromium``; ``.ci/run`` installs it) and the
``playwright`` package (the ``test`` extra); skipped with the reason when either is
missing. Playwright drives the system browser: it never downloads one. The screenshots are
kept in ``test-artifacts/`` at the repository root (git-ignored) and their paths printed.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
from cli_helpers import TrainedRun, assert_ok

pytestmark = pytest.mark.browser
REPO = Path(__file__).resolve().parents[2]


def _load_screenshot_script():
    """docs/images/screenshot.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location(
        "vaekit_screenshot", REPO / "docs" / "images" / "screenshot.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: Where the system browser lives (Debian's chromium package).
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: The flags docs/images/screenshot.py drives Chromium with (the README's screenshot), so
#: the test and the published picture see the page the same way.
CHROMIUM_ARGS = _load_screenshot_script().CHROMIUM_ARGS
ARTIFACTS = REPO / "test-artifacts"
SECTIONS = ["Configuration", "Data", "Metrics", "Figures"]
VIEWPORT = {"width": 1280, "height": 900}
NARROW = {"width": 400, "height": 800}
#: Milliseconds to wait for the page to load.
LOAD_TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: pip install -c constraints.txt -e '.[test]'")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def test_demo_report_in_headless_chromium(browser, demo_run: TrainedRun) -> None:
    demo, res = demo_run.path, demo_run.result
    assert_ok(res)
    html = demo / "report.html"
    assert f"report: {html}" in res.stderr

    page = browser.new_page(viewport=VIEWPORT)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(html.as_uri(), wait_until="load", timeout=LOAD_TIMEOUT_MS)

    ARTIFACTS.mkdir(exist_ok=True)
    shot, full = ARTIFACTS / "report-demo.png", ARTIFACTS / "report-demo-full.png"
    page.screenshot(path=str(shot))
    page.screenshot(path=str(full), full_page=True)
    print(f"\nscreenshots of {html}: {shot} (first screen), {full} (whole page)")

    images = page.evaluate(
        "Array.from(document.images, i => ({alt: i.alt, done: i.complete, w: i.naturalWidth}))"
    )
    assert len(images) >= 4, images  # training curves, reconstructions, samples, latent map
    assert all(i["done"] and i["w"] > 0 for i in images), images
    assert errors == []
    assert all(url.startswith(("file:", "data:")) for url in requests), requests
    h3 = page.eval_on_selector_all("h3", "hs => hs.map(h => h.textContent)")
    n_runs = len(page.query_selector_all("section.run"))
    assert n_runs >= 1 and h3 == SECTIONS * n_runs
    captions = page.eval_on_selector_all("figcaption", "cs => cs.map(c => c.textContent)")
    assert len(captions) == len(images) and all(len(c) > 40 for c in captions)
    page.close()

    # A phone's width: nothing scrolls the page sideways or sticks out of its run's box
    # (before: 428 px of page in 385, tables past the boxes' edge; a review).
    page = browser.new_page(viewport=NARROW)
    page.goto(html.as_uri(), wait_until="load", timeout=LOAD_TIMEOUT_MS)
    scroll, client = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert scroll <= client, (scroll, client)
    poking = page.evaluate(
        """Array.from(document.querySelectorAll('section.run'), s => {
            const edge = s.getBoundingClientRect().right;
            return Array.from(s.querySelectorAll('.table, figure'))
                .filter(e => e.getBoundingClientRect().right > edge + 0.5).length;
        })"""
    )
    assert poking == [0] * n_runs, poking
    page.screenshot(path=str(ARTIFACTS / "report-demo-narrow.png"), full_page=True)
    page.close()
