"""The frontdesk exception hierarchy: one base error, one subclass per kind of failure.

Every error says what went wrong *and* what to do next; each carries its context as attributes
(a file path and line, a field name, a tier name) so callers can react programmatically.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


def validation_message(exc: ValidationError) -> str:
    """A pydantic validation error as one line per problem: ``field: message``."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err.get("loc", ()))
        msg = err.get("msg", "").removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


class FrontdeskError(Exception):
    """Base class of every error frontdesk raises on purpose."""


class ConfigError(FrontdeskError, ValueError):
    """A setting, policy or argument has a value frontdesk cannot use.

    ``field`` names the offending setting (e.g. ``"gate.threshold"``) when there is one.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


class DataError(FrontdeskError, ValueError):
    """A dataset file or row is unusable; ``path`` and ``line`` point at it (line is 1-based)."""

    def __init__(self, message: str, *, path: str | Path | None = None, line: int | None = None) -> None:
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)
        self.path = Path(path) if path is not None else None
        self.line = line


class InputError(FrontdeskError, ValueError):
    """A message handed to ``Router.route`` cannot be routed (not text, empty, not UTF-8)."""


class ModelError(FrontdeskError):
    """A model directory is missing, incomplete, or was saved by an incompatible version."""

    def __init__(self, message: str, *, path: str | Path | None = None) -> None:
        super().__init__(f"{path}: {message}" if path is not None else message)
        self.path = Path(path) if path is not None else None


class NotFittedError(FrontdeskError):
    """A tier or router was used before it was trained or loaded."""


class TierError(FrontdeskError):
    """A tier failed to produce scores for a message (e.g. an LLM call timed out).

    The router catches it, records ``reason`` in the trace and escalates the message; it never
    becomes a decision by itself.
    """

    def __init__(self, tier: str, reason: str) -> None:
        super().__init__(f"tier {tier!r} failed: {reason}")
        self.tier = tier
        self.reason = reason
        self.latency_ms = 0.0  # the time the failed attempt took (the trace shows it)
