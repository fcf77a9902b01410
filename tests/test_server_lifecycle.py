"""The service's lifecycle (#13, #15): reloads that fail keep the running config and the watcher alive,
a replaced pipeline is closed once its last request ends, the lifespan starts and stops the threads,
and `frontdesk serve` answers the requests in flight on SIGTERM, then exits 0."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from server_harness import (
    ADMIN_KEY,
    ROUTE_KEY,
    HeldWebhook,
    Running,
    free_port,
    wait_until,
    write_config,
)

from frontdesk.store.store import Store


@pytest.fixture()
def webhook() -> Iterator[HeldWebhook]:
    hook = HeldWebhook()
    yield hook
    hook.close()


@pytest.fixture()
def service(saved_model: Path, tmp_path: Path) -> Iterator[Running]:
    running = Running(write_config(tmp_path / "frontdesk.yaml", saved_model, f"sqlite:///{tmp_path / 'store.db'}"))
    yield running
    running.stop()


BAD_CONFIGS = [  # (how the file is broken, what the refusal says)
    ("a directory in its place", "is a directory"),
    ("not YAML", "not valid YAML"),
    ("not UTF-8", "not valid UTF-8"),
    ("a YAML list", "must be a YAML mapping"),
    ("an unknown router setting", "router"),
    ("a wrong-typed router setting", "max_chars"),
    ("a missing model directory", "model"),
    ("a non-string key", "Keys should be strings"),
]


def _write(path: Path, data: bytes) -> None:
    """Replace the file atomically (the watcher never sees it half-written)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _break(path: Path, how: str, good: str) -> None:
    if path.is_dir():
        path.rmdir()
    if how == "a directory in its place":
        path.unlink()
        path.mkdir()
        return
    data = yaml.safe_load(good)
    text = {
        "not YAML": "model: [unclosed\n",
        "a YAML list": "- model\n",
        "an unknown router setting": yaml.safe_dump({**data, "router": {"bogus": 1}}),
        "a wrong-typed router setting": yaml.safe_dump({**data, "router": {"max_chars": "many"}}),
        "a missing model directory": yaml.safe_dump({**data, "model": str(path.parent / "no-such-model")}),
        "a non-string key": good + "\n1: 2\n",
        "not UTF-8": good + "\n# caf\udce9\n",
    }[how]
    _write(path, text.encode("utf-8", "surrogateescape"))


def test_any_config_error_keeps_the_running_config_and_the_watcher_alive(service: Running) -> None:
    state = service.state
    path = state.config_path
    good = path.read_text()
    threshold = state.pipeline.router.gates["linear"].threshold
    with service.client(ADMIN_KEY) as a:
        for how, needle in BAD_CONFIGS:
            _break(path, how, good)
            wait_until(lambda needle=needle: needle in (state.last_reload_error or ""), what=f"the watcher to refuse {how}")
            r = a.post("/v1/admin/reload")
            assert r.status_code == 400, (how, r.text)
            message = r.json()["error"]["message"]
            assert "running one stays" in message and needle in message and str(path.parent) not in message, (how, message)
            with service.client() as c:
                assert c.post("/v1/route", json={"text": "where is my parcel?"}).status_code == 200
            assert state.pipeline.router.gates["linear"].threshold == threshold
        assert state._watcher is not None and state._watcher.is_alive(), "the watcher thread died"
        if path.is_dir():
            path.rmdir()
        data = yaml.safe_load(good)
        data["gates"] = {"linear": {"threshold": 0.321}}
        _write(path, yaml.safe_dump(data).encode())
        wait_until(lambda: state.pipeline.router.gates["linear"].threshold == 0.321, what="the watcher to apply the fix")
        assert state.last_reload_error is None
        seen = state.reloads
        _write(path, yaml.safe_dump(data).encode())  # same content, new file and mtime: nothing to reload
        assert not state.wait_for_reloads(seen + 1, timeout=1.0)


def test_a_replaced_pipeline_is_closed_after_its_last_request(saved_model: Path, tmp_path: Path, webhook: HeldWebhook) -> None:
    cfg = write_config(tmp_path / "frontdesk.yaml", saved_model, f"sqlite:///{tmp_path / 's.db'}", sinks=[webhook.url])
    svc = Running(cfg)
    try:
        state = svc.state
        old = state.pipeline
        result: dict = {}

        def send() -> None:
            with svc.client() as c:
                result["r"] = c.post("/v1/route", json={"text": "where is my parcel, order 77?"})

        t = threading.Thread(target=send)
        t.start()
        assert webhook.arrived.wait(20), "the request did not reach delivery"
        with svc.client(ADMIN_KEY) as a:  # reload while the request is delivering through the old pipeline
            assert a.post("/v1/admin/reload").status_code == 200
        assert state.pipeline is not old and state.slot.closed_replaced == 0, "closed while a request used it"
        webhook.release()
        t.join(20)
        assert result["r"].status_code == 200 and result["r"].json()["delivery_errors"] == []
        wait_until(lambda: state.slot.closed_replaced == 1, what="the replaced pipeline to close")
        assert old.sinks[0]._client.is_closed and not state.pipeline.sinks[0]._client.is_closed
    finally:
        svc.stop()


def _threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("frontdesk-")}


def test_the_lifespan_starts_and_stops_the_threads(saved_model: Path, tmp_path: Path) -> None:
    from frontdesk.server import create_app

    before = _threads()
    app = create_app(write_config(tmp_path / "frontdesk.yaml", saved_model, f"sqlite:///{tmp_path / 's.db'}"))
    assert _threads() == before, "threads start with the lifespan, not at construction"
    app.state.frontdesk.close()  # never started: closing is still clean
    svc = Running(write_config(tmp_path / "frontdesk.yaml", saved_model, f"sqlite:///{tmp_path / 's.db'}"))
    state = svc.state
    with svc.client() as c:
        assert c.post("/v1/route", json={"text": "hello, where is my order?"}).status_code == 200
    live = {state.committer._thread, state._watcher, state.monitor._thread}
    assert all(t is not None and t.is_alive() for t in live)
    svc.stop()
    assert not any(t.is_alive() for t in live if t is not None) and state.store._closed


CLEAN_EXIT = (0, -signal.SIGTERM)
"""uvicorn re-raises SIGTERM after its graceful shutdown, so the process ends "killed by SIGTERM" (what
process managers expect); the shutdown itself is checked in the log ("Application shutdown complete")."""


def _serve(config: Path, port: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "frontdesk", "serve", "--config", str(config), "--port", str(port), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_healthy(proc: subprocess.Popen, port: int) -> None:
    def up() -> bool:
        assert proc.poll() is None, f"server exited: {proc.stderr.read() if proc.stderr else ''}"
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(up, timeout=60, what="the server to answer /healthz")


def test_sigterm_answers_in_flight_requests_and_exits_cleanly(saved_model: Path, tmp_path: Path, webhook: HeldWebhook) -> None:
    db = tmp_path / "store.db"
    cfg = write_config(tmp_path / "frontdesk.yaml", saved_model, f"sqlite:///{db}", sinks=[webhook.url])
    port = free_port()
    proc = _serve(cfg, port)
    try:
        _wait_healthy(proc, port)
        result: dict = {}

        def send() -> None:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {ROUTE_KEY}"}, timeout=30) as c:
                result["r"] = c.post("/v1/route", json={"text": "where is my parcel, order 4242?"},
                                     headers={"X-Request-ID": "trace-77"})

        t = threading.Thread(target=send)
        t.start()
        assert webhook.arrived.wait(30), "the request did not reach delivery"
        proc.send_signal(signal.SIGTERM)  # while the request is in flight (its decision is committed, delivery pending)
        webhook.release()
        t.join(30)
        assert proc.wait(timeout=30) in CLEAN_EXIT
        stderr = proc.stderr.read() if proc.stderr else ""
        assert "Traceback" not in stderr and "Application shutdown complete" in stderr, stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    r = result["r"]
    assert r.status_code == 200, r.text
    with Store(f"sqlite:///{db}") as store:
        assert store.get_decision(r.json()["decision"]["id"]) is not None
    assert webhook.bodies and webhook.bodies[0]["parent_id"] == r.json()["decision"]["id"]
    access = next((x for x in stderr.splitlines() if "frontdesk.access" in x and "id=trace-77" in x), None)
    assert access is not None and "POST /v1/route 200 " in access and "parcel" not in access, stderr


def test_auth_without_keys_is_logged(saved_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from frontdesk.server import create_app

    cfg = write_config(tmp_path / "frontdesk.yaml", saved_model, f"sqlite:///{tmp_path / 's.db'}", auth={"enabled": True, "keys": []})
    with caplog.at_level(logging.WARNING, logger="frontdesk.server"):
        app = create_app(cfg)
    app.state.frontdesk.close()
    assert any("auth.keys is empty" in r.getMessage() and "frontdesk keys create" in r.getMessage() for r in caplog.records)


def test_serve_warns_about_an_open_port_without_auth(saved_model: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "frontdesk.yaml", saved_model, f"sqlite:///{tmp_path / 's.db'}", auth={"enabled": False})
    port = free_port()
    proc = _serve(cfg, port, "--host", "0.0.0.0")
    try:
        _wait_healthy(proc, port)
        assert httpx.post(f"http://127.0.0.1:{port}/v1/route", json={"text": "where is my parcel?"}).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) in CLEAN_EXIT
        stderr = proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    flat = " ".join(stderr.split())
    assert "AUTH IS OFF and the service listens on 0.0.0.0" in flat and "AUTH IS DISABLED" in flat, stderr
