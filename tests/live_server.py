"""A real uvicorn server on a free loopback port, in a thread of this process, and a tiny HTTP client."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time


class LiveServer:
    """Serves ``app`` on 127.0.0.1 (a port the kernel picks) until :meth:`stop` or the ``with`` block ends."""

    def __init__(self, app, timeout: float = 15.0):
        import uvicorn

        self.app = app
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))  # bound before the server starts: no race for the port
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)

    def __enter__(self) -> LiveServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                conn: http.client.HTTPConnection | None = None) -> tuple[int, dict, dict]:
        """(status, body: JSON decoded or text, headers) of one request (on ``conn`` to keep a connection alive)."""
        own = conn is None
        conn = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            is_json = (resp.getheader("content-type") or "").startswith("application/json")
            return resp.status, json.loads(data) if is_json else data.decode("utf-8"), dict(resp.getheaders())
        finally:
            if own:
                conn.close()

    def get(self, path: str, **kw) -> tuple[int, dict]:
        status, body, _ = self.request("GET", path, **kw)
        return status, body

    def post(self, path: str, payload, headers: dict | None = None, **kw) -> tuple[int, dict]:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
        status, data, _ = self.request("POST", path, body=body,
                                       headers={"Content-Type": "application/json", **(headers or {})}, **kw)
        return status, data
