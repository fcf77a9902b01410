"""Card numbers, IBANs and PINs: strict fields, generous masking.

A card field is a 13–19-digit PAN in a card-style grouping that passes the Luhn check, stored only
masked (``**** **** **** 1234``), plus masked references ("card ending in 4532", "**** 1234"). An
IBAN field passes its country's length and mod-97 check (compact, upper case). python-stdnum does
both checks (LGPL-2.1+, used unmodified as a dependency). For *masking*, a card- or IBAN-shaped
number that fails its checksum is still the customer's (mistyped) number and is masked too; a PIN
("my PIN was 4471") is masked and never a field.
"""

from __future__ import annotations

import re

from frontdesk.intake.extract.spans import Span

IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,31}", re.IGNORECASE)
CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
_CARD_GROUPS = {(4, 4, 4, 4), (4, 6, 5), (4, 6, 4), (4, 4, 4, 4, 3), (4, 4, 4, 3), (4, 4, 4, 2), (4, 4, 4, 1), (4, 4, 5)}
MASKED_CARD = re.compile(
    r"(?i)(?:\b(?:card\s+)?(?:ending|ends?)\s+(?:in\s+|with\s+|on\s+)?|\blast\s+(?:four|4)(?:\s+digits)?\s*[:\-]?\s*"
    r"|\bendet\s+auf\s+|\bse\s+terminant\s+par\s+|\bterminad[ao]\s+en\s+|\bterminado\s+em\s+"
    r"|(?:[*xX•]{4}[\s-]*){1,3}|\*{2,}\s*)(\d{4})\b"
)
PIN = re.compile(r"\b(?:PIN|Pin)\b(?:\s+(?:is|was|code|number|no\.?))?\s*[:=]?\s*(\d{4,6})\b"
                 r"|\b(?:use|set)\s+(\d{4})\b(?=\s+(?:as|like|for)\b)")


def masked_card(last4: str) -> str:
    """How a card number is stored: only its last four digits."""
    return f"**** **** **** {last4}"


def extract_ibans(text: str, *, strict_mask: bool = True) -> tuple[dict[str, str], list[Span]]:
    """Valid IBANs (compact, upper case → the text it was written as; in order) and the spans to mask
    (with ``strict_mask`` also the IBAN-shaped runs whose checksum fails)."""
    from stdnum import iban

    values: dict[str, str] = {}
    spans: list[Span] = []
    for m in IBAN.finditer(text):
        cand = m.group(0)
        compact = re.sub(r"\s", "", cand).upper()
        hit = next((n for n in range(len(compact), 14, -1) if iban.is_valid(compact[:n])), None)
        if hit is None:
            if strict_mask:
                tokens = cand.split(" ")
                while tokens and not re.search(r"\d", tokens[-1]):
                    tokens.pop()
                if sum(c.isdigit() for c in "".join(tokens)) >= 10:
                    spans.append(Span(m.start(), m.start() + len(" ".join(tokens)), "IBAN"))
            continue
        count, end = 0, m.start()
        for i, ch in enumerate(cand):  # the end of the valid prefix in the text as written
            if not ch.isspace():
                count += 1
            if count == hit:
                end = m.start() + i + 1
                break
        values.setdefault(compact[:hit], text[m.start():end])
        spans.append(Span(m.start(), end, "IBAN"))
    return values, spans


def extract_cards(text: str, *, strict_mask: bool = True) -> tuple[list[str], list[Span]]:
    """Card fields (masked; a set): Luhn-valid PANs and masked references; and the PAN spans to mask
    (with ``strict_mask`` also Luhn-failing card-shaped numbers)."""
    from stdnum import luhn

    values: list[str] = []
    spans: list[Span] = []
    for m in CARD.finditer(text):
        raw = m.group(0).rstrip(" -")
        digits = re.sub(r"\D", "", raw)
        groups = tuple(len(g) for g in re.split(r"[ -]", raw))
        if not (13 <= len(digits) <= 19 and digits[0] in "23456" and (len(groups) == 1 or groups in _CARD_GROUPS)):
            continue
        valid = luhn.is_valid(digits)
        if valid or strict_mask:
            spans.append(Span(m.start(), m.start() + len(raw), "CARD"))
        if valid and (v := masked_card(digits[-4:])) not in values:
            values.append(v)
    for m in MASKED_CARD.finditer(text):
        if (v := masked_card(m.group(1))) not in values:
            values.append(v)
    return values, spans


def pin_spans(text: str) -> list[Span]:
    """PINs the customer wrote ("my PIN was 4471", "use 1990 as my PIN"): PII, never a field."""
    out = []
    for m in PIN.finditer(text):
        g = 1 if m.group(1) else 2
        out.append(Span(m.start(g), m.end(g), "PIN"))
    return out
