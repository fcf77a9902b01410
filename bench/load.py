"""Load benchmark of the HTTP service on loopback: fixed request rates and saturation.

Starts ``frontdesk serve --config`` (SQLite store, auth on, no sinks) as its own process, trains
the BANKING77 model first if needed, then drives it with an open-loop asyncio + httpx client:
requests are *scheduled* at a fixed rate whatever the server does, so queueing shows up as
latency. Two paths: *confident* (messages tier 1 accepts) and *escalating* (messages that go to
human review, which also writes a review item). Saturation: 32 concurrent closed-loop clients.
Writes the table into BENCHMARKS.md (section ``load``). Client and server share the machine's cores.

Run: ``python bench/load.py [--rates 50,200,500] [--requests 10000] [--saturation-s 10]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import yaml

sys.path.insert(0, os.path.dirname(__file__))
from _common import BENCHMARKS, dataset_dir, stamp, table, write_section  # noqa: E402

from frontdesk import Dataset, Router  # noqa: E402
from frontdesk.server.auth import hash_key  # noqa: E402

KEY = "fd_load_benchmark_key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(work: Path, sync: str = "full") -> tuple[Path, list[str], list[str]]:
    data = Dataset.load(dataset_dir("banking77"))
    model = work / "model"
    router = Router.train(data)
    router.save(model)
    decisions = router.route_batch([ex.text for ex in data.test])
    confident = [d.text for d in decisions if d.tier == "linear" and not d.flagged]
    escalating = [d.text for d in decisions if d.tier == "human"]
    config = {
        "model": str(model), "store": f"sqlite:///{work / 'load.db'}", "store_sync": sync, "sinks": [], "rules": [],
        "preprocess": {"dedup_window_s": 0},
        "server": {"watch_config": False},
        "auth": {"enabled": True, "keys": [{"name": "load", "sha256": hash_key(KEY), "scopes": ["route"]}]},
    }
    path = work / "frontdesk.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, confident, escalating


class Recorder:
    """Sends one request and records its latency (ms) or counts it as an error."""

    def __init__(self, client: httpx.AsyncClient, texts: list[str]) -> None:
        self.client, self.texts = client, texts
        self.lat: list[float] = []
        self.errors = 0

    async def send(self, i: int) -> None:
        t0 = time.perf_counter()
        try:
            ok = (await self.client.post("/v1/route", json={"text": self.texts[i % len(self.texts)]})).status_code == 200
        except httpx.HTTPError:
            ok = False
        if ok:
            self.lat.append((time.perf_counter() - t0) * 1e3)
        else:
            self.errors += 1


def _client(url: str) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    return httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30, limits=limits)


async def open_loop(url: str, texts: list[str], rate: float, n: int) -> dict:
    """Schedule ``n`` requests at ``rate`` per second whatever the server does (open loop)."""
    async with _client(url) as c:
        rec = Recorder(c, texts)
        start = time.perf_counter()
        tasks = []
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(rec.send(i)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return summarise(rec.lat, rec.errors, elapsed, n)


async def saturate(url: str, texts: list[str], seconds: float, concurrency: int = 32) -> dict:
    """``concurrency`` closed-loop clients sending back to back for ``seconds``."""
    stop = time.perf_counter() + seconds
    async with _client(url) as c:
        rec = Recorder(c, texts)

        async def worker(w: int) -> None:
            i = w
            while time.perf_counter() < stop:
                await rec.send(i)
                i += concurrency

        start = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        elapsed = time.perf_counter() - start
    return summarise(rec.lat, rec.errors, elapsed, len(rec.lat) + rec.errors)


def summarise(lat: list[float], errors: int, elapsed: float, n: int) -> dict:
    a = np.asarray(lat) if lat else np.zeros(1)
    return {"n": n, "errors": errors, "throughput": len(lat) / elapsed, "p50": float(np.percentile(a, 50)),
            "p95": float(np.percentile(a, 95)), "p99": float(np.percentile(a, 99))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rates", default="50,200,500")
    ap.add_argument("--requests", type=int, default=10_000, help="requests per fixed-rate run (capped at 60 s of traffic)")
    ap.add_argument("--saturation-s", type=float, default=10.0)
    ap.add_argument("--sync", default="full,normal", help="SQLite store_sync modes to measure")
    args = ap.parse_args()
    ap_sync = [x.strip() for x in args.sync.split(",") if x.strip()]
    rows = []
    for sync in ap_sync:
        work = Path(tempfile.mkdtemp(prefix="frontdesk-load-"))
        print(f"training the banking77 model … (store_sync={sync})", flush=True)
        config, confident, escalating = prepare(work, sync)
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "frontdesk", "serve", "--config", str(config), "--port", str(port),
                                   "--log-level", "warning"], stderr=subprocess.PIPE)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(url + "/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            for path, texts in (("confident", confident), ("escalating", escalating)):
                asyncio.run(open_loop(url, texts, 100, 300))  # warm-up
                for rate in [float(r) for r in args.rates.split(",")]:
                    n = min(args.requests, int(rate * 60))
                    res = asyncio.run(open_loop(url, texts, rate, n))
                    print(f"{sync:6s} {path:10s} {rate:5.0f} req/s: {res}", flush=True)
                    rows.append([sync, path, f"{rate:.0f} req/s", f"{res['n']:,}", str(res["errors"]), f"{res['throughput']:.0f}",
                                 f"{res['p50']:.2f}", f"{res['p95']:.2f}", f"{res['p99']:.2f}"])
                res = asyncio.run(saturate(url, texts, args.saturation_s))
                print(f"{sync:6s} {path:10s} saturation: {res}", flush=True)
                rows.append([sync, path, "saturation (32 clients)", f"{res['n']:,}", str(res["errors"]), f"{res['throughput']:.0f}",
                             f"{res['p50']:.2f}", f"{res['p95']:.2f}", f"{res['p99']:.2f}"])
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
    body = f"""## HTTP service under load (`frontdesk serve`, BANKING77 model, SQLite store)

{stamp('python bench/load.py')} One uvicorn worker; the open-loop client (asyncio + httpx) runs on the
same 2-core machine. Every request is authenticated, routed, committed to SQLite (WAL)
before the answer (group commit: concurrent requests share one transaction), and counted in the metrics.
`store_sync=full` fsyncs every commit (survives power loss; the default); `normal` survives a killed process
(the kill -9 test) but not an OS crash. *confident*: messages tier 1 accepts; *escalating*: messages
sent to human review (one more row written). Latency in ms, measured by the client.

{table(["store_sync", "path", "offered load", "requests", "errors", "achieved req/s", "p50 ms", "p95 ms", "p99 ms"], rows)}
"""
    write_section(BENCHMARKS, "load", body)
    print(f"wrote {BENCHMARKS}")


if __name__ == "__main__":
    main()
