"""Sentiment and urgency on every message, without an LLM: a lexicon, cue words and the label's prior.

Sentiment is VADER's compound score with a support-domain lexicon ("please", "help", "charged",
"block" are not sentiment in a support inbox) plus cues VADER misses: "still not arrived", "third
time", sarcasm openers, legal threats, insults, shouting. VADER's lexicon is English; the cues
cover a few German, French, Spanish and Portuguese words only, so treat other languages' sentiment
as weak. *Very negative* marks anger, insults, shouting, legal threats and a compound at or below
``sentiment.very_negative_below``.

Urgency starts at the label's prior (``labels.<label>.urgency``, else ``urgency.default``) and is
raised, never lowered, by cues: "stolen … block it", "right now", "scam" → critical; "urgent",
"today", "abroad", "lawyer", very negative → high; configured keywords → their level. Tone never
lowers urgency: a polite "my card was stolen, could you block it?" is critical.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

from frontdesk.intake.extract.config import URGENCY_LEVELS, SentimentConfig, UrgencyConfig
from frontdesk.types import Sentiment

_NOT_SENTIMENT = ("please", "like", "support", "credit", "help", "allowed", "free", "pay", "want", "card", "charged",
                  "charge", "fee", "fees", "error", "cancel", "block", "freeze", "lock", "stop", "share", "clear", "join")
_DOMAIN = {"scammed": -2.5, "rip-off": -2.5, "garbage": -2.5, "trash": -2.3, "useless": -2.0, "nobody": -0.8}
_NEG_CUES = re.compile(
    r"(?i)\b(?:not (?:great|good|ok)|for nothing|never told|nobody|no one|still (?:no|not|hasn'?t|doesn'?t|can'?t|haven'?t)|"
    r"not (?:happy|received|arrived|working)|hasn'?t (?:arrived|come)|didn'?t (?:make|get|receive)|never (?:came|arrived|set)|"
    r"keeps? (?:failing|happening)|again|waiting|worried|stolen|fraud|scam\w*|rip-?off|useless|joke|ridiculous|fed up|stuck|"
    r"third (?:time|message)|frechheit|inadmissible|vergonha|pesadez|gestohlen|vol[ée]|robado|roubaram)\b"
)
_SARCASM = re.compile(r"(?i)^(?:great|oh (?:great|wonderful)|brilliant|fantastic|sure|nice|wonderful|love)\b.*"
                      r"\b(?:another|still|again|except|no|failed|nothing|waiting|disappears?)\b")
_POS_CUES = re.compile(r"(?i)\b(?:thanks?|thank you|cheers|love|great|brilliant|perfect|impressed|danke|merci|gracias|obrigad[oa])\b|:\)|👍")
_LEGAL = re.compile(r"(?i)\b(?:lawyer|solicitor|ombudsman|press|legal|plainte|anwalt|court)\b")
_INSULT = re.compile(r"(?i)\b(?:useless|pathetic|garbage|trash|rip-?off|disgusting|worst|wtf|joke|frechheit|vergonha|inadmissible|lied)\b")

_CRITICAL = re.compile(
    r"(?i)\b(?:right now|as we speak|still (?:logged|using)|being used|someone is using|taking money|stealing|"
    r"scam(?:med)?|phishing|fake (?:sms|site|link|call)|in (?:ce|este) momento|en ce moment|gerade)\b"
)
_HIGH = re.compile(
    r"(?i)\b(?:urgent(?:ly)?|asap|immediately|right away|today|tonight|tomorrow|abroad|stranded|stuck|no (?:cash|money|way to pay)|"
    r"rent|bills?|lawyer|solicitor|attorney|legal action|court|ombudsman|regulator|press|complaint|sue|"
    r"sofort|dringend|Anwalt|urgence|avocat|plainte|urgente|abogado|denuncia|advogado|já)\b|!!"
)
_RISK = re.compile(r"(?i)\b(?:stolen|stole|hacked|fraud\w*|compromised|didn'?t make|did not make|not me|gestohlen|vol[ée]|"
                   r"robad[oa]|roubad[oa]|roubaram)\b")
_STOP = re.compile(r"(?i)\b(?:block|freeze|cancel|stop|lock|sperren|bloque\w*)\b")
_SOFT = re.compile(r"(?i)\b(?:may have|might have|can'?t find|not sure|i think i left)\b")
_PROBLEM = re.compile(r"(?i)\b(?:not|never|hasn'?t|didn'?t|still|failed|declined|stuck|wrong)\b")


@functools.lru_cache(maxsize=8)
def _analyzer(extra: tuple[tuple[str, float], ...]) -> Any:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    sia = SentimentIntensityAnalyzer()
    for word in _NOT_SENTIMENT:
        sia.lexicon.pop(word, None)
    sia.lexicon.update(_DOMAIN)
    sia.lexicon.update(dict(extra))
    return sia


def sentiment(text: str, config: SentimentConfig | None = None) -> Sentiment | None:
    """negative / neutral / positive with VADER's compound score and the very-negative flag (None: method none)."""
    config = config or SentimentConfig()
    if config.method == "none":
        return None
    score = _analyzer(tuple(sorted(config.lexicon.items()))).polarity_scores(text)["compound"]
    upper = sum(map(str.isupper, text))
    shouting = False
    if upper > 7:  # > 60 % of more than 12 letters are capitals
        letters = sum(map(str.isalpha, text))
        shouting = letters > 12 and upper / letters > 0.6
    legal, insult = bool(_LEGAL.search(text)), bool(_INSULT.search(text))
    if _SARCASM.search(text) or (_NEG_CUES.search(text) and score < 0.5) or score <= -0.05 or legal or insult or shouting:
        label = "negative"
    elif score >= 0.3 or (_POS_CUES.search(text) and score > 0):
        label = "positive"
    else:
        label = "neutral"
    very = label == "negative" and (shouting or legal or insult or score <= config.very_negative_below or text.count("!") >= 3)
    return Sentiment(label=label, score=round(score, 4), very_negative=very)


@functools.lru_cache(maxsize=32)
def _keyword_regex(words: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile(r"(?i)(?<!\w)(?:" + "|".join(re.escape(w.strip()) for w in words) + r")(?!\w)")


def urgency(text: str, label: str | None, very_negative: bool, config: UrgencyConfig | None = None,
            priors: Mapping[str, str] | None = None) -> str:
    """low / normal / high / critical: the label's prior raised by cue words (never lowered by tone)."""
    config = config or UrgencyConfig()
    prior = (priors or {}).get(label or "", config.default)
    level = URGENCY_LEVELS.index(prior)
    if config.cues:
        if prior == "critical" and _SOFT.search(text):  # "I can't find my card" is not "stolen, block it"
            level = 2
        if level == 0 and _PROBLEM.search(text):
            level = 1
        if (level >= 1 and _HIGH.search(text)) or very_negative:
            level = max(level, 2)
        if _CRITICAL.search(text) or (_RISK.search(text) and _STOP.search(text)):
            level = 3
    for name, words in config.keywords.items():
        if words and _keyword_regex(tuple(words)).search(text):
            level = max(level, URGENCY_LEVELS.index(name))
    return URGENCY_LEVELS[level]
