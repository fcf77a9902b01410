"""Reliability benchmark of the HTTP service: hostile clients, faults and lifecycle.

Starts ``frontdesk serve --config`` as its own process (the bundled support model, SQLite store,
auth on, no sinks) and measures, over real HTTP on loopback:

* OpenAPI fuzzing (schemathesis: every operation, positive and negative cases, random): requests,
  5xx, dropped connections, schema violations;
* hostile-body fuzzing (hypothesis, tests/hostile_bodies.py) over one keep-alive connection:
  requests, 5xx, dropped connections, accepted messages that do not read back from the store;
* named attacks (tests/test_server_errors.py's list plus slow and huge bodies): tried / accepted;
* faults: the store's write lock held by another connection, the config replaced by a directory,
  a body that never completes, ``kill -9`` under load (acknowledged-and-lost), SIGTERM with a
  request in flight;
* small-request latency (one closed-loop client) with and without three clients looping 1 MB bodies.

Writes its table into BENCHMARKS.md, section ``reliability-server`` inside the ``reliability``
frame (the LLM tier's tables go under ``reliability-llm`` (bench/reliability_llm.py); prompt injection: section ``injection``, bench/injection.py).
``--server-src PATH`` serves another checkout's code (e.g. the code before these fixes) with a
minimal config, and runs only the fuzzing, attack and latency parts (``--no-write`` implied).

Run: ``python bench/reliability.py [--openapi-examples 150] [--bodies 5000] [--attack-s 20]``
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, str(ROOT / "tests"))
from _common import BENCHMARKS, stamp, table, write_section  # noqa: E402

from frontdesk import Dataset, Objective, Router  # noqa: E402
from frontdesk.cli.common import example_dir  # noqa: E402
from frontdesk.server.auth import hash_key  # noqa: E402
from frontdesk.store.store import Store  # noqa: E402

ROUTE_KEY, ADMIN_KEY = "fd_route_test_key", "fd_admin_test_key"  # the keys tests/ use (server_harness)

FRAME = """<!-- reliability:start -->
## Reliability: hostile clients, faults and lifecycle (`frontdesk serve`)

What a hostile or unlucky client can do to the service, measured over real HTTP on loopback. Each part
has its own table below: the service itself (`bench/reliability.py`), a hanging LLM tier
(`bench/reliability_llm.py`) and prompt-injection attacks (section `injection`, `bench/injection.py`).

<!-- reliability-server:start -->
<!-- reliability-server:end -->

<!-- reliability-llm:start -->
<!-- reliability-llm:end -->

<!-- reliability:end -->"""


def ensure_frame(path: Path) -> None:
    """Add the reliability section's frame once; never touch the rows others wrote into it."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    if "<!-- reliability:start -->" not in text:
        path.write_text(text.rstrip() + "\n\n" + FRAME + "\n", encoding="utf-8")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


# -- the server under test --------------------------------------------------------------------------
def write_config(work: Path, model: Path, *, modern: bool, name: str = "frontdesk.yaml", **extra: Any) -> Path:
    config: dict[str, Any] = {
        "model": str(model), "store": f"sqlite:///{work / 'store.db'}", "sinks": [],
        "server": {"max_body_bytes": 1_000_000, "watch_config": True, "watch_interval_s": 0.2},
        "auth": {"enabled": True, "keys": [{"name": "web", "sha256": hash_key(ROUTE_KEY), "scopes": ["route"]},
                                           {"name": "ops", "sha256": hash_key(ADMIN_KEY), "scopes": ["admin"]}]},
    }
    if modern:
        config["store_busy_timeout_s"] = 0.5
        config["server"]["read_timeout_s"] = 2.0
    config.update(extra)
    path = work / name
    path.write_text(yaml.safe_dump(config))
    return path


class Served:
    """``frontdesk serve --config`` in its own process; stderr goes to a file (never a full pipe)."""

    def __init__(self, config: Path, src: Path, *, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
        self._log = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "frontdesk", "serve", "--config", str(config), "--port", str(self.port), "--log-level", "warning"],
            env=env, stdout=subprocess.DEVNULL, stderr=self._log)
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.1)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=60)
        finally:
            self._log.close()


# -- fuzzing ------------------------------------------------------------------------------------------
def openapi_fuzz(url: str, examples: int) -> dict[str, Any]:
    from openapi_campaign import run_campaign

    t0 = time.perf_counter()
    run = run_campaign(url, examples, derandomize=False)
    return {"requests": run.sent, "5xx": run.server_errors, "resets": run.resets, "schema_violations": run.check_failures,
            "statuses": dict(sorted(run.statuses.items())), "samples": run.samples[:3], "seconds": time.perf_counter() - t0}


def body_fuzz(url: str, port: int, count: int, store_url: str | None) -> dict[str, Any]:
    from hypothesis import HealthCheck, given, settings
    from hostile_bodies import Probe, probes

    statuses: Counter = Counter()
    out = {"requests": 0, "5xx": 0, "resets": 0, "unstorable": 0, "samples": []}
    state: dict[str, Any] = {"conn": None, "local": None}
    store = Store(store_url) if store_url else None

    def connection() -> http.client.HTTPConnection:
        if state["conn"] is None:
            state["conn"], state["local"] = http.client.HTTPConnection("127.0.0.1", port, timeout=30), None
        return state["conn"]

    ids: list[str] = []
    for text in ("my card payment failed and I am confused", "where is my parcel?"):
        r = httpx.post(f"{url}/v1/route", json={"text": text}, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        if r.status_code == 200:
            ids.append(r.json()["decision"]["id"])

    @settings(max_examples=count, deadline=None, database=None, derandomize=False, suppress_health_check=list(HealthCheck))
    @given(probe=probes(ids))
    def fuzz(probe: Probe) -> None:
        out["requests"] += 1
        conn = connection()
        try:
            conn.request(probe.method, probe.path, body=probe.body, headers={"Authorization": f"Bearer {ADMIN_KEY}", **probe.headers})
            local = conn.sock.getsockname()
            if state["local"] is not None and local != state["local"]:
                out["resets"] += 1  # the server had closed the connection without saying so
            state["local"] = local
            resp = conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            out["resets"] += 1
            if len(out["samples"]) < 3:
                out["samples"].append(f"{type(exc).__name__} after {probe.note} {probe.path}")
            conn.close()
            state["conn"] = None
            return
        if (resp.getheader("connection") or "").lower() == "close":
            state["local"] = None
        statuses[resp.status] += 1
        if resp.status >= 500:
            out["5xx"] += 1
            if len(out["samples"]) < 3:
                out["samples"].append(f"{resp.status} for {probe.note}: {probe.body[:200]!r}")
        elif resp.status == 200 and probe.path.startswith("/v1/route") and store is not None:
            payload = json.loads(body)
            for r in payload.get("results", [payload]):
                stored = store.get_decision(r["decision"]["id"])
                if stored is None or stored.model_dump(mode="json") != r["decision"]:
                    out["unstorable"] += 1

    t0 = time.perf_counter()
    fuzz()
    if store is not None:
        store.close()
    out.update(statuses=dict(sorted(statuses.items())), seconds=time.perf_counter() - t0)
    return out


# -- named attacks --------------------------------------------------------------------------------------
def attacks(port: int, modern: bool) -> dict[str, Any]:
    """Each named attack on a fresh connection: refused with a 4xx (or, for a huge body, answered
    promptly with truncated: true) and the connection still usable for a normal request."""
    from test_server_errors import HOSTILE

    rows = []
    cases = [(name, "POST", "/v1/route", body, {"Content-Type": "application/json", **hdrs}, {status})
             for name, body, hdrs, status, _kind, _needle in HOSTILE]
    cases = [(n, m, p, b, {k: v for k, v in h.items() if v}, s) for n, m, p, b, h, s in cases]
    cases += [
        ("feedback note with a lone surrogate", "POST", "/v1/feedback",
         b'{"decision_id": "x", "labels": ["billing_issue"], "note": "\\ud800"}', {"Content-Type": "application/json"}, {422}),
        ("review offset 2^63", "GET", "/v1/review?offset=9223372036854775808", None, {}, {422}),
        ("duplicate feedback labels", "POST", "/v1/feedback",
         b'{"decision_id": "x", "labels": ["billing_issue", "billing_issue"]}', {"Content-Type": "application/json"}, {422}),
        ("unknown path", "GET", "/v1/nothing", None, {}, {404}),
        ("wrong method", "DELETE", "/v1/route", None, {}, {405}),
        ("2 MB body", "POST", "/v1/route", json.dumps({"text": "x" * 2_000_000}).encode(), {"Content-Type": "application/json"}, {413}),
        ("~1 MB text", "POST", "/v1/route", json.dumps({"text": "where is my parcel? " * 49_000}).encode(),
         {"Content-Type": "application/json"}, {200}),
    ]
    for name, method, path, body, headers, expected in cases:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        t0 = time.perf_counter()
        try:
            conn.request(method, path, body=body, headers={"Authorization": f"Bearer {ADMIN_KEY}", **headers})
            resp = conn.getresponse()
            data = resp.read()
            status = resp.status
            ms = (time.perf_counter() - t0) * 1e3
            closed = (resp.getheader("connection") or "").lower() == "close"
            try:
                conn.request("GET", "/healthz")
                follow = conn.getresponse()
                follow.read()
                kept = follow.status == 200 or closed
            except (OSError, http.client.HTTPException):
                kept = closed
        except (OSError, http.client.HTTPException) as exc:
            status, data, ms, kept = 0, str(exc).encode(), (time.perf_counter() - t0) * 1e3, False
        finally:
            conn.close()
        ok = status in expected
        if ok and name == "~1 MB text" and modern:
            ok = bool(json.loads(data)["decision"]["truncated"])
        rows.append({"attack": name, "status": status, "expected": sorted(expected), "ok": ok, "ms": ms, "connection_kept": kept})
    accepted = [r for r in rows if not r["ok"]]
    return {"tried": len(rows), "as_expected": len(rows) - len(accepted), "5xx": sum(r["status"] >= 500 for r in rows),
            "dropped_connections": sum(not r["connection_kept"] for r in rows), "rows": rows}


# -- latency under the 1 MB-body attack --------------------------------------------------------------
def latency_under_attack(url: str, seconds: float, attackers: int = 3) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {ROUTE_KEY}"}
    texts = ["where is my parcel?", "I was charged twice", "cancel my subscription please", "my card does not work"]

    def small(duration: float) -> list[float]:
        out: list[float] = []
        end = time.monotonic() + duration
        with httpx.Client(base_url=url, headers=headers, timeout=60) as c:
            i = 0
            while time.monotonic() < end:
                t0 = time.perf_counter()
                r = c.post("/v1/route", json={"text": f"{texts[i % 4]} (order {i})"})
                out.append((time.perf_counter() - t0) * 1e3 if r.status_code == 200 else float("inf"))
                i += 1
        return out

    baseline = small(seconds)
    stop = threading.Event()
    big: list[float] = []
    statuses: Counter = Counter()

    def attacker(k: int) -> None:
        body = json.dumps({"text": f"attack {k} " + "<p>where is my parcel? order 5521</p>" * 26_000}).encode()[:990_000]
        body = body[: body.rfind(b" ")] + b'"}'
        with httpx.Client(base_url=url, headers={**headers, "Content-Type": "application/json"}, timeout=120) as c:
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    r = c.post("/v1/route", content=body)
                    statuses[r.status_code] += 1
                except httpx.TransportError:
                    statuses["transport error"] += 1
                big.append((time.perf_counter() - t0) * 1e3)

    threads = [threading.Thread(target=attacker, args=(k,)) for k in range(attackers)]
    for t in threads:
        t.start()
    time.sleep(2.0)  # let the attack reach steady state
    attacked = small(seconds)
    stop.set()
    for t in threads:
        t.join()
    return {"small_p50": pct(baseline, 50), "small_p95": pct(baseline, 95), "small_n": len(baseline),
            "attacked_p50": pct(attacked, 50), "attacked_p95": pct(attacked, 95), "attacked_n": len(attacked),
            "big_requests": len(big), "big_p50": pct(big, 50), "big_statuses": dict(statuses), "attackers": attackers}


# -- faults -------------------------------------------------------------------------------------------
def fault_store_lock(url: str, db: Path) -> dict[str, Any]:
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    msg = {"text": "my card was charged twice for one coffee", "sender": "lock-probe"}
    h = {"Authorization": f"Bearer {ROUTE_KEY}"}
    try:
        first = httpx.post(f"{url}/v1/route", json=msg, headers=h, timeout=30)
    finally:
        locker.rollback()
        locker.close()
    retry = httpx.post(f"{url}/v1/route", json=msg, headers=h, timeout=30)
    with Store(f"sqlite:///{db}") as store:
        stored = retry.status_code == 200 and store.get_decision(retry.json()["decision"]["id"]) is not None
    ok = first.status_code == 503 and stored and retry.json()["decision"]["duplicate_of"] is None
    return {"fault": "store write lock held by another connection (busy timeout 0.5 s)", "ok": ok,
            "outcome": f"{first.status_code} while locked, retry {retry.status_code} and stored: {stored}"}


def _reloads_ok(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith('frontdesk_reloads_total{result="ok"}'):
            return float(line.split()[-1])
    return 0.0


def fault_config_directory(url: str, config: Path) -> dict[str, Any]:
    good = config.read_text()
    h = {"Authorization": f"Bearer {ADMIN_KEY}"}
    before = _reloads_ok(url)
    config.unlink()
    config.mkdir()
    refused = httpx.post(f"{url}/v1/admin/reload", headers=h, timeout=30)
    alive = httpx.post(f"{url}/v1/route", json={"text": "where is my parcel?"}, headers=h, timeout=30).status_code == 200
    config.rmdir()
    data = yaml.safe_load(good)
    data["gates"] = {"linear": {"threshold": 0.42}}
    tmp = config.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(data))
    os.replace(tmp, config)
    deadline = time.monotonic() + 30
    while _reloads_ok(url) <= before and time.monotonic() < deadline:
        time.sleep(0.1)
    watched = _reloads_ok(url) > before
    ok = refused.status_code == 400 and alive and watched
    return {"fault": "config file replaced by a directory, then fixed", "ok": ok,
            "outcome": f"reload {refused.status_code}, routing still 200: {alive}, watcher applied the fix: {watched}"}


def fault_slow_body(port: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"POST /v1/route HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer "
                  + ROUTE_KEY.encode() + b"\r\nContent-Length: 1000\r\n\r\n{\"text\": ")
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    status = reply.split(b" ", 2)[1].decode() if reply else "none"
    return {"fault": "Content-Length larger than the body (read_timeout_s 2)", "ok": status == "408",
            "outcome": f"{status} after {time.perf_counter() - t0:.1f} s, connection closed"}


def fault_kill9(work: Path, model: Path, src: Path, threads: int = 4, target: int = 300) -> dict[str, Any]:
    sub = work / "kill9"
    sub.mkdir()
    cfg = write_config(sub, model, modern=True)
    served = Served(cfg, src, log=sub / "server.log")
    acked: list[str] = []
    stop = threading.Event()

    def pump(k: int) -> None:
        with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {ROUTE_KEY}"}, timeout=10) as c:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    r = c.post("/v1/route", json={"text": f"where is my order number {k}-{i}?"})
                except httpx.TransportError:
                    return
                if r.status_code == 200:
                    acked.append(r.json()["decision"]["id"])

    pumps = [threading.Thread(target=pump, args=(k,)) for k in range(threads)]
    for t in pumps:
        t.start()
    deadline = time.monotonic() + 120
    while len(acked) < target and time.monotonic() < deadline:
        time.sleep(0.01)
    served.stop(signal.SIGKILL)
    stop.set()
    for t in pumps:
        t.join()
    with Store(f"sqlite:///{sub / 'store.db'}") as store:
        lost = sum(store.get_decision(i) is None for i in acked)
    return {"fault": f"kill -9 under load ({threads} clients)", "ok": lost == 0 and len(acked) >= target,
            "outcome": f"{len(acked)} acknowledged, {lost} lost", "acked": len(acked), "lost": lost}


def fault_sigterm(work: Path, model: Path, src: Path) -> dict[str, Any]:
    from server_harness import HeldWebhook

    sub = work / "sigterm"
    sub.mkdir()
    hook = HeldWebhook()
    try:
        cfg = write_config(sub, model, modern=True, sinks=[hook.url])
        served = Served(cfg, src, log=sub / "server.log")
        result: dict[str, Any] = {}

        def send() -> None:
            try:
                result["r"] = httpx.post(f"{served.url}/v1/route", json={"text": "where is my parcel, order 4242?"},
                                         headers={"Authorization": f"Bearer {ROUTE_KEY}"}, timeout=60)
            except httpx.TransportError as exc:
                result["error"] = exc

        t = threading.Thread(target=send)
        t.start()
        in_flight = hook.arrived.wait(60)
        served.proc.send_signal(signal.SIGTERM)
        hook.release()
        t.join(60)
        code = served.stop()
        log = (sub / "server.log").read_text()
    finally:
        hook.close()
    r = result.get("r")
    answered = r is not None and r.status_code == 200
    clean = code in (0, -signal.SIGTERM) and "Traceback" not in log
    return {"fault": "SIGTERM with a request in flight", "ok": in_flight and answered and clean,
            "outcome": f"in-flight request answered {r.status_code if r is not None else 'never'}, exit {code}"
                       f"{', clean log' if 'Traceback' not in log else ', traceback in the log'}"}


# -- main ---------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--openapi-examples", type=int, default=150, help="schemathesis cases per operation and mode")
    ap.add_argument("--bodies", type=int, default=5000, help="hostile-body requests (hypothesis)")
    ap.add_argument("--attack-s", type=float, default=20.0, help="seconds of small requests, with and without the attack")
    ap.add_argument("--server-src", type=Path, default=ROOT / "src", help="serve this checkout's src/ (default: this one)")
    ap.add_argument("--json-out", type=Path, help="also write the raw results here")
    ap.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    ap.add_argument("--compare", type=Path, help="--json-out of a run with --server-src OLD: adds a 'before' column")
    ap.add_argument("--from-json", type=Path, help="write the table from this --json-out instead of measuring")
    args = ap.parse_args()
    if args.from_json:
        write(json.loads(args.from_json.read_text()), args)
        return
    src = args.server_src.resolve()
    modern = src == (ROOT / "src").resolve()
    work = Path(tempfile.mkdtemp(prefix="frontdesk-reliability-"))
    model = Router.train(Dataset.load(example_dir()), ["linear"], objective=Objective(max_escalation=0.2)).save(work / "model")
    results: dict[str, Any] = {"server_src": str(src)}

    cfg = write_config(work, model, modern=modern)
    served = Served(cfg, src, log=work / "server.log")
    try:
        print("OpenAPI fuzzing …", flush=True)
        results["openapi"] = openapi_fuzz(served.url, args.openapi_examples)
        print(json.dumps(results["openapi"], default=str)[:600], flush=True)
        print("hostile-body fuzzing …", flush=True)
        results["bodies"] = body_fuzz(served.url, served.port, args.bodies, f"sqlite:///{work / 'store.db'}" if modern else None)
        print(json.dumps(results["bodies"], default=str)[:600], flush=True)
        print("named attacks …", flush=True)
        results["attacks"] = attacks(served.port, modern)
        print(json.dumps({k: v for k, v in results["attacks"].items() if k != "rows"}), flush=True)
        print("latency under the 1 MB-body attack …", flush=True)
        results["latency"] = latency_under_attack(served.url, args.attack_s)
        print(json.dumps(results["latency"]), flush=True)
        if modern:
            print("faults …", flush=True)
            results["faults"] = [fault_store_lock(served.url, work / "store.db"), fault_config_directory(served.url, cfg),
                                 fault_slow_body(served.port)]
    finally:
        served.stop()
    if modern:
        results["faults"] += [fault_kill9(work, model, src), fault_sigterm(work, model, src)]
        print(json.dumps(results["faults"]), flush=True)
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=1, default=str))
    if modern and not args.no_write:
        write(results, args)


def _cells(r: dict[str, Any]) -> list[str]:
    """The result column of the table for one run (faults only when the run had them)."""
    o, b, a, lat, faults = r["openapi"], r["bodies"], r["attacks"], r["latency"], r.get("faults")
    ms = lambda x: f"{x:,.1f}"  # noqa: E731
    kill = next((f for f in faults or [] if f["fault"].startswith("kill -9")), None)
    return [
        f"{o['requests']:,} requests: **{o['5xx']} × 5xx, {o['resets']} dropped connections, {o['schema_violations']} schema violations**",
        f"{b['requests']:,} requests: **{b['5xx']} × 5xx, {b['resets']} dropped connections**"
        + (f", {b['unstorable']} accepted but not stored equal" if r.get("faults") else ""),
        f"{a['tried']} tried, **{a['tried'] - a['as_expected']} not refused as expected**, {a['5xx']} × 5xx, "
        f"{a['dropped_connections']} dropped connections",
        f"**{sum(f['ok'] for f in faults)} of {len(faults)}**" if faults else "not run",
        f"**{kill['lost']} of {kill['acked']:,}**" if kill else "not run",
        f"p50 {ms(lat['small_p50'])} ms, p95 {ms(lat['small_p95'])} ms ({lat['small_n']:,} requests)",
        f"p50 {ms(lat['attacked_p50'])} ms, **p95 {ms(lat['attacked_p95'])} ms** ({lat['attacked_n']:,} small requests; "
        f"{lat['big_requests']:,} big ones answered, p50 {ms(lat['big_p50'])} ms)",
    ]


def write(r: dict[str, Any], args: argparse.Namespace) -> None:
    faults = r["faults"]
    names = [
        "OpenAPI fuzzing (schemathesis, every operation, positive + negative cases)",
        "hostile-body fuzzing (hypothesis, one keep-alive connection)",
        "named attacks (surrogates, NaN, 1e999, deep nesting, huge ints, media types, 2 MB, ~1 MB text, …)",
        "faults survived", "acknowledged and lost (kill -9 under load)",
        "small-request latency, no attack (1 closed-loop client)",
        f"small-request latency while {r['latency']['attackers']} clients loop ~1 MB bodies",
    ]
    before = json.loads(args.compare.read_text()) if args.compare else None
    columns = [names, _cells(r)] + ([_cells(before)] if before else [])
    rows = [list(row) for row in zip(*columns)]
    headers = ["measure", "this code"] + (["before (same script, `--server-src` of main before these fixes)"] if before else [])
    command = (f"python bench/reliability.py --openapi-examples {args.openapi_examples} --bodies {args.bodies} "
               f"--attack-s {args.attack_s:g}")
    lines = [
        "### The service (`bench/reliability.py`)", "",
        stamp(command),
        "The bundled support model (linear tier), SQLite store, auth on; server and clients share the machine's 2 cores "
        "(other jobs were running: absolute latencies are noisy, compare within a row). Fuzzers are random per run; the CI "
        "tests run bounded, derandomised versions (tests/test_fuzz_*.py).", "",
        table(headers, rows), "",
        "Faults: " + "; ".join(f"{f['fault']} → {f['outcome']}" for f in faults) + ".",
    ]
    if before:
        lines += ["", f"*before*: `{before.get('command', 'python bench/reliability.py --server-src ../main/src --no-write')}` "
                  "with the fixes' config keys left out (the old code refuses them); faults are not run against it."]
    body = "\n".join(lines)
    ensure_frame(BENCHMARKS)
    write_section(BENCHMARKS, "reliability-server", body)
    print(f"wrote the reliability-server section of {BENCHMARKS}")


if __name__ == "__main__":
    main()
