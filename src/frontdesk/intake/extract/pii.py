"""PII masking: replace PII spans with typed, numbered placeholders before text leaves the process.

``<EMAIL_1>``, ``<PHONE_2>``, ``<CARD_1>``, ``<IBAN_1>``, ``<PIN_1>`` or a configured type
(``<CUSTOMER_ID_1>``). Numbers count from 1 per type in order of appearance; the same value
(compared without punctuation and case) keeps its number, so "a@b.com or A@B.com" becomes
"<EMAIL_1> or <EMAIL_1>" and a reader (or an LLM) can still tell two different cards apart. One
:class:`Masker` can mask several texts of one message (the cleaned text and the raw original) with
the same numbering. The placeholder map stays in the process; it is stored only with ``store_pii``.

The detectors are our own pattern recognizers in Presidio's style (regex candidates checked with
the field libraries: Luhn, IBAN mod-97, libphonenumber), see :mod:`frontdesk.intake.extract.scan`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from frontdesk.intake.extract.spans import Span, non_overlapping

PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]*)_(\d+)>")


def _key(kind: str, value: str) -> tuple[str, str]:
    return kind, re.sub(r"\W", "", value).casefold()


class Masker:
    """Numbers placeholders per type and value across every text it masks (one message)."""

    def __init__(self) -> None:
        self.placeholders: dict[str, str] = {}
        """``"<EMAIL_1>"`` → the first original value it replaced."""
        self._by_value: dict[tuple[str, str], str] = {}
        self._counts: dict[str, int] = {}

    def placeholder(self, kind: str, value: str) -> str:
        """The placeholder of ``value`` (a new number for a value not seen yet)."""
        key = _key(kind, value)
        found = self._by_value.get(key)
        if found is None:
            self._counts[kind] = self._counts.get(kind, 0) + 1
            found = self._by_value[key] = f"<{kind}_{self._counts[kind]}>"
            self.placeholders[found] = value
        return found

    def mask(self, text: str, spans: Iterable[Span]) -> str:
        """``text`` with each span replaced by its placeholder (overlaps: the earlier, longer span wins)."""
        kept = non_overlapping(spans)
        names = [self.placeholder(kind, text[s:e]) for s, e, kind in kept]  # numbered in reading order
        out = text
        for (s, e, _), name in zip(reversed(kept), reversed(names)):
            out = out[:s] + name + out[e:]
        return out


def mask(text: str, spans: Iterable[Span]) -> tuple[str, dict[str, str]]:
    """Mask ``text`` on its own: ``(masked_text, {"<EMAIL_1>": "a@b.com", …})``."""
    masker = Masker()
    return masker.mask(text, spans), masker.placeholders


def unmask(value: Any, placeholders: Mapping[str, str]) -> Any:
    """Put the originals back into a string, or into the strings of a JSON-like value (lists, dicts)."""
    if isinstance(value, str):
        return PLACEHOLDER.sub(lambda m: placeholders.get(m.group(0), m.group(0)), value) if "<" in value else value
    if isinstance(value, list):
        return [unmask(v, placeholders) for v in value]
    if isinstance(value, dict):
        return {k: unmask(v, placeholders) for k, v in value.items()}
    return value
