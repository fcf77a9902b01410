"""Quoted replies, forwarded threads and signatures: keep only what the customer wrote this time."""

from __future__ import annotations

import re
from typing import Any

from frontdesk.intake.clean import missing_extra


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
        raise missing_extra("mail-parser-reply", "strip_quotes") from exc
    return EmailMessage, MAIL_LANGUAGES


def strip_quoted_reply(text: str, languages: list[str] | None = None) -> str:
    """Only the newest part of an email: quoted earlier messages and forwarded blocks removed.

    mail-parser-reply splits the body at reply headers ("On Mon, 3 Jun 2024, Anna wrote:",
    Outlook's "From:/Sent:/To:" block, "-----Original Message-----", forwarded-message headers,
    in the mail-client languages ``languages``, default all it knows) and keeps the first part.
    Remaining lines that start with ">" (inline quoting) are dropped too. The signature, if any,
    is kept: that is ``strip_signature``'s job. May return "" when the text was only a quote.
    """
    return clean_mail(text, languages, signature=False)[0]


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


def clean_mail(text: str, languages: list[str] | None, *, signature: bool) -> tuple[str, str]:
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
