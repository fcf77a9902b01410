"""Clause tier: multi-intent messages split at conjunctions, each clause classified, decoded jointly.

"play some jazz and then book a table for two" carries one intent per clause. The tier marks
*candidate boundaries* — runs of joiner words or punctuation (``joiners``: "and", ",", "and then", …)
— and scores every split into at most ``max_clauses`` clauses with three fitted models:

* a boundary classifier (logistic regression on the joiner and the words around it): does this
  candidate separate two requests? ("play rock and roll" has an "and" that does not);
* a clause classifier: any calibrated single-label tier (``clause_tier``; linear by default, the
  encoder for harder clause confusions), trained on clauses derived from the multi-label data;
* a whole-message one-vs-rest linear tier (multi-label), which votes on the label *set*.

A hypothesis is a split plus one label per clause (each clause's ``clause_top_k`` best labels; with
``distinct_labels`` no two clauses share one). It scores
``α·log P(split) + Σ log P(label | clause) + δ·Σ_labels log P(in/out | message)``
(``α`` = ``boundary_weight``, ``δ`` = ``message_weight``; with ``fit_weights`` a small grid is tried on
validation); the decoded set is the best hypothesis' labels, ties broken by enumeration order
(deterministic).

``predict_proba`` is each label's posterior probability of being in the set: a softmax over all
hypotheses at a temperature fitted on validation, summed over the hypotheses that contain the
label, then Platt-scaled on validation (one ``a, b`` shared by all labels, like the linear tier's
multi-label mode). A multi-label gate's decision threshold ``t`` therefore keeps exactly the labels
whose calibrated chance of being in the set is ≥ t, and its set confidence (the product of the
labels' certainties) estimates the chance that the whole set is right.

Clause training data is derived from the multi-label examples: a message with k labels and exactly
k − 1 candidates splits one way; otherwise the split whose clauses all occur as clauses elsewhere
wins, else the one a bootstrap classifier (linear, trained on the single-intent messages) explains
best. Labels go to clauses by the permutation that bootstrap classifier likes best. The saved
model holds JSON and ``.npy`` files plus one sub-directory per member tier — no pickles.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from scipy.optimize import minimize_scalar
from scipy.special import expit, logsumexp

from frontdesk.gating.calibration import expected_calibration_error
from frontdesk.data.dataset import Dataset, Example
from frontdesk.errors import ConfigError, DataError, FrontdeskError, ModelError, validation_message
from frontdesk.types import TierResult
from frontdesk.tiers.base import Progress, Tier, load_tier, parse_params, save_tier, tier_class
from frontdesk.tiers.linear import LinearTier

DEFAULT_JOINERS = ("and", ",", ";", "and then", "and also", "then", "also", "plus", "as well as")
_TOKEN = re.compile(r"\w+(?:['’&.\-]\w+)*|[^\w\s]")
_EPS = 1e-9
_CLIP = 1e-6
_BOOTSTRAP_BLOCKS = [{"analyzer": "word", "ngram_range": [1, 2]}]
#: values tried for each unset decoding weight (α, δ)
WEIGHT_GRID = (0.125, 0.25, 0.5, 1.0, 2.0)


class ClauseParams(BaseModel):
    """Settings of the clause tier.

    The decoding weights α = 1, δ = 0.25 were the best on MixSNIPS validation (never test): the
    whole-message model only tips close calls, so it cannot veto a clearly split clause. With
    ``fit_weights`` every pair of ``WEIGHT_GRID`` is tried on validation and replaces them only
    when it decodes more validation sets exactly (ties go to the pair nearest the given one).
    ``joiners`` are matched case-insensitively on whole tokens, longest
    first; adjacent matches merge (", and then" is one candidate). Set them for other languages.
    """

    model_config = ConfigDict(extra="forbid")

    clause_tier: str = Field("linear", description="kind of the clause classifier: any calibrated single-label tier (linear, encoder, …)")
    clause_params: dict[str, Any] | None = Field(None, description="params of the clause classifier (None: its defaults)")
    message_params: dict[str, Any] | None = Field(None, description="params of the whole-message linear tier (None: its defaults)")
    joiners: list[str] = Field(default_factory=lambda: list(DEFAULT_JOINERS), min_length=1,
                               description="words / punctuation that may separate two clauses")
    max_clauses: int = Field(3, ge=1, le=6, description="most clauses (intents) per message")
    boundary_weight: float = Field(1.0, ge=0, description="α: weight of the boundary classifier's log-likelihood")
    message_weight: float = Field(0.25, ge=0, description="δ: weight of the whole-message one-vs-rest log-likelihood")
    fit_weights: bool = Field(True, description="try WEIGHT_GRID for α and δ on validation (exact match of the decoded set)")
    clause_top_k: int = Field(3, ge=1, description="labels tried per clause when decoding")
    distinct_labels: bool = Field(True, description="no two clauses of one message get the same label")
    boundary_C: float = Field(1.0, gt=0, description="inverse regularisation of the boundary classifier")
    max_segmentations: int = Field(128, ge=1, description="splits scored per message (the most likely boundaries first)")
    top_k: int = Field(10, ge=2, description="labels kept in each result (the gate and the LLM's candidates)")
    cost_per_call_usd: float = Field(0.0, ge=0)

    @field_validator("joiners")
    @classmethod
    def _joiners(cls, value: list[str]) -> list[str]:
        empty = [j for j in value if not _TOKEN.findall(j)]
        if empty:
            raise ValueError(f"joiners {empty} contain no word or punctuation: give words like 'and' or punctuation like ','")
        return value

    @field_validator("clause_tier")
    @classmethod
    def _clause_tier(cls, value: str) -> str:
        if value == "clauses":
            raise ValueError("the clause classifier classifies single clauses: use a single-label kind such as linear or encoder")
        return value


# -- splitting ------------------------------------------------------------------------------------
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
        self.joiners = {tuple(t.lower() for t in _TOKEN.findall(j)) for j in joiners}
        self.longest = max(len(j) for j in self.joiners)

    def parse(self, text: str) -> Parsed:
        matches = list(_TOKEN.finditer(text))
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


@lru_cache(maxsize=64)
def _product(k: int, c: int) -> np.ndarray:
    """All index tuples (k^c, c): which of its top-k labels each of c clauses takes."""
    return np.array(list(itertools.product(range(k), repeat=c)), dtype=np.int64).reshape(-1, c)


@dataclass(slots=True)
class _Hypotheses:
    """One message's hypotheses: their score terms, label sets and readings (split, label per clause)."""

    split: np.ndarray  # (H,) log P(split) under the boundary classifier
    clause: np.ndarray  # (H,) Σ log P(label | clause)
    message: np.ndarray  # (H,) Σ over the hypothesis' labels of the message tier's log-odds
    member: np.ndarray  # (H, L) bool: the labels of each hypothesis
    splits: list[list[str]]  # the clauses of each split
    reading: np.ndarray  # (H, 1 + max clauses): split index, then the label of each clause (-1 padded)

    def scores(self, weights: tuple[float, float]) -> np.ndarray:
        return weights[0] * self.split + self.clause + weights[1] * self.message

    def best(self, weights: tuple[float, float]) -> list[tuple[str, int]]:
        """(clause, label index) pairs of the best hypothesis (the first on ties)."""
        row = self.reading[int(np.argmax(self.scores(weights)))]
        return list(zip(self.splits[row[0]], row[1:].tolist()))


class ClauseTier(Tier):
    """Multi-intent messages split into clauses, classified and decoded jointly; see the module docstring."""

    kind = "clauses"
    calibrated = True

    def __init__(self, name: str | None = None, params: ClauseParams | dict[str, Any] | None = None) -> None:
        super().__init__(name)
        self.params = parse_params(ClauseParams, params, self.name)
        self.multi_label_ = True
        self.splitter = Splitter(self.params.joiners)
        self.clause_tier_: Tier | None = None
        self.message_tier_: LinearTier | None = None
        self.weights_ = (self.params.boundary_weight, self.params.message_weight)  # (α, δ), refitted on validation
        self.temperature_ = 1.0
        self.platt_ = (1.0, 0.0)
        self._bvocab: dict[str, int] = {}
        self._bcoef = np.zeros(0)
        self._bintercept = 0.0
        self._info: dict[str, Any] = {}

    # -- training -------------------------------------------------------------------------
    def fit(self, data: Dataset, progress: Progress | None = None) -> ClauseTier:
        """Fit the whole-message tier, derive clauses, fit the boundary and clause classifiers, calibrate on validation."""
        if not data.train:
            raise DataError("the training split is empty")
        if not data.multi_label:
            raise DataError("the clause tier splits multi-intent messages and no example has several labels: "
                            "train single-label data with the linear or encoder tier")
        if not data.validation:
            raise DataError("the clause tier calibrates on the validation split: add validation examples")
        clause_cls = self._clause_class(self.params.clause_tier)
        t0 = time.perf_counter()
        step = progress or (lambda _msg, _frac: None)
        present = {label for ex in data.train for label in ex.labels}
        self.labels_ = tuple(label for label in data.labels if label in present)
        if len(self.labels_) < 2:
            raise DataError(f"need at least 2 labels in the training split, found {list(self.labels_)}")

        step("whole-message one-vs-rest tier", 0.02)
        message = _member(LinearTier, "message", self.params.message_params, "message_params")
        message.fit(data, lambda msg, frac: step(f"message: {msg}", 0.02 + 0.25 * frac))
        self.message_tier_ = message

        step("deriving clauses from the multi-label examples", 0.3)
        bootstrap = self._bootstrap(data.train, message)
        train_parsed = [self.splitter.parse(ex.text) for ex in data.train]
        val_parsed = [self.splitter.parse(ex.text) for ex in data.validation]
        known = _known_clauses(data.train, train_parsed)
        train_segs, train_stats = self._derive(data.train, train_parsed, known, bootstrap)
        known |= _known_clauses(data.validation, val_parsed)
        val_segs, val_stats = self._derive(data.validation, val_parsed, known, bootstrap)

        step("fitting the boundary classifier", 0.4)
        self._fit_boundaries(train_parsed, train_segs)
        boundary_acc = self._boundary_accuracy(val_parsed, val_segs)

        clause_data = Dataset(_clause_examples(train_parsed, train_segs), _clause_examples(val_parsed, val_segs),
                              labels=self.labels_, name=f"{data.name}-clauses")
        step(f"clause classifier ({self.params.clause_tier}) on {len(clause_data.train)} clauses", 0.45)
        clause = _member(clause_cls, "clause", self.params.clause_params, "clause_params")
        clause.fit(clause_data, lambda msg, frac: step(f"clause: {msg}", 0.45 + 0.4 * frac))
        self.clause_tier_ = clause

        step("calibrating on validation", 0.88)
        self._info = {
            "clause_tier": self.params.clause_tier,
            "labels": len(self.labels_),
            "n_train": len(data.train),
            "derived_splits": {"train": train_stats, "validation": val_stats},
            "clauses": {"train": len(clause_data.train), "validation": len(clause_data.validation)},
            "boundary": {"features": len(self._bvocab), **boundary_acc},
            "n_features": len(self._bvocab) + sum(int(m.info().get("n_features", 0)) for m in (clause, message)),
            "clause_info": _brief(clause.info()),
            "message_info": _brief(message.info()),
        }
        self._calibrate(data)
        self._info["train_seconds"] = round(time.perf_counter() - t0, 3)
        step("done", 1.0)
        return self

    @staticmethod
    def _clause_class(kind: str) -> type[Tier]:
        try:
            cls = tier_class(kind)
        except ImportError as exc:
            raise ConfigError(f"clause tier kind {kind!r} cannot be imported ({exc}): install its extra or use linear",
                              field="clause_tier") from exc
        if not cls.calibrated:
            raise ConfigError(f"clause tier kind {kind!r} has no calibrated predict_proba: use a model tier such as linear or encoder",
                              field="clause_tier")
        return cls

    def _bootstrap(self, train: Sequence[Example], message: LinearTier) -> Tier:
        """The classifier that resolves ambiguous splits: linear on the single-intent messages, when they cover every
        label; else the whole-message one-vs-rest tier."""
        singles = [Example(ex.text, ex.labels) for ex in train if len(ex.labels) == 1]
        if {ex.labels[0] for ex in singles} != set(self.labels_):
            return message
        return LinearTier("bootstrap", {"blocks": _BOOTSTRAP_BLOCKS}).fit(Dataset(singles, labels=self.labels_))

    def _proba(self, tier: Tier, texts: Sequence[str]) -> np.ndarray:
        """``tier``'s probabilities (n, L) in this tier's label order (labels it lacks get 0)."""
        out = np.zeros((len(texts), len(self.labels_)))
        if not len(texts):
            return out
        p = np.asarray(tier.predict_proba(list(texts)), dtype=np.float64)
        cols = {label: j for j, label in enumerate(tier.labels_)}
        for i, label in enumerate(self.labels_):
            if label in cols:
                out[:, i] = p[:, cols[label]]
        return out

    def _derive(self, examples: Sequence[Example], parsed: Sequence[Parsed], known: set[str],
                bootstrap: Tier) -> tuple[list[tuple[tuple[int, ...], tuple[str, ...]] | None], dict[str, int]]:
        """Per example: (cut candidates, label of each clause) or None when it cannot be split into its labels."""
        index = {label: i for i, label in enumerate(self.labels_)}
        stats: Counter[str] = Counter()
        choices: list[list[tuple[int, ...]]] = []
        for ex, p in zip(examples, parsed):
            k = len(ex.labels)
            if any(label not in index for label in ex.labels) or k - 1 > len(p.cands) or k > self.params.max_clauses:
                choices.append([])
                stats["unsplittable"] += 1
                continue
            opts = list(itertools.combinations(range(len(p.cands)), k - 1))
            if len(opts) == 1:
                stats["single intent" if k == 1 else "unambiguous"] += 1
            else:
                good = [o for o in opts if all(c in known for c in p.clauses(o))]
                if len(good) == 1:
                    opts = good
                    stats["known clauses"] += 1
                else:
                    opts = good or [o for o in opts if min(len(c.split()) for c in p.clauses(o)) >= 2] or opts
                    stats["bootstrap"] += 1
            choices.append(opts)
        needed = sorted({c for ex, p, opts in zip(examples, parsed, choices) if len(ex.labels) > 1 or len(opts) > 1
                         for o in opts for c in p.clauses(o)})
        logp = dict(zip(needed, np.log(self._proba(bootstrap, needed) + _EPS)))
        out: list[tuple[tuple[int, ...], tuple[str, ...]] | None] = []
        for ex, p, opts in zip(examples, parsed, choices):
            if not opts:
                out.append(None)
                continue
            if len(ex.labels) == 1 and len(opts) == 1:
                out.append((opts[0], ex.labels))
                continue
            scored = [(*_best_permutation([logp[c] for c in p.clauses(o)], ex.labels, index), o) for o in opts]
            _, perm, o = max(scored, key=lambda s: s[0])  # the first best on ties
            out.append((o, perm))
        return out, dict(sorted(stats.items()))

    def _fit_boundaries(self, parsed: Sequence[Parsed], segs: Sequence[tuple[tuple[int, ...], tuple[str, ...]] | None]) -> None:
        """Logistic regression on candidate contexts: is this candidate a cut in the derived split?"""
        from sklearn.feature_extraction import DictVectorizer
        from sklearn.linear_model import LogisticRegression

        rows, y = [], []
        for p, seg in zip(parsed, segs):
            if seg is None:
                continue
            for ci in range(len(p.cands)):
                rows.append(dict.fromkeys(boundary_features(p, ci), 1.0))
                y.append(ci in seg[0])
        dv = DictVectorizer()
        X = dv.fit_transform(rows) if rows else None
        self._bvocab = {f: i for i, f in enumerate(dv.feature_names_)} if rows else {}
        if not rows or len(set(y)) < 2:  # no candidates, or all alike: a constant boundary probability
            self._bcoef = np.zeros(len(self._bvocab))
            self._bintercept = 5.0 if rows and y[0] else -5.0
            return
        clf = LogisticRegression(C=self.params.boundary_C, max_iter=2000).fit(X, np.array(y))
        self._bcoef = np.asarray(clf.coef_[0], dtype=np.float64)
        self._bintercept = float(clf.intercept_[0])

    def _boundary_accuracy(self, parsed: Sequence[Parsed], segs: Sequence[Any]) -> dict[str, float]:
        """Boundary accuracy on the validation splits derived like train's: per candidate and per message."""
        per_cand, per_msg = [], []
        for p, seg in zip(parsed, segs):
            if seg is None:
                continue
            pb = self._boundary_proba(p)
            ok = [(pb[ci] >= 0.5) == (ci in seg[0]) for ci in range(len(p.cands))]
            per_cand += ok
            per_msg.append(all(ok))
        return {"validation_candidate_accuracy": float(np.mean(per_cand)) if per_cand else 1.0,
                "validation_split_accuracy": float(np.mean(per_msg)) if per_msg else 1.0}

    def _calibrate(self, data: Dataset) -> None:
        """Fit the unset decoding weights (exact match), the hypothesis temperature (label log-loss) and shared
        Platt scaling on validation."""
        from sklearn.linear_model import LogisticRegression

        hyps = self._hypotheses([ex.text for ex in data.validation])
        Y = LinearTier._targets(data.validation, {label: i for i, label in enumerate(self.labels_)}, matrix=True).astype(bool)

        def exact(weights: tuple[float, float]) -> float:
            return float(np.mean([(h.member[int(np.argmax(h.scores(weights)))] == y).all() for h, y in zip(hyps, Y)]))

        given = (self.params.boundary_weight, self.params.message_weight)
        pairs = [given] + ([(a, d) for a in WEIGHT_GRID for d in WEIGHT_GRID] if self.params.fit_weights else [])
        grid = {(float(a), float(d)): exact((a, d)) for a, d in pairs}

        def distance(w: tuple[float, float]) -> float:
            return sum(abs(math.log((x + _EPS) / (g + _EPS))) for x, g in zip(w, given))

        self.weights_ = max(grid, key=lambda w: (grid[w], -distance(w)))

        def loss(log_t: float) -> float:
            m = np.clip(self._marginals(hyps, math.exp(log_t)), _CLIP, 1 - _CLIP)
            return float(-np.where(Y, np.log(m), np.log1p(-m)).mean())

        self.temperature_ = float(math.exp(minimize_scalar(loss, bounds=(-4.0, 6.0), method="bounded", options={"xatol": 1e-3}).x))
        z = _logit(self._marginals(hyps, self.temperature_))
        lr = LogisticRegression(C=1e4).fit(z.reshape(-1, 1), Y.ravel())
        self.platt_ = (float(lr.coef_[0, 0]), float(lr.intercept_[0]))
        cal = expit(self.platt_[0] * z + self.platt_[1])
        raw = np.clip(self._marginals(hyps, 1.0), _CLIP, 1 - _CLIP)

        def ece(p: np.ndarray) -> float:  # per label: the certainty of its in/out decision vs being right
            return expected_calibration_error(np.where(p >= 0.5, p, 1 - p).ravel(), ((p >= 0.5) == Y).ravel())

        self._info.update(
            validation_exact_match=grid[self.weights_],
            validation_exact_match_calibrated=float(((cal >= 0.5) == Y).all(axis=1).mean()),
            validation_accuracy=grid[self.weights_],  # for multi-label data: exact match of the set, as in evaluation
            ece_before=ece(raw),
            ece_after=ece(cal),
            weights={"boundary": self.weights_[0], "message": self.weights_[1], "fitted": self.params.fit_weights},
            weight_grid_exact_match={f"{a:g},{d:g}": round(v, 4) for (a, d), v in grid.items()},
            temperature=self.temperature_,
            platt=list(self.platt_),
        )

    def _marginals(self, hyps: Sequence[_Hypotheses], temperature: float) -> np.ndarray:
        """P(label ∈ set) per message: softmax of the hypothesis scores / temperature, summed per label."""
        out = np.zeros((len(hyps), len(self.labels_)))
        for i, h in enumerate(hyps):
            s = h.scores(self.weights_) / temperature
            out[i] = np.exp(s - logsumexp(s)) @ h.member
        return out

    # -- decoding -------------------------------------------------------------------------
    def _boundary_proba(self, p: Parsed) -> np.ndarray:
        """P(cut) of each candidate boundary of ``p``."""
        v, w = self._bvocab, self._bcoef
        z = [self._bintercept + sum(w[v[f]] for f in boundary_features(p, ci) if f in v) for ci in range(len(p.cands))]
        return expit(np.asarray(z, dtype=np.float64))

    def _splits(self, pb: np.ndarray) -> list[tuple[int, ...]]:
        """The splits to score: up to ``max_clauses - 1`` cuts, among the most likely candidates when there are too many."""
        n, r_max = len(pb), min(self.params.max_clauses - 1, len(pb))
        pool = n
        while pool > r_max and sum(math.comb(pool, r) for r in range(r_max + 1)) > self.params.max_segmentations:
            pool -= 1
        keep = sorted(np.argsort(-pb, kind="stable")[:pool].tolist())
        r_top = min(r_max, pool)
        while r_top > 0 and sum(math.comb(pool, r) for r in range(r_top + 1)) > self.params.max_segmentations:
            r_top -= 1
        return [o for r in range(r_top + 1) for o in itertools.combinations(keep, r)]

    def _hypotheses(self, texts: Sequence[str]) -> list[_Hypotheses]:
        """Score every hypothesis (split × clause labels) of every message."""
        self._check_fitted()
        parsed = [self.splitter.parse(t) for t in texts]
        pbs = [self._boundary_proba(p) for p in parsed]
        splits = [self._splits(pb) for pb in pbs]
        clauses = [[p.clauses(o) for o in opts] for p, opts in zip(parsed, splits)]
        unique = sorted({c for per in clauses for cs in per for c in cs})
        logp = dict(zip(unique, np.log(self._proba(self.clause_tier_, unique) + _EPS)))  # type: ignore[arg-type]
        q = np.clip(self._proba(self.message_tier_, texts), _CLIP, 1 - _CLIP)  # type: ignore[arg-type]
        gain = np.log(q) - np.log1p(-q)  # log P(in) - log P(out) per label; the all-out term is constant per message
        L, k = len(self.labels_), min(self.params.clause_top_k, len(self.labels_))
        width = 1 + max((len(cs) for per in clauses for cs in per), default=1)
        out = []
        for pb, opts, per, g in zip(pbs, splits, clauses, gain):
            log_in, log_out = np.log(pb + _EPS), np.log(1 - pb + _EPS)
            parts: list[tuple[np.ndarray, ...]] = []
            for j, (o, cs) in enumerate(zip(opts, per)):
                c = len(cs)
                if self.params.distinct_labels and c > L:
                    continue
                cut = np.zeros(len(pb), dtype=bool)
                cut[list(o)] = True
                lp = np.stack([logp[x] for x in cs])
                top = np.argsort(-lp, axis=1, kind="stable")[:, :k]
                combo = top[np.arange(c), _product(k, c)]  # (m, c) labels
                if self.params.distinct_labels and c > 1:
                    srt = np.sort(combo, axis=1)
                    combo = combo[(srt[:, 1:] != srt[:, :-1]).all(axis=1)]
                m = len(combo)
                if not m:
                    continue
                member = np.zeros((m, L), dtype=bool)
                member[np.arange(m)[:, None], combo] = True
                reading = np.full((m, width), -1, dtype=np.int64)
                reading[:, 0], reading[:, 1:c + 1] = j, combo
                parts.append((np.full(m, float(log_in[cut].sum() + log_out[~cut].sum())), lp[np.arange(c), combo].sum(axis=1),
                              member @ g, member, reading))
            split, clause, message, member, reading = (np.concatenate(x) for x in zip(*parts))
            out.append(_Hypotheses(split, clause, message, member, per, reading))
        return out

    # -- inference ------------------------------------------------------------------------
    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Calibrated P(label ∈ set) per message (n, len(labels_)): hypothesis posterior marginals, Platt-scaled."""
        self._check_fitted()
        if not len(texts):
            return np.zeros((0, len(self.labels_)))
        return self._calibrated(self._hypotheses(texts))

    def _calibrated(self, hyps: Sequence[_Hypotheses]) -> np.ndarray:
        a, b = self.platt_
        return expit(a * _logit(self._marginals(hyps, self.temperature_)) + b)

    def decode(self, text: str) -> list[tuple[str, str]]:
        """The best hypothesis of one message as (clause, label) pairs — why the tier scored it as it did."""
        return [(c, self.labels_[j]) for c, j in self._hypotheses([text])[0].best(self.weights_)]

    def score(self, text: str, candidates: Sequence[str] | None = None) -> TierResult:
        return self.score_batch([text])[0]

    def score_batch(self, texts: Sequence[str], candidates: Sequence[Sequence[str] | None] | None = None) -> list[TierResult]:
        """Ranked calibrated label probabilities; ``info["clauses"]`` holds the best hypothesis' (clause, label) pairs."""
        self._check_fitted()
        if not len(texts):
            return []
        t0 = time.perf_counter()
        hyps = self._hypotheses(texts)
        probs = self._calibrated(hyps)
        k = min(self.params.top_k, probs.shape[1])
        top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        per = (time.perf_counter() - t0) * 1e3 / len(texts)
        labels, cost = self.labels_, self.params.cost_per_call_usd
        return [
            TierResult([(labels[j], float(p[j])) for j in tj], cost_usd=cost, latency_ms=per,
                       info={"clauses": [[c, labels[j]] for c, j in h.best(self.weights_)]})
            for tj, p, h in zip(top.tolist(), probs, hyps)
        ]

    def info(self) -> dict[str, Any]:
        return dict(self._info)

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """``clauses.json`` and ``boundary_coef.npy``, plus the members in ``members/clause`` and ``members/message``."""
        self._check_fitted()
        entries = []
        for role, member in (("clause", self.clause_tier_), ("message", self.message_tier_)):
            assert member is not None
            entries.append({"role": role, **save_tier(member, path, f"members/{role}")})
        features = [""] * len(self._bvocab)
        for f, i in self._bvocab.items():
            features[i] = f
        meta = {
            "params": self.params.model_dump(mode="json"),
            "labels": list(self.labels_),
            "members": entries,
            "boundary": {"features": features, "intercept": self._bintercept},
            "weights": list(self.weights_),
            "temperature": self.temperature_,
            "platt": list(self.platt_),
            "info": self._info,
        }
        (path / "clauses.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False))
        np.save(path / "boundary_coef.npy", self._bcoef)

    @classmethod
    def load(cls, path: Path, name: str) -> ClauseTier:
        try:
            meta = json.loads((path / "clauses.json").read_text())
            tier = cls(name, ClauseParams(**meta["params"]))
            tier.labels_ = tuple(meta["labels"])
            members: dict[str, Tier] = {entry["role"]: load_tier(entry, path, "member") for entry in meta["members"]}
            tier.clause_tier_ = members["clause"]
            message = members["message"]
            if not isinstance(message, LinearTier):
                raise ModelError("the whole-message member must be a linear tier: retrain the clause tier", path=path)
            tier.message_tier_ = message
            tier._bvocab = {f: i for i, f in enumerate(meta["boundary"]["features"])}
            tier._bintercept = float(meta["boundary"]["intercept"])
            tier._bcoef = np.load(path / "boundary_coef.npy")
            tier.weights_ = (float(meta["weights"][0]), float(meta["weights"][1]))
            tier.temperature_ = float(meta["temperature"])
            tier.platt_ = (float(meta["platt"][0]), float(meta["platt"][1]))
            tier._info = meta.get("info", {})
        except FrontdeskError:
            raise
        except FileNotFoundError as exc:
            raise ModelError(f"clause tier file missing ({Path(exc.filename).name}): re-save or retrain the model", path=path) from exc
        except (KeyError, TypeError, ValueError, IndexError, json.JSONDecodeError) as exc:
            raise ModelError(f"clause tier files are corrupt ({exc}): retrain the model", path=path) from exc
        if tier._bcoef.shape != (len(tier._bvocab),):
            raise ModelError(f"boundary coefficients have shape {tier._bcoef.shape}, expected ({len(tier._bvocab)},): retrain", path=path)
        return tier


# -- helpers --------------------------------------------------------------------------------------
def _member(cls: type[Any], name: str, params: dict[str, Any] | None, field: str) -> Any:
    """A member tier built from its params; invalid params become a ConfigError naming the field."""
    try:
        return cls(name, params) if params is not None else cls(name)
    except ConfigError as exc:  # the member's own settings check: re-name the field after this tier's
        raise ConfigError(str(exc).removeprefix(f"{exc.field}: "), field=f"clauses.{field}") from exc
    except ValidationError as exc:
        raise ConfigError(validation_message(exc), field=f"clauses.{field}") from exc


def _known_clauses(examples: Sequence[Example], parsed: Sequence[Parsed]) -> set[str]:
    """Clauses whose split is certain: single-intent messages, and messages with exactly k - 1 candidates."""
    known: set[str] = set()
    for ex, p in zip(examples, parsed):
        if len(ex.labels) == 1:
            known.add(ex.text.strip())
        elif len(p.cands) == len(ex.labels) - 1:
            known.update(p.clauses(range(len(p.cands))))
    return known


def _best_permutation(logp: Sequence[np.ndarray], labels: Sequence[str], index: dict[str, int]) -> tuple[float, tuple[str, ...]]:
    """(score, labels in clause order): the assignment of ``labels`` to clauses with the highest log-probability."""
    best: tuple[float, tuple[str, ...]] | None = None
    for perm in itertools.permutations(labels):
        s = float(sum(lp[index[label]] for lp, label in zip(logp, perm)))
        if best is None or s > best[0]:
            best = (s, perm)
    assert best is not None
    return best


def _clause_examples(parsed: Sequence[Parsed], segs: Sequence[tuple[tuple[int, ...], tuple[str, ...]] | None]) -> list[Example]:
    """One example per distinct clause, labelled by its most frequent derived label; sorted by text."""
    votes: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for p, seg in zip(parsed, segs):
        if seg is not None:
            for clause, label in zip(p.clauses(seg[0]), seg[1]):
                votes[clause][label] += 1
    return [Example(c, (votes[c].most_common(1)[0][0],)) for c in sorted(votes)]


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _CLIP, 1 - _CLIP)
    return np.log(p) - np.log1p(-p)


def _brief(info: dict[str, Any]) -> dict[str, Any]:
    """A member's info without bulky entries (nested dicts and lists)."""
    return {k: v for k, v in info.items() if not isinstance(v, (dict, list))}
