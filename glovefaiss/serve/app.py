"""The search service: a Starlette app over one or more loaded indexes, each swapped for its
replacement when its directory is rebuilt, without failing a request in flight."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from ..errors import QueryError, ServeError
from ..index.info import summary
from ..index.search import Index

try:
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route
except ImportError as e:
    raise ServeError(f"glovefaiss serve needs the serve extra ({e.name} is not installed): "
                     "pip install 'glovefaiss[serve]'") from None

logger = logging.getLogger(__name__)

API_KEY_HEADER = "X-API-Key"
API_KEY_ENV = "GLOVEFAISS_API_KEY"
DEFAULT_K = 10
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ENDPOINTS = "GET /, GET /search, POST /search, GET /health, GET /info"
SEARCH_PARAMS = ("q", "k", "index")
BATCH_FIELDS = ("queries", "k", "index")
# Inline scripts and styles only: the page loads nothing from anywhere and may only talk to this server.
PAGE_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
            "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


@dataclass(frozen=True)
class Limits:
    """The largest request the service answers; anything over a limit is refused with a 4xx naming its flag."""

    max_k: int = 100
    max_query_chars: int = 1_000
    max_batch: int = 1_000
    max_body_bytes: int = 1 << 20


DEFAULT_LIMITS = Limits()


class BadRequest(Exception):
    """A request the service refuses: ``status`` (4xx) and a message that names the fix."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def manifest_figures(index: Index) -> dict[str, Any]:
    """What /info and the page show about an index, from the index summary (glovefaiss info)."""
    s = summary(index.manifest)
    tuning = s["tuning"] or {}
    return {
        "documents": len(index),
        "dimension": index.dim,
        "family": s["index"]["family"],
        "key": s["index"]["key"],
        "params": s["index"]["params"],
        "recall": tuning.get("recall"),
        "recall_k": tuning.get("k"),
        "target_recall": tuning.get("target_recall"),
        "texts": s["texts"],
        "additions": len(s["additions"]),
    }


def manifest_identity(directory: Path) -> tuple[int, ...] | None:
    """Changes whenever the directory is replaced (a new manifest file); None while there is none."""
    try:
        st = os.stat(directory / "manifest.json")
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


class _Loaded:
    """One loaded index and the requests using it; closed after its last request once replaced."""

    __slots__ = ("index", "identity", "figures", "loaded_at", "users", "retired")

    def __init__(self, index: Index, identity):
        self.index = index
        self.identity = identity
        self.figures = manifest_figures(index)
        self.loaded_at = time.time()
        self.users = 0
        self.retired = False


class IndexSlot:
    """A served index directory: the index loaded from it now, reloaded when the directory is replaced."""

    def __init__(self, name: str, directory: str | Path):
        self.name = name
        self.directory = Path(directory)
        self._lock = threading.Lock()  # guards the swap and the user counts
        self._reload_lock = threading.Lock()  # one load at a time
        self._failed = None  # identity whose load failed, so a broken directory is reported once
        self.reload_error: str | None = None
        self.reloads = 0
        self.closed = 0
        self._current = self._open(manifest_identity(self.directory))

    def _open(self, identity) -> _Loaded:
        return _Loaded(Index.load(self.directory).warm(), identity)

    def acquire(self) -> _Loaded:
        with self._lock:
            loaded = self._current
            loaded.users += 1
            return loaded

    def release(self, loaded: _Loaded) -> None:
        with self._lock:
            loaded.users -= 1
            close = loaded.retired and loaded.users == 0
        if close:
            self._close(loaded)

    @contextlib.contextmanager
    def using(self):
        """The current index, kept open until the block ends even if a reload replaces it meanwhile."""
        loaded = self.acquire()
        try:
            yield loaded.index
        finally:
            self.release(loaded)

    @property
    def current(self) -> _Loaded:
        return self._current

    def changed(self) -> bool:
        identity = manifest_identity(self.directory)
        return identity is not None and identity not in (self._current.identity, self._failed)

    def reload(self, force: bool = False) -> bool:
        """Load the directory again if it was replaced (or ``force``) and swap it in; True if swapped.

        A directory that cannot be loaded leaves the old index serving, and is logged once.
        """
        with self._reload_lock:
            identity = manifest_identity(self.directory)
            if identity is None or (not force and identity in (self._current.identity, self._failed)):
                return False
            try:
                new = self._open(identity)
            except Exception as e:  # noqa: BLE001 - a background reload must never take the service down
                self._failed = identity
                self.reload_error = str(e)
                logger.warning("index %s: %s could not be loaded (%s); still serving the index loaded before",
                               self.name, self.directory, e)
                return False
            with self._lock:
                old, self._current = self._current, new
                old.retired = True
                close = old.users == 0
            self._failed, self.reload_error = None, None
            self.reloads += 1
            logger.info("index %s: reloaded %s (%d documents)", self.name, self.directory, new.figures["documents"])
            if close:
                self._close(old)
            return True

    def _close(self, loaded: _Loaded) -> None:
        index, loaded.index = loaded.index, None
        close = getattr(index, "close", None)
        if callable(close):
            close()
        self.closed += 1
        logger.debug("index %s: closed the index it replaced", self.name)


def _index_dirs(indexes: str | Path | Sequence[str | Path] | Mapping[str, str | Path]) -> dict[str, Path]:
    if isinstance(indexes, (str, Path)):
        indexes = [indexes]
    if not isinstance(indexes, Mapping):
        named: dict[str, Path] = {}
        for d in indexes:
            name = Path(d).resolve().name
            if name in named:
                raise ServeError(f"two index directories are both named {name!r}; give each a name with --name")
            named[name] = Path(d)
        indexes = named
    if not indexes:
        raise ServeError("give at least one index directory to serve")
    for name in indexes:
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise ServeError(f"index name {name!r} cannot be used in URLs; use up to 64 letters, digits, "
                             "'.', '_' or '-', starting with a letter or digit (--name)")
    return {name: Path(d) for name, d in indexes.items()}


class Service:
    """The indexes served by name, the limits, the API key, the batch thread pool and the reload watcher."""

    def __init__(self, indexes, *, default: str | None = None, limits: Limits = DEFAULT_LIMITS,
                 api_key: str | None = None, reload_interval: float = 0.5, batch_threads: int = 1):
        dirs = _index_dirs(indexes)
        if default is not None and default not in dirs:
            raise ServeError(f"default index {default!r} is not among the served ones: {', '.join(dirs)}")
        for field in ("max_k", "max_query_chars", "max_batch", "max_body_bytes"):
            if getattr(limits, field) < 1:
                raise ServeError(f"{field} must be at least 1, got {getattr(limits, field)}")
        self.slots = {name: IndexSlot(name, d) for name, d in dirs.items()}
        self.default = default or next(iter(dirs))
        self.limits = limits
        self._api_key = api_key.encode("utf-8") if api_key else None
        self.reload_interval = reload_interval
        # Batches already use every core through FAISS; more concurrent batches would only oversubscribe them.
        self._batches = ThreadPoolExecutor(max_workers=batch_threads, thread_name_prefix="glovefaiss-batch")
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="glovefaiss-reload")
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle --------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        watcher = asyncio.create_task(self._watch())
        hup = False
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError, AttributeError):
            # Only possible in the main thread; a server run elsewhere still polls.
            self._loop.add_signal_handler(signal.SIGHUP, self._wake.set)
            hup = True
        try:
            yield
        finally:
            if hup:
                self._loop.remove_signal_handler(signal.SIGHUP)
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            self._batches.shutdown(wait=False, cancel_futures=True)
            self._loader.shutdown(wait=False, cancel_futures=True)

    def request_reload(self) -> None:
        """Reload every index now, replaced or not (what SIGHUP does). Safe from any thread."""
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            timeout = self.reload_interval if self.reload_interval > 0 else None
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            force = self._wake.is_set()
            self._wake.clear()
            for slot in self.slots.values():
                # A stat per index per interval, never per request; the load runs off the event loop.
                if force or slot.changed():
                    await loop.run_in_executor(self._loader, slot.reload, force)

    # -- request helpers --------------------------------------------------------------------------

    def check_key(self, scope) -> None:
        if self._api_key is None:
            return
        given = _header(scope, b"x-api-key")
        if given is None:
            raise BadRequest(f"this server needs an API key: send it in the {API_KEY_HEADER} header", 401)
        if not hmac.compare_digest(given, self._api_key):
            raise BadRequest(f"wrong API key in the {API_KEY_HEADER} header", 401)

    def slot(self, name: Any) -> IndexSlot:
        if name is None:
            return self.slots[self.default]
        if not isinstance(name, str):
            raise BadRequest(f"index must be a string naming a served index: {', '.join(self.slots)}")
        slot = self.slots.get(name)  # a dict lookup: a name never reaches the filesystem
        if slot is None:
            raise BadRequest(f"no index named {_show(name)}; this server has: {', '.join(self.slots)}", 404)
        return slot

    def k(self, value: Any, from_text: bool = False) -> int:
        """``k`` from a JSON number, or from a query string's text with ``from_text``."""
        if value is None:
            return DEFAULT_K
        if from_text and re.fullmatch(r"-?[0-9]{1,18}", value):
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise BadRequest(f"k must be a whole number from 1 to {self.limits.max_k}, got {_show(value)}")
        if value < 1:
            raise BadRequest(f"k must be at least 1, got {value}")
        if value > self.limits.max_k:
            raise BadRequest(f"k must be at most {self.limits.max_k} (the server's --max-k), got {value}")
        return value

    def text(self, value: Any, what: str) -> str:
        if not isinstance(value, str):
            raise BadRequest(f"{what} must be a string, got {_show(value)}")
        if not value.strip():
            raise BadRequest(f"{what} is empty; give some text to search for")
        if len(value) > self.limits.max_query_chars:
            raise BadRequest(f"{what} is {len(value):,} characters long; the limit is "
                             f"{self.limits.max_query_chars:,} (the server's --max-query-chars)")
        try:
            value.encode("utf-8")  # JSON escapes can carry lone surrogates, which Arrow (the batch encoder) refuses
        except UnicodeEncodeError:
            raise BadRequest(f"{what} holds a lone surrogate (an unpaired \\ud800-\\udfff escape); "
                             "send valid Unicode text") from None
        return value

    async def search_one(self, slot: IndexSlot, q: str, k: int) -> list[dict]:
        # Inline on the event loop: one query with a bounded k and length is a fraction of a
        # millisecond on one FAISS thread, less than a hop to a worker thread and back.
        with slot.using() as index:
            hits = index.hits([q], k)
        for h in hits:
            del h["query_id"]
        return hits

    async def search_batch(self, slot: IndexSlot, queries: list[str], k: int) -> list[dict]:
        loaded = slot.acquire()
        # One batch search in a worker thread (FAISS on every core), so the loop keeps serving. The
        # index is released when the search ends, even if this request is cancelled before.
        future = self._batches.submit(_batch_hits, loaded.index, queries, k)
        future.add_done_callback(lambda _: slot.release(loaded))
        hits = await asyncio.wrap_future(future)
        results: list[dict] = [{"hits": []} for _ in queries]
        for h in hits:
            results[h.pop("query_id")]["hits"].append(h)
        return results

    def info(self, slot: IndexSlot) -> dict[str, Any]:
        loaded = slot.current
        out = {"name": slot.name, **loaded.figures,
               "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(loaded.loaded_at)),
               "reloads": slot.reloads}
        if slot.reload_error:
            out["reload_error"] = slot.reload_error
        return out


def _batch_hits(index: Index, queries: list[str], k: int) -> list[dict]:
    return index.hits(queries, k, query_ids=range(len(queries)))


def _show(value: Any, width: int = 60) -> str:
    """A value from a request, quoted and shortened for an error message."""
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _header(scope, name: bytes) -> bytes | None:
    """The raw bytes of a request header (ASGI gives names lowercased)."""
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


def _route_path(scope) -> str:
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


def _query_params(scope, allowed: Sequence[str]) -> dict[str, str]:
    try:
        pairs = parse_qsl(scope["query_string"].decode("utf-8"), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise BadRequest("the query string is not valid UTF-8; percent-encode the text as UTF-8") from None
    params: dict[str, str] = {}
    for key, value in pairs:
        if key not in allowed:
            takes = ", ".join(allowed) if allowed else "no query parameters"
            raise BadRequest(f"unknown parameter {_show(key)}; {scope['method']} {_route_path(scope)} takes {takes}")
        if key in params:
            raise BadRequest(f"parameter {key!r} is given more than once; give it once")
        params[key] = value
    return params


async def _json_body(request: Request, limit: int) -> Any:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise BadRequest("send the body as JSON with the header Content-Type: application/json", 415)
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise BadRequest(f"the body is {int(length):,} bytes; the limit is {limit:,} (the server's --max-body-bytes)",
                         413)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:  # a chunked body carries no length to check up front
            raise BadRequest(f"the body is over {limit:,} bytes, the limit (the server's --max-body-bytes)", 413)
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadRequest("the body is not valid UTF-8; send JSON encoded as UTF-8") from None
    except json.JSONDecodeError as e:
        raise BadRequest(f"the body is not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None


def _page() -> bytes:
    return files(__package__).joinpath("page.html").read_bytes()


def create_app(indexes, *, default: str | None = None, limits: Limits = DEFAULT_LIMITS, api_key: str | None = None,
               reload_interval: float = 0.5, batch_threads: int = 1) -> Starlette:
    """The ASGI app serving ``indexes``: a directory, a list of them (named by their base names) or a
    ``{name: directory}`` mapping; ``default`` names the one used when a request names none (the first).

    Loads every index now (raising the library's errors for a bad directory). ``reload_interval``:
    seconds between checks for a replaced directory (0: only on SIGHUP or ``request_reload``).
    The :class:`Service` is ``app.state.service``.
    """
    service = Service(indexes, default=default, limits=limits, api_key=api_key, reload_interval=reload_interval,
                      batch_threads=batch_threads)
    page = _page()

    async def home(request: Request) -> Response:
        return Response(page, media_type="text/html; charset=utf-8",
                        headers={"Content-Security-Policy": PAGE_CSP, "X-Content-Type-Options": "nosniff"})

    async def search(request: Request) -> Response:
        if request.method == "POST":
            service.check_key(request.scope)
            return await search_post(request)
        return JSONResponse(await search_get(request.scope))

    async def search_get(scope) -> dict:
        service.check_key(scope)
        params = _query_params(scope, SEARCH_PARAMS)
        slot = service.slot(params.get("index"))
        k = service.k(params.get("k"), from_text=True)
        if "q" not in params:
            raise BadRequest("missing parameter q: give the text to search for, e.g. /search?q=interest+rates")
        q = service.text(params["q"], "q")
        try:
            hits = await service.search_one(slot, q, k)
        except QueryError as e:
            raise BadRequest(str(e)) from None
        return {"hits": hits}

    async def search_post(request: Request) -> Response:
        _query_params(request.scope, ())
        body = await _json_body(request, service.limits.max_body_bytes)
        if not isinstance(body, dict):
            raise BadRequest('the body must be a JSON object like {"queries": ["some text"], "k": 10}')
        for key in body:
            if key not in BATCH_FIELDS:
                raise BadRequest(f"unknown field {_show(key)}; the body takes {', '.join(BATCH_FIELDS)}")
        slot = service.slot(body.get("index"))
        k = service.k(body.get("k"))
        queries = body.get("queries")
        if queries is None:
            raise BadRequest('missing field "queries": give a list of query texts')
        if not isinstance(queries, list):
            raise BadRequest(f'"queries" must be a list of strings, got {_show(queries)}')
        if not queries:
            raise BadRequest('"queries" is empty; give at least one query text')
        if len(queries) > service.limits.max_batch:
            raise BadRequest(f'"queries" has {len(queries):,} queries; the limit is {service.limits.max_batch:,} '
                             "(the server's --max-batch)")
        queries = [service.text(q, f"query {i}") for i, q in enumerate(queries, 1)]
        try:
            results = await service.search_batch(slot, queries, k)
        except QueryError as e:
            raise BadRequest(str(e)) from None
        return JSONResponse({"results": results})

    async def health(request: Request) -> Response:
        _query_params(request.scope, ())
        return JSONResponse({"status": "ok", "indexes": {n: s.current.figures["documents"]
                                                         for n, s in service.slots.items()}})

    async def info(request: Request) -> Response:
        service.check_key(request.scope)
        params = _query_params(request.scope, ("index",))
        if "index" in params:
            return JSONResponse(service.info(service.slot(params["index"])))
        return JSONResponse({"default": service.default,
                             "limits": {"max_k": limits.max_k, "max_query_chars": limits.max_query_chars,
                                        "max_batch": limits.max_batch, "max_body_bytes": limits.max_body_bytes},
                             "indexes": [service.info(s) for s in service.slots.values()]})

    routes = [
        Route("/", home, methods=["GET"]),
        Route("/search", search, methods=["GET", "POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/info", info, methods=["GET"]),
    ]
    handlers = {BadRequest: _bad_request, HTTPException: _http_error, Exception: _server_error}
    app = _App(search_get, routes=routes, exception_handlers=handlers, lifespan=service.lifespan)
    app.state.service = service
    return app


class _App(Starlette):
    """Starlette, with GET /search (the hot path) answered in plain ASGI: Starlette's request, routing and
    response objects cost as much again as the search itself (measured: 4,600 vs 2,650-3,400 requests/s
    at concurrency 8 on a tiny index). Every other request goes through Starlette."""

    def __init__(self, search_get, **kwargs):
        super().__init__(**kwargs)
        self._search_get = search_get

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and _route_path(scope) == "/search":
            try:
                status, payload = 200, await self._search_get(scope)
            except BadRequest as e:
                status, payload = e.status, {"error": str(e)}
            except Exception:  # noqa: BLE001 - the client gets a JSON 500, the log the traceback
                logger.exception("GET /search failed")
                status, payload = 500, {"error": "internal error; the server log has the details"}
            body = json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]})
            await send({"type": "http.response.body", "body": body})
            return
        await super().__call__(scope, receive, send)


def _error(message: str, status: int, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _bad_request(request: Request, exc: BadRequest) -> Response:
    return _error(str(exc), exc.status)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    if exc.status_code == 404:
        return _error(f"no such endpoint: {request.url.path}; the endpoints are {ENDPOINTS}", 404)
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        methods = sorted(allowed.split(", "))  # Starlette keeps them in a set: sorted, the message is stable
        use = " or ".join(filter(None, [", ".join(methods[:-1]), methods[-1]]))
        return _error(f"{request.method} is not allowed on {request.url.path}; use {use}", 405, {"Allow": allowed})
    return _error(str(exc.detail), exc.status_code)


async def _server_error(request: Request, exc: Exception) -> Response:
    # Reached only by a bug: the traceback goes to the log (Starlette re-raises it), not to the client.
    return _error("internal error; the server log has the details", 500)


def _check_port(host: str, port: int) -> None:
    """Raise :class:`ServeError` if ``host:port`` cannot be listened on (uvicorn would only log it)."""
    import socket
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            s.bind(address)
    except OSError as e:
        raise ServeError(f"cannot listen on {host}:{port}: {e.strerror or e}; choose another --port or --host") from None


def run(indexes, *, host: str = "127.0.0.1", port: int = 8000, default: str | None = None,
        limits: Limits = DEFAULT_LIMITS, api_key: str | None = None, reload_interval: float = 0.5,
        access_log: bool = True, log_level: str = "info") -> None:
    """Serve ``indexes`` (see :func:`create_app`) with uvicorn until interrupted."""
    try:
        import uvicorn
    except ImportError:
        raise ServeError("glovefaiss serve needs the serve extra (uvicorn is not installed): "
                         "pip install 'glovefaiss[serve]'") from None
    _check_port(host, port)
    app = create_app(indexes, default=default, limits=limits, api_key=api_key, reload_interval=reload_interval)
    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        logger.warning("serving on %s without an API key: anyone who can reach port %d can search", host, port)
    import copy

    from uvicorn.config import LOGGING_CONFIG

    log_config = copy.deepcopy(LOGGING_CONFIG)
    log_config["handlers"]["access"]["stream"] = "ext://sys.stderr"  # uvicorn's default is stdout
    config = uvicorn.Config(app, host=host, port=port, access_log=access_log, log_level=log_level,
                            log_config=log_config, server_header=False, lifespan="on")
    uvicorn.Server(config).run()
