"""The clause tier: boundary classifier + clause classifier + whole-message vote, decoded jointly
(see :mod:`frontdesk.tiers.clauses` for the model)."""

from __future__ import annotations

import itertools
import json
import math
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError
from scipy.optimize import minimize_scalar
from scipy.special import expit, logsumexp

from frontdesk.gating.calibration import expected_calibration_error
from frontdesk.data.dataset import Dataset, Example
from frontdesk.errors import ConfigError, DataError, FrontdeskError, ModelError, validation_message
from frontdesk.types import TierResult
from frontdesk.tiers.base import Progress, Tier, calibrated_tier_class, load_tier, parse_params, save_tier
from frontdesk.tiers.clauses.hypotheses import Hypotheses, best_permutation, logit, product_indices
from frontdesk.tiers.clauses.params import BOOTSTRAP_BLOCKS, CLIP, EPS, WEIGHT_GRID, ClauseParams
from frontdesk.tiers.clauses.segments import Parsed, Splitter, boundary_features, clause_examples, known_clauses
from frontdesk.tiers.linear import LinearTier

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
        known = known_clauses(data.train, train_parsed)
        train_segs, train_stats = self._derive(data.train, train_parsed, known, bootstrap)
        known |= known_clauses(data.validation, val_parsed)
        val_segs, val_stats = self._derive(data.validation, val_parsed, known, bootstrap)

        step("fitting the boundary classifier", 0.4)
        self._fit_boundaries(train_parsed, train_segs)
        boundary_acc = self._boundary_accuracy(val_parsed, val_segs)

        clause_data = Dataset(clause_examples(train_parsed, train_segs), clause_examples(val_parsed, val_segs),
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
        return calibrated_tier_class(kind, field="clause_tier", what="clause tier", instead="use a model tier such as linear or encoder")

    def _bootstrap(self, train: Sequence[Example], message: LinearTier) -> Tier:
        """The classifier that resolves ambiguous splits: linear on the single-intent messages, when they cover every
        label; else the whole-message one-vs-rest tier."""
        singles = [Example(ex.text, ex.labels) for ex in train if len(ex.labels) == 1]
        if {ex.labels[0] for ex in singles} != set(self.labels_):
            return message
        return LinearTier("bootstrap", {"blocks": BOOTSTRAP_BLOCKS}).fit(Dataset(singles, labels=self.labels_))

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
        logp = dict(zip(needed, np.log(self._proba(bootstrap, needed) + EPS)))
        out: list[tuple[tuple[int, ...], tuple[str, ...]] | None] = []
        for ex, p, opts in zip(examples, parsed, choices):
            if not opts:
                out.append(None)
                continue
            if len(ex.labels) == 1 and len(opts) == 1:
                out.append((opts[0], ex.labels))
                continue
            scored = [(*best_permutation([logp[c] for c in p.clauses(o)], ex.labels, index), o) for o in opts]
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
            return sum(abs(math.log((x + EPS) / (g + EPS))) for x, g in zip(w, given))

        self.weights_ = max(grid, key=lambda w: (grid[w], -distance(w)))

        def loss(log_t: float) -> float:
            m = np.clip(self._marginals(hyps, math.exp(log_t)), CLIP, 1 - CLIP)
            return float(-np.where(Y, np.log(m), np.log1p(-m)).mean())

        self.temperature_ = float(math.exp(minimize_scalar(loss, bounds=(-4.0, 6.0), method="bounded", options={"xatol": 1e-3}).x))
        z = logit(self._marginals(hyps, self.temperature_))
        lr = LogisticRegression(C=1e4).fit(z.reshape(-1, 1), Y.ravel())
        self.platt_ = (float(lr.coef_[0, 0]), float(lr.intercept_[0]))
        cal = expit(self.platt_[0] * z + self.platt_[1])
        raw = np.clip(self._marginals(hyps, 1.0), CLIP, 1 - CLIP)

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

    def _marginals(self, hyps: Sequence[Hypotheses], temperature: float) -> np.ndarray:
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

    def _hypotheses(self, texts: Sequence[str]) -> list[Hypotheses]:
        """Score every hypothesis (split × clause labels) of every message."""
        self._check_fitted()
        parsed = [self.splitter.parse(t) for t in texts]
        pbs = [self._boundary_proba(p) for p in parsed]
        splits = [self._splits(pb) for pb in pbs]
        clauses = [[p.clauses(o) for o in opts] for p, opts in zip(parsed, splits)]
        unique = sorted({c for per in clauses for cs in per for c in cs})
        logp = dict(zip(unique, np.log(self._proba(self.clause_tier_, unique) + EPS)))  # type: ignore[arg-type]
        q = np.clip(self._proba(self.message_tier_, texts), CLIP, 1 - CLIP)  # type: ignore[arg-type]
        gain = np.log(q) - np.log1p(-q)  # log P(in) - log P(out) per label; the all-out term is constant per message
        L, k = len(self.labels_), min(self.params.clause_top_k, len(self.labels_))
        width = 1 + max((len(cs) for per in clauses for cs in per), default=1)
        out = []
        for pb, opts, per, g in zip(pbs, splits, clauses, gain):
            log_in, log_out = np.log(pb + EPS), np.log(1 - pb + EPS)
            parts: list[tuple[np.ndarray, ...]] = []
            for j, (o, cs) in enumerate(zip(opts, per)):
                c = len(cs)
                if self.params.distinct_labels and c > L:
                    continue
                cut = np.zeros(len(pb), dtype=bool)
                cut[list(o)] = True
                lp = np.stack([logp[x] for x in cs])
                top = np.argsort(-lp, axis=1, kind="stable")[:, :k]
                combo = top[np.arange(c), product_indices(k, c)]  # (m, c) labels
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
            out.append(Hypotheses(split, clause, message, member, per, reading))
        return out

    # -- inference ------------------------------------------------------------------------
    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Calibrated P(label ∈ set) per message (n, len(labels_)): hypothesis posterior marginals, Platt-scaled."""
        self._check_fitted()
        if not len(texts):
            return np.zeros((0, len(self.labels_)))
        return self._calibrated(self._hypotheses(texts))

    def _calibrated(self, hyps: Sequence[Hypotheses]) -> np.ndarray:
        a, b = self.platt_
        return expit(a * logit(self._marginals(hyps, self.temperature_)) + b)

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


def _member(cls: type[Any], name: str, params: dict[str, Any] | None, field: str) -> Any:
    """A member tier built from its params; invalid params become a ConfigError naming the field."""
    try:
        return cls(name, params) if params is not None else cls(name)
    except ConfigError as exc:  # the member's own settings check: re-name the field after this tier's
        raise ConfigError(str(exc).removeprefix(f"{exc.field}: "), field=f"clauses.{field}") from exc
    except ValidationError as exc:
        raise ConfigError(validation_message(exc), field=f"clauses.{field}") from exc


def _brief(info: dict[str, Any]) -> dict[str, Any]:
    """A member's info without bulky entries (nested dicts and lists)."""
    return {k: v for k, v in info.items() if not isinstance(v, (dict, list))}
