"""The one key under which two texts count as the same message.

"Where is my refund?", "  where is my REFUND " and "where\u200b is my refund…" share a key: Unicode
NFKC, invisible and control characters dropped, case-folded, whitespace collapsed, punctuation at
the edges stripped. Used to deduplicate inbound messages (per sender), training examples (retrain),
cached LLM answers and discovery clusters — one definition, so "the same text" means one thing.
"""

from __future__ import annotations

import unicodedata

from frontdesk.intake.clean import normalize_text


def _strip_edge_punctuation(text: str) -> str:
    start, end = 0, len(text)
    while start < end and unicodedata.category(text[start]).startswith("P"):
        start += 1
    while end > start and unicodedata.category(text[end - 1]).startswith("P"):
        end -= 1
    return text[start:end]


def text_key(text: str) -> str:
    """The comparison form of ``text``: normalised, case-folded, one line, no edge punctuation."""
    folded = " ".join(normalize_text(text).casefold().split())
    return _strip_edge_punctuation(folded).strip()
