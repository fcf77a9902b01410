"""The extract stage's rules path, one field family at a time, with the tricky cases.

Pure functions on hand-written messages (no service): amounts, dates, contacts, cards/IBANs/PINs,
ids, PII masking, sentiment/urgency, and config errors that name the field.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from frontdesk import ConfigError
from frontdesk.config import parse_config
from frontdesk.intake.extract import ExtractConfig, Extractor, Masker, mask, unmask
from frontdesk.intake.extract.spans import Span

FRI = dt.datetime(2026, 3, 6, 9, 14, tzinfo=dt.timezone.utc)  # a Friday
BANK = Path(__file__).resolve().parents[1] / "bench" / "data" / "extract"


@pytest.fixture(scope="module")
def ex() -> Extractor:
    """The benchmark's bank configuration (CS-123456 tickets; card-delivery labels read tracking ids)."""
    raw = yaml.safe_load((BANK / "banking77.yaml").read_text())
    cfg = parse_config({"model": ".", **raw})
    return Extractor(cfg.extract, label_fields={k: v.fields for k, v in cfg.labels.items() if v.fields},
                     label_urgency={k: v.urgency for k, v in cfg.labels.items() if v.urgency})


def fields(ex: Extractor, text: str, label: str | None = None, sent: dt.datetime = FRI, locale: str = "en-GB") -> dict:
    return ex.extract(text, label, sent, locale=locale, lang=locale.split("-")[0]).fields


# -- amounts ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "locale", "amounts"),
    [
        ("I sent €1.234,50 yesterday", "en-GB", [("1234.50", "EUR")]),
        ("paid 1 234,50 € hier", "fr-FR", [("1234.50", "EUR")]),
        ("paid €50 and was charged £46.20", "en-GB", [("50.00", "EUR"), ("46.20", "GBP")]),  # two amounts
        ("I transferred twenty euros", "en-GB", [("20.00", "EUR")]),
        ("CHF 1'250.00 were taken", "de-CH", [("1250.00", "CHF")]),
        ("a £1.5k payment", "en-GB", [("1500.00", "GBP")]),
        ("¥12,000 in Tokyo", "en-GB", [("12000", "JPY")]),  # JPY has no minor unit
        ("only 50p left", "en-GB", [("0.50", "GBP")]),
        ("refund of $1,234.56 please", "en-US", [("1234.56", "USD")]),
        ("$1.5... sorry, $1,500", "en-US", [("1.50", "USD"), ("1500.00", "USD")]),  # a correction: both
        ("paid EUR 40 twice: EUR 40 and eur 40", "en-GB", [("40.00", "EUR")]),  # a set
    ],
)
def test_amounts(ex: Extractor, text: str, locale: str, amounts: list[tuple[str, str]]) -> None:
    assert [(a["value"], a["currency"]) for a in fields(ex, text, locale=locale).get("amounts", [])] == amounts


@pytest.mark.parametrize("text", [
    "I have iOS 17.2, 2 cards, order 123456 and I'm 17, in 2025",
    "what is this payment of 12.99?",  # no currency marker: not an amount
    "the rate was 1.08 and the fee 3%",
    "call me on 07911 123456",
    "top up failed, amount 40, max 1000",
])
def test_numbers_that_are_not_amounts(ex: Extractor, text: str) -> None:
    assert "amounts" not in fields(ex, text)


# -- dates --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "locale", "dates"),
    [
        ("paid on 3/4", "en-GB", ["2025-04-03"]),  # day first outside the US; a future date → last year
        ("paid on 3/4", "en-US", ["2026-03-04"]),  # month first on a US channel
        ("the charge on 5/13 is wrong", "en-GB", []),  # no 13th month in the locale's order: never swapped
        ("topped up last Friday", "en-GB", ["2026-02-27"]),  # strictly before the sent date
        ("sent 3 days ago", "en-GB", ["2026-03-03"]),
        ("sent a couple of days ago", "en-GB", ["2026-03-04"]),
        ("charged on the 5th", "en-GB", ["2026-03-05"]),
        ("charged on the 28th", "en-GB", ["2026-02-28"]),  # dateparser alone says 2026-03-28
        ("24/7 support is a joke, iOS 17.2", "en-GB", []),
        ("card expires 04/26", "en-GB", []),
        ("last week something happened, in January too", "en-GB", []),  # periods, not days
        ("every month on the 1st they charge me", "en-GB", []),  # recurring
        ("Ich habe am 27.6. überwiesen", "de-DE", ["2025-06-27"]),
        ("il y a 10 jours", "fr-FR", ["2026-02-24"]),
        ("I need it before the 20th of March", "en-GB", ["2026-03-20"]),  # a future cue
        ("the transfer on Weds and the one last Sat", "en-GB", ["2026-03-04", "2026-02-28"]),
        ("paid €24 on 2026-02-11", "en-GB", ["2026-02-11"]),
    ],
)
def test_dates(ex: Extractor, text: str, locale: str, dates: list[str]) -> None:
    assert fields(ex, text, locale=locale).get("dates", []) == dates


def test_relative_dates_use_the_senders_local_day(ex: Extractor) -> None:
    late = dt.datetime(2026, 4, 1, 0, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))  # still 31 March in UTC
    assert fields(ex, "sent yesterday", sent=late)["dates"] == ["2026-03-31"]
    assert fields(ex, "sent yesterday", sent=late.astimezone(dt.timezone.utc))["dates"] == ["2026-03-30"]


def test_amounts_are_not_read_as_dates(ex: Extractor) -> None:
    f = fields(ex, "€50 on 3/4 and £40")
    assert f["dates"] == ["2025-04-03"] and len(f["amounts"]) == 2


# -- contacts, cards, IBANs, PINs ---------------------------------------------------------------
def test_phones_in_national_and_international_formats(ex: Extractor) -> None:
    assert fields(ex, "call 07911 123456")["phones"] == ["+447911123456"]
    assert fields(ex, "call +44 (0)7400 123456 or 0044 7911 123456")["phones"] == ["+447400123456", "+447911123456"]
    assert fields(ex, "Rückruf 0151 12345678", locale="de-DE")["phones"] == ["+4915112345678"]
    assert fields(ex, "my French number 06 12 34 56 78")["phones"] == ["+33612345678"]  # fallback region by grouping
    assert fields(ex, "(415) 555-0132", locale="en-US")["phones"] == ["+14155550132"]
    assert "phones" not in fields(ex, "Payment at 2026-03-07 14:22, sort code 20-00-00, account 55779911")


def test_emails(ex: Extractor) -> None:
    assert fields(ex, "write to Jane.Doe+bank@mail.example.co.uk or jane@x.io.")["emails"] == [
        "Jane.Doe+bank@mail.example.co.uk", "jane@x.io"]


def test_cards_are_luhn_checked_and_stored_masked(ex: Extractor) -> None:
    f = fields(ex, "card 4111 1111 1111 1111, my old one ending in 4532, typo 4111 1111 1111 1112, PIN 1234")
    assert f["cards"] == ["**** **** **** 1111", "**** **** **** 4532"]  # the Luhn-failing number is no field
    assert fields(ex, "the card **** 0392 and xxxx-1234")["cards"] == ["**** **** **** 0392", "**** **** **** 1234"]


def test_ibans_with_spaces_case_and_bad_checksums(ex: Extractor) -> None:
    assert fields(ex, "to DE89 3704 0044 0532 0130 00 please")["ibans"] == ["DE89370400440532013000"]
    assert fields(ex, "to gb29nwbk60161331926819")["ibans"] == ["GB29NWBK60161331926819"]
    assert "ibans" not in fields(ex, "to DE89 3704 0044 0532 0130 01 please")


def test_ids_follow_the_label_config(ex: Extractor) -> None:
    assert fields(ex, "order #114-3941689-8772232", label="request_refund")["order_ids"] == ["114-3941689-8772232"]
    assert fields(ex, "ticket cs 204871 and CS-204871")["ticket_ids"] == ["CS-204871"]
    f = fields(ex, "Order reference RB123456785GB", label="get_physical_card")
    assert f.get("tracking_ids") == ["RB123456785GB"] and "order_ids" not in f
    assert "order_ids" not in fields(ex, "what is my order status?", label="request_refund")  # min_digits


# -- PII masking --------------------------------------------------------------------------------
def test_masking_typed_numbered_placeholders_and_strict_cards(ex: Extractor) -> None:
    text = ("Mail a@b.com or A@B.com, call 07911 123456, card 4111 1111 1111 1112, IBAN DE89370400440532013000, "
            "PIN 4471, other mail c@d.org")
    got = ex.extract(text, None, FRI, locale="en-GB")
    assert got.masked_text == ("Mail <EMAIL_1> or <EMAIL_1>, call <PHONE_1>, card <CARD_1>, IBAN <IBAN_1>, PIN <PIN_1>, "
                               "other mail <EMAIL_2>")
    assert got.placeholders["<PHONE_1>"] == "07911 123456" and got.placeholders["<CARD_1>"] == "4111 1111 1111 1112"
    assert unmask(got.masked_text, got.placeholders) == text.replace("A@B.com", "a@b.com")
    # the fields' masked view uses the same placeholders; cards keep their masked value
    assert got.masked_fields["emails"] == ["<EMAIL_1>", "<EMAIL_2>"] and got.masked_fields["phones"] == ["<PHONE_1>"]
    assert got.fields["phones"] == ["+447911123456"] and got.masked_fields["ibans"] == ["<IBAN_1>"]


def test_one_masker_numbers_consistently_across_texts() -> None:
    m = Masker()
    assert m.mask("a@b.com and c@d.com", [Span(0, 7, "EMAIL"), Span(12, 19, "EMAIL")]) == "<EMAIL_1> and <EMAIL_2>"
    assert m.mask("from C@D.com", [Span(5, 12, "EMAIL")]) == "from <EMAIL_2>"
    assert mask("x 12 y", [Span(2, 4, "PIN"), Span(2, 3, "PIN")])[0] == "x <PIN_1> y"  # overlap: the longer wins


def test_configured_patterns_and_masked_ids_are_pii() -> None:
    cfg = ExtractConfig(mask={"patterns": [{"type": "CUSTOMER_ID", "pattern": r"\bCU-\d{8}\b"}]},
                        ids={"member_ids": {"pattern": r"\bmember\s+(?P<id>\d{6})\b", "mask": True}},
                        default_fields=["member_ids", "order_ids"])
    assert set(cfg.ids) == {"order_ids", "tracking_ids", "member_ids"}  # added to the built-in ids
    got = Extractor(cfg).extract("I am CU-12345678, member 123456, order 55123", None, FRI)
    assert got.masked_text == "I am <CUSTOMER_ID_1>, member <MEMBER_ID_1>, order 55123"
    assert got.fields == {"member_ids": ["123456"], "order_ids": ["55123"]}
    assert got.masked_fields == {"member_ids": ["<MEMBER_ID_1>"], "order_ids": ["55123"]}
    assert "tracking_ids" not in ExtractConfig(ids={"tracking_ids": None}).ids


def test_masking_can_be_switched_off_by_type() -> None:
    got = Extractor(ExtractConfig(mask={"types": ["EMAIL"]})).extract("a@b.com 07911 123456", None, FRI)
    assert got.masked_text == "<EMAIL_1> 07911 123456" and got.masked_fields["phones"] == ["+447911123456"]
    off = Extractor(ExtractConfig(mask={"enabled": False})).extract("a@b.com", None, FRI)
    assert off.masked_text == "a@b.com" and off.masked_fields["emails"] == ["a@b.com"]


def test_corpus_pii_is_masked_without_leaks(ex: Extractor) -> None:
    """Every gold PII span of the extraction corpus (99) and held-out file (27) is inside a masked span."""
    leaks = []
    for name in ("extraction_corpus.jsonl", "extraction_holdout.jsonl"):
        for line in (BANK / name).read_text().splitlines():
            row = json.loads(line)
            got = ex.extract(row["text"], row["label"], dt.datetime.fromisoformat(row["sent_at"]), locale=row["locale"])
            leaks += [(p["surface"], got.masked_text) for p in row["pii"] if p["surface"] in got.masked_text]
    assert leaks == []


# -- sentiment and urgency ----------------------------------------------------------------------
def test_signals(ex: Extractor) -> None:
    assert ex.signals("My card was stolen, please block it.", "lost_or_stolen_card")[1] == "critical"
    assert ex.signals("thanks for the great app! my card was stolen, could you block it?", None)[1] == "critical"
    assert ex.signals("I can't find my card, may have left it at the restaurant", "lost_or_stolen_card")[1] == "high"
    assert ex.signals("Is your card Visa or Mastercard?", "visa_or_mastercard")[1] == "low"
    tone, level = ex.signals("WHERE IS MY MONEY??? I SENT IT A WEEK AGO!!!", "transfer_not_received_by_recipient")
    assert tone is not None and tone.label == "negative" and tone.very_negative and level == "high"
    assert ex.signals("How do I change my PIN?", "change_pin")[0].label == "neutral"
    assert ex.signals("Thanks a lot, that worked perfectly!", None)[0].label == "positive"


def test_urgency_keywords_and_sentiment_off() -> None:
    cfg = ExtractConfig(urgency={"default": "low", "keywords": {"critical": ["chargeback"]}}, sentiment={"method": "none"})
    x = Extractor(cfg)
    assert x.signals("I will file a chargeback", None) == (None, "critical")
    assert x.signals("how do fees work", None) == (None, "low")


# -- configuration errors name the field --------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"extract": {"default_locale": "english"}}, "extract.default_locale"),
        ({"extract": {"ids": {"order_ids": {"pattern": "order (\\d+)"}}}}, "extract.ids.order_ids.pattern"),
        ({"extract": {"ids": {"order_ids": {"pattern": "(?P<id>"}}}}, "not a valid regular expression"),
        ({"extract": {"mask": {"types": ["EMAIL", "SSN"]}}}, "extract.mask.types"),
        ({"extract": {"mask": {"patterns": [{"type": "cust", "pattern": "x"}]}}}, "extract.mask.patterns.0.type"),
        ({"extract": {"currencies": ["euro"]}}, "extract.currencies"),
        ({"extract": {"default_fields": ["amounts", "iban"]}}, "default_fields: unknown field(s) ['iban']"),
        ({"extract": {"urgency": {"default": "asap"}}}, "extract.urgency.default"),
        ({"extract": {"sentiment": {"lexicon": {"meh": 9}}}}, "extract.sentiment.lexicon"),
        ({"extract": {"store_pii": "sometimes"}}, "extract.store_pii"),
        ({"labels": {"a": {"fields": ["amounts", "tickets"]}}}, "labels.a.fields: unknown field(s) ['tickets']"),
        ({"labels": {"a": {"urgency": "urgent"}}}, "labels.a.urgency"),
        ({"labels": {"a": {"action": "nope"}}}, "labels.a.action: unknown action 'nope'"),
        ({"labels": {"a": {"extract_schema": {"type": "string"}}}}, "labels.a.extract_schema"),
        ({"labels": {"a": {"extract_schema": {"type": "object", "properties": {"n": {"type": "numbr"}}}}}},
         "not a valid JSON Schema"),
        ({"labels": {"a": {"extract_schema": {"type": "object", "properties": {"amounts": {"type": "number"}}}}}},
         "clash with rule fields"),
        ({"actions": {"x": {"webhook": "ftp://host"}}}, "actions.x.webhook"),
        ({"targets": {"signals": {"priority": {"critical": 0}}}}, "targets.signals"),
        ({"targets": {"signals": {"requires_human": {"urgency": ["soon"]}}}}, "targets.signals.requires_human.urgency"),
    ],
)
def test_bad_extract_config_names_the_field(data: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(needle)):
        parse_config({"model": ".", **data})


def test_importing_frontdesk_does_not_load_the_field_libraries() -> None:
    code = ("import sys, frontdesk.pipeline, frontdesk.intake.extract; "
            "print(sorted(m for m in ('dateparser', 'price_parser', 'phonenumbers', 'stdnum', 'vaderSentiment', "
            "'text_to_num', 'jsonschema') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
