"""Label probabilities from token log-probabilities: what an answer's tokens say about the label it names.

Both providers that return log-probabilities use it: the OpenAI-compatible one (the model's own
distribution, :func:`label_probs_from_logprobs`) and the in-process llama.cpp one, whose grammar picks
among the tokens the schema allows (:func:`constrained_label_probs`, renormalised over them). Each
finds where a label stands in the JSON answer (:func:`label_value_spans`) and which tokens spell it
(:func:`_aligned`: the tokens' bytes against the answer's bytes).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from frontdesk.llm.prompt import NONE

_JSON_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"', re.S)

Token = tuple[str, float, "Sequence[int] | None"]
"""An OpenAI-style token: (text, log-probability, UTF-8 bytes or None)."""


def label_value_spans(text: str, labels: Iterable[str]) -> dict[str, tuple[int, int]]:
    """Character span (inside the quotes) of the first occurrence of each label as a JSON string *value*.

    Keys (a string followed by ``:``) are skipped, and so are escaped quotes inside other strings, so a
    label mentioned inside the rationale or used as a key never counts.
    """
    wanted = set(labels)
    spans: dict[str, tuple[int, int]] = {}
    for m in _JSON_STRING.finditer(text):
        rest = text[m.end():].lstrip()
        if rest.startswith(":"):
            continue
        try:
            value = json.loads(m.group(0))
        except ValueError:
            continue
        if value in wanted and value not in spans:
            spans[value] = (m.start(1), m.end(1))
    return spans


def _aligned(text: str, pieces: Sequence[bytes]) -> tuple[bytes, int, list[int]] | None:
    """The tokens' bytes joined, where ``text`` starts in them (some servers strip whitespace around the
    content), and each token's start offset; None when the tokens do not spell out ``text``."""
    joined = b"".join(pieces)
    base = joined.find(text.encode("utf-8"))
    if base < 0:
        return None
    starts, pos = [], 0
    for p in pieces:
        starts.append(pos)
        pos += len(p)
    return joined, base, starts


def label_probs_from_logprobs(text: str, tokens: Sequence[Token], labels: Iterable[str]) -> dict[str, float] | None:
    """P(label) = exp(sum of the log-probs of the tokens overlapping the label's text in the JSON answer).

    ``tokens`` are ``(token, logprob, bytes)`` in order; ``bytes`` (the token's UTF-8 bytes, as the
    OpenAI API returns them) is used when present, so tokens that split a multi-byte character align
    correctly. Returns None when there are no tokens or they do not spell out ``text``; otherwise a
    dict with one entry per label that appears in the answer (possibly empty).
    """
    if not tokens:
        return None
    pieces = [bytes(b) if b is not None else tok.encode("utf-8") for tok, _, b in tokens]
    aligned = _aligned(text, pieces)
    if aligned is None:
        return None
    _, base, starts = aligned
    out: dict[str, float] = {}
    for label, (c0, c1) in label_value_spans(text, labels).items():
        b0 = base + len(text[:c0].encode("utf-8"))
        b1 = base + len(text[:c1].encode("utf-8"))
        total, hit = 0.0, False
        for (_, lp, _), s, p in zip(tokens, starts, pieces):
            if s < b1 and s + len(p) > b0:
                total += float(lp)
                hit = True
        if hit and math.isfinite(total):
            out[label] = min(1.0, math.exp(total))
    return out


def constrained_label_probs(text: str, tokens: Sequence[Mapping[str, Any]], labels: Iterable[str]) -> dict[str, float] | None:
    """P(label) for each label in the answer, from log-probabilities renormalised over what the schema allows.

    ``tokens`` are the OpenAI-style ``logprobs.content`` entries (``token``, ``logprob``, ``bytes``,
    ``top_logprobs``). llama.cpp reports the model's raw distribution, before the grammar; the
    grammar then picks among the tokens that keep the answer valid. So for every token overlapping
    a label's text, its probability is divided by the summed probability of the alternatives in
    ``top_logprobs`` that are consistent with *some* allowed label at that position (other labels,
    or shorter pieces of one), and the ratios are multiplied. That is the probability of the
    chosen path under the constrained distribution, up to the alternatives beyond ``top_logprobs``.
    Returns None when the tokens do not spell out ``text``; otherwise one entry per label (of
    ``labels``) found as a JSON string value in ``text``.
    """
    labels = list(labels)
    if not tokens:
        return None
    pieces = [_token_bytes(t) for t in tokens]
    aligned = _aligned(text, pieces)
    if aligned is None:
        return None
    joined, base, starts = aligned
    quoted = [json.dumps(x, ensure_ascii=False).encode("utf-8") for x in (*labels, NONE)]
    out: dict[str, float] = {}
    for label, (c0, c1) in label_value_spans(text, labels).items():
        q0 = base + len(text[: c0 - 1].encode("utf-8"))  # the opening quote
        b0 = q0 + 1
        b1 = base + len(text[:c1].encode("utf-8"))
        total, hit = 0.0, False
        for tok, s, piece in zip(tokens, starts, pieces):
            if not (s < b1 and s + len(piece) > b0):
                continue
            hit = True
            lead = joined[s:q0] if s < q0 else b""  # bytes before the quote this token must reproduce
            done = joined[q0:s] if s > q0 else b""  # the part of the quoted label already generated
            targets = [lead + q[len(done):] for q in quoted if q.startswith(done)]
            alts = {_token_bytes(a): float(a["logprob"]) for a in tok.get("top_logprobs") or ()}
            alts[piece] = float(tok["logprob"])
            z = sum(math.exp(lp) for b, lp in alts.items() if any(t.startswith(b) or b.startswith(t) for t in targets))
            total += float(tok["logprob"]) - math.log(z) if z > 0 else float("-inf")
        if hit and math.isfinite(total):
            out[label] = min(1.0, math.exp(total))
    return out


def _token_bytes(token: Mapping[str, Any]) -> bytes:
    raw = token.get("bytes")
    return bytes(raw) if raw is not None else str(token.get("token", "")).encode("utf-8")


__all__ = ["Token", "constrained_label_probs", "label_probs_from_logprobs", "label_value_spans"]
