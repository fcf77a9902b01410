"""Hostile-body fuzzing with hypothesis over one keep-alive connection to the real service: every answer
is < 500 with the one error body, the connection is never dropped unannounced, and every accepted
message ends in a stored decision that reads back equal.

Bounded for CI: ``FRONTDESK_FUZZ_BODIES`` requests (default 300), derandomised. ``bench/reliability.py``
runs a bigger, random campaign with the same strategies (tests/hostile_bodies.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("hypothesis")

from hostile_bodies import Probe, probes
from hypothesis import HealthCheck, given, settings
from server_harness import ADMIN_KEY, KeepAlive, Running, write_config

EXAMPLES = int(os.environ.get("FRONTDESK_FUZZ_BODIES", "300"))


@pytest.fixture()
def service(saved_model: Path, store_url: str, tmp_path: Path) -> Iterator[Running]:
    """On SQLite and on PostgreSQL: what one backend stores, the other may refuse (U+0000 in a text column)."""
    cfg = write_config(tmp_path / "frontdesk.yaml", saved_model, store_url, sinks=[],
                       gates={"linear": {"threshold": 0.5, "flag_threshold": 0.9}})  # some decisions go to review
    running = Running(cfg)
    yield running
    running.stop()


def check_answer(probe: Probe, status: int, body: bytes, store: object) -> None:
    """What every answer must satisfy; raises AssertionError naming the probe."""
    assert status < 500, f"{status} for {probe}: {body[:500]!r}"
    payload = json.loads(body)
    if status >= 400:
        err = payload["error"]
        assert set(err) == {"type", "message", "details", "request_id"} and err["message"], (probe, payload)
        assert "Traceback" not in body.decode() and ".py" not in body.decode(), (probe, payload)
    elif probe.path.startswith("/v1/route"):
        results = payload.get("results", [payload])
        for r in results:
            stored = store.get_decision(r["decision"]["id"])  # type: ignore[attr-defined]
            assert stored is not None and stored.model_dump(mode="json") == r["decision"], probe


def test_hostile_bodies_get_4xx_and_never_drop_the_connection(service: Running) -> None:
    store = service.state.store
    ids: list[str] = []
    with KeepAlive(service.port, ADMIN_KEY) as conn:
        for text in ("my card payment failed and I am confused", "where is my parcel?"):  # real ids for feedback/review
            _, _, body = conn.request("POST", "/v1/route", json_body={"text": text})
            ids.append(json.loads(body)["decision"]["id"])
        statuses: dict[int, int] = {}

        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(probe=probes(ids))
        def fuzz(probe: Probe) -> None:
            status, _, body = conn.request(probe.method, probe.path, probe.body, probe.headers)
            statuses[status] = statuses.get(status, 0) + 1
            check_answer(probe, status, body, store)
            assert conn.reconnects == 0, f"the server dropped the connection after {probe}"

        fuzz()
    assert sum(statuses.values()) >= EXAMPLES and statuses.get(200, 0) > 0 and statuses.get(422, 0) > 0, statuses
