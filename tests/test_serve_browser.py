"""The search page in headless Chromium: type a query, read the hits from the rendered DOM."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("starlette", reason="the serve extra is not installed: pip install 'glovefaiss[serve]'")

from glovefaiss.index.search import Index  # noqa: E402
from glovefaiss.serve import create_app  # noqa: E402

from .browser import Chromium, find_chromium  # noqa: E402
from .helpers import served_indexes  # noqa: E402
from .live_server import LiveServer  # noqa: E402


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    return served_indexes(tmp_path_factory.mktemp("serve"))

READ_HITS = """(() => {
  const items = [...document.querySelectorAll('#hits li.hit')];
  return items.length ? items.map(li => [li.querySelector('.score').textContent, li.querySelector('.id').textContent,
                                         li.querySelector('.text') ? li.querySelector('.text').textContent : null])
                      : null;
})()"""


@pytest.fixture
def browser():
    exe = find_chromium()
    if exe is None:
        pytest.skip("no Chromium found: install Debian's chromium (apt-get install chromium) or set GLOVEFAISS_CHROMIUM")
    pytest.importorskip("websockets", reason="the browser test drives Chromium with websockets (the dev extra)")
    with Chromium(exe) as b:
        yield b


@pytest.mark.slow
def test_typing_a_query_shows_its_hits(browser, served):
    app = create_app({"ints": served["ints"], "strs": served["strs"]})
    with LiveServer(app) as s:
        browser.open(s.url + "/")
        figures = browser.wait_for("document.getElementById('figures').textContent")
        assert figures == "ints: 8 documents · 8 dimensions · flat (Flat) · exact search"
        browser.evaluate("document.getElementById('q').focus()")
        browser.type("river bank")
        browser.press_enter()
        shown = browser.wait_for(READ_HITS)
        expected = Index.load(served["ints"]).hits("river bank", 10)
        assert shown == [[f"{h['score']:.4f}", f"#{h['rank']} · id {h['id']}", h["text"]] for h in expected]
        # The page may update the address and the status line just after the hits: wait for them too.
        assert browser.wait_for("location.search === '?q=river+bank&k=10&index=ints' && location.search")
        assert browser.wait_for(f"document.getElementById('status').textContent.startsWith('{len(expected)} hits in ')")

        # Serialised as JSON.stringify does (no spaces, "·" raw): otherwise the two never compare equal
        # and the wait below ends before the second index's hits arrive.
        before = json.dumps(shown, ensure_ascii=False, separators=(",", ":"))
        assert browser.evaluate(f"JSON.stringify({READ_HITS})") == before

        # The second index, chosen in the page's selector (shown since two are served).
        browser.evaluate("const s = document.getElementById('index'); s.value = 'strs'; "
                         "s.dispatchEvent(new Event('change'))")
        browser.wait_for("document.getElementById('figures').textContent.startsWith('strs:')")
        browser.wait_for(f"JSON.stringify({READ_HITS}) !== {json.dumps(before)}")
        expected = Index.load(served["strs"]).hits("river bank", 10)
        assert browser.evaluate(READ_HITS) == [[f"{h['score']:.4f}", f"#{h['rank']} · id {h['id']}", h["text"]]
                                               for h in expected]

        # A query of unknown words: no hits, and the page says why.
        browser.evaluate("const q = document.getElementById('q'); q.value = ''; q.focus()")
        browser.type("xyzzy")
        browser.press_enter()
        status = browser.wait_for("document.querySelectorAll('#hits li').length === 0 && "
                                  "document.getElementById('status').textContent.startsWith('No hits') && "
                                  "document.getElementById('status').textContent")
        assert status == "No hits: no word of the query is in the index's vocabulary."


@pytest.mark.slow
def test_page_asks_for_the_api_key(browser, served):
    with LiveServer(create_app(served["ints"], api_key="k1")) as s:
        browser.open(s.url + "/")
        assert browser.wait_for("!document.getElementById('keyrow').hidden && "
                                "document.getElementById('status').textContent") == (
            "this server needs an API key: send it in the X-API-Key header")
        browser.evaluate("const k = document.getElementById('key'); k.value = 'k1'; k.dispatchEvent(new Event('change'))")
        assert browser.wait_for("document.getElementById('figures').textContent").startswith("ints: 8 documents")
        browser.evaluate("document.getElementById('q').focus()")
        browser.type("cat")
        browser.press_enter()
        assert len(browser.wait_for(READ_HITS)) == len(Index.load(served["ints"]).hits("cat", 10))
