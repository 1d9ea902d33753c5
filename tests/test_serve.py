"""glovefaiss serve through a real uvicorn server on a loopback port: results, errors, API key, hot swap, page."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest

pytest.importorskip("starlette", reason="the serve extra is not installed: pip install 'glovefaiss[serve]'")
pytest.importorskip("uvicorn", reason="the serve extra is not installed: pip install 'glovefaiss[serve]'")

from glovefaiss.errors import ServeError  # noqa: E402
from glovefaiss.index.add import add_documents  # noqa: E402
from glovefaiss.index.build import build  # noqa: E402
from glovefaiss.index.search import Index  # noqa: E402
from glovefaiss.serve import Limits, create_app  # noqa: E402
from glovefaiss.serve.app import IndexSlot  # noqa: E402

from .helpers import NEW_TEXTS, TEXTS, config_for, served_indexes, write_corpus  # noqa: E402
from .live_server import LiveServer  # noqa: E402

QUERIES = ["cat on a mat", "stock market", "river bank", "kitten yarn", "dog", "zzz unknown words"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Vectors, and two index directories: ``ints`` (int64 ids) and ``strs`` (string ids)."""
    return served_indexes(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def server(served):
    app = create_app({"ints": served["ints"], "strs": served["strs"]}, limits=Limits(max_k=5, max_query_chars=40,
                                                                                     max_batch=4, max_body_bytes=600))
    with LiveServer(app) as s:
        yield s


def _expected(index_dir, texts, k):
    """Index.hits grouped per query, without query_id, as the service returns them."""
    hits = Index.load(index_dir).hits(texts, k)
    out = [[] for _ in texts]
    for h in hits:
        out[h.pop("query_id") - 1].append(h)
    return out


def _q(text: str) -> str:
    from urllib.parse import quote_plus

    return quote_plus(text)


def test_get_search_equals_index_hits(server, served):
    for k in (1, 3, 5):
        expected = _expected(served["ints"], QUERIES, k)
        for q, hits in zip(QUERIES, expected):
            status, body = server.get(f"/search?q={_q(q)}&k={k}")
            assert status == 200
            assert body == {"hits": hits}
    status, body = server.get("/search?q=river&k=5&index=strs")
    assert status == 200 and body == {"hits": _expected(served["strs"], ["river"], 5)[0]}
    assert [type(h["id"]) for h in body["hits"]] == [str] * 5


def test_post_batch_equals_index_hits_in_order(server, served):
    queries = ["river bank", "zzz unknown", "Cat!", "stock market fell"]
    status, body = server.post("/search", {"queries": queries, "k": 3})
    assert status == 200
    assert body == {"results": [{"hits": h} for h in _expected(served["ints"], queries, 3)]}
    assert body["results"][1] == {"hits": []}  # no known word: no hits, the others keep their places
    status, body = server.post("/search", {"queries": queries[::-1], "index": "strs"})
    assert status == 200
    assert body == {"results": [{"hits": h} for h in _expected(served["strs"], queries[::-1], 10)]}


def test_unicode_query_and_text_round_trip(server, served):
    status, body = server.get("/search?q=" + _q("río «bank» — boat") + "&k=2")
    assert status == 200 and body == {"hits": _expected(served["ints"], ["río «bank» — boat"], 2)[0]}
    status, _, headers = server.request("GET", "/search?q=bank")
    assert headers["content-type"] == "application/json"


def test_health_and_info(server):
    assert server.get("/health") == (200, {"status": "ok", "indexes": {"ints": 8, "strs": 12}})
    status, info = server.get("/info")
    assert status == 200
    assert info["default"] == "ints"
    assert info["limits"] == {"max_k": 5, "max_query_chars": 40, "max_batch": 4, "max_body_bytes": 600}
    ints = info["indexes"][0]
    assert {k: ints[k] for k in ("name", "documents", "dimension", "family", "key", "params", "texts", "reloads")} == {
        "name": "ints", "documents": 8, "dimension": 8, "family": "flat", "key": "Flat", "params": {}, "texts": True,
        "reloads": 0}
    assert server.get("/info?index=strs")[1]["documents"] == 12


LONG = "cat " * 11  # 44 characters, over this server's 40
BAD_GETS = [
    ("/search", 400, "missing parameter q: give the text to search for, e.g. /search?q=interest+rates"),
    ("/search?q=%20%20", 400, "q is empty; give some text to search for"),
    ("/search?q=", 400, "q is empty; give some text to search for"),
    (f"/search?q={_q(LONG)}", 400, "q is 44 characters long; the limit is 40 (the server's --max-query-chars)"),
    ("/search?q=cat&k=abc", 400, "k must be a whole number from 1 to 5, got 'abc'"),
    ("/search?q=cat&k=1.5", 400, "k must be a whole number from 1 to 5, got '1.5'"),
    ("/search?q=cat&k=", 400, "k must be a whole number from 1 to 5, got ''"),
    ("/search?q=cat&k=0", 400, "k must be at least 1, got 0"),
    ("/search?q=cat&k=-3", 400, "k must be at least 1, got -3"),
    ("/search?q=cat&k=6", 400, "k must be at most 5 (the server's --max-k), got 6"),
    ("/search?q=cat&k=99999999999999999999999", 400,
     "k must be a whole number from 1 to 5, got '99999999999999999999999'"),
    ("/search?q=cat&top_k=3", 400, "unknown parameter 'top_k'; GET /search takes q, k, index"),
    ("/search?q=cat&q=dog", 400, "parameter 'q' is given more than once; give it once"),
    ("/search?q=%FF", 400, "the query string is not valid UTF-8; percent-encode the text as UTF-8"),
    ("/search?q=cat&index=nope", 404, "no index named 'nope'; this server has: ints, strs"),
    ("/search?q=cat&index=..%2F..%2Fetc", 404, "no index named '../../etc'; this server has: ints, strs"),
    ("/search?q=cat&index=%2Ftmp", 404, "no index named '/tmp'; this server has: ints, strs"),
    ("/info?index=nope", 404, "no index named 'nope'; this server has: ints, strs"),
    ("/info?q=cat", 400, "unknown parameter 'q'; GET /info takes index"),
    ("/health?x=1", 400, "unknown parameter 'x'; GET /health takes no query parameters"),
    ("/nope", 404, "no such endpoint: /nope; the endpoints are GET /, GET /search, POST /search, GET /health, GET /info"),
    ("/../etc/passwd", 404,
     "no such endpoint: /../etc/passwd; the endpoints are GET /, GET /search, POST /search, GET /health, GET /info"),
]


@pytest.mark.parametrize("path,status,message", BAD_GETS, ids=[p for p, _, _ in BAD_GETS])
def test_bad_get_requests(server, path, status, message):
    got_status, body, headers = server.request("GET", path)
    assert (got_status, body) == (status, {"error": message})
    assert headers["content-type"] == "application/json"


JSON = {"Content-Type": "application/json"}
BAD_POSTS = [
    (b'{"queries": ["cat"]', JSON, 400, "the body is not valid JSON (Expecting ',' delimiter at line 1 column 20)"),
    (b"", JSON, 400, "the body is not valid JSON (Expecting value at line 1 column 1)"),
    (b'{"queries": ["\xff"]}', JSON, 400, "the body is not valid UTF-8; send JSON encoded as UTF-8"),
    (b'["cat"]', JSON, 400, 'the body must be a JSON object like {"queries": ["some text"], "k": 10}'),
    (b'{"queries": ["cat"]}', {"Content-Type": "text/plain"}, 415,
     "send the body as JSON with the header Content-Type: application/json"),
    (b'{"queries": ["cat"]}', {}, 415, "send the body as JSON with the header Content-Type: application/json"),
    (b'{"q": ["cat"]}', JSON, 400, "unknown field 'q'; the body takes queries, k, index"),
    (b'{"k": 3}', JSON, 400, 'missing field "queries": give a list of query texts'),
    (b'{"queries": "cat"}', JSON, 400, "\"queries\" must be a list of strings, got 'cat'"),
    (b'{"queries": []}', JSON, 400, '"queries" is empty; give at least one query text'),
    (b'{"queries": ["a", "b", "c", "d", "e"]}', JSON, 400,
     '"queries" has 5 queries; the limit is 4 (the server\'s --max-batch)'),
    (b'{"queries": ["cat", 5]}', JSON, 400, "query 2 must be a string, got 5"),
    (b'{"queries": ["cat", null]}', JSON, 400, "query 2 must be a string, got null"),
    (b'{"queries": ["cat", " "]}', JSON, 400, "query 2 is empty; give some text to search for"),
    (json.dumps({"queries": ["cat", LONG]}).encode(), JSON, 400,
     "query 2 is 44 characters long; the limit is 40 (the server's --max-query-chars)"),
    (b'{"queries": ["cat", "\\ud800 bank"]}', JSON, 400,
     "query 2 holds a lone surrogate (an unpaired \\ud800-\\udfff escape); send valid Unicode text"),
    (b'{"queries": ["cat"], "k": true}', JSON, 400, "k must be a whole number from 1 to 5, got true"),
    (b'{"queries": ["cat"], "k": "3"}', JSON, 400, "k must be a whole number from 1 to 5, got '3'"),
    (b'{"queries": ["cat"], "k": 2.0}', JSON, 400, "k must be a whole number from 1 to 5, got 2.0"),
    (b'{"queries": ["cat"], "k": 9}', JSON, 400, "k must be at most 5 (the server's --max-k), got 9"),
    (b'{"queries": ["cat"], "index": 3}', JSON, 400, "index must be a string naming a served index: ints, strs"),
    (b'{"queries": ["cat"], "index": ["ints"]}', JSON, 400, "index must be a string naming a served index: ints, strs"),
    (b'{"queries": ["cat"], "index": "../ints"}', JSON, 404, "no index named '../ints'; this server has: ints, strs"),
    (b'{"queries": ["' + b"a" * 700 + b'"]}', JSON, 413,
     "the body is 717 bytes; the limit is 600 (the server's --max-body-bytes)"),
]


@pytest.mark.parametrize("body,headers,status,message", BAD_POSTS, ids=[m[:40] for *_, m in BAD_POSTS])
def test_bad_post_requests(server, body, headers, status, message):
    got_status, data, resp_headers = server.request("POST", "/search", body=body, headers=headers)
    assert (got_status, data) == (status, {"error": message})
    assert resp_headers["content-type"] == "application/json"


def test_chunked_body_over_the_limit_is_refused(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    chunks = iter([b'{"queries": ["', b"a" * 400, b"a" * 400, b'"]}'])
    conn.request("POST", "/search", body=chunks, headers=JSON, encode_chunked=True)
    resp = conn.getresponse()
    assert (resp.status, json.loads(resp.read())) == (
        413, {"error": "the body is over 600 bytes, the limit (the server's --max-body-bytes)"})
    conn.close()


def test_wrong_methods_and_query_parameters_on_post(server):
    status, body, headers = server.request("DELETE", "/search")
    assert (status, body) == (405, {"error": "DELETE is not allowed on /search; use GET, HEAD or POST"})
    assert server.request("POST", "/info")[:2] == (405, {"error": "POST is not allowed on /info; use GET or HEAD"})
    assert server.post("/search?k=3", {"queries": ["cat"]}) == (
        400, {"error": "unknown parameter 'k'; POST /search takes no query parameters"})


def test_api_key(served, monkeypatch):
    app = create_app(served["ints"], api_key="s3cret-ключ")
    with LiveServer(app) as s:
        need = {"error": "this server needs an API key: send it in the X-API-Key header"}
        wrong = {"error": "wrong API key in the X-API-Key header"}
        assert s.get("/search?q=cat") == (401, need)
        assert s.get("/info") == (401, need)
        assert s.post("/search", {"queries": ["cat"]}) == (401, need)
        assert s.get("/search?q=cat", headers={"X-API-Key": "s3cret"}) == (401, wrong)
        assert s.get("/search?q=cat", headers={"X-API-Key": ""}) == (401, wrong)
        key = "s3cret-ключ".encode().decode("latin-1")  # HTTP headers travel as bytes; http.client sends latin-1
        status, body = s.get("/search?q=cat&k=2", headers={"X-API-Key": key})
        assert status == 200 and body == {"hits": _expected(served["ints"], ["cat"], 2)[0]}
        assert s.post("/search", {"queries": ["cat"], "k": 1}, headers={"X-API-Key": key})[0] == 200
        assert s.get("/health")[0] == 200  # health checks and the page need no key
        assert s.request("GET", "/")[0] == 200


def test_page_is_served_without_external_assets(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("GET", "/")
    resp = conn.getresponse()
    html = resp.read().decode("utf-8")
    assert resp.status == 200
    assert resp.getheader("content-type") == "text/html; charset=utf-8"
    assert "default-src 'none'" in resp.getheader("content-security-policy")
    assert '<input id="q" type="search"' in html and 'fetch(url' in html and '"/search?"' in html
    assert "http://" not in html and "https://" not in html and "src=" not in html and "<link" not in html
    conn.close()


def test_names_are_checked(served):
    with pytest.raises(ServeError, match=r"two index directories are both named 'ints'; give each a name with --name"):
        create_app([served["ints"], served["root"] / "." / "ints"])
    with pytest.raises(ServeError, match=r"index name '\.\./x' cannot be used in URLs"):
        create_app({"../x": served["ints"]})
    with pytest.raises(ServeError, match=r"default index 'nope' is not among the served ones: ints"):
        create_app(served["ints"], default="nope")


def _swap_setup(served, tmp_path, monkeypatch):
    monkeypatch.setenv("GLOVEFAISS_CACHE", str(served["root"] / "cache"))
    corpus_b = write_corpus(tmp_path / "b.parquet", list(range(100, 100 + len(NEW_TEXTS))), NEW_TEXTS, pa.int64())
    corpus_c = write_corpus(tmp_path / "c.parquet", [500, 501], ["cat cat cat", "bank river boat"], pa.int64())
    build([write_corpus(tmp_path / "a.parquet", list(range(10, 18)), TEXTS, pa.int64())], tmp_path / "idx",
          config_for(served["vectors"]), progress=False)
    return tmp_path / "idx", corpus_b, corpus_c


def test_in_flight_request_keeps_the_old_index_until_released(served, tmp_path, monkeypatch):
    directory, corpus_b, _ = _swap_setup(served, tmp_path, monkeypatch)
    slot = IndexSlot("idx", directory)
    before = slot.current.index.hits(["cat"], 3)
    held = slot.acquire()  # a request in flight
    assert slot.reload() is False  # nothing replaced yet
    build([corpus_b], directory, config_for(served["vectors"]), overwrite=True, progress=False)
    assert slot.reload() is True
    assert slot.current is not held and slot.current.figures["documents"] == 12
    # The old directory is deleted by now; the request in flight still searches the old index.
    assert held.index is not None and slot.closed == 0
    assert held.index.hits(["cat"], 3) == before
    slot.release(held)
    assert held.index is None and slot.closed == 1

    (directory / "manifest.json.new").write_text("{broken", encoding="utf-8")
    os.replace(directory / "manifest.json.new", directory / "manifest.json")
    assert slot.reload() is False
    assert slot.reload_error.endswith("is corrupt (Expecting property name enclosed in double quotes: "
                                      "line 1 column 2 (char 1)); rebuild the index")
    assert slot.current.figures["documents"] == 12  # still serving the last good index
    assert slot.reload() is False  # the same broken manifest is not retried (nor logged) again


def test_hot_swap_under_concurrent_requests(served, tmp_path, monkeypatch):
    directory, corpus_b, corpus_c = _swap_setup(served, tmp_path, monkeypatch)
    states = [_expected(directory, QUERIES, 3)]
    build([corpus_b], tmp_path / "b-ref", config_for(served["vectors"]), progress=False)
    states.append(_expected(tmp_path / "b-ref", QUERIES, 3))
    app = create_app({"idx": directory}, reload_interval=0.05)
    slot = app.state.service.slots["idx"]
    failures, answers, done = [], [], threading.Event()

    def client(n):
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
        i = n
        while not done.is_set():
            i += 1
            try:
                if i % 2:
                    q = QUERIES[i % len(QUERIES)]
                    status, body, _ = s.request("GET", f"/search?q={_q(q)}&k=3", conn=conn)
                    answers.append(("get", q, status, body))
                else:
                    status, body = s.post("/search", {"queries": QUERIES, "k": 3}, conn=conn)
                    answers.append(("post", None, status, body))
                if status != 200:
                    failures.append((status, body))
            except Exception as e:  # noqa: BLE001 - any failure of any kind is what this test counts
                failures.append(repr(e))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
        conn.close()

    def wait_for(predicate, what):
        deadline = time.monotonic() + 20
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.01)

    with LiveServer(app) as s:
        clients = [threading.Thread(target=client, args=(n,)) for n in range(4)]
        for c in clients:
            c.start()
        try:
            wait_for(lambda: len(answers) >= 20, "requests before the swaps")
            build([corpus_b], directory, config_for(served["vectors"]), overwrite=True, progress=False)
            wait_for(lambda: s.get("/info?index=idx")[1]["documents"] == 12, "the rebuilt index")
            add_documents(directory, [corpus_c], progress=False)
            wait_for(lambda: s.get("/info?index=idx")[1]["documents"] == 14, "the enlarged index")
            seen = len(answers)
            wait_for(lambda: len(answers) >= seen + 20, "requests after the swaps")
        finally:
            done.set()
            for c in clients:
                c.join(30)
    states.append(_expected(directory, QUERIES, 3))
    assert failures == []
    matched = set()
    for kind, q, _, body in answers:
        if kind == "get":
            options = [st[QUERIES.index(q)] for st in states]
            assert body["hits"] in options
            matched.add(options.index(body["hits"]))
        else:
            got = [r["hits"] for r in body["results"]]
            assert got in states
            matched.add(states.index(got))
    assert {0, 2} <= matched  # answered by the first index before the swaps and by the last after them
    assert slot.reloads == 2 and slot.closed == 2  # both replaced indexes closed once their requests ended


def test_import_loads_neither_torch_nor_gensim(served):
    code = (
        "import sys, json\n"
        "from glovefaiss.serve import create_app\n"
        f"app = create_app({str(served['ints'])!r})\n"
        "slot = app.state.service.slots['ints']\n"
        "with slot.using() as index: index.hits(['cat'], 2)\n"
        "print(json.dumps(sorted(m for m in ('torch', 'gensim') if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=_env())
    assert json.loads(out.stdout) == []


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


@pytest.mark.slow
def test_serve_without_the_extra_names_the_install(served):
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('starlette', 'uvicorn'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from glovefaiss.cli import main\n"
        f"sys.argv = ['glovefaiss', 'serve', {str(served['ints'])!r}]\n"
        "main()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env())
    assert proc.returncode == 1
    assert proc.stderr == ("Error: glovefaiss serve needs the serve extra (starlette is not installed): "
                           "pip install 'glovefaiss[serve]'\n")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_cli_serve_access_log_api_key_env_and_sighup(served, tmp_path, monkeypatch):
    directory, corpus_b, _ = _swap_setup(served, tmp_path, monkeypatch)
    port = _free_port()
    cmd = [sys.executable, "-m", "glovefaiss", "serve", str(directory), "--name", "main", "--port", str(port),
           "--reload-interval", "0"]
    env = {**_env(), "GLOVEFAISS_API_KEY": "k1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        conn = None
        deadline = time.monotonic() + 30
        while conn is None:
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=1)
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "timeout"
                time.sleep(0.05)
        conn.close()

        def get(path, key="k1"):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            c.request("GET", path, headers={"X-API-Key": key} if key else {})
            r = c.getresponse()
            out = r.status, json.loads(r.read())
            c.close()
            return out

        assert get("/search?q=cat", key=None)[0] == 401
        status, body = get("/search?q=cat&k=2")
        assert status == 200 and len(body["hits"]) == 2
        assert get("/info")[1]["indexes"][0]["documents"] == 8
        build([corpus_b], directory, config_for(served["vectors"]), overwrite=True, progress=False)
        # --reload-interval 0: nothing polls; SIGHUP asks for the reload.
        assert get("/info")[1]["indexes"][0]["documents"] == 8
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while get("/info")[1]["indexes"][0]["documents"] != 12:
            assert time.monotonic() < deadline, "SIGHUP did not reload the index"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    # uvicorn shuts down gracefully, then re-raises the signal it caught: the conventional exit status.
    assert proc.returncode == -signal.SIGTERM and "Finished server process" in err
    assert f"Uvicorn running on http://127.0.0.1:{port}" in err
    assert '"GET /search?q=cat&k=2 HTTP/1.1" 200' in err  # the access log, one line per request
    assert '"GET /search?q=cat HTTP/1.1" 401' in err
    assert "index main: reloaded" in err


def _serve_briefly(args: list[str], port: int) -> str:
    """stderr of ``glovefaiss ARGS --port PORT`` run until its /health answers, then stopped."""
    proc = subprocess.Popen([sys.executable, "-m", "glovefaiss", *args, "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                c.request("GET", "/health")
                assert c.getresponse().status == 200
                c.close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    return err


@pytest.mark.slow
def test_cli_serve_quiet_and_usage_errors(served):
    # serve --quiet (-q): no access log, but the address it listens on is still said.
    port = _free_port()
    err = _serve_briefly(["serve", str(served["ints"]), "-q"], port)
    assert "GET /health" not in err and f"Uvicorn running on http://127.0.0.1:{port}" in err
    # glovefaiss -q serve: only errors, as for every command.
    port = _free_port()
    err = _serve_briefly(["-q", "serve", str(served["ints"])], port)
    assert "GET /health" not in err and "Uvicorn running" not in err
    bad = subprocess.run([sys.executable, "-m", "glovefaiss", "serve", str(served["ints"]), str(served["strs"]),
                          "--name", "a"], capture_output=True, text=True, env=_env())
    assert bad.returncode == 2 and "give one --name per DIR (2 DIRs, 1 names), or none" in bad.stderr
    missing = subprocess.run([sys.executable, "-m", "glovefaiss", "serve", str(served["root"] / "nope")],
                             capture_output=True, text=True, env=_env())
    assert missing.returncode == 1
    assert missing.stderr == f"Error: index directory not found: {served['root'] / 'nope'}\n"


def test_an_internal_error_is_a_json_500_without_traceback(served, monkeypatch):
    app = create_app(served["ints"])
    service = app.state.service

    async def broken(*args):
        raise RuntimeError("boom: /secret/path")

    monkeypatch.setattr(service, "search_one", broken)
    monkeypatch.setattr(service, "search_batch", broken)
    error = {"error": "internal error; the server log has the details"}
    with LiveServer(app) as s:
        assert s.get("/search?q=cat") == (500, error)
        assert s.post("/search", {"queries": ["cat"]}) == (500, error)
        assert s.get("/health")[0] == 200  # the server keeps serving


def test_cli_serve_on_a_port_in_use_is_one_line(served):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        busy = subprocess.run([sys.executable, "-m", "glovefaiss", "serve", str(served["ints"]), "--port", str(port)],
                              capture_output=True, text=True, env=_env(), timeout=60)
    assert busy.returncode == 1
    assert busy.stderr == (f"Error: cannot listen on 127.0.0.1:{port}: Address already in use; "
                           "choose another --port or --host\n")
