"""Reliability benchmark: confident-path latency of the HTTP service while 50 LLM escalations hang.

Starts ``frontdesk serve --config`` (BANKING77 linear model, SQLite store, an ``llm:`` tier pointing
at a fake OpenAI server that speaks the real wire protocol and *holds every request*, sending
nothing), fires 50 escalating messages at once, waits until the LLM tier holds what it admits, then
measures confident messages (ones tier 1 accepts): 300 sequential requests, then 8 closed-loop
clients for a few seconds. Three runs, each on a fresh server:

* ``no escalations``: the baseline;
* ``bounded`` (the defaults: ``max_concurrency 4``, ``max_waiting 4``): 4 calls held, 4 queued,
  42 sent to human review at once as "LLM tier busy";
* ``unbounded`` (``max_concurrency 64``, ``max_waiting 0``): every escalation holds a request
  thread until its deadline, which is how the LLM tier behaved before the call pool.

Writes the table into BENCHMARKS.md (section ``reliability-llm``, inside the reliability chapter).

Run: ``python bench/reliability_llm.py [--data banking77|support] [--deadline-s 20]``
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import yaml

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from _common import BENCHMARKS, data_root, stamp, table, write_section  # noqa: E402
from fake_llm_servers import FakeOpenAIServer, hang  # noqa: E402

from frontdesk import Dataset, Router  # noqa: E402
from frontdesk.cli.common import example_dir  # noqa: E402
from frontdesk.server.auth import hash_key  # noqa: E402

KEY = "fd_reliability_benchmark_key"
ESCALATIONS = 50


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(work: Path, data_name: str) -> tuple[Path, list[str], list[str]]:
    """Train (once per work dir) and split test messages into confident and escalating ones."""
    data = Dataset.load(example_dir() if data_name == "support" else data_root() / data_name)
    model = work / "model"
    if (model / "frontdesk.json").is_file():
        router = Router.load(model)
    else:
        router = Router.train(data)
        router.save(model)
    texts = [ex.text for ex in (data.test or data.validation)]
    decisions = router.route_batch(texts)
    confident = [d.text for d in decisions if d.tier == "linear" and not d.flagged]
    escalating = [d.text for d in decisions if d.tier == "human"]
    while len(escalating) < ESCALATIONS:  # small datasets: distinct variants of the escalating texts
        escalating += [f"{t} ({len(escalating)})" for t in escalating[: ESCALATIONS - len(escalating)]] or ["zq blorp wibble fnord"]
    return model, confident, escalating[:ESCALATIONS]


def write_config(work: Path, model: Path, llm_url: str, deadline_s: float, concurrency: int, waiting: int) -> Path:
    config = {
        "model": str(model), "store": f"sqlite:///{work / f'rel-{concurrency}.db'}", "store_sync": "normal",
        "sinks": [], "rules": [], "preprocess": {"dedup_window_s": 0}, "server": {"watch_config": False},
        "auth": {"enabled": True, "keys": [{"name": "bench", "sha256": hash_key(KEY), "scopes": ["route"]}]},
        "llm": {"provider": "openai", "model": "gpt-4o-mini", "base_url": llm_url, "deadline_s": deadline_s, "retries": 0,
                "max_concurrency": concurrency, "max_waiting": waiting},
    }
    path = work / f"frontdesk-{concurrency}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def percentiles(lat: list[float]) -> dict[str, float]:
    a = np.asarray(lat) if lat else np.zeros(1)
    return {"n": len(lat), "p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)), "max": float(a.max())}


def sequential(client: httpx.Client, texts: list[str], n: int) -> dict[str, float]:
    lat = []
    for i in range(n):
        t0 = time.perf_counter()
        r = client.post("/v1/route", json={"text": texts[i % len(texts)], "sender": f"seq-{i}"})
        if r.status_code == 200 and r.json()["decision"]["tier"] == "linear":
            lat.append((time.perf_counter() - t0) * 1e3)
    return percentiles(lat)


def closed_loop(client: httpx.Client, texts: list[str], seconds: float, clients: int = 8) -> dict[str, float]:
    stop = time.perf_counter() + seconds
    lat: list[float] = []
    lock = threading.Lock()

    def worker(w: int) -> None:
        i = w
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            r = client.post("/v1/route", json={"text": texts[i % len(texts)], "sender": f"cl-{w}-{i}"})
            if r.status_code == 200:
                with lock:
                    lat.append((time.perf_counter() - t0) * 1e3)
            i += clients

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, range(clients)))
    out = percentiles(lat)
    out["rps"] = len(lat) / (time.perf_counter() - start)
    return out


def run(label: str, work: Path, model: Path, confident: list[str], escalating: list[str], *, escalate: bool,
        concurrency: int, waiting: int, deadline_s: float, closed_s: float) -> list[str]:
    with FakeOpenAIServer(default=hang()) as llm:
        config = write_config(work, model, llm.base_url, deadline_s, concurrency, waiting)
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "frontdesk", "serve", "--config", str(config), "--port", str(port),
                                   "--log-level", "warning"])
        url = f"http://127.0.0.1:{port}"
        limits = httpx.Limits(max_connections=128, max_keepalive_connections=128)
        pool = ThreadPoolExecutor(ESCALATIONS)
        try:
            for _ in range(600):
                try:
                    if httpx.get(url + "/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=deadline_s * 4, limits=limits) as c:
                sequential(c, confident, 50)  # warm-up
                futures = []
                if escalate:
                    futures = [pool.submit(c.post, "/v1/route", json={"text": t, "sender": f"esc-{i}"}) for i, t in enumerate(escalating)]
                    admitted = min(concurrency, ESCALATIONS)
                    end, last, since = time.monotonic() + 60, -1, time.monotonic()
                    while llm.held < admitted and time.monotonic() < end:  # or until it stops growing (thread limit)
                        if llm.held != last:
                            last, since = llm.held, time.monotonic()
                        elif last > 0 and time.monotonic() - since > 2.0:
                            break
                        time.sleep(0.01)
                    refused = sum(f.done() for f in futures)
                    print(f"{label}: LLM holds {llm.held} calls, {refused} escalations already answered", flush=True)
                t_start = time.monotonic()
                t0 = time.perf_counter()
                c.post("/v1/route", json={"text": confident[0], "sender": "first"})
                first_ms = (time.perf_counter() - t0) * 1e3
                seq = sequential(c, confident, 300)
                loop = closed_loop(c, confident, closed_s)
                measured_s = time.monotonic() - t_start
                held_throughout = escalate and llm.held >= min(concurrency, ESCALATIONS) and not any(r.released_at for r in llm.requests)
                llm.release()
                answers = [f.result(timeout=deadline_s * 4) for f in futures]
                busy = sum("LLM tier busy" in r.json()["decision"]["reason"] for r in answers if r.status_code == 200)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
    print(f"{label}: first {first_ms:.1f} ms, sequential {seq}, 8 clients {loop}, measured in {measured_s:.1f} s, "
          f"busy {busy}", flush=True)
    note = (f"{ESCALATIONS - busy} held/queued, {busy} busy → review" if escalate else "—")
    if escalate and not held_throughout:
        note += " (some LLM calls ended during the measurement)"
    return [label, note, f"{first_ms:.0f}", f"{seq['p50']:.1f}", f"{seq['p95']:.1f}", f"{seq['max']:.0f}",
            f"{loop['p50']:.1f}", f"{loop['p95']:.1f}", f"{loop['rps']:.0f}"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default="banking77", help="banking77 (../shared/datasets or $FRONTDESK_DATA) or support (bundled)")
    ap.add_argument("--deadline-s", type=float, default=20.0, help="llm.deadline_s (longer than the measurement)")
    ap.add_argument("--closed-s", type=float, default=5.0, help="seconds of the 8-client closed loop")
    ap.add_argument("--work", type=Path, default=None, help="keep the trained model here (reused next time)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="frontdesk-rel-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"model for {args.data} in {work} …", flush=True)
    model, confident, escalating = prepare(work, args.data)
    common = {"deadline_s": args.deadline_s, "closed_s": args.closed_s}
    rows = [
        run("no escalations", work, model, confident, escalating, escalate=False, concurrency=4, waiting=4, **common),
        run("50 hanging, bounded (max_concurrency 4, max_waiting 4)", work, model, confident, escalating, escalate=True,
            concurrency=4, waiting=4, **common),
        run("50 hanging, unbounded (max_concurrency 64: the old behaviour)", work, model, confident, escalating, escalate=True,
            concurrency=64, waiting=0, **common),
    ]
    cmd = f"python bench/reliability_llm.py --data {args.data} --deadline-s {args.deadline_s:g}"
    body = f"""### A hanging LLM vs the confident path (`bench/reliability_llm.py`)

{stamp(cmd)} `frontdesk serve` ({args.data} linear model, SQLite store, one uvicorn worker, 40 request
threads) with an `llm:` tier whose OpenAI-compatible server (a fake speaking the real wire protocol)
holds every request without answering. 50 escalating messages are sent at once; once the LLM tier holds
what it admits, confident messages are measured: 300 sequential requests, then 8 closed-loop clients for
{args.closed_s:g} s. `llm.deadline_s` is {args.deadline_s:g} s, longer than the bounded run's measurement, so no held call
ends during it. *First confident answer*: the first confident request sent after the escalations are held.
In the unbounded run the 50 escalations take all 40 request threads, so that request waits until the held
calls reach their deadline; the requests after it run once the threads are free again (hence the normal
percentiles). Latency in ms, measured by the client on the same 2-core machine.

{table(["run", "escalations", "first confident answer", "sequential p50", "p95", "max", "8 clients p50", "p95", "req/s"], rows)}
"""
    write_section(BENCHMARKS, "reliability-llm", body)
    print(f"wrote {BENCHMARKS}")


if __name__ == "__main__":
    main()
