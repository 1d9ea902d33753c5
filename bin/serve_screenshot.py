#!/usr/bin/env python
"""Serve INDEX_DIR, open the search page in headless Chromium, search QUERY and save a PNG of the page.

Uses the browser test's DevTools driver (tests/browser.py) and test server (tests/live_server.py).
Run through ``bin/serve-screenshot``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from glovefaiss.serve import create_app  # noqa: E402
from tests.browser import Chromium, find_chromium  # noqa: E402
from tests.live_server import LiveServer  # noqa: E402


def main(index_dir: str, png: str, query: str) -> int:
    exe = find_chromium()
    if exe is None:
        print("serve-screenshot: no Chromium found: apt-get install chromium (or set GLOVEFAISS_CHROMIUM)",
              file=sys.stderr)
        return 1
    with LiveServer(create_app({Path(index_dir).parent.name: index_dir})) as server, \
            Chromium(exe, width=1000, height=820) as browser:
        browser.open(server.url + "/")
        browser.wait_for("document.getElementById('figures').textContent")
        browser.evaluate("document.getElementById('q').focus()")
        browser.type(query)
        browser.press_enter()
        browser.wait_for("document.querySelectorAll('#hits li.hit').length > 0")
        browser.evaluate("document.activeElement.blur()")  # no caret or focus ring in the picture
        browser.screenshot(Path(png))
    print(f"wrote {png}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: serve_screenshot.py INDEX_DIR OUT.png QUERY")
    sys.exit(main(*sys.argv[1:]))
