"""Character spans found in a message, and the two operations the detectors share on them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple


class Span(NamedTuple):
    """``text[start:end]`` is a value of ``type`` (``EMAIL``, ``CARD``, ``AMOUNT`` …)."""

    start: int
    end: int
    type: str


def blank(text: str, spans: Iterable[Span]) -> str:
    """``text`` with every span overwritten by ``#`` (same length, so offsets stay valid).

    Detectors run on the blanked text so a number already taken (an IBAN, a card) is not read again
    as a phone, a date or an amount.
    """
    chars = list(text)
    for s, e, _ in spans:
        chars[s:e] = "#" * (e - s)
    return "".join(chars)


def non_overlapping(spans: Iterable[Span]) -> list[Span]:
    """Spans sorted by start; where two overlap, the earlier (then the longer) one wins."""
    kept: list[Span] = []
    for s in sorted(set(spans), key=lambda x: (x.start, -(x.end - x.start))):
        if kept and s.start < kept[-1].end:
            continue
        kept.append(s)
    return kept
