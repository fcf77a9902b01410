"""Shared by the service tests: a config writer, a uvicorn server in a thread, a keep-alive HTTP client.

:class:`KeepAlive` speaks HTTP/1.1 over one socket (``http.client``) and notices when the server
closed the connection between two requests: the hostile tester's "a 500 resets the next request
on the same keep-alive connection" is checked with it.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import yaml
from waiting import wait_until  # noqa: F401 - re-exported: tests import it from here

from frontdesk.config import STARTER
from frontdesk.server import create_app, hash_key

ROUTE_KEY, ADMIN_KEY = "fd_route_test_key", "fd_admin_test_key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(path: Path, model: Path, store_url: str, **overrides: object) -> Path:
    data = yaml.safe_load(STARTER)
    data.update(model=str(model), store=store_url, sinks=[f"jsonl://{path.parent / 'routed.jsonl'}"])
    data["auth"] = {"enabled": True, "keys": [
        {"name": "web", "sha256": hash_key(ROUTE_KEY), "scopes": ["route"]},
        {"name": "ops", "sha256": hash_key(ADMIN_KEY), "scopes": ["admin"]},
    ]}
    data["server"] = {"max_body_bytes": 20_000, "max_batch": 10, "watch_config": True, "watch_interval_s": 0.2}
    data.update(overrides)
    path.write_text(yaml.safe_dump(data))
    return path


class Running:
    """A uvicorn server (with the app's lifespan) in a thread on a free loopback port."""

    def __init__(self, config_path: Path | Any, **app_kwargs: Any) -> None:
        self.app = create_app(config_path, **app_kwargs)
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started or not self.thread.is_alive(), what="the server to start")
        assert self.server.started, "server did not start"
        self.url = f"http://127.0.0.1:{self.port}"

    @property
    def state(self) -> Any:
        return self.app.state.frontdesk

    def client(self, key: str | None = ROUTE_KEY) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"} if key else {}, timeout=10)

    def keep_alive(self, key: str | None = ADMIN_KEY) -> KeepAlive:
        return KeepAlive(self.port, key)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


class KeepAlive:
    """One HTTP/1.1 connection; ``reconnects`` counts how often the server had closed it unannounced
    (a response with ``Connection: close`` — 413, 408 — announces it and is not counted)."""

    def __init__(self, port: int, key: str | None = ADMIN_KEY, timeout: float = 20.0) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.key = key
        self.reconnects = 0
        self._local: Any = None

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                *, json_body: Any = None) -> tuple[int, dict[str, str], bytes]:
        """Send one request on the connection; (status, lower-case headers, body)."""
        hdrs = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        if json_body is not None:
            body = json.dumps(json_body).encode()
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        self.conn.request(method, path, body=body, headers=hdrs)
        local = self.conn.sock.getsockname()
        if self._local is not None and local != self._local:
            self.reconnects += 1  # http.client opened a new socket: the server had closed the last one
        self._local = local
        resp = self.conn.getresponse()
        data = resp.read()
        headers = {k.lower(): v for k, v in resp.getheaders()}
        if headers.get("connection", "").lower() == "close":
            self._local = None  # announced: the next request's new connection is not a reset
        return resp.status, headers, data

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> KeepAlive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HeldWebhook:
    """A webhook receiver on loopback that holds every POST until :meth:`release` (a sink that is slow on cue)."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.released = threading.Event()
        self.bodies: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                outer.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                outer.arrived.set()
                outer.released.wait(30)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()
