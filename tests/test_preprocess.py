"""Inbound preprocessing: HTML, quotes, signatures, Unicode, language, the pipeline, deduplication."""

from __future__ import annotations

import dataclasses
import socket
import threading

import pytest

from frontdesk import ConfigError, InputError
from frontdesk.intake.clean import html_to_text, looks_like_html, normalize_text
from frontdesk.intake.dedup import Deduplicator, dedup_text
from frontdesk.intake.language import detect_language
from frontdesk.intake.mail import strip_quoted_reply, strip_signature
from frontdesk.intake.preprocessor import PreprocessConfig, Prepared, Preprocessor

# -- fixtures: realistic inbound emails ---------------------------------------------------

HTML_EMAIL = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Order 4521</title>
<style type="text/css">body { font-family: Arial; } .footer { color: #888; }</style>
<script>window.trackOpen("do-not-show-this");</script>
</head>
<body><div dir="ltr">
<p>Hello support team,</p>
<p>I ordered a <b>blue</b> jacket on 3&nbsp;May but received the wrong size.<br>Could you send me a return label?</p>
<table border="1">
  <tr><th>Order</th><th>Item</th><th>Size</th></tr>
  <tr><td>#4521</td><td>Blue jacket</td><td>M</td></tr>
</table>
<p>Price paid: 89&nbsp;&euro; &amp; free shipping</p>
<img src="https://tracker.example/pixel.gif" width="1" height="1" alt="">
</div></body></html>
"""

GMAIL_HTML_REPLY = """<div dir="ltr">The refund still hasn't arrived on my card.</div><br>
<div class="gmail_quote"><div dir="ltr" class="gmail_attr">On Mon, 3 Jun 2024 at 14:02, Acme Support &lt;support@acme.example&gt; wrote:<br></div>
<blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex">Hello Anna,<br>we have issued the refund of 42.00 EUR.<br>Kind regards,<br>Acme Support</blockquote></div>
"""

GMAIL_REPLY = """Hi,

the refund still hasn't arrived on my card. It has been ten days.

On Mon, 3 Jun 2024 at 14:02, Acme Support <support@acme.example> wrote:
> Hello Anna,
>
> we have issued the refund of 42.00 EUR. It can take 5-7 working days.
>
> Kind regards,
> Acme Support
"""

OUTLOOK_REPLY = """Please cancel order 4521, I no longer need it.

________________________________
From: Acme Support <support@acme.example>
Sent: Monday, June 3, 2024 2:02 PM
To: Anna Kowalski <anna@example.com>
Subject: Re: Order 4521

Hello Anna, your order 4521 has shipped and will arrive on Thursday.
"""

FORWARDED = """Can you check this payment? I did not make it.

---------- Forwarded message ---------
From: Bank Alerts <noreply@bank.example>
Date: Mon, 3 Jun 2024 at 09:15
Subject: Card payment
To: <anna@example.com>

A payment of 99.00 EUR was made with your card at ELECTRO SHOP.
"""

INLINE_QUOTE = """> Did you try restarting the app?
Yes, twice, it still crashes on the login screen.
> Which phone do you use?
A Pixel 7."""

GERMAN_REPLY = """Hallo,

meine Karte wurde gestern gesperrt. Bitte entsperren.

Mit freundlichen Grüßen
Max Mustermann

Am 03.06.2024 um 14:02 schrieb Acme Support <support@acme.example>:
> Sehr geehrter Herr Mustermann,
> Ihre Bestellung wurde versandt.
"""

SIGNED = """Hello,

my parcel 12345 has not arrived after two weeks. Can you check where it is?

Best regards,
Tom Becker
Head of Procurement | Example GmbH
+49 30 1234567

Sent from my iPhone"""

DASH_SIGNATURE = "My password reset link does not work.\n\n-- \nTom Becker\nExample GmbH | www.example.com\n"

IPHONE_ONLY = "Where is my refund?\n\nSent from my iPhone"

ONLY_A_QUOTE = """On Tue, 4 Jun 2024 at 10:00, Acme Support <support@acme.example> wrote:
> Hello Anna,
> we have issued the refund."""

UNICODE_ODDITIES = (
    "\ufeffＩ  was\u00a0charged   ｔｗｉｃｅ\u200b for\u2009one\u3000coffee\u2060!\r\n"
    "\r\n\r\n\r\n"
    "Please re\u00adfund\x07 one.\t\tThanks"
)

SUPPORT_MESSAGES = {
    "en": "I was charged twice for the same order, please refund one of the payments.",
    "de": "Ich wurde für dieselbe Bestellung zweimal belastet, bitte erstatten Sie eine Zahlung.",
    "fr": "J'ai été débité deux fois pour la même commande, merci de me rembourser un paiement.",
    "es": "Me han cobrado dos veces el mismo pedido, por favor devuélvanme uno de los pagos.",
    "pt": "Fui cobrado duas vezes pela mesma encomenda, por favor reembolsem um dos pagamentos.",
    "it": "Mi è stato addebitato due volte lo stesso ordine, per favore rimborsatemi un pagamento.",
    "nl": "Ik ben twee keer belast voor dezelfde bestelling, kunt u één betaling terugstorten?",
    "pl": "Zostałem obciążony dwa razy za to samo zamówienie, proszę o zwrot jednej płatności.",
}


# -- HTML ---------------------------------------------------------------------------------


def test_html_to_text_keeps_blocks_and_tables_and_drops_script_style() -> None:
    text = html_to_text(HTML_EMAIL)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    assert lines[0] == "Hello support team,"
    # <br> breaks the paragraph, inline <b> does not
    assert "I ordered a blue jacket on 3 May but received the wrong size." in lines
    assert "Could you send me a return label?" in lines
    # one table row per line, cells in order
    assert [c.strip() for c in lines[3].split("|")] == ["Order", "Item", "Size"]
    assert [c.strip() for c in lines[4].split("|")] == ["#4521", "Blue jacket", "M"]
    assert "Price paid: 89 € & free shipping" in lines
    for hidden in ("font-family", "trackOpen", "do-not-show-this", "Order 4521", "<", "pixel.gif"):
        assert hidden not in text


def test_plain_text_is_not_treated_as_html() -> None:
    plain = "From: Anna <anna@example.com>\nIs 3 < 5? I <3 your app & its <b-side> jokes"
    assert not looks_like_html(plain)
    assert html_to_text(plain) is plain
    assert looks_like_html("hello<br>world") and looks_like_html("<P CLASS='x'>hi</P>")


def test_html_gmail_reply_loses_its_quote_in_the_pipeline() -> None:
    prepared = Preprocessor()(GMAIL_HTML_REPLY)
    assert prepared.text == "The refund still hasn't arrived on my card."
    assert prepared.steps[:1] == ("html",) and "quotes" in prepared.steps
    assert prepared.original == GMAIL_HTML_REPLY


# -- quoted replies -----------------------------------------------------------------------


def test_gmail_quoted_thread_is_removed() -> None:
    assert strip_quoted_reply(GMAIL_REPLY) == "Hi,\n\nthe refund still hasn't arrived on my card. It has been ten days."


def test_outlook_header_block_is_removed() -> None:
    assert strip_quoted_reply(OUTLOOK_REPLY) == "Please cancel order 4521, I no longer need it."


def test_forwarded_block_and_its_marker_are_removed() -> None:
    assert strip_quoted_reply(FORWARDED) == "Can you check this payment? I did not make it."


def test_inline_quoted_lines_are_dropped_answers_kept() -> None:
    assert strip_quoted_reply(INLINE_QUOTE) == "Yes, twice, it still crashes on the login screen.\nA Pixel 7."


def test_german_reply_header_is_recognised() -> None:
    out = strip_quoted_reply(GERMAN_REPLY)
    assert "Ihre Bestellung" not in out and "schrieb" not in out
    assert out.startswith("Hallo,\n\nmeine Karte wurde gestern gesperrt.")
    # the signature is not this function's business
    assert out.endswith("Mit freundlichen Grüßen\nMax Mustermann")


def test_reply_languages_limit_which_headers_are_known() -> None:
    assert "Ihre Bestellung" in strip_quoted_reply(GERMAN_REPLY.replace("> ", ""), ["fr"])
    assert "Ihre Bestellung" not in strip_quoted_reply(GERMAN_REPLY.replace("> ", ""), ["de"])


def test_message_without_quotes_is_unchanged() -> None:
    text = "My card was declined at the supermarket.\nWhat is wrong?"
    assert strip_quoted_reply(text) == text


def test_a_message_that_is_only_a_quote_becomes_empty() -> None:
    assert strip_quoted_reply(ONLY_A_QUOTE) == ""


# -- signatures ---------------------------------------------------------------------------


def test_sign_off_block_and_sent_from_iphone_are_removed() -> None:
    assert strip_signature(SIGNED) == (
        "Hello,\n\nmy parcel 12345 has not arrived after two weeks. Can you check where it is?"
    )


def test_dash_dash_delimiter_signature_is_removed() -> None:
    assert strip_signature(DASH_SIGNATURE) == "My password reset link does not work."


def test_sent_from_my_iphone_alone_is_removed() -> None:
    assert strip_signature(IPHONE_ONLY) == "Where is my refund?"


def test_german_sign_off_is_removed() -> None:
    out = strip_signature(strip_quoted_reply(GERMAN_REPLY))
    assert out == "Hallo,\n\nmeine Karte wurde gestern gesperrt. Bitte entsperren."


def test_a_sentence_starting_with_thanks_is_not_a_signature() -> None:
    text = "Hi,\nThanks, I got the new card but it is blocked. Please unblock it.\nAlso the app crashes."
    assert strip_signature(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "Hi,\nTake it back please",  # Danish sign-off "Tak" is not a prefix match
        "Hello,\nKhalid here, my card is blocked",  # nor is Danish "Kh"
        "The path\n/home/anna is wrong",  # nor Swedish "/Anna" inside a path
    ],
)
def test_sign_off_phrases_must_be_whole_words(text: str) -> None:
    assert strip_signature(text) == text


def test_other_languages_sign_offs_are_removed() -> None:
    assert strip_signature("Hola,\nno funciona.\n\nSaludos,\nAna\nEnviado desde mi iPhone") == "Hola,\nno funciona."
    assert strip_signature("Hej,\nkortet fungerar inte.\n\n/Anna") == "Hej,\nkortet fungerar inte."
    assert strip_signature("Bonjour,\nma carte est bloquée.\n\nCordialement,\nJean") == "Bonjour,\nma carte est bloquée."


def test_a_quote_only_text_keeps_the_quoted_signature() -> None:
    assert strip_signature(ONLY_A_QUOTE + "\n>\n> Kind regards,\n> Acme") == (ONLY_A_QUOTE + "\n>\n> Kind regards,\n> Acme")


def test_hyphen_lists_are_not_signatures() -> None:
    text = "I have two problems:\n- the app crashes on login\n- my card is blocked\nPlease help."
    assert strip_signature(text) == text


def test_signature_only_strips_the_newest_part_and_keeps_the_thread() -> None:
    text = "Please call me back.\n\nKind regards,\nAnna\n\n" + GMAIL_REPLY.split("\n\n", 2)[2]
    out = strip_signature(text)
    assert out.startswith("Please call me back.\n")
    assert "Anna\n" not in out.split("On Mon")[0]
    assert "On Mon, 3 Jun 2024 at 14:02" in out and "> we have issued the refund" in out


# -- Unicode and whitespace ---------------------------------------------------------------


def test_normalize_text_folds_unicode_and_removes_invisibles() -> None:
    out = normalize_text(UNICODE_ODDITIES)
    assert out == "I was charged twice for one coffee!\n\nPlease refund one. Thanks"
    for bad in ("\u200b", "\u2060", "\ufeff", "\u00ad", "\x07", "\u00a0", "\r", "\t"):
        assert bad not in out


def test_normalize_text_keeps_joiners_and_line_structure() -> None:
    family = "\U0001F468\u200d\U0001F469\u200d\U0001F467"  # one emoji made of three with ZWJ
    assert normalize_text(f"  hi {family}  \n  second   line ") == f"hi {family}\nsecond line"
    assert normalize_text("a\u2028b\u2029c") == "a\nb\nc"
    assert normalize_text("ﬁle №5 ①") == "file No5 1"


def test_normalize_text_is_idempotent() -> None:
    once = normalize_text(UNICODE_ODDITIES + "\n" + SIGNED)
    assert normalize_text(once) == once


# -- language -----------------------------------------------------------------------------


@pytest.mark.parametrize("lang", sorted(SUPPORT_MESSAGES))
def test_detect_language_short_support_messages(lang: str) -> None:
    code, confidence = detect_language(SUPPORT_MESSAGES[lang])
    assert code == lang
    assert 0.5 < confidence <= 1.0


def test_detect_language_without_letters() -> None:
    assert detect_language("") == (None, 0.0)
    assert detect_language("12345 !!! 🙂") == (None, 0.0)


def test_detect_language_never_touches_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    import frontdesk.intake.language as pp

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("language detection tried to open a network connection")

    monkeypatch.setattr(pp, "_detector", None)  # force a fresh model load
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    assert detect_language("Wo ist mein Paket? Ich warte seit zwei Wochen.")[0] == "de"


def test_unsupported_language_is_marked() -> None:
    pre = Preprocessor(PreprocessConfig(supported_languages=["EN", "de"]))
    assert pre.config.supported_languages == ["en", "de"]
    german = pre(SUPPORT_MESSAGES["de"])
    assert german.language == "de" and german.language_supported
    polish = pre(SUPPORT_MESSAGES["pl"])
    assert polish.language == "pl" and polish.language_confidence > 0.5
    assert polish.language_supported is False
    # None = every language is supported
    assert Preprocessor()(SUPPORT_MESSAGES["pl"]).language_supported is True


def test_low_confidence_language_is_unknown_and_not_rejected() -> None:
    pre = Preprocessor(PreprocessConfig(supported_languages=["en"], min_language_confidence=0.999))
    prepared = pre("ok")
    assert prepared.language is None
    assert 0.0 < prepared.language_confidence < 0.999
    assert prepared.language_supported is True


def test_language_detection_can_be_switched_off() -> None:
    prepared = Preprocessor(PreprocessConfig(detect_language=False))(SUPPORT_MESSAGES["fr"])
    assert (prepared.language, prepared.language_confidence, prepared.language_supported) == (None, 0.0, True)


# -- the pipeline -------------------------------------------------------------------------


def test_preprocessor_on_a_signed_reply_with_a_quoted_thread() -> None:
    raw = SIGNED + "\n\n" + GMAIL_REPLY.split("\n\n", 2)[2]
    prepared = Preprocessor()(raw)
    assert prepared.text == "Hello,\n\nmy parcel 12345 has not arrived after two weeks. Can you check where it is?"
    assert prepared.original == raw
    assert prepared.steps == ("normalize", "quotes", "signature")  # normalize: the trailing newline
    assert prepared.language == "en" and prepared.language_supported


def test_preprocessor_html_email() -> None:
    prepared = Preprocessor()(HTML_EMAIL)
    assert prepared.steps == ("html", "normalize")
    assert prepared.text.startswith("Hello support team,\n\nI ordered a blue jacket on 3 May")
    assert "Order | Item | Size\n#4521 | Blue jacket | M" in prepared.text
    assert "Price paid: 89 € & free shipping" in prepared.text
    assert prepared.language == "en"


def test_preprocessor_normalises_before_reading_headers() -> None:
    # a zero-width space and NBSPs inside the reply header must not hide the quoted thread
    raw = GMAIL_REPLY.replace("On Mon,", "On\u00a0Mon,\u200b").replace(" wrote:", "\u00a0wrote:")
    prepared = Preprocessor()(raw)
    assert "we have issued" not in prepared.text
    assert prepared.steps == ("normalize", "quotes")


def test_fallback_when_cleaning_leaves_nothing() -> None:
    prepared = Preprocessor()(ONLY_A_QUOTE)
    assert prepared.text == normalize_text(ONLY_A_QUOTE)
    assert prepared.steps == ("quotes", "fallback")
    html_quote = "<p>Sent from my iPhone</p>"
    prepared = Preprocessor()(html_quote)
    assert prepared.text == "Sent from my iPhone"
    assert prepared.steps == ("html", "normalize", "signature", "fallback")


def test_steps_can_be_switched_off_one_by_one() -> None:
    raw = SIGNED + "\n\n" + GMAIL_REPLY.split("\n\n", 2)[2]
    only_quotes = Preprocessor(PreprocessConfig(strip_signature=False))(raw)
    assert only_quotes.steps == ("normalize", "quotes") and "Best regards," in only_quotes.text
    assert "we have issued" not in only_quotes.text
    only_signature = Preprocessor(PreprocessConfig(strip_quotes=False))(raw)
    assert only_signature.steps == ("normalize", "signature") and "Best regards," not in only_signature.text
    assert "we have issued" in only_signature.text
    nothing = Preprocessor(
        {"html": False, "strip_quotes": False, "strip_signature": False, "normalize": False, "detect_language": False}
    )
    assert nothing(HTML_EMAIL) == Prepared(text=HTML_EMAIL, original=HTML_EMAIL)
    assert Preprocessor(PreprocessConfig(normalize=False))(UNICODE_ODDITIES).text != normalize_text(UNICODE_ODDITIES)


def test_prepared_is_frozen() -> None:
    prepared = Preprocessor()("Where is my parcel?")
    with pytest.raises(dataclasses.FrozenInstanceError):
        prepared.text = "changed"  # type: ignore[misc]


def test_bad_config_and_input_say_what_to_do() -> None:
    with pytest.raises(ConfigError, match=r"preprocess: .*dedup_window_s"):
        Preprocessor({"dedup_window_s": -1})
    with pytest.raises(ConfigError, match="strip_html: Extra inputs are not permitted"):
        Preprocessor({"strip_html": True})
    with pytest.raises(ConfigError, match="ISO 639-1"):
        Preprocessor({"supported_languages": ["english"]})
    with pytest.raises(ConfigError, match="null for 'all languages'"):
        Preprocessor({"supported_languages": []})
    with pytest.raises(InputError, match="decode bytes as UTF-8"):
        Preprocessor()(b"hello")  # type: ignore[arg-type]


# -- deduplication ------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_dedup_text_normalises_case_space_and_edge_punctuation() -> None:
    assert dedup_text("  Where is my REFUND?! ") == "where is my refund"
    assert dedup_text("where\u200b is  my\nrefund") == "where is my refund"
    assert dedup_text("Ｗｈｅｒｅ is my refund…") == "where is my refund"
    assert dedup_text("refund 4.5") != dedup_text("refund 45")


def test_duplicate_within_window_returns_earlier_value() -> None:
    clock = FakeClock()
    dedup: Deduplicator[str] = Deduplicator(window_s=60, clock=clock)
    assert dedup.lookup("anna@example.com", "Where is my refund?") is None
    dedup.remember("anna@example.com", "Where is my refund?", "decision-1")
    clock.now += 59.9
    assert dedup.lookup("Anna@Example.com ", "where is my refund") == "decision-1"
    assert dedup.lookup("anna@example.com", "Where is my parcel?") is None


def test_after_the_window_it_is_a_new_message() -> None:
    clock = FakeClock()
    dedup: Deduplicator[str] = Deduplicator(window_s=60, clock=clock)
    dedup.remember("anna@example.com", "Where is my refund?", "decision-1")
    clock.now += 60.0
    assert dedup.lookup("anna@example.com", "Where is my refund?") is None
    assert len(dedup) == 0  # expired entries are dropped
    dedup.remember("anna@example.com", "Where is my refund?", "decision-2")
    clock.now += 30
    assert dedup.lookup("anna@example.com", "Where is my refund?") == "decision-2"


def test_different_sender_or_no_sender_is_never_a_duplicate() -> None:
    dedup: Deduplicator[str] = Deduplicator(clock=FakeClock())
    dedup.remember("anna@example.com", "Where is my refund?", "anna's")
    assert dedup.lookup("tom@example.com", "Where is my refund?") is None
    assert dedup.key(None, "Where is my refund?") is None and dedup.key("  ", "x") is None
    dedup.remember(None, "Where is my refund?", "anonymous")
    assert dedup.lookup(None, "Where is my refund?") is None
    assert len(dedup) == 1


def test_dedup_is_bounded_and_evicts_oldest() -> None:
    clock = FakeClock()
    dedup: Deduplicator[int] = Deduplicator(window_s=60, max_entries=3, clock=clock)
    for i in range(5):
        dedup.remember("anna@example.com", f"message {i}", i)
        clock.now += 1
    assert len(dedup) == 3
    assert dedup.lookup("anna@example.com", "message 0") is None
    assert dedup.lookup("anna@example.com", "message 1") is None
    assert [dedup.lookup("anna@example.com", f"message {i}") for i in (2, 3, 4)] == [2, 3, 4]


def test_remembering_again_refreshes_and_replaces() -> None:
    clock = FakeClock()
    dedup: Deduplicator[str] = Deduplicator(window_s=60, max_entries=2, clock=clock)
    dedup.remember("a", "first", "v1")
    clock.now += 10
    dedup.remember("a", "second", "v2")
    clock.now += 10
    dedup.remember("a", "first", "v1b")  # moves to the newest position
    dedup.remember("a", "third", "v3")  # evicts "second", the oldest now
    assert dedup.lookup("a", "first") == "v1b"
    assert dedup.lookup("a", "second") is None
    clock.now += 55  # "first" was stored again 55 s ago: still inside
    assert dedup.lookup("a", "first") == "v1b"


def test_window_zero_disables_dedup() -> None:
    dedup: Deduplicator[str] = Deduplicator(window_s=0)
    assert not dedup.enabled
    dedup.remember("anna@example.com", "hi", "x")
    assert dedup.lookup("anna@example.com", "hi") is None and len(dedup) == 0


def test_dedup_rejects_bad_settings() -> None:
    with pytest.raises(ConfigError, match="dedup_window_s"):
        Deduplicator(window_s=-1)
    with pytest.raises(ConfigError, match="max_entries"):
        Deduplicator(max_entries=0)


def test_dedup_is_thread_safe() -> None:
    dedup: Deduplicator[int] = Deduplicator(window_s=60, max_entries=500)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(2_000):
                dedup.remember(f"sender{n}", f"message {i % 700}", i)
                dedup.lookup(f"sender{(n + 1) % 8}", f"message {i % 700}")
        except BaseException as exc:  # pragma: no cover - only on failure
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(dedup) == 500


def test_claim_confirm_release() -> None:
    """A claimed message is remembered only once confirmed; a released claim leaves nothing behind."""
    clock = FakeClock()
    dedup: Deduplicator[str] = Deduplicator(window_s=60, clock=clock)
    owner = object()
    assert dedup.claim("anna", "Where is my refund?", owner) == (None, dedup.key("anna", "Where is my refund?"))
    key = dedup.key("anna", "Where is my refund?")
    dedup.settle(key, "d1")
    assert dedup.lookup("anna", "where is my refund") is None, "not committed yet"
    assert dedup.claim("anna", "Where is my refund?", owner) == ("d1", None), "a copy in the same batch"
    dedup.release(key)
    assert dedup.lookup("anna", "Where is my refund?") is None and len(dedup) == 0
    earlier, key2 = dedup.claim("anna", "Where is my refund?", object())
    assert earlier is None and key2 == key
    dedup.settle(key2, "d2")
    dedup.confirm(key2)
    assert dedup.lookup("anna", "Where is my refund?") == "d2"
    assert dedup.claim("anna", "Where is my refund?", object()) == ("d2", None)
    assert dedup.claim(None, "Where is my refund?", object()) == (None, None)


def test_a_concurrent_copy_waits_for_the_outcome() -> None:
    dedup: Deduplicator[str] = Deduplicator(window_s=60, wait_s=5)
    _, key = dedup.claim("tom", "hi", "request-1")
    results: list[tuple[str | None, bytes | None]] = []
    waiter = threading.Thread(target=lambda: results.append(dedup.claim("tom", "hi", "request-2")))
    waiter.start()
    dedup.settle(key, "d1")
    dedup.confirm(key)
    waiter.join(timeout=5)
    assert results == [("d1", None)]
    # and when the first request fails, the waiting copy takes the claim and is decided itself
    _, key = dedup.claim("tom", "bye", "request-3")
    waiter = threading.Thread(target=lambda: results.append(dedup.claim("tom", "bye", "request-4")))
    waiter.start()
    dedup.release(key)
    waiter.join(timeout=5)
    assert results[1] == (None, dedup.key("tom", "bye"))
