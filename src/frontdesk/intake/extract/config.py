"""The ``extract:`` section of frontdesk.yaml: rule fields, PII masking, sentiment and urgency.

Every key is a validated pydantic field; an invalid value is a :class:`~frontdesk.errors.ConfigError`
that names it (``extract.ids.order_ids.pattern: …``). Per-label choices (which fields, the urgency
prior, the LLM extraction schema, the action) live under ``labels.<label>`` in
:class:`frontdesk.config.LabelConfig`.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Urgency = Literal["low", "normal", "high", "critical"]
URGENCY_LEVELS: tuple[str, ...] = ("low", "normal", "high", "critical")
PiiType = Literal["EMAIL", "PHONE", "CARD", "IBAN", "PIN"]
RULE_FIELDS: tuple[str, ...] = ("amounts", "dates", "emails", "phones", "cards", "ibans")
"""The built-in rule fields; id fields are added by ``extract.ids``."""
PII_FIELDS: dict[str, str] = {"emails": "EMAIL", "phones": "PHONE", "ibans": "IBAN"}
"""Rule fields whose values are PII (stored as placeholders unless ``store_pii``); cards are always masked."""

_LOCALE = re.compile(r"^[a-z]{2,3}(?:-[A-Z]{2})?$")
_TYPE = re.compile(r"^[A-Z][A-Z0-9_]{0,30}$")


def _compile(pattern: str, *, need_id: bool = False) -> str:
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression ({exc}): fix the pattern") from exc
    if need_id and "id" not in rx.groupindex:
        raise ValueError("the pattern needs a named group (?P<id>…) that holds the id")
    return pattern


class IdField(BaseModel):
    """An id field found by a regex: the value is ``prefix + (?P<id>…)`` in upper case.

    ``min_digits`` drops matches with fewer digits ("order status" is not an order id).
    ``mask: true`` also treats the id as PII (``<ORDER_ID_1>``), e.g. a customer number.
    """

    model_config = ConfigDict(extra="forbid")

    pattern: str = Field(description="regex (case-insensitive) with a named group 'id'")
    prefix: str = Field("", description="prepended to the matched id, e.g. 'CS-'")
    min_digits: int = Field(0, ge=0, description="matches with fewer digits are ignored")
    mask: bool = Field(False, description="also mask this id as PII before any text leaves the process")

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str) -> str:
        return _compile(value, need_id=True)


class MaskPattern(BaseModel):
    """Extra PII to mask, e.g. ``{type: CUSTOMER_ID, pattern: '\\bCU-\\d{8}\\b'}`` → ``<CUSTOMER_ID_1>``."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(description="placeholder type in upper case (A-Z, 0-9, _)")
    pattern: str = Field(description="regex (case-insensitive); the whole match is masked")

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        if not _TYPE.match(value):
            raise ValueError(f"{value!r} is not a placeholder type: use upper case letters, digits and _ (e.g. CUSTOMER_ID)")
        return value

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str) -> str:
        return _compile(value)


class MaskConfig(BaseModel):
    """PII masking: what is replaced by typed, numbered placeholders (``<EMAIL_1>``) before any LLM call,
    sink, webhook or log sees the text."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="mask PII before classification; off = tiers, LLM and sinks see raw text")
    types: list[PiiType] = Field(default_factory=lambda: ["EMAIL", "PHONE", "CARD", "IBAN", "PIN"],
                                 description="built-in PII types to mask")
    strict: bool = Field(True, description="also mask card- and IBAN-shaped numbers whose checksum fails (a typo is "
                         "still the customer's number); they never become fields")
    patterns: list[MaskPattern] = Field(default_factory=list, description="extra PII patterns, masked as <TYPE_n>")


class SentimentConfig(BaseModel):
    """Sentiment from VADER's English lexicon plus support-domain cues (no model download, no LLM)."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["vader", "none"] = Field("vader", description="vader: lexicon + cues; none: no sentiment")
    very_negative_below: float = Field(-0.75, ge=-1.0, le=0.0, description="VADER compound at or below this is very negative")
    lexicon: dict[str, float] = Field(default_factory=dict, description="extra or overriding VADER words (-4 … +4)")

    @field_validator("lexicon")
    @classmethod
    def _lexicon(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {w: v for w, v in value.items() if not -4.0 <= v <= 4.0}
        if bad:
            raise ValueError(f"VADER valences are between -4 and 4, got {bad}")
        return value


class UrgencyConfig(BaseModel):
    """Urgency = the label's prior (``labels.<label>.urgency``, else ``default``) raised by cue words."""

    model_config = ConfigDict(extra="forbid")

    default: Urgency = Field("normal", description="prior of a label without labels.<label>.urgency")
    cues: bool = Field(True, description="raise urgency on built-in cues (stolen + block, 'right now', lawyer, abroad …)")
    keywords: dict[Urgency, list[str]] = Field(
        default_factory=dict, description="extra words or phrases (case-insensitive, whole words) that raise urgency "
        "to at least that level, e.g. {high: [chargeback]}")

    @field_validator("keywords")
    @classmethod
    def _keywords(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for level, words in value.items():
            empty = [w for w in words if not str(w).strip()]
            if empty:
                raise ValueError(f"keywords.{level} has an empty entry")
        return value


def _default_ids() -> dict[str, IdField]:
    return {
        "order_ids": IdField(
            pattern=r"\b(?:order|bestellung|commande|pedido|encomenda)\s*(?:no\.?|nr\.?|number|id|ref(?:erence)?)?\s*[:#]?\s*#?"
                    r"(?P<id>[A-Z0-9]+(?:-[A-Z0-9]+)*)",
            min_digits=3,
        ),
        "tracking_ids": IdField(pattern=r"\b(?P<id>[A-Z]{2}\d{9}[A-Z]{2})\b"),
    }


class ExtractConfig(BaseModel):
    """The extract stage: rule fields on every message, PII masking, sentiment and urgency.

    ``store_pii: false`` (default): the stored decision keeps only masked text, and PII fields
    (e-mails, phones, IBANs) as their placeholders; ``true`` keeps the original text and values.
    Card numbers are always stored masked (``**** **** **** 1234``).
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="run the stage (needs: pip install 'frontdesk[extract]')")
    store_pii: bool = Field(False, description="keep the original text and unmasked PII fields in the stored decision")
    default_locale: str = Field("en-GB", description="channel locale when the message has none (metadata.locale): "
                                "date order (…-US: month first, else day first) and phone region")
    phone_fallback_regions: list[str] = Field(
        default_factory=lambda: ["GB", "DE", "FR", "ES", "PT", "IE", "NL", "IT", "CH", "US"],
        description="regions tried, in order, for a national number not valid in the locale's region")
    currencies: list[str] = Field(
        default_factory=lambda: ["EUR", "GBP", "USD", "CHF", "PLN", "CZK", "HUF", "SEK", "NOK", "DKK", "JPY", "BRL", "CAD",
                                 "AUD", "RON"],
        description="ISO 4217 codes read as currencies when written as codes ('EUR 40')")
    dollar: str = Field("USD", description="what a bare '$', 'dollars' or 'bucks' means")
    prefer_dates: Literal["past", "current_period", "future"] = Field(
        "past", description="how an incomplete date resolves ('the 5th', 'Friday'); a future cue before it "
        "('by', 'until', 'flying on') switches that date to future")
    default_fields: list[str] = Field(
        default_factory=lambda: [*RULE_FIELDS, "order_ids"],
        description="fields of a label without labels.<label>.fields")
    ids: dict[str, IdField] = Field(default_factory=_default_ids, description="id fields by name, added to the built-in "
                                    "order_ids and tracking_ids (same name: replaces it; null: removes it)")
    mask: MaskConfig = Field(default_factory=MaskConfig)
    sentiment: SentimentConfig = Field(default_factory=SentimentConfig)
    urgency: UrgencyConfig = Field(default_factory=UrgencyConfig)

    @field_validator("default_locale")
    @classmethod
    def _locale(cls, value: str) -> str:
        if not _LOCALE.match(value):
            raise ValueError(f"{value!r} is not a locale: use language-REGION such as en-GB, de-DE, en-US")
        return value

    @field_validator("phone_fallback_regions")
    @classmethod
    def _regions(cls, value: list[str]) -> list[str]:
        bad = [r for r in value if not re.fullmatch(r"[A-Z]{2}", r)]
        if bad:
            raise ValueError(f"not ISO 3166 region codes: {bad} (use upper case, e.g. GB, DE)")
        return value

    @field_validator("currencies")
    @classmethod
    def _currencies(cls, value: list[str]) -> list[str]:
        bad = [c for c in value if not re.fullmatch(r"[A-Z]{3}", c)]
        if bad:
            raise ValueError(f"not ISO 4217 codes: {bad} (three upper-case letters, e.g. EUR)")
        return value

    @field_validator("dollar")
    @classmethod
    def _dollar(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Z]{3}", value):
            raise ValueError(f"{value!r} is not an ISO 4217 code (e.g. USD, CAD, AUD)")
        return value

    @field_validator("ids", mode="before")
    @classmethod
    def _merge_ids(cls, value: object) -> object:
        if not isinstance(value, dict):
            return value
        merged: dict[str, object] = dict(_default_ids())
        for name, spec in value.items():
            if spec is None:
                merged.pop(name, None)
            else:
                merged[name] = spec
        return merged

    @field_validator("ids")
    @classmethod
    def _id_names(cls, value: dict[str, IdField]) -> dict[str, IdField]:
        clash = sorted(set(value) & set(RULE_FIELDS))
        if clash:
            raise ValueError(f"id field names {clash} clash with built-in fields: rename them")
        bad = [n for n in value if not re.fullmatch(r"[a-z][a-z0-9_]*", n)]
        if bad:
            raise ValueError(f"id field names must be lower_snake_case, got {bad}")
        return value

    @model_validator(mode="after")
    def _fields_known(self) -> ExtractConfig:
        self.check_fields(self.default_fields, "default_fields")
        return self

    @property
    def known_fields(self) -> tuple[str, ...]:
        """Every field a label may ask for: the built-in ones and the configured ids."""
        return (*RULE_FIELDS, *self.ids)

    def check_fields(self, fields: list[str], where: str) -> None:
        """Raise ValueError naming ``where`` when ``fields`` lists an unknown field."""
        unknown = [f for f in fields if f not in self.known_fields]
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {unknown}; known: {', '.join(self.known_fields)} "
                             "(add id fields under extract.ids)")
