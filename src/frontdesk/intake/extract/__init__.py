"""The extract stage: rule fields, PII masking, sentiment and urgency (classify → **extract** → act).

* :class:`Extractor` — ``scan`` + ``mask`` right after preprocessing (so the LLM tier, sinks and logs
  only see ``<EMAIL_1>``-style placeholders), ``fields`` + ``signals`` after classification (the label
  picks the id fields and the urgency prior).
* :class:`ExtractConfig` — the ``extract:`` section of frontdesk.yaml.
* :mod:`~frontdesk.intake.extract.llm_fields` — the LLM tier's per-label extraction schema and its
  validation (one call with the label answer, never a second one).

The field libraries (dateparser, price-parser, phonenumberslite, python-stdnum, text2num,
vaderSentiment; ``pip install 'frontdesk[extract]'``) are imported on first use.
"""

from __future__ import annotations

from frontdesk.intake.extract.config import (
    PII_FIELDS,
    RULE_FIELDS,
    URGENCY_LEVELS,
    ExtractConfig,
    IdField,
    MaskConfig,
    MaskPattern,
    SentimentConfig,
    UrgencyConfig,
)
from frontdesk.intake.extract.extractor import Extraction, Extractor, Scan, check_libraries
from frontdesk.intake.extract.pii import Masker, mask, unmask
from frontdesk.intake.extract.spans import Span

__all__ = [
    "PII_FIELDS",
    "RULE_FIELDS",
    "URGENCY_LEVELS",
    "ExtractConfig",
    "Extraction",
    "Extractor",
    "IdField",
    "MaskConfig",
    "MaskPattern",
    "Masker",
    "Scan",
    "SentimentConfig",
    "Span",
    "UrgencyConfig",
    "check_libraries",
    "mask",
    "unmask",
]
