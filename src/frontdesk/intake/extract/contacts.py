"""E-mail addresses (a regex) and phone numbers (libphonenumber, via ``phonenumberslite``).

Phones are E.164 strings. The region comes from the channel locale ("07911 123456" on en-GB is
+447911123456). A national number that is not valid there is tried in ``phone_fallback_regions``;
where it is valid in several ("06 12 34 56 78" is French and German), the region whose own national
format groups the digits the way the customer wrote them wins.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from frontdesk.intake.extract.spans import Span

EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
ISO_DATETIME = re.compile(r"\b\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2})?)?\b")
_PHONE_HINT = re.compile(r"(?:\+|\b)\d[\d ()./-]{6,}\d")


@functools.lru_cache(maxsize=1)
def _pn() -> Any:
    import phonenumbers

    return phonenumbers


def extract_emails(text: str) -> tuple[list[str], list[Span]]:
    """E-mail addresses as written (a set, in order) and their spans."""
    if "@" not in text:
        return [], []
    found = list(EMAIL.finditer(text))
    return list(dict.fromkeys(m.group(0) for m in found)), [Span(m.start(), m.end(), "EMAIL") for m in found]


def _groups(s: str) -> tuple[int, ...]:
    return tuple(len(g) for g in re.findall(r"\d+", s))


def region_of(locale: str, default_locale: str) -> str:
    """The phone region of a locale ('en-GB' → 'GB'); the default locale's when the locale has none."""
    for loc in (locale, default_locale):
        if "-" in loc:
            return loc.rsplit("-", 1)[1].upper()
    return "GB"


def extract_phones(text: str, region: str, fallback_regions: list[str]) -> tuple[dict[str, str], list[Span]]:
    """Phone numbers valid in ``region`` or, by grouping, in a fallback region (E.164 → the text it was
    written as; in order) and their spans.

    ``text`` should have ISO date-times, IBANs, cards and ids blanked: the matcher reads
    "2026-03-07 14:22" as a US number.
    """
    if not _PHONE_HINT.search(text):
        return {}, []
    pn = _pn()
    values: dict[str, str] = {}
    spans: list[Span] = []
    for m in pn.PhoneNumberMatcher(text, region, leniency=pn.Leniency.VALID):
        values.setdefault(pn.format_number(m.number, pn.PhoneNumberFormat.E164), m.raw_string)
        spans.append(Span(m.start, m.end, "PHONE"))
    for hint in _PHONE_HINT.finditer(text):  # national formats of another country
        if any(s < hint.end() and hint.start() < e for s, e, _ in spans) or sum(c.isdigit() for c in hint.group(0)) < 9:
            continue
        best = None
        for fallback in fallback_regions:
            if fallback == region:
                continue
            found = next(iter(pn.PhoneNumberMatcher(hint.group(0), fallback, leniency=pn.Leniency.VALID)), None)
            if found is None:
                continue
            national = pn.format_number(found.number, pn.PhoneNumberFormat.NATIONAL)
            same = _groups(national) == _groups(found.raw_string)
            if best is None or (same and not best[0]):
                best = (same, found)
            if same:
                break
        if best is not None:
            f = best[1]
            values.setdefault(pn.format_number(f.number, pn.PhoneNumberFormat.E164), f.raw_string)
            spans.append(Span(hint.start() + f.start, hint.start() + f.end, "PHONE"))
    return values, spans
