"""Id fields by configured patterns (``extract.ids``): order, ticket and tracking numbers …

Each pattern has a named group ``id``; the value is ``prefix + id`` in upper case ("cs 204871" →
"CS-204871"). Which ids a message gets depends on its label (``labels.<label>.fields``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

from frontdesk.intake.extract.config import IdField
from frontdesk.intake.extract.spans import Span


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


def placeholder_type(name: str) -> str:
    """The PII placeholder type of an id field: ``order_ids`` → ``ORDER_ID``."""
    return name.upper().removesuffix("S")


def extract_ids(text: str, ids: Mapping[str, IdField], names: set[str] | None = None
                ) -> tuple[dict[str, dict[str, str]], list[Span]]:
    """Values per id field (value → the text it was written as; in order) and every matched id span
    (type = placeholder type).

    ``names`` limits which id fields are read (None: all).
    """
    out: dict[str, dict[str, str]] = {}
    spans: list[Span] = []
    for name, spec in ids.items():
        if names is not None and name not in names:
            continue
        for m in _compiled(spec.pattern).finditer(text):
            raw = m.group("id")
            if raw is None or sum(c.isdigit() for c in raw) < spec.min_digits:
                continue
            out.setdefault(name, {}).setdefault((spec.prefix + raw).upper(), raw)
            spans.append(Span(m.start("id"), m.end("id"), placeholder_type(name)))
    return out, spans
