"""Screenshot an HTML page in headless Chromium: ``python screenshot.py PAGE.html OUT.png``.

Made the README's picture of the report (README.md says with which commands). Needs
Debian's ``chromium`` and the ``playwright`` package of the test extra; playwright drives
the system browser and downloads nothing.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from playwright.sync_api import sync_playwright

#: Flags for a headless browser in a sandbox-less container on a closed network: without
#: the background-networking ones, Chromium's own update/sync connections fail and log.
#: tests/cli/test_report_browser.py uses these too.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",  # a container's 64 MB /dev/shm can crash the renderer
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def main() -> None:
    """Parse the arguments and write the screenshot."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("page", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=1000)
    args = p.parse_args()
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": args.width, "height": args.height})
        page.goto(args.page.resolve().as_uri(), wait_until="load")
        page.screenshot(path=str(args.out))
        browser.close()
    print(args.out)


if __name__ == "__main__":
    main()
