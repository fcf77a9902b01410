"""Prompt-injection defence for the LLM tier: a fast detector plus the injection rule of the acceptance policy.

The LLM tier cannot be trusted to ignore instructions inside a customer message, and the answer
schema only restricts the LLM to the candidate labels, which the attacker can usually reach (the
candidates are the earlier tiers' top labels, and naming a label in the message pulls it into
them). So the LLM's answer is checked against evidence the attacker controls less:

* :func:`scan` / :func:`injection_signals` — regular-expression signals (role markers, "ignore
  previous …" in 15 languages, instructions aimed at the model, label names inside the message,
  JSON answers, forged prompt fences, hidden text, encodings) computed on normalised views of the
  text (tag characters decoded, zero-width stripped, NFKC, homoglyphs folded, case-folded,
  de-leeted, spaced letters joined) and on decoded payloads (base64, hex, %-escapes, rot13,
  reversed). ``scan`` also returns ``clean_text``: the message with the flagged parts removed.
* :func:`judge_llm_answer` — the injection rule, the first step of the LLM tier's acceptance
  policy. With signals the message goes to human review with reason ``possible prompt injection:
  <signals>`` (``verify`` mode: the LLM's answer may stand, flagged, when it is the top label of the
  earlier tier's ranking *of the clean text* and the message does not name it). Without signals,
  an answer that overrules the evidence with a label the message spells out is held too
  (``label_echo``). Anything else ``pass``-es to the calibrated policy
  (:mod:`frontdesk.llm.acceptance`), which decides whether the answer beats the classifier's guess.

What it does not do: it is a deny-list of patterns, so new phrasings, languages and encodings get
past the detector, and a message that *describes* another need in plain words is indistinguishable
from a customer stating it. The rule bounds the damage (an undetected attack still has to beat the
earlier tiers' evidence under the calibrated policy); it does not make the LLM obedient-proof.

Pure functions, standard library only. Written and measured by the injection study (corpus of 156
attacks in ``bench/data/injection_attacks.jsonl``, ``bench/injection.py``).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal
from urllib.parse import unquote

INJECTION_REASON = "possible prompt injection"

# -- normalisation -----------------------------------------------------------------------------------

#: Format characters that render as nothing (zero-width space/joiners, word joiner, BOM, soft hyphen …).
_INVISIBLE = re.compile("[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u2060-\u2064\u206a-\u206f\ufeff\ufe00-\ufe0f]")
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")
_TAGS = re.compile("[\U000e0000-\U000e007f]")
_INVISIBLE_IN_WORD = re.compile("[0-9A-Za-z][\u00ad\u034f\u180e\u200b-\u200f\u2060-\u2064\ufeff]+[0-9A-Za-z]")

#: Cyrillic and Greek letters that look like Latin ones (Unicode confusables, the common subset).
_HOMOGLYPHS = str.maketrans({
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c",
    "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "ԁ": "d", "ԛ": "q", "ԝ": "w",
    "һ": "h", "ӏ": "l", "ɡ": "g", "ո": "n", "ս": "u",
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C", "Т": "T",
    "У": "Y", "Х": "X", "Ѕ": "S", "І": "I", "Ј": "J",
    "α": "a", "ο": "o", "ι": "i", "ρ": "p", "κ": "k", "ν": "v", "τ": "t", "υ": "u", "χ": "x", "ε": "e",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N", "Ο": "O",
    "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
})
_LATIN = re.compile(r"[A-Za-z]")
_CONFUSABLE = re.compile("[" + "".join(k for k in map(chr, _HOMOGLYPHS.keys())) + "]")
_WORD = re.compile(r"\w+")
_LEET = str.maketrans({"4": "a", "@": "a", "3": "e", "1": "i", "!": "i", "|": "i", "0": "o", "5": "s", "$": "s", "7": "t", "+": "t"})
_LEET_TOKEN = re.compile(r"(?<![\w@$!|+])[\w@$!|+]*?[a-z][\w@$!|+]*+")  # starts only at a token's start: linear
_SPACED = re.compile(r"(?<![\w])(?:\w[ .\-]){3,}\w(?![\w])")


def _deleet(s: str) -> str:
    """Map leet digits/symbols to letters inside tokens that also contain letters ("1gn0r3" → "ignore")."""
    return _LEET_TOKEN.sub(lambda m: m.group().translate(_LEET), s)


def _despace(s: str) -> str:
    """Join runs of single characters ("i g n o r e", "S.Y.S.T.E.M") into words."""
    return _SPACED.sub(lambda m: m.group()[::2], s)


@dataclass(frozen=True)
class Views:
    """Normalised views of one text; patterns run on the view that suits them."""

    plain: str   # tag characters decoded, invisibles/bidi stripped, NFKC, case-folded (non-Latin patterns)
    folded: str  # plain + homoglyphs folded + spaced letters joined (Latin patterns)
    leet: str    # folded + de-leeted


#: runs of blanks / blank lines, shortened to two in the views: the patterns never need more, and long
#: runs made the role-marker pattern backtrack for seconds (a sentence boundary followed by blanks)
_BLANKS = re.compile(r"[ \t]{3,}")
_BLANK_LINES = re.compile(r"(?:[ \t]*\r?\n){3,}")


def views(text: str) -> Views:
    """The normalised views of ``text`` the patterns run on."""
    s = _TAGS.sub(lambda m: chr(ord(m.group()) - 0xE0000) if 0xE0020 <= ord(m.group()) <= 0xE007E else "", text)
    if _PCT1.search(s):
        s = unquote(s)
    s = _BIDI.sub("", _INVISIBLE.sub("", s))
    s = unicodedata.normalize("NFKC", s)
    s = _BLANK_LINES.sub("\n\n", _BLANKS.sub("  ", s))
    plain = s.casefold()
    folded = _despace(unicodedata.normalize("NFKC", s.translate(_HOMOGLYPHS)).casefold())
    return Views(plain, folded, _deleet(folded))


# -- patterns -------------------------------------------------------------------------------------

def _rx(*parts: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in parts), re.IGNORECASE | re.MULTILINE)


# Every run of decoration or blanks below is bounded ({0,8}, {0,3}): with open-ended ``\s*``/``*`` runs
# next to each other the pattern backtracked for minutes on a message of 1,000 "#\n" lines.
_BOUND = r"(?:^|[\n.!?;。！？；:,)\]>-][ \t\n]{0,3}|[ \t]{2})"  # start of a line or a sentence

ROLE_MARKER = _rx(
    _BOUND + r"[\[<(#* \t\n]{0,8}(?:system|sys|sistema|syst[eè]me|systemnachricht|assistant|asistente|assistente|developer|"
             r"admin(?:istrator)?|operator|ai|a\.i\.|human|instructions?|instrucciones|anweisung(?:en)?|"
             r"систем[аы]?|система|系统|系統|システム|النظام|σύστημα|सिस्टम|시스템|sistem|systeem)"
             r"(?:[ \t]{1,3}(?:notice|note|override|message|prompt|update|instruction|instructions|nachricht|nota|avis|hinweis))?"
             r"[ \t]{0,3}[\]>)*]{0,3}[ \t]{0,3}[:：>=]",
    r"<\|[ \t]{0,3}(?:im_start|im_end|system|user|assistant|end|eot_id|start_header_id|endoftext)[ \t]{0,3}\|>",
    r"\[/?[ \t]{0,3}(?:inst|sys|system|assistant)[ \t]{0,3}\]", r"<</?[ \t]{0,3}sys[ \t]{0,3}>>",
    r"</?[ \t]{0,3}(?:system|assistant|instructions?|prompt|developer)[ \t]{0,3}>",
    r"^[ \t]{0,3}#{2,6}[ \t]{0,3}(?:system|instruction|instructions|assistant|response|new rules)\b",
    r"^[ \t]{0,3}(?:q|a|input|output|label|answer)[ \t]{0,3}:[ \t]{0,3}\S{0,60}[ \t]{0,3}$",
)

IGNORE_PREVIOUS = _rx(
    # English: a dismissive verb, then within a few words an instruction noun
    r"\b(?:ignore|ignoring|disregard|forget|override|overrule|bypass|skip|discard|drop|neglect|do\s*n[o']?t\s+(?:follow|obey|apply)|"
    r"pay\s+no\s+attention\s+to|never\s?mind|set\s+aside|put\s+aside|scratch|throw\s+out|abandon|stop\s+following)\b[^.\n]{0,40}?\b(?:instructions?|rules?|prompts?|guidance|guidelines?|directions?|"
    r"directives?|constraints?|orders|policy|policies|context|system\s+message|everything|all\s+of\s+(?:the\s+)?above)\b",
    r"\b(?:what|everything|anything|the\s+(?:guidance|instructions?|rules?))\s+you\s+(?:were|have\s+been|got)\s+(?:told|given|instructed|taught)\b",
    r"\b(?:previous|prior|earlier|preceding|above|original)\s+(?:instructions?|rules?|prompts?|guidance|directives?)\b[^.\n]{0,30}"
    r"\b(?:outdated|void|obsolete|cancel+ed|no longer|invalid|don'?t apply|do not apply|revoked)",
    # Spanish, Portuguese, Italian, French, German, Dutch, Turkish
    r"\b(?:ignora|ignore|ignoren|ignorar|olvida|olvide|olvidar|descarta|omite|no\s+sigas|no\s+hagas\s+caso|esque[cç]a|desconsidere|despreze|"
    r"dimentica|trascura|non\s+seguire|non\s+considerare|oublie|oubliez|ne\s+tiens?\s+pas\s+compte|ne\s+tenez\s+pas\s+compte|fais\s+abstraction|"
    r"ne\s+(?:pas\s+)?suivre|ne\s+suis\s+pas|ne\s+suivez\s+pas|nicht\s+befolgen|befolge\s+nicht|"
    r"ignoriere|ignorier|vergiss|vergessen\s+sie|missachte|negeer|vergeet|yok\s+say|g[öo]rmezden\s+gel)\b[^.\n]{0,40}?"
    r"\b(?:instrucciones|instrucci[oó]n|reglas|indicaciones|lo\s+anterior|todo\s+lo\s+anterior|instru[cç][oõ]es|regras|istruzioni|regole|"
    r"consignes|instructions|r[eè]gles|ci-dessus|anweisungen|regeln|vorgaben|instruktionen|instructies|regels|talimatlar\w*|kurallar\w*)",
    # Russian, Chinese, Japanese, Korean, Arabic, Greek, Hindi
    r"(?:игнорир\w*|забудь\w*|не\s+обращай\w*|не\s+следуй\w*|отмени\w*)[^.\n]{0,40}?(?:инструкц\w*|указани\w*|правил\w*|выше)",
    r"(?:忽略|无视|無視|忘记|忘記|不要理会|不要遵守|请无视)[^。\n]{0,20}?(?:指令|指示|规则|規則|以上|之前|上面|提示)",
    r"(?:以前|前|上記|これまで)の?(?:指示|命令|ルール)[^。\n]{0,10}?無視",
    r"(?:이전|앞의|위의)\s*(?:지시|명령|규칙)[^.\n]{0,15}?무시",
    r"تجاهل[^.\n]{0,40}?(?:التعليمات|الأوامر|القواعد)",
    r"(?:αγνόησε|αγνοήστε|ξέχασε)[^.\n]{0,40}?(?:οδηγίες|κανόνες)",
    r"(?:निर्देशों|नियमों)[^।\n]{0,30}?(?:अनदेखा|नज़रअंदाज़|भूल)",
)

DIRECTIVE = _rx(
    r"\b(?:re)?(?:classify|categori[sz]e|label|tag)\s+(?:this|it|the|my|that|me|as|under|into)\b",
    r"\b(?:mark|file|flag|sort|route)\s+(?:this|it|this\s+one|the\s+message|my\s+message)\s+(?:as|under|into)\b", r"\bput\s+(?:this|it)\s+(?:as|under)\b",
    r"\b(?:answer|respond|reply|output)\s+(?:with|only|exactly)\b", r"\b(?:answer|output)\s*[:=]", r"\b(?:output|print)\s+(?:it|that)\b",
    r"\b(?:your|the)\s+answer\s+(?:must|should|has\s+to)\b",
    r"\byou(?:'re|\s+are)\s+now\s+(?:a|an|the|in)\b[^.\n]{0,30}?\b(?:classifier|router|bot|model|assistant|ai|system|mode|tagger)\b",
    r"\byou\s+only\s+(?:output|answer|say|respond)",
    r"\byou\s+(?:must|should|have\s+to|need\s+to|will|shall)\s+(?:now\s+|only\s+|always\s+)?(?:classify|label|categori[sz]e|mark|tag|output)\b",
    r"\byou\s+(?:must|should|have\s+to|need\s+to|will|shall)\s+(?:now\s+|only\s+|always\s+)?(?:answer|respond|say|reply|return|choose|pick|put)\s+(?:with|only|exactly|as|under|:)",
    r"\balways\s+(?:answers?|outputs?|responds?|says?|returns?)\b", r"\bonly\s+(?:outputs?|answers?\s+with|responds?\s+with)\b",
    r"\bnew\s+(?:rules?|instructions?|task|system\s+prompt)\b",
    r"\b(?:classifier|classification|routing)\s+(?:rules?|instructions?)\b",
    r"\b(?:rules|instructions)\s+(?:have\s+been\s+|are\s+|were\s+)?(?:updated|changed|replaced)\b",
    r"\bconfidence\b[^.\n]{0,16}?(?:\b1(?:\.0+)?\b|100\s?%|must\s+be|=)",
    r"\b(?:correct|right|only\s+valid|expected|proper)\s+(?:label|intent|category|class|classification|output)\b",
    r"\b(?:system\s+prompt|candidate\s+labels|your\s+prompt|hidden\s+prompt)\b", r"\b(?:print|repeat|reveal|show|output)\s+(?:me\s+)?(?:your|the)\s+(?:instructions|rules|prompt)\b",
    r"\b(?:pretend|act\s+as\s+if)\s+(?:that\s+)?you\b", r"\blet'?s\s+play\s+a\s+game\b", r"\b(?:jailbreak|dan\s+mode|developer\s+mode)\b",
    r"\b(?:ai|a\.i\.|llm|gpt|chatgpt|language\s+model|model|assistant|classifier|chatbot|bot|routerbot|router|routing\s+(?:system|model|engine)|"
    r"classification\s+(?:model|system|engine))\b[^.\n]{0,40}?\b(?:must|should|shall|has\s+to|needs\s+to|is\s+(?:instructed|required|to))\b[^.\n]{0,30}?"
    r"\b(?:answer|output|respond|say|classify|label|mark|tag|route|put|file|choose|pick|use|select|return)\b",
    r"\b(?:dear|attention|note\s+(?:to|for)|message\s+(?:to|for)|instructions?\s+(?:to|for)|instructing)\s+(?:the\s+|any\s+|all\s+)?"
    r"(?:ai|a\.i\.|model|assistant|classifier|bot|llm|chatbot|classification\s+model|whoever\s+(?:sorts|classifies|reads)|reviewer|system)\b",
    r"\byour\s+operator\b", r"\bexamples?\s+of\s+(?:correct|right)\s+(?:classification|labels?|answers?)\b",
    r"\bwhat\s+is\s+the\s+label\b", r"\blet\s+[a-z]\s*=\s*['\"]", r"['\"]\s*\+\s*['\"]", r"\b(?:followed\s+by|concatenat\w+|joined\s+with)\b[^.\n]{0,30}\b(?:output|answer|label)\b",
    # other languages
    r"\b(?:clasifica|clasifique|clasificar|etiqueta|categoriza)\s+(?:este|esta|el|la|lo|como)\b", r"\bresponde\s", r"\binstrucci[oó]n\s+para\s+el\s+modelo\b",
    r"\bnuevas\s+reglas\b", r"\b(?:la\s+)?etiqueta\s+correcta\b", r"\bconfianza\s+(?:de\s+)?1\b",
    r"\bclass(?:e|er|ifie|ifiez|ifier)\s+(?:ce|cette|le|la|comme)\b", r"\br[ée]ponds?\b", r"\bnouvelles\s+r[èe]gles\b",
    r"\bl['’][ée]tiquette\s+(?:correcte|est)\b", r"\bla\s+cat[ée]gorie\s+(?:correcte\s+)?est\b", r"\bconfiance\s+de\s+1\b", r"\bc'est\s+un\s+ordre\b",
    r"\bklassifizier\w*\b", r"\bantworte\w*\s+mit\b", r"\bneue\s+regeln\b", r"\b(?:die\s+)?richtige\s+kategorie\b", r"\bhinweis\s+an\s+das\s+modell\b", r"\bdas\s+label\s+ist\b",
    r"\bclassifique\b", r"\bresponda\b", r"\bnovas\s+regras\b", r"\b(?:a\s+)?etiqueta\s+correta\b", r"\br[óo]tulo\s*:",
    r"\bclassifica\s+(?:questo|questa|come)\b", r"\brispondi\b", r"\bnuove\s+regole\b", r"\bl['’]etichetta\s+[èe]\b", r"\bla\s+categoria\s+corretta\b",
    r"классифицир\w*", r"новые\s+правила", r"правильн\w+\s+(?:метк\w*|категори\w*|ответ\w*)", r"(?:^|\s)ответ\s*:?\s+[a-z]",
    r"分类为|分類為|新规则|新規則|正确的标签|正確的標籤|置信度|回答\s*[a-z]", r"と分類|正しいラベル|分類してください",
    r"صنّف|صنف\s+هذه|التصنيف\s+الصحيح", r"απάντησε", r"उत्तर\s+दें", r"분류하세요|분류해", r"olarak\s+s[ıi]n[ıi]fland[ıi]r", r"\bclassificeer\b",
)

JSON_ANSWER = _rx(
    r"[{,]\s*[\"'`]?\s*(?:labels?|intent|confidence|rationale|category|classification)\s*[\"'`]?\s*[:=]",
    r"\b(?:labels?|intent|category)\s*=\s*[\[\"'a-z]",
)

FENCE = _rx(
    r"<<<|>>>|message\s*>{2,}|<{2,}\s*message", r"[＜〈《⟨‹«]{3}|[＞〉》⟩›»]{3}",
    r"customer\s+message\s+\((?:between|data)", r"\bcandidate\s+labels\s*:", r"<<<\s*(?:message|end)\b",
    r"</?\s*(?:message|user|data|context|input|customer|query|text)\s*>",
    r"\b(?:end|begin|start)\s+of\s+(?:the\s+)?(?:customer\s+|user\s+)?(?:message|data|input|user\s+input|text|prompt)\b",
    r"^[ \t=\-#*_~]*+(?:end|begin|start)\s+(?:customer\s+|user\s+)?(?:message|data|input|user\s+input)[ \t=\-#*_~]*+$",
    r"(?<!=)={3,}+\s*+(?:end|begin|system|start)", r"(?<!-)-{3,}+\s*+(?:end|begin|system|start)", r'"""', r"'''",
)

MARKDOWN = _rx(r"```", r"^\s*>\s*\[!\w+\]", r"\*\*\s*instructions?\b[^*]{0,40}\*\*")

HIDDEN_MARKUP = re.compile(r"<!--.*?(?:-->|$)|<(\w+)[^>]*(?:display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0|\bhidden\b)[^>]*>.*?(?:</\1\s*>|$)",
                           re.IGNORECASE | re.DOTALL)
# Possessive quantifiers and a run-start lookbehind keep this linear: a message of 5,000 trailing spaces
# took minutes with the plain ``{40,}…\s*\S`` form (each start, each split of the run, retried).
PADDING = re.compile(r"(?:(?<![ \t\u00a0\u2000-\u200a\u3000])[ \t\u00a0\u2000-\u200a\u3000]{40,}+"
                     r"|(?<![ \t\u00a0\r\n])(?:[ \t\u00a0]*+\r?\n){8,}+)\s*+\S")

_B64 = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{16,}={0,2}(?![A-Za-z0-9+/=_-])")
_HEX = re.compile(r"(?<![0-9a-f])(?:[0-9a-f]{2}){8,}(?![0-9a-f])", re.IGNORECASE)
_PCT = re.compile(r"(?:%[0-9a-f]{2}){3,}", re.IGNORECASE)
_PCT1 = re.compile(r"%[0-9a-f]{2}", re.IGNORECASE)
_READABLE = re.compile(r"[a-z]{3,}", re.IGNORECASE)
_KEYWORDS = re.compile(r"ignor|disregard|forget|overrid|system|instruc|classif|label|categor|intent|answer|respond|output|confiden|"
                       r"assistant|rules|prompt|[a-z]_[a-z]|<\||\[inst|#", re.IGNORECASE)

_CUE_STRONG = _rx(
    r"\b(?:labels?|labell?ed|intent|intents?|category|categories|categori[sz]ed?|classify|classified|classification|tag(?:ged)?|"
    r"route(?:d)?\s+(?:to|as)|file\s+(?:it\s+|this\s+)?(?:under|as)|(?:logged|filed|treated|classed|recorded|handled|processed|booked)\s+(?:as|under)|mark(?:ed)?\s+(?:it\s+|this\s+)?as|answer\s+with|respond\s+with|output)\b",
    r"->|=>|→|\ba\s*:",
    r"\b(?:etiqueta|categor[íi]a|clasifica\w*|intenci[oó]n|[ée]tiquette|cat[ée]gorie|kategorie|r[óo]tulo|etichetta|"
    r"responde|r[ée]ponds|responda|rispondi|antworte\w*|ответ|метк\w*|категори\w*|как|标签|標籤|分类|分類|类别|回答|答案|ラベル|カテゴリ|"
    r"التصنيف|απάντησε|etiket|kategori|categorie|classificeer)",
)



#: a verb or marker directly followed by a label name ("answer timer", "#alarm", "-> request_refund")
_CUE_IMMEDIATE = _rx(r"(?:^|[\s(\[])#(?=\w)", r"\b(?:answer|respond|reply|output|return|choose|pick|select|label|tag|intent|category|"
                     r"r[ée]pondre|r[ée]pondez|responder|responda|antworten|rispondere|w[äa]hle|choisis|elige|escolha|scegli)\s*[:=]?\s*[\"'`]?(?=\w)")
#: a label name followed by a queue-ish noun ("a request refund case", "the timer bucket")
_POSTFIX = re.compile(r"\s+(?:case|ticket|bucket|queue|category|intent|label|class)\b")

# -- label forms ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class _LabelIndex:
    literal: dict[str, str]           # snake/kebab/squashed surface form → label (multi-word labels only)
    spaced: list[tuple[re.Pattern[str], str, bool]]  # "cancel transfer" pattern, label, multi-word?
    phrases: re.Pattern[str] | None   # any multi-word label in plain words, longest first
    by_phrase: dict[str, str]         # "cancel transfer" → cancel_transfer


@lru_cache(maxsize=32)
def _label_index(labels: tuple[str, ...]) -> _LabelIndex:
    literal: dict[str, str] = {}
    spaced = []
    by_phrase: dict[str, str] = {}
    for label in labels:
        base = label.casefold().rstrip("?")
        parts = [p for p in re.split(r"[_\-\s]+", base) if p]
        if not parts:
            continue
        multi = len(parts) > 1
        if multi:
            # kebab only for 3+ words: "carry-on", "check-in" are ordinary spellings of 2-word labels
            for form in ("_".join(parts), "-".join(parts)) if len(parts) > 2 else ("_".join(parts),):
                literal[form] = label
                literal[_deleet(form)] = label
            squashed = "".join(parts)
            if len(squashed) >= 9:
                literal[squashed] = label
        words = r"[\s_\-]+".join(map(re.escape, parts))
        spaced.append((re.compile(rf"(?<![\w]){words}(?![\w])"), label, multi))
        if multi:
            by_phrase[" ".join(parts)] = label
    alts = sorted(by_phrase, key=len, reverse=True)
    phrases = re.compile(r"(?<!\w)(?:" + "|".join(r"[\s_\-]+".join(map(re.escape, a.split())) for a in alts) + r")(?!\w)") if alts else None
    return _LabelIndex(literal, spaced, phrases, by_phrase)


def _echoed(v: Views, index: _LabelIndex) -> set[str]:
    """Multi-word labels whose name appears in plain words anywhere ("… it's a failed transfer")."""
    if index.phrases is None:
        return set()
    return {index.by_phrase[re.sub(r"[\s_\-]+", " ", m.group())] for m in index.phrases.finditer(v.folded)}


_LITERAL_TOKEN = re.compile(r"[a-z0-9?]+(?:[_\-][a-z0-9?]+)+|[a-z0-9]{9,}")


def _named_labels(v: str, index: _LabelIndex) -> set[str]:
    """Labels the text names: snake/kebab/squashed forms anywhere, spaced forms only right after a cue."""
    found = {index.literal[t.rstrip("?")] for t in _LITERAL_TOKEN.findall(v) if t.rstrip("?") in index.literal}
    for m in _CUE_IMMEDIATE.finditer(v):
        window = v[m.end(): m.end() + 48]
        for pattern, label, _ in index.spaced:
            if pattern.match(window):
                found.add(label)
    for pattern, label, _ in index.spaced:
        for m in pattern.finditer(v):
            if _POSTFIX.match(v, m.end()):
                found.add(label)
    for m in _CUE_STRONG.finditer(v):
        window = v[m.end(): m.end() + 48]
        for pattern, label, _ in index.spaced:
            if pattern.search(window):
                found.add(label)
    return found


# -- scan ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scan:
    """What the detector found: ``signals`` (names, sorted), the labels the text names, the clean text."""

    signals: tuple[str, ...]
    named: frozenset[str] = field(default_factory=frozenset)
    clean_text: str = ""
    echoed: frozenset[str] = field(default_factory=frozenset)  # multi-word labels named in plain words (no cue needed)

    def __bool__(self) -> bool:
        return bool(self.signals)


def _text_signals(v: Views, index: _LabelIndex | None) -> tuple[set[str], set[str]]:
    """Pattern signals on one text's views (no decoding): (signal names, named labels)."""
    sig: set[str] = set()
    every = tuple(dict.fromkeys((v.plain, v.folded, v.leet)))  # usually one distinct view
    for name, pattern, texts in (
        ("role_marker", ROLE_MARKER, every),
        ("ignore_previous", IGNORE_PREVIOUS, every),
        ("model_directive", DIRECTIVE, every),
        ("json_answer", JSON_ANSWER, (v.folded,)),
        ("fence_forgery", FENCE, (v.plain, v.folded)),
        ("markdown_fence", MARKDOWN, (v.folded,)),
    ):
        if any(pattern.search(t) for t in texts):
            sig.add(name)
    named: set[str] = set()
    if index is not None:
        named = _named_labels(v.folded, index) | (_named_labels(v.leet, index) if v.leet != v.folded else set())
        sig.update(f"label_named:{lab}" for lab in named)
    return sig, named


def _decoded_payloads(text: str, v: Views) -> Iterable[tuple[str, str]]:
    """(kind, decoded text) for every encoded blob worth a look."""
    for m in _B64.finditer(text):
        blob = m.group()
        if not (re.search(r"[a-z]", blob) and re.search(r"[A-Z0-9]", blob)):
            continue  # a plain word or number, not base64
        for alt in (blob, blob.replace("-", "+").replace("_", "/")):
            try:
                raw = base64.b64decode(alt + "=" * (-len(alt) % 4), validate=True)
                out = raw.decode("utf-8")
            except (binascii.Error, ValueError):
                continue
            yield "encoded_base64", out
            break
    for m in _HEX.finditer(text):
        try:
            yield "encoded_hex", bytes.fromhex(m.group()).decode("utf-8")
        except ValueError:
            pass
    if _PCT.search(text):
        yield "encoded_url", unquote(text)
    for kind, decoded in (("encoded_rot13", codecs.decode(v.folded, "rot13")), ("encoded_reversed", v.folded[::-1])):
        if _KEYWORDS.search(decoded):  # cheap pre-filter: most text decodes to nothing instruction-like
            yield kind, decoded


def _repetitive(text: str) -> bool:
    """A phrase stuffed in many times ("new card new card new card …"): 2-3-word n-grams ×5, or a word ×8."""
    words = re.findall(r"\w+", text.casefold())
    if len(words) < 8:
        return False
    for n, times in ((1, 8), (2, 5), (3, 5)):
        grams = Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
        gram, count = grams.most_common(1)[0]
        if count >= times and sum(map(len, gram)) >= 4:
            return True
    return False


def _readable(s: str) -> bool:
    printable = sum(c.isprintable() or c.isspace() for c in s) / max(1, len(s))
    return printable > 0.95 and len(_READABLE.findall(s)) >= 2


def scan(text: str, labels: Sequence[str] = (), *, evidence: bool = True) -> Scan:
    """Detect injection signals in ``text`` (``labels``: the label set, to spot names of labels).

    With ``evidence`` the clean text (flagged parts removed) is computed too.
    """
    index = _label_index(tuple(labels)) if labels else None
    sig: set[str] = set()
    if _TAGS.search(text):
        sig.add("unicode_tags")
    if _INVISIBLE_IN_WORD.search(text):
        sig.add("zero_width")
    if _BIDI.search(text):
        sig.add("bidi_control")
    if any(_LATIN.search(w) and _CONFUSABLE.search(w) for w in _WORD.findall(text)):
        sig.add("homoglyph")
    if HIDDEN_MARKUP.search(text):
        sig.add("hidden_markup")
    if PADDING.search(text):
        sig.add("whitespace_padding")
    if _repetitive(text):
        sig.add("repetition")
    v = views(text)
    found, named = _text_signals(v, index)
    sig |= found
    for kind, payload in _decoded_payloads(text, v):
        inner, inner_named = _text_signals(views(payload), index)
        strong = {s for s in inner if s not in ("markdown_fence",)}
        if kind in ("encoded_rot13", "encoded_reversed"):  # symbols and non-Latin scripts survive both: new signals only
            strong = {s for s in strong if s != "fence_forgery"} - found
        if strong or (kind in ("encoded_base64", "encoded_hex") and _readable(payload)):
            sig.add(kind)
            sig |= strong
            named |= inner_named
    clean = clean_text(text, labels) if (evidence and sig) else text
    echoed = frozenset(_echoed(v, index)) if index is not None else frozenset()
    return Scan(tuple(sorted(sig)), frozenset(named), clean, echoed)


def injection_signals(text: str, labels: Sequence[str] = ()) -> list[str]:
    """The names of the injection signals that fire on ``text`` (empty: none)."""
    return list(scan(text, labels, evidence=False).signals)


# -- clean text ----------------------------------------------------------------------------------

_SENTENCE = re.compile(r"[^\n.!?。！？]+[.!?。！？]*|[\n.!?。！？]+")
_FORGED_BLOCK = re.compile(r"<\s*(system|assistant|instructions?|prompt|developer)\s*>.*?<\s*/\s*\1\s*>", re.IGNORECASE | re.DOTALL)
_MARKER_TOKENS = _rx(
    r"<\|[^|>]{0,20}\|>", r"\[/?\s*(?:inst|sys|system|assistant)\s*\]", r"<</?\s*sys\s*>>", r"</?\s*(?:system|assistant|instructions?|prompt|message|user|data)\s*>",
    r"<<<\s*message|message\s*>>>", r"<<<|>>>", r"```\w*",
)


def clean_text(text: str, labels: Sequence[str] = ()) -> str:
    """``text`` without what the detector flags: hidden markup, text after padding, encoded blobs,
    marker tokens, and every sentence or line on which a signal fires. May be empty."""
    index = _label_index(tuple(labels)) if labels else None
    s = _FORGED_BLOCK.sub(" ", HIDDEN_MARKUP.sub(" ", text))
    pad = PADDING.search(s)
    if pad:
        s = s[: pad.start()]
    s = _TAGS.sub("", s)
    s = _B64.sub(lambda m: " " if re.search(r"[a-z]", m.group()) and re.search(r"[A-Z0-9]", m.group()) else m.group(), s)
    s = _HEX.sub(" ", _PCT.sub(" ", s))
    s = _BIDI.sub("", _INVISIBLE.sub("", s))
    s = unicodedata.normalize("NFKC", s)
    s = _despace(_MARKER_TOKENS.sub(" ", s))
    kept = []
    for m in _SENTENCE.finditer(s):
        piece = m.group()
        if not piece.strip():
            continue
        found, _ = _text_signals(views(piece), index)
        if not found and not any(_text_signals(views(p), index)[0] - {"fence_forgery", "markdown_fence"}
                                 for p in (codecs.decode(piece, "rot13"), piece[::-1])):
            kept.append(piece.strip())
    return " ".join(kept).strip()


# -- the injection rule ---------------------------------------------------------------------------

Verdict = Literal["pass", "flag", "review"]


@dataclass(frozen=True)
class Judgement:
    """What the injection rule makes of the LLM's answer: ``pass`` (no injection concern: the
    acceptance policy decides), ``flag`` (it may stand, but a human looks), or ``review`` (human
    review, the LLM's answer set aside); ``reason`` says why, ``supported`` is the label the
    earlier tiers' evidence supports."""

    verdict: Verdict
    reason: str
    supported: str | None = None


def _words(label: str) -> list[str]:
    return [p for p in re.split(r"[_\-\s]+", label.casefold().rstrip("?")) if p]


def describe_signals(signals: Sequence[str]) -> str:
    """The signals for a reason string: ``ignore_previous, role_marker, names cancel_transfer``."""
    names = [s.split(":", 1)[1] for s in signals if s.startswith("label_named:")]
    plain = sorted({s for s in signals if not s.startswith("label_named:")})
    return ", ".join(plain + [f"names {lab}" for lab in sorted(names)])


def review_reason(signals: Sequence[str], supported: tuple[str, float] | None) -> str:
    """The reason of a message sent to review on its signals alone (the LLM not called)."""
    evidence = f"'{supported[0]}' ({supported[1]:.2f})" if supported else "nothing (no text left once the flagged parts are removed)"
    return f"{INJECTION_REASON}: {describe_signals(signals)}; the LLM is not asked, the earlier tiers' evidence supports {evidence}"


def judge_llm_answer(
    llm_labels: Sequence[str],
    earlier_ranked: Sequence[tuple[str, float]],
    signals: Sequence[str],
    *,
    on_signals: Literal["verify", "review"] = "review",
    flag_when_verified: bool = True,
    echoed: Collection[str] = (),
) -> Judgement:
    """The injection rule: may the LLM's answer go on to the acceptance policy?

    ``earlier_ranked``: the last calibrated tier's (label, probability) ranking, best first — of the
    *clean* text (``Scan.clean_text``) when signals fired. ``signals``: :func:`injection_signals`
    (``label_named:X`` entries name labels). ``echoed``: :attr:`Scan.echoed`.

    * Signals fired: ``review`` (``on_signals="review"``); with ``"verify"`` the answer is ``flag``-ged
      (stands, a human looks) only if every label in it is the earlier tier's top label on the clean
      text and is not named in the message, else ``review``.
    * No signals, but the answer is a multi-word label the message spells out in plain words while
      the earlier tier's top label is another one (whose name does not contain it): ``review`` with
      ``possible prompt injection: label_echo …`` — the LLM overruling the evidence in favour of a
      label the text names is the injection pattern the detector cannot see ("… it's a failed transfer").
    * Otherwise (and for an empty answer, "none of the candidates"): ``pass``.
    """
    if not llm_labels:
        return Judgement("pass", "the LLM chose none of the candidates")
    top, p_top = (earlier_ranked[0] if earlier_ranked else (None, 0.0))
    answer = ", ".join(f"'{lab}'" for lab in llm_labels)
    evidence = f"'{top}' ({p_top:.2f})" if top is not None else "nothing (no text left once the flagged parts are removed)"
    if signals:
        named = {s.split(":", 1)[1] for s in signals if s.startswith("label_named:")}
        shown = describe_signals(signals)
        if on_signals == "verify" and top is not None and all(lab == top for lab in llm_labels) and not (set(llm_labels) & named):
            why = f"{INJECTION_REASON}: {shown}; the LLM's answer {answer} is the earlier tiers' top label {evidence} on the message without them"
            return Judgement("flag" if flag_when_verified else "pass", why, top)
        return Judgement("review", f"{INJECTION_REASON}: {shown}; the LLM answered {answer}, the earlier tiers' evidence supports {evidence}", top)
    top_words = " ".join(_words(top)) if top is not None else ""
    echo = [lab for lab in llm_labels if lab in echoed and lab != top and " ".join(_words(lab)) not in top_words]
    if echo:
        return Judgement("review", f"{INJECTION_REASON}: label_echo (the message names '{echo[0]}' in plain words); "
                                   f"the LLM answered {answer}, the earlier tiers' evidence supports {evidence}", top)
    return Judgement("pass", "no sign of prompt injection", top)
