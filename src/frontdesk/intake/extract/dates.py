"""Dates with day precision, resolved against the message time in the sender's own offset.

dateparser does the resolving (relative days in each language, month names, "vor 3 Tagen"), but
only on short spans that a cheap candidate regex found: on a whole message it reads "€50" as 1950
and "24/7" as 24 July, and costs ~15 ms at p90. The regex takes its month, weekday and relative
words from dateparser's own locale data. Guards around it skip versions ("iOS 17.2"), card
expiries ("expires 04/26"), "24/7" and recurring days ("every month on the 1st"). Numeric dates
are checked in the locale's order (month first only for ``*-US``) before dateparser sees them, and
the order is never swapped: "3/4" on en-GB is 3 April, on en-US 4 March; "5/13" on en-GB is no date.

``prefer="past"`` resolves an incomplete date to the latest one on or before the message ("the 28th"
on 6 March → 28 February), unless a future cue stands before it ("I need it by May 20", "flying on
15/03", "next Monday").
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from typing import Any

from frontdesk.intake.extract.spans import Span

DATE_LANGS = frozenset({"en", "de", "fr", "es", "pt", "it", "nl"})
_LEAD = r"(?:on|the|since|from|am|le|el|la|a|na|no|dia|du|depuis|seit|vom|desde)"
_WD_MOD_BEFORE = r"(?:last|this\s+past|letzten|letztem|vergangenen)"
_WD_MOD_AFTER = r"(?:dernier|passado|passada|pasado)"
_EXTRA_REL = {
    "en": ["this morning", "this afternoon", "this evening", "tonight", "last night", "an hour ago", "earlier today"],
    "de": ["vorgestern", "heute morgen"],
    "fr": ["avant-hier", "ce matin"],
    "es": ["anteayer", "anoche", "esta mañana"],
    "pt": ["anteontem", "esta manhã", "hoje de manhã"],
}
# Weekday abbreviations dateparser does not know ("Weds", "Thurs"), and short ones that are only a
# weekday after a modifier ("last Sat", "on Tue"; a bare "sat" is a verb).
_WD_ABBREV = {"weds": "wednesday", "wed": "wednesday", "thurs": "thursday", "thur": "thursday", "thu": "thursday",
              "tues": "tuesday", "tue": "tuesday", "mon": "monday", "fri": "friday", "sat": "saturday", "sun": "sunday"}
_NOT_DATES = {"24/7", "7/24", "50/50", "1/2", "1/3", "1/4", "3/4", "2/3"}  # unless a lead word stands before
_VERSION_BEFORE = re.compile(r"(?i)(?:ios|android|version|app|v|build|exp(?:iry|ires|\.)?(?:\s+date)?(?:\s+is)?|valid\s+thru|expires)\s*$")
_FUTURE_BEFORE = re.compile(
    r"(?i)\b(?:before|by|until|till|next|coming|need(?:ed)?\b.*|will\b.*|going|moving|leaving|flying|travel(?:l?ing)?|trip|turn|due|expected|"
    r"bis|avant|antes|até|hasta)\s+(?:\w+\s+){0,3}(?:on\s+|the\s+|am\s+|le\s+|el\s+)?$"
)
_EVERY_BEFORE = re.compile(r"(?i)\b(?:every|each|jeden|chaque|cada|todos\s+los)\b(?:\s+\w+){0,2}\s*$")
_COUPLE = re.compile(r"(?i)\ba\s+couple\s+(?:of\s+)?days\s+ago\b")
_NUMERIC = re.compile(r"(\d{1,2})([./])(\d{1,2})\.?(?:[./](\d{2,4}))?")
_BARE_DAY = re.compile(r"(?i)(?:the\s+)?\d{1,2}(?:st|nd|rd|th|er|\.)?")


@functools.lru_cache(maxsize=16)
def _anchors(lang: str) -> frozenset[str]:
    """The words a digit-free date candidate must contain one of (the last word of each month, weekday
    and relative-day phrase): a cheap set test that spares most messages the big candidate regex."""
    from dateparser.languages.loader import default_loader

    info = default_loader.get_locale(lang).info
    keys = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november",
            "december", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
    phrases = [w for k in keys for w in info.get(k, [])]
    phrases += [w for k, ws in info.get("relative-type", {}).items() if re.fullmatch(r"(?:in )?[0-2] day(?: ago)?", k) for w in ws]
    phrases += _EXTRA_REL.get(lang, []) + ["ago", *_WD_ABBREV]
    return frozenset(words[-1] for p in phrases if (words := re.findall(r"\w+", p.lower())))


_DIGIT = re.compile(r"\d")
_WORD = re.compile(r"\w+")


def may_have_dates(text: str, lang: str) -> bool:
    """False when ``text`` cannot hold a date candidate (no digit and no month, weekday or relative-day word)."""
    if _DIGIT.search(text):
        return True
    return not _anchors(lang if lang in DATE_LANGS else "en").isdisjoint(_WORD.findall(text.lower()))


@functools.lru_cache(maxsize=16)
def date_regex(lang: str) -> re.Pattern[str]:
    """Candidate date spans for one language, from dateparser's own month, weekday and relative words."""
    from dateparser.languages.loader import default_loader

    info = default_loader.get_locale(lang).info
    months = {w for k in ("january", "february", "march", "april", "may", "june", "july", "august",
                          "september", "october", "november", "december") for w in info.get(k, []) if len(w) >= 3}
    wdays = {w for k in ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
             for w in info.get(k, []) if len(w) >= 4 and w.lower() not in {"mon.", "sun."}}
    if lang == "en":
        wdays |= {"weds", "thurs", "tues"}
    rel = {w for k, ws in info.get("relative-type", {}).items() if re.fullmatch(r"(?:in )?[0-2] day(?: ago)?", k) for w in ws}
    rel |= set(_EXTRA_REL.get(lang, []))
    ago = [p for k, ps in info.get("relative-type-regex", {}).items() if k == "\\1 day ago" for p in ps]
    if lang == "en":
        ago += [r"(\d+|a|one|two|three|four|five|six|seven|eight|nine|ten) days? ago", r"a\s+couple\s+(?:of\s+)?days\s+ago"]

    def alt(words: set[str]) -> str:
        return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))

    M, W, R = alt(months), alt(wdays), alt(rel)
    ordinal = r"\d{1,2}(?:st|nd|rd|th|er|º|\.)?"
    parts = [
        r"\b\d{4}-\d{2}-\d{2}\b",
        r"(?<![\d./])\d{1,2}\.\d{1,2}(?:\.(?:\d{4}|\d{2})\b|\.(?![\d.]))",
        r"(?<![\d./])\d{1,2}/\d{1,2}(?:/(?:\d{4}|\d{2}))?\b(?![./]\d)",
        rf"\b(?:(?:next|this|coming)\s+)?(?:{W})(?:\s+(?:the\s+)?{ordinal})?(?:\s+(?:of\s+)?(?:{M})\.?)?\b",
        rf"\b(?:the\s+)?{ordinal}\s+(?:of\s+|de\s+)?(?:{M})\b\.?(?:,?\s+\d{{4}})?",
        rf"\b(?:{M})\.?\s+{ordinal}(?:,?\s+\d{{4}})?\b",
        r"\bthe\s+\d{1,2}(?:st|nd|rd|th)(?:\s+of\s+(?:this|next|last)\s+month)?\b",
        r"\b\d{1,2}(?:st|nd|rd|th)\b",
        r"(?<=\b(?:le|am|el)\s)\d{1,2}(?:er|\.)?(?!\d)(?!\s*(?:%|€|euros?|jours|días|dias|tage))",
        rf"(?:{R})(?!\w)",
        *[rf"\b(?:{a})\b" for a in ago],
    ]
    if lang == "en":  # short weekdays only after a modifier: "last Sat", "on Tue"
        after_modifier = "|".join(rf"(?<=\b{w}\s)" for w in ("last", "on", "this", "next"))
        parts.append(rf"(?:{after_modifier})(?:mon|tue|wed|thu|thur|fri|sat|sun)\b\.?")
    return re.compile("|".join(f"(?:{p})" for p in parts), re.IGNORECASE)


def _parser(lang: str, order: str, prefer: str, base: dt.datetime) -> Any:
    """A DateDataParser per call (0.01–0.09 ms): RELATIVE_BASE differs per message, and a shared
    parser's settings must not be changed under the server's threads."""
    from dateparser.date import DateDataParser

    return DateDataParser(languages=[lang], settings={
        "PREFER_DATES_FROM": prefer, "DATE_ORDER": order, "RETURN_TIME_AS_PERIOD": True,
        "PREFER_DAY_OF_MONTH": "first", "RELATIVE_BASE": base,
    })


@functools.lru_cache(maxsize=20_000)
def resolve(span: str, lang: str, order: str, prefer: str, base: dt.datetime) -> str | None:
    """One candidate span → ISO date or None. ISO, numeric and relative-day spans are resolved here (from
    dateparser's locale words); the rest by dateparser. Cached: a day's traffic repeats 'yesterday'."""
    s = span.strip(" ,.")
    s = _COUPLE.sub("2 days ago", s)
    s = re.sub(rf"(?i)^{_LEAD}\s+", "", s)
    if re.search(r"[a-z]", s, re.I) and not re.search(r"\bago\b|\bnight\b|month", s, re.I):
        s = re.sub(rf"(?i)^{_WD_MOD_BEFORE}\s+|\s+{_WD_MOD_AFTER}$", "", s)
    if lang == "en" and (full := _WD_ABBREV.get(s.lower().rstrip("."))):
        s = full
    today = base.date()
    if m := _ISO.fullmatch(s):
        return _valid(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    if m := _NUMERIC.fullmatch(s):  # numeric: in the locale's order (never swapped), without dateparser
        a, sep, b, year = int(m.group(1)), m.group(2), int(m.group(3)), m.group(4)
        day, month = (b, a) if order == "MDY" and sep == "/" else (a, b)
        if year is not None:
            return _valid(int(year) + (2000 if len(year) == 2 else 0), month, day)
        return _nearest(today, month, day, prefer)
    offset = _relative_days(lang).get(s.lower())
    if offset is None and (m := _DAYS_AGO.fullmatch(s)):
        offset = -_WORD_NUMBERS.get(m.group(1).lower(), 0) if not m.group(1).isdigit() else -int(m.group(1))
    if offset is None and prefer in ("past", "future") and (weekday := _weekdays(lang).get(s.lower())) is not None:
        offset = -((today.weekday() - weekday) % 7 or 7) if prefer == "past" else (weekday - today.weekday()) % 7 or 7
    if offset is not None:
        return (today + dt.timedelta(days=offset)).isoformat()
    return _dateparser(s, lang, order, prefer, base.replace(minute=0, second=0, microsecond=0))


@functools.lru_cache(maxsize=20_000)
def _dateparser(s: str, lang: str, order: str, prefer: str, base: dt.datetime) -> str | None:
    """What dateparser makes of a span it has to read (month and weekday names, other languages' phrases).
    ``base`` is the sender's wall clock to the hour, so a day's traffic shares the cache."""
    data = _parser(lang, order, prefer, base).get_date_data(s)
    if data.date_obj is None or data.period not in ("day", "time", "part_of_day"):
        return None  # "last week", "in January": periods, not days
    day_found = data.date_obj.date()
    if _BARE_DAY.fullmatch(s) and prefer in ("past", "future"):  # dateparser ignores the preference here
        from dateutil.relativedelta import relativedelta

        if prefer == "past" and day_found > base.date():
            day_found -= relativedelta(months=1)
        elif prefer == "future" and day_found < base.date():
            day_found += relativedelta(months=1)
    return day_found.isoformat()


_ISO = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_DAYS_AGO = re.compile(r"(?i)(\d{1,3}|a|one|two|three|four|five|six|seven|eight|nine|ten) days? ago")
_WORD_NUMBERS = {"a": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
                 "ten": 10}


def _valid(year: int, month: int, day: int) -> str | None:
    try:
        return dt.date(year, month, day).isoformat()
    except ValueError:
        return None


def _nearest(today: dt.date, month: int, day: int, prefer: str) -> str | None:
    """A day and month without a year: the latest on or before today (past), the next on or after it
    (future), or this year's (current_period)."""
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return None
    years = {"past": (today.year, today.year - 1), "future": (today.year, today.year + 1)}.get(prefer, (today.year,))
    for year in years:
        try:
            found = dt.date(year, month, day)
        except ValueError:
            continue  # 29 February in a common year
        if prefer == "past" and found > today or prefer == "future" and found < today:
            continue
        return found.isoformat()
    return None


@functools.lru_cache(maxsize=16)
def _relative_days(lang: str) -> dict[str, int]:
    """Day-level relative words from dateparser's locale data ('yesterday' → -1, 'morgen' → 1)."""
    from dateparser.languages.loader import default_loader

    out: dict[str, int] = {}
    for key, words in default_loader.get_locale(lang).info.get("relative-type", {}).items():
        if m := re.fullmatch(r"(in )?([0-2]) day( ago)?", key):
            n = int(m.group(2))
            for word in words:
                out[word.lower()] = -n if m.group(3) or not m.group(1) else n
    return out


@functools.lru_cache(maxsize=16)
def _weekdays(lang: str) -> dict[str, int]:
    """Weekday names from dateparser's locale data ('freitag' → 4); a bare weekday is the latest one
    strictly before the message (past) or the next one after it (future)."""
    from dateparser.languages.loader import default_loader

    info = default_loader.get_locale(lang).info
    names = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
    return {w.lower(): i for i, key in enumerate(names) for w in info.get(key, []) if len(w) >= 4}


def extract_dates(text: str, lang: str, locale: str, sent_at: dt.datetime, prefer: str) -> list[str]:
    """ISO dates (``YYYY-MM-DD``) mentioned in ``text`` (already blanked of amounts, ids and PII).

    ``sent_at`` keeps its own offset: "yesterday" at 00:30+02:00 is the sender's yesterday, not UTC's.
    """
    if not may_have_dates(text, lang):
        return []
    rx = date_regex(lang if lang in DATE_LANGS else "en")
    order = "MDY" if locale.endswith("-US") else "DMY"
    base = sent_at.replace(tzinfo=None)  # the sender's wall clock
    out: list[str] = []
    for m in rx.finditer(text):
        span = m.group(0)
        before = text[max(0, m.start() - 30): m.start()]
        if span.strip() in _NOT_DATES and not re.search(r"(?i)\b(?:on|am|le|el|since|from)\s*$", before):
            continue
        if _VERSION_BEFORE.search(before) or _EVERY_BEFORE.search(before):
            continue
        preference = "future" if prefer == "past" and _FUTURE_BEFORE.search(before) else prefer
        iso = resolve(span, lang, order, preference, base)
        if iso and iso not in out:
            out.append(iso)
    return out


def clear_caches() -> None:
    """Forget every resolved span (benchmarks measure first sight)."""
    resolve.cache_clear()
    _dateparser.cache_clear()


def date_spans(text: str, lang: str) -> list[Span]:
    """Candidate date spans (for benchmarks: how often dateparser runs)."""
    return [Span(m.start(), m.end(), "DATE") for m in date_regex(lang if lang in DATE_LANGS else "en").finditer(text)]
