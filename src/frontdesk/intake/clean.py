"""Cleaning one message's text: HTML bodies to visible text, Unicode and whitespace normalised.

The third-party libraries are imported on first use, so a deployment that disables a step does not
need its library.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from frontdesk.errors import ConfigError


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
        raise missing_extra("inscriptis", "html") from exc
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


def missing_extra(package: str, setting: str) -> ConfigError:
    return ConfigError(
        f"this step needs the {package!r} package: install it (pip install {package}) or set {setting}=False",
        field=f"preprocess.{setting}",
    )
