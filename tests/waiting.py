"""Wait on a condition with a deadline — the one polling helper of the tests (never a bare sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(condition: Callable[[], object], timeout: float = 20.0, what: str = "condition") -> None:
    """Poll ``condition()`` until it is true; fail with ``what`` after ``timeout`` seconds (a bound on a hang,
    not a latency check)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)
