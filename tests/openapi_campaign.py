"""A schemathesis campaign over every operation of a running service (tests/test_fuzz_openapi.py, bench/reliability.py).

Checks: no 5xx, status codes / content types / bodies as the OpenAPI schema says, negative data
rejected. All requests share one keep-alive session, so a server error that drops the connection
fails the next case.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import hypothesis
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)
from server_harness import ADMIN_KEY

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection]


@dataclass
class Campaign:
    """What a campaign saw: requests sent, status counts, and the failures (with a sample of each kind)."""

    sent: int = 0
    statuses: Counter = field(default_factory=Counter)
    server_errors: int = 0
    resets: int = 0
    check_failures: int = 0
    samples: list[str] = field(default_factory=list)

    def fail(self, what: str) -> None:
        if len(self.samples) < 20:
            self.samples.append(what)


def run_campaign(url: str, examples: int, *, derandomize: bool = True, key: str = ADMIN_KEY) -> Campaign:
    """Fuzz every operation of the service at ``url`` with ``examples`` cases per operation and mode.

    Failures are counted, not raised, so one campaign reports them all (a sample of 20 is kept).
    """
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", headers={"Authorization": f"Bearer {key}"})
    session = requests.Session()  # one keep-alive connection: a server error that drops it shows as a reset
    auth = {"Authorization": f"Bearer {key}"}
    out = Campaign()
    for result in schema.get_all_operations():
        op = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(max_examples=examples, deadline=None, database=None, derandomize=derandomize,
                      suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
            @given(case=op.as_strategy(generation_mode=mode))
            def fuzz(case: schemathesis.Case) -> None:
                out.sent += 1
                try:
                    response = case.call(base_url=url, session=session, headers=auth, timeout=30)
                except requests.ConnectionError as exc:
                    out.resets += 1
                    out.fail(f"{op.label} [{mode.value}]: connection dropped ({exc.__class__.__name__}) for {case.body!r:.300}")
                    return
                out.statuses[response.status_code] += 1
                if response.status_code >= 500:
                    out.server_errors += 1
                checks = CHECKS if response.status_code not in (408, 413) else CHECKS[:-1]  # 413: refused, for its size
                try:
                    case.validate_response(response, checks=checks)
                except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - count every failing check, keep a sample
                    out.check_failures += 1
                    out.fail(f"{op.label} [{mode.value}]: {type(exc).__name__}: {str(exc)[:1500]}")

            try:
                fuzz()
            except hypothesis.errors.Unsatisfiable:
                continue  # no parameters to break (GET /healthz has no negative cases)
    return out
