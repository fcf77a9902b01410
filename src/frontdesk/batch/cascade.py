"""The batch cascade: routes a chunk of texts through a Router's tiers with array operations.

``Router.route_batch`` builds a pydantic :class:`~frontdesk.types.Decision` (with its trace) per message,
which costs about as much as scoring it with the linear tier. Here the tiers whose ``score`` is the top-k of
their calibrated ``predict_proba`` (``Tier.score_is_proba``: linear, encoder) score the whole chunk at once,
:meth:`GatePolicy.judge_many` gates it as arrays, only the escalated rows go on to the next tier (in one
batch), and the result is columns (:class:`Rows`), not objects. Every row ends with the labels, tier,
confidence, flags and reason that ``Router.route`` gives the same text (``tests/test_batch_cascade.py``
checks it). Other tiers (rules, clauses, ensemble, plug-ins) run through their own ``score_batch`` and the
per-row gate, exactly as in the Router. A cascade with an LLM tier goes through ``Router.route_batch`` itself: the LLM's acceptance policy and injection rule read every
earlier tier's evidence per message (an earlier tier may not accept a suspect message), and the LLM call costs
hundreds of times what the array path saves.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from frontdesk.cascade.router import Router, _score_many, coerce_message
from frontdesk.errors import FrontdeskError, TierError
from frontdesk.gating.gate import GatePolicy
from frontdesk.gating.oos import oos_reason, possibly_oos_reason, ranked_columns
from frontdesk.tiers.base import Tier

NO_LLM_NOTE = "no LLM in batch (pass --llm to send these to one)"
ERROR_TIER = "error"
"""The ``tier`` of an output row whose input could not be routed (its ``reason`` says why)."""


@dataclass
class Rows:
    """One chunk's results as columns, in input order: what the batch writers write."""

    ids: list[str]
    labels: list[list[str]]
    confidence: list[float]
    tier: list[str]
    escalated: list[bool]
    flagged: list[bool]
    reason: list[str]
    trace: list[list[dict[str, Any]]] | None = None
    cost_usd: float = 0.0

    def __len__(self) -> int:
        return len(self.ids)

    def counts(self) -> dict[str, int]:
        """Rows per final tier (``human`` for review, ``error`` for unroutable input)."""
        out: dict[str, int] = {}
        for t in self.tier:
            out[t] = out.get(t, 0) + 1
        return out


@dataclass
class _Chunk:
    """Per-row state of the valid rows of one chunk while they walk the cascade."""

    texts: list[str]
    truncated: list[bool]
    labels: list[list[str] | None]
    confidence: np.ndarray
    tier: list[str | None]
    flagged: np.ndarray
    reason: list[str | None]
    best: list[tuple[list[str], float, str] | None]
    why: list[list[str]]
    candidates: list[list[str] | None]
    trace: list[list[dict[str, Any]]] | None
    cost: np.ndarray
    columns: dict[str, np.ndarray]  # out-of-scope columns ("<tier>.<column>") of the tiers with a detector, NaN where unscored
    oos_flag: list[tuple[str, float, float] | None]  # (tier, score, threshold) of a pending "possibly out of scope"

    @classmethod
    def start(cls, texts: list[str], truncated: list[bool], *, trace: bool) -> _Chunk:
        """The state of a chunk before any tier has seen it."""
        m = len(texts)
        return cls(texts, truncated, [None] * m, np.zeros(m), [None] * m, np.zeros(m, dtype=bool), [None] * m, [None] * m,
                   [[] for _ in range(m)], [None] * m, [[] for _ in range(m)] if trace else None, np.zeros(m), {}, [None] * m)


class BatchCascade:
    """A loaded Router, ready to route chunks of texts into :class:`Rows` (one per text, input order)."""

    def __init__(self, router: Router, *, trace: bool = False, llm_skipped: bool = False) -> None:
        self.router = router
        self.trace = trace
        self.llm_skipped = llm_skipped
        self.settings = router.settings
        self._tiers: list[tuple[Tier, GatePolicy, bool]] = [
            (t, router.gates.get(t.name) or t.default_gate(), t.score_is_proba and t.calibrated) for t in router.tiers
        ]
        # candidates are computed only when a later tier declares that it reads them (an LLM narrows to them)
        self._wants_candidates = [any("candidates" in t.needs for t in router.tiers[i + 1 :]) for i in range(len(self._tiers))]
        self._position = {t.name: i for i, t in enumerate(router.tiers)}
        self._primary = self._position[router.primary.name]
        self._through_router = router.llm_tier is not None

    @classmethod
    def load(cls, model: str | Path, *, llm: Mapping[str, Any] | None = None, trace: bool = False,
             threads: int | None = None) -> BatchCascade:
        """Load a saved model for batch work. Without ``llm`` an LLM tier saved with the model is left out
        (what it would have seen goes to human review, and the reason says so); with ``llm`` (the
        ``--llm`` settings) that LLM tier is used. ``threads`` pins each encoder tier's inference threads."""
        router = Router.load(model)
        skipped = False
        if llm is not None:
            router = router.with_llm(dict(llm))
        elif router.llm_tier is not None:
            router = router.without_llm()
            skipped = True
        if threads is not None:
            for tier in router.tiers:
                if hasattr(tier, "set_threads"):
                    tier.set_threads(threads)
        return cls(router, trace=trace, llm_skipped=skipped)

    # -- routing ---------------------------------------------------------------------------
    def route(self, texts: Sequence[str | None], ids: Sequence[str], problems: Sequence[str | None] | None = None) -> Rows:
        """Route one chunk. ``problems[i]`` (or a text that ``Router.route`` would reject) makes row ``i`` an
        ``error`` row with that reason; every other row is decided by the cascade."""
        n = len(texts)
        rows = Rows(list(ids), [[] for _ in range(n)], [0.0] * n, [ERROR_TIER] * n, [False] * n, [False] * n, [""] * n,
                    [[] for _ in range(n)] if self.trace else None)
        valid: list[int] = []
        good: list[str] = []
        for i, text in enumerate(texts):
            problem = problems[i] if problems is not None else None
            if problem is None:
                if text is None:
                    problem = "no text"
                else:
                    try:
                        good.append(coerce_message(text)[0])
                        valid.append(i)
                        continue
                    except FrontdeskError as exc:
                        problem = str(exc)
            rows.reason[i] = problem
        if not valid:
            return rows
        state = self._run(good)
        for k, i in enumerate(valid):
            rows.labels[i] = state.labels[k]  # type: ignore[assignment]
            rows.confidence[i] = float(state.confidence[k])
            tier = state.tier[k]
            rows.tier[i] = tier  # type: ignore[assignment]
            rows.escalated[i] = self._position.get(tier, len(self._tiers)) > self._primary  # type: ignore[arg-type]
            rows.flagged[i] = bool(state.flagged[k])
            rows.reason[i] = state.reason[k]  # type: ignore[assignment]
            if rows.trace is not None and state.trace is not None:
                rows.trace[i] = state.trace[k]
        rows.cost_usd = float(state.cost.sum())
        return rows

    def _run(self, texts: list[str]) -> _Chunk:
        limit = self.settings.max_chars
        m = len(texts)
        truncated = [len(t) > limit for t in texts]
        if self._through_router:
            return self._run_router(texts, truncated)
        texts = [t[:limit] if cut else t for t, cut in zip(texts, truncated)]
        st = _Chunk.start(texts, truncated, trace=self.trace)
        pending = np.arange(m)
        for position, (tier, gate, vectorised) in enumerate(self._tiers):
            if not len(pending):
                break
            sub = [texts[i] for i in pending]
            t0 = time.perf_counter()
            probs = cols = None
            if vectorised:
                try:
                    if self.router.oos_detector(tier.name) is not None:
                        probs, cols = tier.predict_with_oos(sub)
                    else:
                        probs = tier.predict_proba(sub)
                except Exception:  # noqa: BLE001 - as in the Router: fall back to scoring one by one
                    probs = None
            if probs is not None:
                pending = self._gate_arrays(st, pending, tier, gate, probs, (time.perf_counter() - t0) * 1e3 / len(sub), position,
                                            cols)
            else:
                pending = self._gate_rows(st, pending, tier, gate, sub)
        for i in pending.tolist():
            self._fallback(st, i)
        return st

    def _oos_arrays(self, st: _Chunk, pending: np.ndarray, name: str, cols: Mapping[str, np.ndarray]
                    ) -> tuple[np.ndarray, np.ndarray, float, str | None] | None:
        """The out-of-scope scores of the pending rows and which reach the threshold: (scores, flagged, threshold,
        the next detector tier); None when the tier has no detector in force."""
        det = self.router.oos_detector(name)
        if det is None:
            return None
        m = len(st.texts)
        for key, values in cols.items():
            st.columns.setdefault(f"{name}.{key}", np.full(m, np.nan))[pending] = values
        scores = det.score({c: st.columns[c][pending] for c in det.columns})
        t = self.router.oos_threshold(name)
        return scores, scores >= t, t, self.router.next_oos_tier(name)

    def _run_router(self, texts: list[str], truncated: list[bool]) -> _Chunk:
        """The chunk through ``Router.route_batch`` (a cascade with an LLM tier), as columns."""
        st = _Chunk.start(texts, truncated, trace=self.trace)
        for i, d in enumerate(self.router.route_batch(texts)):
            st.labels[i], st.confidence[i], st.tier[i], st.flagged[i], st.reason[i] = d.labels, d.confidence, d.tier, d.flagged, d.reason
            st.cost[i] = d.cost_usd
            if st.trace is not None:
                st.trace[i] = [t.model_dump(mode="json", exclude_none=True) for t in d.trace]
        return st

    def _gate_arrays(self, st: _Chunk, pending: np.ndarray, tier: Tier, gate: GatePolicy, probs: np.ndarray, ms: float,
                     position: int, cols: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        top_k = getattr(getattr(tier, "params", None), "top_k", None)
        g = gate.judge_many(probs, tier.labels_, top_k)
        name, cost = tier.name, float(getattr(getattr(tier, "params", None), "cost_per_call_usd", 0.0))
        st.cost[pending] += cost
        verdict = g.verdict
        oos = self._oos_arrays(st, pending, name, cols) if cols is not None else None
        if oos is not None:
            oos_scores, oos_flag, oos_t, oos_next = oos
            verdict = np.where(oos_flag, "escalate" if oos_next is not None else "unknown", verdict).astype(object)
        decided = (verdict == "accept") | (verdict == "flag")
        want_cands = self._wants_candidates[position]
        if want_cands:
            k = min(self.settings.candidates_k, probs.shape[1])
            cand_cols = _top_columns(probs, k)
        if st.trace is not None:
            k_trace = min(self.settings.trace_top_k, probs.shape[1], top_k or probs.shape[1])
            trace_cols = _top_columns(probs, k_trace)
        names = tier.labels_
        for j, i in enumerate(pending.tolist()):
            labels = g.labels(j)
            conf = float(g.confidence[j])
            reason = g.reason(j)
            oos_entry: dict[str, Any] = {}
            if oos is not None:
                score = float(oos_scores[j])
                oos_entry = {"oos_score": score, "oos_threshold": oos_t}
                if oos_flag[j]:
                    reason = possibly_oos_reason(score, oos_t, oos_next) if oos_next is not None else oos_reason(score, oos_t)
                    st.oos_flag[i] = (name, score, oos_t) if oos_next is not None else None
                else:
                    st.oos_flag[i] = None
            if st.trace is not None:
                tcols = trace_cols[j].tolist()
                st.trace[i].append({"tier": name, "kind": tier.kind, "role": tier.role, "verdict": verdict[j], "labels": labels, "confidence": conf,
                                    "margin": None if gate.multi_label else float(g.margin[j]),
                                    "top": [{"label": names[c], "score": float(probs[j, c])} for c in tcols],
                                    "reason": reason, "latency_ms": ms, "cost_usd": cost, **oos_entry})
            if decided[j]:
                self._decide(st, i, labels, conf, name, verdict[j] == "flag", reason)
                continue
            if verdict[j] == "unknown":
                if labels:
                    st.best[i] = (labels, conf, name)
                self._unknown(st, i, name, float(oos_scores[j]), oos_t)
                continue
            if labels:
                st.best[i] = (labels, conf, name)
                st.why[i].append(f"{name}: {reason}")
                if want_cands:
                    st.candidates[i] = [names[c] for c in cand_cols[j].tolist()]
        return pending[~decided & (verdict != "unknown")]

    def _gate_rows(self, st: _Chunk, pending: np.ndarray, tier: Tier, gate: GatePolicy, sub: list[str]) -> np.ndarray:
        """The Router's per-row loop, for tiers that are not vectorised (and for a vectorised tier that failed)."""
        k_trace, k_cand = self.settings.trace_top_k, self.settings.candidates_k
        results = _score_many(tier, sub, [st.candidates[i] for i in pending] if "candidates" in tier.needs else [None] * len(sub))
        still = []
        for i, res in zip(pending.tolist(), results):
            if isinstance(res, BaseException):
                reason = res.reason if isinstance(res, TierError) else f"{type(res).__name__}: {res}"
                st.why[i].append(f"{tier.name}: {reason}")
                if st.trace is not None:
                    st.trace[i].append({"tier": tier.name, "kind": tier.kind, "role": tier.role, "verdict": "error", "labels": [], "confidence": None,
                                        "margin": None, "top": [], "reason": reason, "latency_ms": 0.0, "cost_usd": 0.0})
                still.append(i)
                continue
            g = gate.judge(res.ranked)
            oos_entry: dict[str, Any] = {}
            oos = self._oos_arrays(st, np.array([i]), tier.name,
                                   {k: np.array([v]) for k, v in (res.oos if res.oos is not None else ranked_columns(res.ranked)).items()})
            if oos is not None:
                score, t, nxt = float(oos[0][0]), oos[2], oos[3]
                oos_entry = {"oos_score": score, "oos_threshold": t}
                st.oos_flag[i] = None
                if oos[1][0]:
                    if nxt is not None:
                        st.oos_flag[i] = (tier.name, score, t)
                        g = g._replace(verdict="escalate", reason=possibly_oos_reason(score, t, nxt))
                    else:
                        g = g._replace(verdict="unknown", reason=oos_reason(score, t))
            st.cost[i] += res.cost_usd
            if st.trace is not None:
                st.trace[i].append({"tier": tier.name, "kind": tier.kind, "role": tier.role, "verdict": g.verdict, "labels": g.labels,
                                    "confidence": g.confidence, "margin": g.margin,
                                    "top": [{"label": lab, "score": s} for lab, s in res.ranked[:k_trace]], "reason": g.reason,
                                    "latency_ms": res.latency_ms, "cost_usd": res.cost_usd,
                                    **({"rationale": res.rationale} if res.rationale else {}),
                                    **{k: res.info[k] for k in ("fields", "field_notes") if res.info.get(k)}, **oos_entry})
            if g.labels:
                st.best[i] = (g.labels, g.confidence, tier.name)
                st.candidates[i] = [lab for lab, _ in res.ranked[:k_cand]]
            if g.verdict == "unknown":
                self._unknown(st, i, tier.name, oos_entry["oos_score"], oos_entry["oos_threshold"])
            elif g.verdict in ("accept", "flag"):
                self._decide(st, i, g.labels, g.confidence, tier.name, g.verdict == "flag", g.reason)
            else:
                if g.verdict == "escalate" and g.labels:
                    st.why[i].append(f"{tier.name}: {g.reason}")
                still.append(i)
        return np.array(still, dtype=np.int64)

    def _unknown(self, st: _Chunk, i: int, tier: str, score: float, threshold: float) -> None:
        """The out-of-scope verdict: the unknown label, or human review with the best guess (as ``Router._unknown``)."""
        why = f"{tier}: {oos_reason(score, threshold)}"
        label = self.router.unknown_label
        if label is not None:
            self._decide(st, i, [label], score, tier, False, f"{why} → '{label}'")
            return
        labels, conf, source = st.best[i] or ([], 0.0, "none")
        guess = f"best guess {labels} ({conf:.2f} from {source})" if labels else "no tier produced a guess"
        reason = f"{why} → human review, {guess}"
        if st.trace is not None:
            st.trace[i].append({"tier": "human", "kind": "human", "role": "human", "verdict": "review", "labels": labels, "confidence": conf,
                                "margin": None, "top": [], "reason": reason, "latency_ms": 0.0, "cost_usd": 0.0})
        self._decide(st, i, labels, conf, "human", True, reason)

    def _fallback(self, st: _Chunk, i: int) -> None:
        """No tier was confident: human review with the best guess, or the unknown label (as ``Router._fallback``)."""
        if st.oos_flag[i] is not None:  # possibly out of scope, and no later detector tier could judge it
            self._unknown(st, i, *st.oos_flag[i])  # type: ignore[misc]
            return
        why = "; ".join(st.why[i])
        labels, conf, source = st.best[i] or ([], 0.0, "none")
        note = f"; {NO_LLM_NOTE}" if self.llm_skipped else ""
        s = self.settings
        if s.fallback == "unknown" and st.best[i] is not None:
            if st.trace is not None and st.trace[i]:
                st.trace[i][-1]["verdict"] = "unknown"
            unknown = self.router.unknown_label or "unknown"
            self._decide(st, i, [unknown], conf, source, False, f"{why} → no tier was confident: '{unknown}'{note}")
            return
        guess = f"best guess {labels} ({conf:.2f} from {source})" if labels else "no tier produced a guess"
        reason = f"{why} → human review, {guess}"
        if st.trace is not None:
            st.trace[i].append({"tier": "human", "kind": "human", "role": "human", "verdict": "review", "labels": labels, "confidence": conf,
                                "margin": None, "top": [], "reason": reason, "latency_ms": 0.0, "cost_usd": 0.0})
        self._decide(st, i, labels, conf, "human", True, reason + note)

    def _decide(self, st: _Chunk, i: int, labels: list[str], conf: float, tier: str, flagged: bool, reason: str) -> None:
        if st.truncated[i]:
            reason = f"{reason} (text truncated to {self.settings.max_chars} characters)"
        st.labels[i], st.confidence[i], st.tier[i], st.flagged[i], st.reason[i] = labels, conf, tier, flagged, reason


def _top_columns(probs: np.ndarray, k: int) -> np.ndarray:
    """Each row's ``k`` best columns, best first (ties by column)."""
    n, width = probs.shape
    cols = np.argpartition(-probs, k - 1, axis=1)[:, :k] if k < width else np.tile(np.arange(width), (n, 1))
    p = np.take_along_axis(probs, cols, axis=1)
    order = np.lexsort((cols, -p), axis=1)
    return np.take_along_axis(cols, order, axis=1)
