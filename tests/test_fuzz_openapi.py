"""OpenAPI fuzzing with schemathesis against the real service on loopback: no 5xx, no dropped connection,
and every answer conforms to the published schema (status codes, content types, bodies).

Bounded for CI: ``FRONTDESK_FUZZ_EXAMPLES`` cases per operation and generation mode (default 25,
positive and negative), derandomised so a failure reproduces. ``bench/reliability.py`` runs a
bigger, random campaign.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("hypothesis")

from openapi_campaign import run_campaign
from server_harness import Running, write_config

EXAMPLES = int(os.environ.get("FRONTDESK_FUZZ_EXAMPLES", "25"))


@pytest.fixture(scope="module")
def service(saved_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("fuzz")
    running = Running(write_config(tmp / "frontdesk.yaml", saved_model, f"sqlite:///{tmp / 'store.db'}", sinks=[]))
    yield running
    running.stop()


def test_openapi_fuzzing_finds_no_server_error(service: Running) -> None:
    run = run_campaign(service.url, EXAMPLES)
    assert run.server_errors == 0 and run.resets == 0 and run.check_failures == 0, "\n\n".join(run.samples)
    assert run.sent >= 10 * EXAMPLES, run.sent
    assert run.statuses[200] > 0 and run.statuses[422] > 0 and run.statuses[400] > 0, run.statuses  # both paths reached
