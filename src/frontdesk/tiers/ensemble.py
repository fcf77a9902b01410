"""Ensemble tier: several calibrated member tiers (e.g. linear + encoder) combined into one calibrated score.

``voting`` picks how the members' calibrated probabilities are combined into a score ``s`` (a
distribution over the shared label set):

* ``majority`` — every member votes its top label with weight 1; ``s = (votes + mean p) / (M + 1)``,
  so the label with most votes wins and ties go to the higher mean probability.
* ``weighted`` — ``s = Σ wᵢ pᵢ / Σ wᵢ``, the weighted average of the members' probabilities.
* ``cost_aware`` — the same weighted average, but members are consulted cheapest first and the
  vote stops as soon as the leader's lead over the runner-up exceeds the total weight of the
  members not yet consulted. Each member adds at most its weight to any one label, so the label
  that wins then is *exactly* the full weighted vote's winner; expensive members (an encoder, an
  LLM) are skipped when the cheap ones already agree strongly. ``s`` is the weighted average of
  the consulted members only. Deterministic: the order is fixed at fit time and saved.

The score is then calibrated like the linear tier: one temperature fitted on validation
(``softmax(log s / T)``), and the Router fits the ensemble's gate on it like any model tier.
Members must share the label set. Single-label data only.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from frontdesk.gating.calibration import calibrate_temperature, softmax_t
from frontdesk.data.dataset import Dataset
from frontdesk.errors import DataError, FrontdeskError, ModelError
from frontdesk.types import TierResult
from frontdesk.tiers.base import Progress, Tier, calibrated_tier_class, load_tier, parse_params, save_tier

#: grid resolutions tried for the weight simplex (finest first); the first with ≤ _MAX_GRID points is used
_GRID_STEPS = (20, 10, 5, 4, 2, 1)
_MAX_GRID = 5000
_EPS = 1e-12


class EnsembleParams(BaseModel):
    """Settings of the ensemble tier.

    ``members`` are tier kinds, or ``kind:name`` to have several members of one kind (e.g.
    ``["linear:word", "linear:char"]``); ``member_params`` are keyed by that full name or, for every
    member of a kind, by the kind. ``weights`` (one per member, ≥ 0) are fitted on validation when
    not given — majority voting gives every member one vote and takes none.
    """

    model_config = ConfigDict(extra="forbid")

    members: list[str] = Field(default_factory=lambda: ["linear", "encoder"], min_length=1,
                               description="member tier kinds, or kind:name for several of one kind")
    member_params: dict[str, dict[str, Any]] = Field(default_factory=dict, description="params per member name or kind")
    voting: Literal["majority", "weighted", "cost_aware"] = Field(
        "weighted", description="majority: one vote per member; weighted: probabilities averaged with weights; cost_aware: "
        "weighted, cheapest member first, stop once the rest cannot overturn the lead")
    weights: list[float] | None = Field(None, description="one per member; None = fitted on validation (max log-likelihood)")
    cost_order: Literal["measured", "listed"] = Field(
        "measured", description="cost_aware consultation order: measured cost per message, or the order of `members`"
    )
    cost_sample: int = Field(32, ge=1, description="validation messages scored one by one to measure each member's latency")
    top_k: int = Field(10, ge=2, description="labels kept in each result (the gate and the LLM's candidates)")
    cost_per_call_usd: float | None = Field(None, ge=0, description="reported cost per call; None = sum of the consulted members'")

    @model_validator(mode="after")
    def _check(self) -> EnsembleParams:
        specs = self.member_specs()
        names = [name for name, _ in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"member names must be unique, got {names}: write 'kind:name' to have several of one kind")
        kinds = {kind for _, kind in specs}
        unknown = sorted(set(self.member_params) - set(names) - kinds)
        if unknown:
            raise ValueError(f"member_params for {unknown} match no member: keys are member names ({', '.join(names)}) or kinds")
        if self.weights is not None:
            if self.voting == "majority":
                raise ValueError("majority voting gives every member one vote: drop weights, or use voting 'weighted'")
            if len(self.weights) != len(names):
                raise ValueError(f"{len(self.weights)} weights for {len(names)} members: give one weight per member")
            if any(not math.isfinite(w) or w < 0 for w in self.weights) or sum(self.weights) <= 0:
                raise ValueError(f"weights must be finite, ≥ 0 and not all 0, got {self.weights}")
        return self

    def member_specs(self) -> list[tuple[str, str]]:
        """(name, kind) of each member, in the order given."""
        specs = []
        for entry in self.members:
            kind, _, label = entry.partition(":")
            if not kind.strip() or (":" in entry and not label.strip()):
                raise ValueError(f"member {entry!r} is not 'kind' or 'kind:name'")
            specs.append((entry.strip(), kind.strip()))
        return specs

    def params_for(self, name: str, kind: str) -> dict[str, Any] | None:
        """The params of member ``name``: its own entry, else its kind's, else None (the tier's defaults)."""
        return self.member_params.get(name, self.member_params.get(kind))


ProbsOf = Callable[[int, np.ndarray], np.ndarray]
"""``probs_of(member_index, rows)``: that member's calibrated probabilities (rows, L) in ensemble label order."""


class EnsembleTier(Tier):
    """Several calibrated tiers voting as one calibrated tier (see the module docstring for the rules)."""

    kind = "ensemble"
    calibrated = True

    def __init__(self, name: str | None = None, params: EnsembleParams | dict[str, Any] | None = None) -> None:
        super().__init__(name)
        self.params = parse_params(EnsembleParams, params, self.name)
        self.members_: list[Tier] = []
        self.weights_ = np.zeros(0)
        self.order_: list[int] = []
        self.costs_: list[dict[str, Any]] = []
        self.temperature_ = 1.0
        self._perm: list[np.ndarray] = []  # per member: its column of each ensemble label
        self._info: dict[str, Any] = {}
        self._scored = 0  # messages scored since fit/load, and members consulted for them
        self._consulted = 0

    # -- training -------------------------------------------------------------------------
    def fit(self, data: Dataset, progress: Progress | None = None) -> EnsembleTier:
        """Fit every member on train; measure their costs; fit weights and temperature on validation."""
        if not data.train:
            raise DataError("the training split is empty")
        if data.multi_label:
            raise DataError("the ensemble tier combines single-label members and this dataset has multi-label examples: use the linear tier")
        if not data.validation:
            raise DataError("the ensemble fits its weights and temperature on the validation split: add validation examples")
        t0 = time.perf_counter()
        step = progress or (lambda _msg, _frac: None)
        specs = self.params.member_specs()
        classes = [self._member_class(kind) for _, kind in specs]
        members: list[Tier] = []
        for j, ((name, kind), cls) in enumerate(zip(specs, classes)):
            params = self.params.params_for(name, kind)
            member = cls(name, params) if params is not None else cls(name)  # type: ignore[call-arg]
            lo, span = 0.8 * j / len(specs), 0.8 / len(specs)
            member.fit(data, lambda msg, frac, _n=name, _lo=lo, _s=span: step(f"{_n}: {msg}", _lo + _s * frac))
            members.append(member)
        return self._combine_fitted(members, data, step, t0)

    @classmethod
    def from_members(cls, members: Sequence[Tier], data: Dataset, params: EnsembleParams | dict[str, Any] | None = None,
                     name: str = "ensemble") -> EnsembleTier:
        """Combine members that are already trained: only the weights, consult order and temperature
        are fitted (on ``data.validation``) — e.g. a linear and an encoder tier from a trained cascade."""
        specs = [m.kind if m.name == m.kind else f"{m.kind}:{m.name}" for m in members]
        if isinstance(params, EnsembleParams):
            params = params.model_dump()
        tier = cls(name, {**(params or {}), "members": specs})
        if not data.validation:
            raise DataError("the ensemble fits its weights and temperature on the validation split: add validation examples")
        for m in members:
            cls._member_class(m.kind)
        return tier._combine_fitted(list(members), data, lambda _msg, _frac: None, time.perf_counter())

    def _combine_fitted(self, members: list[Tier], data: Dataset, step: Progress, t0: float) -> EnsembleTier:
        self._attach(members)
        index = {label: i for i, label in enumerate(self.labels_)}
        val = [ex for ex in data.validation if ex.labels[0] in index]
        if not val:
            raise DataError("no validation example has a label the members know: the validation split must share the training labels")
        texts = [ex.text for ex in val]
        y = np.array([index[ex.labels[0]] for ex in val])
        step("scoring validation with every member", 0.82)
        probs = [self._member_proba(i, texts) for i in range(len(members))]
        step("measuring member costs", 0.86)
        self.costs_ = [self._measure(m, texts) for m in members]
        self.order_ = self._consult_order()
        step("fitting weights and temperature on validation", 0.92)
        fitted = self.params.weights is None and self.params.voting != "majority"
        if self.params.voting == "majority":
            self.weights_ = np.ones(len(members))
        elif self.params.weights is not None:
            self.weights_ = np.asarray(self.params.weights, dtype=np.float64)
        else:
            self.weights_ = fit_weights(probs, y)
        self.weights_ = self.weights_ / self.weights_.sum()

        s, consulted, _, _ = self._combine(lambda i, rows: probs[i][rows], len(texts))
        logits = np.log(np.clip(s, _EPS, None))
        self.temperature_, facts = calibrate_temperature(logits, y)
        self._info = {
            "members": [m.name for m in members],
            "voting": self.params.voting,
            "weights": [round(float(w), 4) for w in self.weights_],
            "weights_fitted": fitted,
            "weight_objective": "validation log-likelihood of the weighted average" if fitted else None,
            "consult_order": [members[i].name for i in self.order_],
            "member_costs": self.costs_,
            "member_validation_accuracy": {m.name: float((p.argmax(1) == y).mean()) for m, p in zip(members, probs)},
            "validation_members_consulted_mean": float(consulted.mean()),
            **facts,
            "temperature": self.temperature_,
            "member_info": {m.name: m.info() for m in members},
            **({"n_features": sum(m.info()["n_features"] for m in members)} if all("n_features" in m.info() for m in members) else {}),
            "train_seconds": round(time.perf_counter() - t0, 3),
        }
        self._scored = self._consulted = 0
        step("done", 1.0)
        return self

    @staticmethod
    def _member_class(kind: str) -> type[Tier]:
        return calibrated_tier_class(kind, field="members", what="member",
                                     instead="ensemble members must be model tiers such as linear or encoder (put rules and "
                                             "llm tiers in the cascade instead)")

    def _attach(self, members: list[Tier], path: Path | None = None) -> None:
        """Adopt fitted ``members``: check that they share one single-label label set and map their columns."""
        first = members[0]
        for m in members:
            if getattr(m, "multi_label_", False):
                raise ModelError(f"member {m.name!r} is multi-label: the ensemble combines single-label members only", path=path)
            missing, extra = sorted(set(first.labels_) - set(m.labels_)), sorted(set(m.labels_) - set(first.labels_))
            if missing or extra:
                raise ModelError(
                    f"ensemble members disagree on the label set: {m.name!r} has {len(m.labels_)} labels, {first.name!r} "
                    f"has {len(first.labels_)}" + (f"; missing in {m.name!r}: {missing[:5]}" if missing else "")
                    + (f"; only in {m.name!r}: {extra[:5]}" if extra else "")
                    + ". Train every member on the same labels (each label needs training examples)",
                    path=path,
                )
        self.members_ = list(members)
        self.labels_ = tuple(first.labels_)
        self._perm = [np.array([list(m.labels_).index(label) for label in self.labels_]) for m in members]

    def _member_proba(self, i: int, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.members_[i].predict_proba(texts), dtype=np.float64)[:, self._perm[i]]

    def _measure(self, member: Tier, texts: Sequence[str]) -> dict[str, Any]:
        """A member's cost per message: mean latency scoring a sample one by one, and its mean cost_usd."""
        k = min(self.params.cost_sample, len(texts))
        sample = [texts[int(i)] for i in np.linspace(0, len(texts) - 1, k)]
        member.score(sample[0])  # warm-up (lazy imports, caches)
        lat, cost = [], []
        for text in sample:
            t0 = time.perf_counter()
            res = member.score(text)
            lat.append((time.perf_counter() - t0) * 1e3)
            cost.append(res.cost_usd)
        return {"name": member.name, "kind": member.kind, "latency_ms": round(float(np.mean(lat)), 4), "cost_usd": float(np.mean(cost))}

    def _consult_order(self) -> list[int]:
        """Cheapest first: by cost_usd, then latency on a rounded log2 scale (members within ~2× keep their listed order)."""
        if self.params.cost_order == "listed":
            return list(range(len(self.members_)))
        key = lambda i: (self.costs_[i]["cost_usd"], round(math.log2(max(self.costs_[i]["latency_ms"], 1e-3))), i)  # noqa: E731
        return sorted(range(len(self.members_)), key=key)

    # -- combining ------------------------------------------------------------------------
    def _combine(self, probs_of: ProbsOf, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(scores s (n, L) before temperature, members consulted (n,), cost_usd (n,), member latency ms (n,))."""
        L = len(self.labels_)
        consulted, cost, latency = np.zeros(n, dtype=np.int64), np.zeros(n), np.zeros(n)
        everyone = np.arange(n)

        def ask(i: int, rows: np.ndarray) -> np.ndarray:
            t0 = time.perf_counter()
            p = probs_of(i, rows)
            latency[rows] += (time.perf_counter() - t0) * 1e3 / max(1, len(rows))
            consulted[rows] += 1
            cost[rows] += self.costs_[i]["cost_usd"] if self.costs_ else 0.0
            return p

        if self.params.voting == "majority":
            votes, mean = np.zeros((n, L)), np.zeros((n, L))
            for i in self.order_:
                p = ask(i, everyone)
                votes[everyone, p.argmax(1)] += 1.0
                mean += p
            M = len(self.order_)
            return (votes + mean / M) / (M + 1), consulted, cost, latency
        active = [i for i in self.order_ if self.weights_[i] > 0]
        if self.params.voting == "weighted":
            s = sum(self.weights_[i] * ask(i, everyone) for i in active)
            return np.asarray(s) / self.weights_[active].sum(), consulted, cost, latency
        tally, used = cost_aware_vote(lambda i, rows: ask(i, rows), self.weights_, active, n, L)
        return tally / used[:, None], consulted, cost, latency

    def _live(self, texts: Sequence[str]) -> ProbsOf:
        return lambda i, rows: self._member_proba(i, [texts[r] for r in rows])

    # -- inference ------------------------------------------------------------------------
    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """The calibrated combined distribution (n, len(labels_)) — what score() ranks."""
        self._check_fitted()
        if not len(texts):
            return np.zeros((0, len(self.labels_)))
        s, *_ = self._combine(self._live(texts), len(texts))
        return softmax_t(np.log(np.clip(s, _EPS, None)), self.temperature_)

    def score(self, text: str, candidates: Sequence[str] | None = None) -> TierResult:
        return self.score_batch([text])[0]

    def score_batch(self, texts: Sequence[str], candidates: Sequence[Sequence[str] | None] | None = None) -> list[TierResult]:
        """Scores for many messages; cost and latency count only the members each message consulted."""
        self._check_fitted()
        if not len(texts):
            return []
        t0 = time.perf_counter()
        s, consulted, cost, latency = self._combine(self._live(texts), len(texts))
        probs = softmax_t(np.log(np.clip(s, _EPS, None)), self.temperature_)
        k = min(self.params.top_k, probs.shape[1])
        top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        top_p = np.take_along_axis(probs, top, axis=1)
        overhead = ((time.perf_counter() - t0) * 1e3 - float(latency.sum())) / len(texts)
        self._scored += len(texts)
        self._consulted += int(consulted.sum())
        fixed = self.params.cost_per_call_usd
        labels = self.labels_
        return [
            TierResult(
                [(labels[j], float(p)) for j, p in zip(tj, tp)],
                cost_usd=fixed if fixed is not None else float(c), latency_ms=float(lat + max(0.0, overhead)),
                info={"members_consulted": int(m)},
            )
            for tj, tp, c, lat, m in zip(top.tolist(), top_p.tolist(), cost, latency, consulted)
        ]

    def info(self) -> dict[str, Any]:
        """Training facts, plus the mean number of members consulted per message scored since fit/load."""
        out = dict(self._info)
        if self._scored:
            out.update(messages_scored=self._scored, members_consulted_mean=self._consulted / self._scored)
        return out

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """``ensemble.json`` plus one sub-directory per member (``members/<i>-<name>``)."""
        self._check_fitted()
        entries = [save_tier(m, path, f"members/{i}-{re.sub(r'[^A-Za-z0-9_.-]', '-', m.name)}") for i, m in enumerate(self.members_)]
        meta = {
            "params": self.params.model_dump(mode="json"),
            "labels": list(self.labels_),
            "members": entries,
            "weights": [float(w) for w in self.weights_],
            "order": self.order_,
            "costs": self.costs_,
            "temperature": self.temperature_,
            "info": self._info,
        }
        (path / "ensemble.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False))

    @classmethod
    def load(cls, path: Path, name: str) -> EnsembleTier:
        try:
            meta = json.loads((path / "ensemble.json").read_text())
            tier = cls(name, EnsembleParams(**meta["params"]))
            members = [load_tier(entry, path, "member") for entry in meta["members"]]
            tier._attach(members, path)
            if tuple(meta["labels"]) != tier.labels_:
                raise ModelError("the saved label list does not match the members' labels: retrain the ensemble", path=path)
            tier.weights_ = np.asarray(meta["weights"], dtype=np.float64)
            tier.order_ = [int(i) for i in meta["order"]]
            tier.costs_ = list(meta["costs"])
            tier.temperature_ = float(meta["temperature"])
            tier._info = meta.get("info", {})
        except FrontdeskError:
            raise
        except FileNotFoundError as exc:
            raise ModelError(f"ensemble file missing ({Path(exc.filename).name}): re-save or retrain the model", path=path) from exc
        except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
            raise ModelError(f"ensemble files are corrupt ({exc}): retrain the model", path=path) from exc
        M = len(tier.members_)
        if len(tier.weights_) != M or sorted(tier.order_) != list(range(M)) or len(tier.costs_) != M:
            raise ModelError(f"ensemble.json describes {len(tier.weights_)} weights for {M} members: retrain the model", path=path)
        return tier


def cost_aware_vote(probs_of: ProbsOf, weights: np.ndarray, order: Sequence[int], n: int, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """Weighted soft vote that stops early per message: returns (tally (n, L), weight consulted (n,)).

    Members are asked in ``order``; member i adds ``wᵢ · pᵢ`` to the tally. A message is decided
    once ``lead > remaining`` (top-1 minus top-2 of its tally against the total weight of the
    members still to ask): each member adds at most its weight to any one label, so no label can
    then catch up and the winner equals the full weighted vote's. Undecided messages ask the next.
    """
    tally, used = np.zeros((n, n_labels)), np.zeros(n)
    remaining = float(sum(weights[i] for i in order))
    open_rows = np.arange(n)
    for i in order:
        if not len(open_rows):
            break
        w = float(weights[i])
        tally[open_rows] += w * probs_of(i, open_rows)
        used[open_rows] += w
        remaining -= w
        t = tally[open_rows]
        top2 = -np.partition(-t, 1, axis=1)[:, :2] if n_labels > 1 else np.c_[t, np.zeros(len(t))]
        lead = top2[:, 0] - top2[:, 1]
        open_rows = open_rows[lead <= remaining * (1 + 1e-9) + _EPS]
    return tally, used


def simplex_grid(m: int) -> np.ndarray:
    """Weight vectors (G, m) on a regular grid of the simplex, as fine as ≤ 5,000 points allow."""
    if m == 1:
        return np.ones((1, 1))
    for steps in _GRID_STEPS:
        if math.comb(steps + m - 1, m - 1) <= _MAX_GRID:
            break
    rows = []
    for bars in itertools.combinations(range(steps + m - 1), m - 1):  # stars and bars
        edges = (-1, *bars, steps + m - 1)
        rows.append([edges[j + 1] - edges[j] - 1 for j in range(m)])
    return np.asarray(rows, dtype=np.float64) / steps


def fit_weights(probs: Sequence[np.ndarray], y: np.ndarray) -> np.ndarray:
    """Member weights maximising the validation log-likelihood of the weighted average of ``probs``.

    Log-likelihood rather than accuracy: it is smooth on small validation sets and it is what the
    temperature and the gate then rely on. Ties go to the weights closest to uniform.
    """
    grid = simplex_grid(len(probs))
    truth = np.stack([p[np.arange(len(y)), y] for p in probs], axis=1)  # (n, M): each member's p(gold)
    nll = -np.log(np.clip(grid @ truth.T, _EPS, None)).mean(axis=1)
    best = np.flatnonzero(nll <= nll.min() + 1e-9)
    uniform = np.full(len(probs), 1.0 / len(probs))
    return grid[best[np.argmin(np.abs(grid[best] - uniform).sum(axis=1))]]
