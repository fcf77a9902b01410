"""The extract stage in two steps around classification: :meth:`Extractor.scan` + mask before it,
:meth:`Extractor.fields` + :meth:`Extractor.signals` after it.

``scan`` runs the label-independent detectors once, in an order where structured numbers go first
and are blanked before the next detector reads the text (an IBAN is not a phone, a card is not an
amount): e-mails → IBANs → cards → ids → phones (ISO date-times blanked) → PINs → configured PII
patterns. Its PII spans are what :class:`~frontdesk.intake.extract.pii.Masker` replaces. After
classification the label picks which fields are reported (``labels.<label>.fields``) and amounts
and dates are read from the blanked text. The third-party libraries load on first use;
:meth:`Extractor.warm_up` pays dateparser's ~0.5 s first parse at service start instead.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from frontdesk.errors import ConfigError
from frontdesk.intake.extract import amounts as _amounts
from frontdesk.intake.extract import contacts, dates, finance, ids, signals
from frontdesk.intake.extract.config import PII_FIELDS, ExtractConfig
from frontdesk.intake.extract.pii import Masker
from frontdesk.intake.extract.spans import Span, blank
from frontdesk.types import Sentiment

_LIBRARIES = ("dateparser", "price_parser", "phonenumbers", "stdnum", "text_to_num", "vaderSentiment")


def check_libraries() -> None:
    """Raise ConfigError naming the missing libraries of the extract stage and how to install them."""
    import importlib.util

    missing = [m for m in _LIBRARIES if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"the extract stage needs {', '.join(missing)}: pip install 'frontdesk[extract]' "
                          "(or set extract.enabled: false)", field="extract.enabled")


@dataclass
class Scan:
    """The label-independent part of one message's extraction."""

    text: str
    lang: str
    locale: str
    pii: list[Span] = field(default_factory=list)
    """Spans to mask (types allowed by ``extract.mask``)."""
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    """emails, phones, cards, ibans and every id field found: value → the text it was written as."""
    blanked: str = ""
    """``text`` with PII and ids blanked: what amounts and dates read."""


@dataclass
class Extraction:
    """Everything the rules path found in one message (library and benchmark use).

    ``fields`` holds the original values; ``masked_fields`` the view that may leave the process
    (PII values replaced by the placeholders of ``masked_text``).
    """

    fields: dict[str, list]
    masked_fields: dict[str, list]
    masked_text: str
    placeholders: dict[str, str]
    pii: list[Span]


class Extractor:
    """Rule fields, PII masking, sentiment and urgency for one configuration.

    ``label_fields``: ``labels.<label>.fields`` (a label not in it gets ``default_fields``);
    ``label_urgency``: ``labels.<label>.urgency`` priors.
    """

    def __init__(self, config: ExtractConfig | None = None, *, label_fields: Mapping[str, list[str]] | None = None,
                 label_urgency: Mapping[str, str] | None = None) -> None:
        self.config = config or ExtractConfig()
        self.label_fields = {k: list(v) for k, v in (label_fields or {}).items()}
        self.label_urgency = dict(label_urgency or {})
        for label, names in self.label_fields.items():
            try:
                self.config.check_fields(names, f"labels.{label}.fields")
            except ValueError as exc:
                raise ConfigError(str(exc)) from exc
        mask = self.config.mask
        types = set(mask.types) | {p.type for p in mask.patterns}
        types |= {ids.placeholder_type(n) for n, spec in self.config.ids.items() if spec.mask}
        self._mask_types = types if mask.enabled else set()
        self._field_types = {f: t for f, t in PII_FIELDS.items() if t in self._mask_types}
        self._field_types |= {n: ids.placeholder_type(n) for n, spec in self.config.ids.items() if spec.mask and mask.enabled}
        self._patterns = [(p.type, re.compile(p.pattern, re.IGNORECASE)) for p in mask.patterns]
        self._currencies = tuple(self.config.currencies)

    @property
    def masking(self) -> bool:
        """True when some PII type is masked."""
        return bool(self._mask_types)

    # -- before classification ---------------------------------------------------------------
    def scan(self, text: str, *, lang: str | None = None, locale: str | None = None) -> Scan:
        """Find the label-independent fields and the PII spans of ``text``."""
        cfg = self.config
        locale = locale or cfg.default_locale
        lang = lang or locale.split("-")[0].lower()
        found: list[Span] = []  # every detected span (blanked for later detectors)
        values: dict[str, dict[str, str]] = {}
        emails, spans = contacts.extract_emails(text)
        found += spans
        if emails:
            values["emails"] = {e: e for e in emails}
        blanked = blank(text, found)
        has_digits = _DIGIT.search(text) is not None
        if has_digits:
            strict = cfg.mask.strict
            ibans, spans = finance.extract_ibans(text, strict_mask=strict)
            found += spans
            blanked = blank(blanked, spans)
            cards, spans = finance.extract_cards(blanked, strict_mask=strict)
            found += spans
            blanked = blank(blanked, spans)
            if ibans:
                values["ibans"] = ibans
            if cards:
                values["cards"] = {c: c for c in cards}
        id_values, id_spans = ids.extract_ids(blanked, cfg.ids)
        values.update(id_values)
        blanked = blank(blanked, id_spans)
        found += id_spans
        if has_digits:
            region = contacts.region_of(locale, cfg.default_locale)
            phones, spans = contacts.extract_phones(blank(blanked, _iso_datetimes(blanked)), region, cfg.phone_fallback_regions)
            if phones:
                values["phones"] = phones
            found += spans + finance.pin_spans(text)
        found += [Span(m.start(), m.end(), kind) for kind, rx in self._patterns for m in rx.finditer(text)]
        blanked = blank(blanked, found)
        pii = [s for s in found if s.type in self._mask_types]
        return Scan(text=text, lang=lang, locale=locale, pii=pii, values=values, blanked=blanked)

    def mask(self, scan: Scan, masker: Masker | None = None) -> str:
        """The scanned text with its PII replaced by placeholders (``masker`` keeps numbering across texts)."""
        return (masker or Masker()).mask(scan.text, scan.pii) if scan.pii else scan.text

    # -- after classification ----------------------------------------------------------------
    def fields_for(self, label: str | None) -> list[str]:
        """The fields reported for ``label``."""
        return list(self.label_fields.get(label or "", self.config.default_fields))

    def fields(self, scan: Scan, label: str | None, sent_at: dt.datetime) -> dict[str, list]:
        """The fields ``label`` asks for, with their original values (amounts and dates are read here)."""
        wanted = self.fields_for(label)
        out: dict[str, list] = {}
        amount_spans: list[Span] = []
        if "amounts" in wanted or "dates" in wanted:
            found = _amounts.extract_amounts(scan.blanked, scan.lang, self._currencies, self.config.dollar, amount_spans)
            if found and "amounts" in wanted:
                out["amounts"] = found
        if "dates" in wanted:
            sent = sent_at if sent_at.tzinfo is not None else sent_at.replace(tzinfo=dt.timezone.utc)
            found_dates = dates.extract_dates(blank(scan.blanked, amount_spans), scan.lang, scan.locale, sent, self.config.prefer_dates)
            if found_dates:
                out["dates"] = found_dates
        for name in wanted:
            if name in scan.values and name not in out:
                out[name] = list(scan.values[name])
        return {name: out[name] for name in wanted if name in out}

    def masked_fields(self, fields: Mapping[str, list], scan: Scan, masker: Masker) -> dict[str, list]:
        """``fields`` as they may leave the process: masked PII values become the placeholders of the
        masked text (cards are masked values already)."""
        out: dict[str, list] = {}
        for name, values in fields.items():
            kind = self._field_types.get(name)
            if kind is None:
                out[name] = list(values)
                continue
            surfaces = scan.values.get(name, {})
            out[name] = list(dict.fromkeys(masker.placeholder(kind, surfaces.get(v, v)) for v in values))
        return out

    def signals(self, text: str, label: str | None) -> tuple[Sentiment | None, str]:
        """(sentiment, urgency) of ``text`` under ``label``."""
        tone = signals.sentiment(text, self.config.sentiment)
        level = signals.urgency(text, label, bool(tone and tone.very_negative), self.config.urgency, self.label_urgency)
        return tone, level

    # -- conveniences ------------------------------------------------------------------------
    def extract(self, text: str, label: str | None = None, sent_at: dt.datetime | None = None, *,
                locale: str | None = None, lang: str | None = None) -> Extraction:
        """Scan, mask and extract one message in one call (library and benchmark use)."""
        scan = self.scan(text, lang=lang, locale=locale)
        masker = Masker()
        masked = self.mask(scan, masker)
        fields = self.fields(scan, label, sent_at or dt.datetime.now(dt.timezone.utc))
        return Extraction(fields=fields, masked_fields=self.masked_fields(fields, scan, masker), masked_text=masked,
                          placeholders=masker.placeholders, pii=scan.pii)

    def warm_up(self) -> None:
        """Load the libraries and pay dateparser's first parse (~0.5 s) now, not on the first message."""
        check_libraries()
        now = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
        sample = "paid €5 yesterday, call 07911 123456, card 4111 1111 1111 1111, a@b.co, DE89370400440532013000"
        for loc in ("en-GB", "en-US", "de-DE", "fr-FR", "es-ES", "pt-PT"):
            self.extract(sample, None, now, locale=loc)
        self.signals("thanks, my card was stolen", None)
        dates.clear_caches()


_DIGIT = re.compile(r"\d")


def _iso_datetimes(text: str) -> list[Span]:
    return [Span(m.start(), m.end(), "") for m in contacts.ISO_DATETIME.finditer(text)]
