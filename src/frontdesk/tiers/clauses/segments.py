"""Splitting a message into candidate clauses at joiners, and deriving clause training data from
multi-label examples."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from frontdesk.data.dataset import Example
from frontdesk.tiers.clauses.params import TOKEN



@dataclass(frozen=True, slots=True)
class Parsed:
    """A tokenised message: lower-cased tokens, their character spans, candidate boundaries (token spans)."""

    text: str
    tokens: tuple[str, ...]
    spans: tuple[tuple[int, int], ...]
    cands: tuple[tuple[int, int], ...]

    def clauses(self, chosen: Sequence[int]) -> list[str]:
        """The clauses (substrings of the text) left when the candidates ``chosen`` (ascending) are cut."""
        if not self.tokens:
            return [self.text.strip()]
        out, start = [], 0
        for c in chosen:
            s, e = self.cands[c]
            out.append(self.text[self.spans[start][0]:self.spans[s - 1][1]])
            start = e
        out.append(self.text[self.spans[start][0]:self.spans[-1][1]])
        return out


class Splitter:
    """Finds candidate clause boundaries: runs of joiners with words on both sides."""

    def __init__(self, joiners: Sequence[str]) -> None:
        self.joiners = {tuple(t.lower() for t in TOKEN.findall(j)) for j in joiners}
        self.longest = max(len(j) for j in self.joiners)

    def parse(self, text: str) -> Parsed:
        matches = list(TOKEN.finditer(text))
        tokens = tuple(m.group().lower() for m in matches)
        found: list[list[int]] = []
        i = 0
        while i < len(tokens):
            n = next((n for n in range(min(self.longest, len(tokens) - i), 0, -1) if tokens[i:i + n] in self.joiners), 0)
            if not n:
                i += 1
                continue
            if found and found[-1][1] == i:  # adjacent joiners form one boundary (", and then")
                found[-1][1] = i + n
            else:
                found.append([i, i + n])
            i += n
        cands = tuple((s, e) for s, e in found if s > 0 and e < len(tokens))
        return Parsed(text, tokens, tuple(m.span() for m in matches), cands)


def boundary_features(p: Parsed, ci: int) -> list[str]:
    """Context features of candidate ``ci``: the joiner, three words either side, neighbouring bigrams, position."""
    s, e = p.cands[ci]
    t, n = p.tokens, len(p.cands)
    feats = ["j=" + " ".join(t[s:e])]
    for k in range(1, 4):
        feats.append(f"L{k}=" + (t[s - k] if s - k >= 0 else "<s>"))
        feats.append(f"R{k}=" + (t[e + k - 1] if e + k - 1 < len(t) else "</s>"))
    feats += ["LL=" + " ".join(t[max(0, s - 2):s]), "RR=" + " ".join(t[e:e + 2]), f"JR={t[s]}|{t[e]}",
              f"ncand={min(n, 5)}", f"idx={min(ci, 5)}", f"ridx={min(n - 1 - ci, 5)}"]
    return feats


def known_clauses(examples: Sequence[Example], parsed: Sequence[Parsed]) -> set[str]:
    """Clauses whose split is certain: single-intent messages, and messages with exactly k - 1 candidates."""
    known: set[str] = set()
    for ex, p in zip(examples, parsed):
        if len(ex.labels) == 1:
            known.add(ex.text.strip())
        elif len(p.cands) == len(ex.labels) - 1:
            known.update(p.clauses(range(len(p.cands))))
    return known


def clause_examples(parsed: Sequence[Parsed], segs: Sequence[tuple[tuple[int, ...], tuple[str, ...]] | None]) -> list[Example]:
    """One example per distinct clause, labelled by its most frequent derived label; sorted by text."""
    votes: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for p, seg in zip(parsed, segs):
        if seg is not None:
            for clause, label in zip(p.clauses(seg[0]), seg[1]):
                votes[clause][label] += 1
    return [Example(c, (votes[c].most_common(1)[0][0],)) for c in sorted(votes)]
