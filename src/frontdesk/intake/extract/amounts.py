"""Amounts with a currency marker: ``€1.234,50``, ``CHF 1'250.00``, ``twenty euros``, ``£1.5k``, ``50p``.

A bare number is never an amount ("payment of 12.99", "max 1000"): it needs a symbol, an ISO code
from ``extract.currencies`` or a currency word. The candidate regex decides *what* is read;
price-parser reads the number (thousands and decimal separators) and supplies the ISO 4217 minor
units; text2num turns number words into digits. Values are canonical decimal strings in the
currency's minor unit ("1234.50", "12000" for JPY).
"""

from __future__ import annotations

import functools
import re
from decimal import Decimal

from frontdesk.intake.extract.spans import Span

_WORD_CURRENCIES = {
    "euro": "EUR", "euros": "EUR", "eur": "EUR",
    "pound": "GBP", "pounds": "GBP", "quid": "GBP", "libras": "GBP", "livres": "GBP",
    "dollar": "$", "dollars": "$", "bucks": "$", "dólares": "$", "dolares": "$",
    "franken": "CHF", "francs": "CHF", "reais": "BRL", "złoty": "PLN", "zloty": "PLN",
}
_SYMBOLS = {"$": "$", "US$": "USD", "£": "GBP", "€": "EUR", "¥": "JPY", "R$": "BRL", "C$": "CAD", "A$": "AUD", "Fr.": "CHF"}
_NUM = r"(?:\d{1,3}(?:[.,'’\u00a0\u202f ]\d{3})+(?:[.,]\d{1,2})?|\d+(?:[.,]\d{1,2})?)"
_TEXT2NUM_LANGS = frozenset({"en", "fr", "es", "pt", "de", "it", "nl"})
_NUMBER_WORD_CURRENCY = re.compile(
    r"(?i)\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|forty|fifty|sixty|"
    r"seventy|eighty|ninety|hundred|thousand|zwanzig|dreißig|fünfzig|hundert|vingt|trente|cinquante|cent|mille|"
    r"veinte|treinta|cincuenta|cien|mil|vinte|trinta|cinquenta|cem)\s+(?:euros?|pounds?|quid|dollars?|bucks|euro)\b"
)


@functools.lru_cache(maxsize=8)
def _amount_regex(currencies: tuple[str, ...]) -> re.Pattern[str]:
    sym = "|".join(re.escape(s) for s in sorted(_SYMBOLS, key=len, reverse=True))
    codes = "|".join(currencies)
    words = "|".join(sorted(_WORD_CURRENCIES, key=len, reverse=True))
    pre = rf"(?P<pre>{sym}|\b(?:{codes}))\s?(?P<sign1>-)?(?P<n1>{_NUM})(?P<k1>k\b)?"
    post = rf"(?<![\w.,])(?P<n2>{_NUM})(?P<k2>k)?\s?(?P<post>{sym}|(?:{codes}|{words})\b|p\b)"
    return re.compile(rf"{pre}|{post}", re.IGNORECASE)


def _currency(token: str, dollar: str) -> str | None:
    tok = token.strip()
    code = _SYMBOLS.get(tok) or _WORD_CURRENCIES.get(tok.lower()) or (tok.upper() if tok.isalpha() and len(tok) == 3 else None)
    return dollar if code == "$" else code


def canonical(value: Decimal, currency: str) -> str:
    """The value in the currency's minor unit from price-parser's ISO 4217 table ("1234.50", "12000" for JPY)."""
    from price_parser._currencies import CURRENCIES

    digits = CURRENCIES.get(currency, {}).get("d", 2)
    return format(value.quantize(Decimal(1).scaleb(-int(digits))), "f")


def extract_amounts(text: str, lang: str, currencies: tuple[str, ...], dollar: str,
                    spans: list[Span] | None = None) -> list[dict[str, str]]:
    """Every amount with a currency marker, as ``{"value": "12.50", "currency": "EUR"}`` (a set, in order).

    ``spans`` (when given) receives the amount spans of ``text`` so the date pass can skip them.
    """
    from price_parser import Price

    rx = _amount_regex(currencies)
    texts = [text]
    if _NUMBER_WORD_CURRENCY.search(text):
        from text_to_num import alpha2digit

        texts.append(alpha2digit(text, lang if lang in _TEXT2NUM_LANGS else "en"))
    out: list[dict[str, str]] = []
    for i, t in enumerate(texts):
        for m in rx.finditer(t):
            if spans is not None and i == 0:
                spans.append(Span(m.start(), m.end(), "AMOUNT"))
            num = m.group("n1") or m.group("n2")
            token = m.group("pre") or m.group("post")
            if token.lower() == "p":  # 50p: pence
                if "." in num or "," in num:
                    continue
                value, currency = Decimal(num) / 100, "GBP"
            else:
                currency = _currency(token, dollar)
                if currency is None:
                    continue
                price = Price.fromstring(num.replace("’", "'"))
                if price.amount is None:
                    continue
                value = price.amount * 1000 if (m.group("k1") or m.group("k2")) else price.amount
            item = {"value": canonical(value, currency), "currency": currency}
            if item not in out:
                out.append(item)
    return out
