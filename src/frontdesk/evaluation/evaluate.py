"""Evaluate a Router on labelled examples: accuracy, macro-F1, calibration, escalation, latency.

Messages are routed one at a time so the latency percentiles are what a caller sees per message.
``ece`` and the reliability bins describe the *first tier's* calibrated confidence on this split;
``operating_points`` apply the validation-fitted thresholds for 5/10/15/20/30% escalation to it.
``llm`` reports the LLM tier: which acceptance policy ran, what it did with the answers, and the
accuracy the cascade would have had with the classifier's guess instead (the LLM tier's gain).
``guarantee`` (models trained with ``--guarantee``) checks the certified gate on this split.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
from pydantic import BaseModel, Field

from frontdesk.gating.calibration import ReliabilityBin, expected_calibration_error, reliability_bins
from frontdesk.data.dataset import Example
from frontdesk.gating.gate import apply_threshold
from frontdesk.gating.guarantee import accuracy_interval
from frontdesk.gating.oos import OOS_LABELS
from frontdesk.cascade.router import Router
from frontdesk.types import Decision, TierTrace


class Percentiles(BaseModel):
    p50: float
    p95: float
    p99: float
    mean: float


class LabelMetrics(BaseModel):
    label: str
    precision: float
    recall: float
    f1: float
    support: int


class Confusion(BaseModel):
    true: str
    predicted: str
    count: int


class EvalOperatingPoint(BaseModel):
    target_escalation: float
    threshold: float
    escalation_rate: float
    accepted_accuracy: float


class LLMTierReport(BaseModel):
    """What the LLM tier did on this split, and what it was worth."""

    policy: str = Field(description="the acceptance policy in force: fitted (with what it learnt) or the safe default, and why")
    keeps_guess: bool | None = Field(None, description="the fitted policy never lets the LLM overrule the classifier's guess")
    reached: float = Field(description="share of messages that reached the LLM tier (incl. those held for injection)")
    outcomes: dict[str, float] = Field(default_factory=dict, description="share of messages per outcome: llm (the LLM overruled the "
                                       "guess), agree, guess (guess kept), none, injection (held for review), error")
    decided: float = Field(0.0, description="share of messages the LLM tier decided (accepted or flagged)")
    accuracy_without: float = Field(description="accuracy with the classifier's guess wherever the LLM tier acted")
    gain: float = Field(description="accuracy − accuracy_without")
    in_scope_accuracy_without: float | None = None
    oos_recall_without: float | None = None


class GuaranteeReport(BaseModel):
    """The certified gate of the primary tier, and what it did on the evaluated split.

    The certificate (target, probability, threshold, bound) comes from training; ``accepted_accuracy``
    and its Clopper–Pearson ``interval`` are measured here. A single split can fall below the
    target even when the guarantee holds (it is about the accuracy of the accepted traffic, and a
    finite split scatters around it); ``consistent`` is False only when even the interval's upper
    end is below the target — evidence against the certificate (or a split unlike the validation data).
    """

    tier: str
    target_accuracy: float
    probability: float
    window: int | None = Field(None, description="the certificate covers windows of this many accepted messages")
    certified: bool
    threshold: float | None = Field(description="the certified threshold (None when nothing could be certified)")
    certified_lower_bound: float | None = Field(description="Clopper–Pearson lower bound of the accepted accuracy on validation at the threshold")
    min_margin: float = 0.0
    validation_accepted: int = Field(description="validation messages accepted at the threshold")
    validation_escalation_rate: float
    in_force: bool = Field(description="the running gate is the certified one (not changed after training)")
    note: str = Field("", description="why the guarantee does not apply, when it does not")
    messages: int = Field(description="messages of this split the primary tier scored")
    accepted: int = Field(description="of those, accepted (or flagged) by its gate")
    correct: int
    accepted_accuracy: float | None
    interval: tuple[float, float] = Field(description="95% Clopper–Pearson interval of accepted_accuracy")
    escalation_rate: float
    meets_target: bool | None = Field(None, description="accepted_accuracy ≥ target_accuracy on this split")
    consistent: bool = Field(description="the interval's upper end reaches the target")
    plain_threshold: float | None = Field(None, description="the plain fit to the same target (no guarantee)")
    plain_escalation_rate: float | None = Field(None, description="its escalation on this split")
    price: float | None = Field(None, description="escalation_rate − plain_escalation_rate: the extra escalation the guarantee costs")


class EvalReport(BaseModel):
    """Everything ``frontdesk eval`` reports; ``model_dump()`` is the ``--json`` output."""

    n: int
    accuracy: float
    macro_f1: float
    ece: float
    escalation_rate: float
    flagged_rate: float
    accepted_accuracy: float
    tier_share: dict[str, float]
    latency_ms: Percentiles
    latency_ms_by_tier: dict[str, Percentiles] = Field(default_factory=dict)
    cost_usd: float = 0.0
    cost_per_1k: float = 0.0
    llm_call_rate: float = Field(0.0, description="LLM tier calls (answered, failed or cached) per message")
    llm_tokens: dict[str, int] = Field(default_factory=dict, description="input/output/total tokens of all LLM calls")
    operating_points: list[EvalOperatingPoint] = Field(default_factory=list)
    in_scope_accuracy: float | None = Field(
        None, description="accuracy on the messages whose gold label is not the unknown label (a decision counts with its "
                          "labels; a human-review decision with its best guess); None when the split has no unknown label")
    oos_recall: float | None = Field(None, description="share of the unknown label's messages decided as the unknown label")
    oos_flagged_rate: float | None = Field(
        None, description="share of messages some tier's out-of-scope detector called out of scope (the unknown verdict: "
                          "the unknown label, or human review with reason 'out of scope'); None without detectors")
    oos_curve: list[dict[str, float | None]] = Field(
        default_factory=list, description="the final out-of-scope detector's threshold moved: in-scope accuracy, OOS recall "
                                          "and in-scope rejected per threshold, on this split (empty without detectors)")
    exact_match: float = Field(0.0, description="share of messages whose predicted label set equals the gold set")
    per_label_f1: dict[str, float] = Field(default_factory=dict)
    multi_intent_exact_match: float | None = Field(None, description="exact match on messages with ≥ 2 gold labels")
    lost_intent_rate: float | None = Field(
        None, description="messages with ≥ 2 gold labels whose prediction is a strict subset (an intent got lost)"
    )
    per_label: list[LabelMetrics] = Field(default_factory=list)
    confusions: list[Confusion] = Field(default_factory=list)
    reliability: list[ReliabilityBin] = Field(default_factory=list)
    llm: LLMTierReport | None = Field(None, description="the LLM tier's policy, outcomes and gain (None without an LLM tier)")
    guarantee: GuaranteeReport | None = Field(None, description="the certified gate (models trained with --guarantee)")

    def summary(self) -> dict[str, float | None]:
        """The headline numbers, for tables."""
        return {
            "accuracy": self.accuracy, "macro_f1": self.macro_f1, "ece": self.ece,
            "escalation_rate": self.escalation_rate, "accepted_accuracy": self.accepted_accuracy,
            "in_scope_accuracy": self.in_scope_accuracy, "oos_recall": self.oos_recall,
            "latency_p50_ms": self.latency_ms.p50, "latency_p99_ms": self.latency_ms.p99,
        }


def _pct(values: Sequence[float]) -> Percentiles:
    if not len(values):
        return Percentiles(p50=0.0, p95=0.0, p99=0.0, mean=0.0)
    a = np.asarray(values, dtype=np.float64)
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return Percentiles(p50=float(p50), p95=float(p95), p99=float(p99), mean=float(a.mean()))


def evaluate(
    router: Router, examples: Sequence[Example], *, progress: Callable[[int], None] | None = None
) -> tuple[EvalReport, list[Decision]]:
    """Route every example and compute the report; returns (report, decisions)."""
    if not examples:
        raise ValueError("nothing to evaluate: the split is empty")
    decisions: list[Decision] = []
    for i, ex in enumerate(examples):
        decisions.append(router.route(ex.text))
        if progress and (i % 50 == 49 or i == len(examples) - 1):
            progress(i + 1)
    return report_from_decisions(router, examples, decisions), decisions


def report_from_decisions(router: Router, examples: Sequence[Example], decisions: Sequence[Decision]) -> EvalReport:
    """Compute the metrics of routed ``decisions`` against the gold ``examples``."""
    from sklearn.metrics import f1_score, precision_recall_fscore_support
    from sklearn.preprocessing import MultiLabelBinarizer

    n = len(examples)
    gold = [set(ex.labels) for ex in examples]
    pred = [set(d.labels) for d in decisions]
    correct = np.array([g == p for g, p in zip(gold, pred)])
    multi = any(len(g) > 1 for g in gold)

    mlb = MultiLabelBinarizer().fit(gold + pred)
    yg, yp = mlb.transform(gold), mlb.transform(pred)
    classes = list(mlb.classes_)
    if multi:
        macro = float(f1_score(yg, yp, average="macro", zero_division=0))
    else:
        g1 = [ex.labels[0] for ex in examples]
        p1 = [d.labels[0] if d.labels else "" for d in decisions]
        macro = float(f1_score(g1, p1, average="macro", labels=sorted(set(g1)), zero_division=0))
    prec, rec, f1, support = precision_recall_fscore_support(yg, yp, average=None, zero_division=0)
    per_label = [
        LabelMetrics(label=c, precision=float(p), recall=float(r), f1=float(f), support=int(s))
        for c, p, r, f, s in zip(classes, prec, rec, f1, support) if s > 0
    ]
    confusions = Counter(
        (ex.labels[0], d.labels[0]) for ex, d in zip(examples, decisions) if d.labels and d.labels[0] not in ex.labels
    )

    first = router.primary.name
    t1 = [next((t for t in d.trace if t.tier == first and t.confidence is not None), None) for d in decisions]
    conf1 = np.array([t.confidence if t else 0.0 for t in t1])
    ok1 = np.array([bool(t and set(t.labels) == g) for t, g in zip(t1, gold)])

    answered = np.array([d.tier != "human" for d in decisions])
    tiers = Counter(d.tier for d in decisions)
    by_tier: dict[str, list[float]] = {}
    for d in decisions:
        for t in d.trace:
            if t.tier != "human":
                by_tier.setdefault(t.tier, []).append(t.latency_ms)

    ops = []
    curve = router.curves.get(first)
    if curve is not None:
        for point in curve.standard:
            esc, acc = apply_threshold(conf1, ok1, point.threshold)
            ops.append(EvalOperatingPoint(target_escalation=point.target_escalation or point.escalation_rate,
                                          threshold=point.threshold, escalation_rate=esc, accepted_accuracy=acc))

    oos = _oos_label(router, gold)
    in_scope_acc, oos_recall = _oos_metrics(router, oos, gold, pred)

    cost = float(sum(d.cost_usd for d in decisions))
    llm_traces = [t for d in decisions for t in d.trace if t.role == "llm"]
    tok_in = sum(t.tokens.get("input", 0) for t in llm_traces)
    tok_out = sum(t.tokens.get("output", 0) for t in llm_traces)
    multi_idx = [i for i, g in enumerate(gold) if len(g) > 1]
    multi_exact = lost = None
    if multi_idx:
        multi_exact = float(np.mean([correct[i] for i in multi_idx]))
        lost = float(np.mean([pred[i] < gold[i] for i in multi_idx]))
    return EvalReport(
        n=n,
        accuracy=float(correct.mean()),
        macro_f1=macro,
        ece=expected_calibration_error(conf1, ok1),
        escalation_rate=float(np.mean([d.escalated for d in decisions])),
        flagged_rate=float(np.mean([d.flagged and d.tier != "human" for d in decisions])),
        accepted_accuracy=float(correct[answered].mean()) if answered.any() else 0.0,
        tier_share={t: c / n for t, c in sorted(tiers.items(), key=lambda kv: -kv[1])},
        latency_ms=_pct([d.latency_ms for d in decisions]),
        latency_ms_by_tier={t: _pct(v) for t, v in by_tier.items()},
        cost_usd=cost,
        cost_per_1k=cost / n * 1000,
        llm_call_rate=len(llm_traces) / n,
        llm_tokens={"input": tok_in, "output": tok_out, "total": tok_in + tok_out},
        operating_points=ops,
        in_scope_accuracy=in_scope_acc,
        oos_recall=oos_recall,
        oos_flagged_rate=float(np.mean([is_oos_verdict(d) for d in decisions])) if router.detectors else None,
        oos_curve=oos_curve(router, decisions, gold),
        exact_match=float(correct.mean()),
        per_label_f1={m.label: m.f1 for m in per_label},
        multi_intent_exact_match=multi_exact,
        lost_intent_rate=lost,
        per_label=per_label,
        confusions=[Confusion(true=a, predicted=b, count=c) for (a, b), c in confusions.most_common(20)],
        reliability=reliability_bins(conf1, ok1),
        llm=_llm_report(router, decisions, gold, pred, oos),
        guarantee=guarantee_report(router, t1, gold),
    )


def _oos_metrics(router: Router, oos: str | None, gold: Sequence[set[str]], pred: Sequence[set[str]]) -> tuple[float | None, float | None]:
    """(in-scope accuracy, OOS recall) when the data has an out-of-scope label, else (None, None)."""
    if oos is None:
        return None, None
    unknowns = {oos} | ({router.unknown_label} if router.unknown_label else set())
    is_oos = np.array([oos in g for g in gold])
    correct = np.array([g == p for g, p in zip(gold, pred)])
    in_scope = float(correct[~is_oos].mean()) if (~is_oos).any() else None
    recall = float(np.mean([bool(p & unknowns) for p, o in zip(pred, is_oos) if o])) if is_oos.any() else None
    return in_scope, recall


def _without_llm(router: Router, d: Decision) -> set[str]:
    """The labels ``d`` would have had if the cascade ended before the LLM tier."""
    before = []
    for t in d.trace:
        if t.role == "llm":
            break
        before.append(t)
    for t in before:  # a tier that accepted, escalated only because the LLM tier's injection scan fired
        if t.verdict == "escalate" and "but possible prompt injection" in t.reason:
            return set(t.labels)
    guess = next((t.labels for t in reversed(before) if t.labels), [])
    if router.settings.fallback == "unknown" and guess:
        return {router.unknown_label or "unknown"}
    return set(guess)


def _llm_report(router: Router, decisions: Sequence[Decision], gold: Sequence[set[str]], pred: Sequence[set[str]],
                oos: str | None) -> LLMTierReport | None:
    """The LLM tier's part of the report (None when the router has no LLM tier)."""
    llm = router.llm_tier
    if llm is None:
        return None
    n = len(decisions)
    outcomes: Counter[str] = Counter()
    without = []
    for d, p in zip(decisions, pred):
        entry = next((t for t in d.trace if t.tier == llm.name), None)
        if entry is None:
            without.append(p)
            continue
        outcomes[entry.outcome or ("error" if entry.verdict == "error" else "gate")] += 1
        without.append(_without_llm(router, d))
    policy = router.active_llm_policy
    acc_without = float(np.mean([g == w for g, w in zip(gold, without)]))
    accuracy = float(np.mean([g == p for g, p in zip(gold, pred)]))
    in_w, oos_w = _oos_metrics(router, oos, gold, without)
    note = router.llm_policy_note + (f": {policy.describe()}" if policy is not None else "")
    return LLMTierReport(
        policy=note, keeps_guess=policy.keeps_guess if policy is not None else None,
        reached=sum(outcomes.values()) / n, outcomes={k: v / n for k, v in outcomes.most_common()},
        decided=sum(1 for d in decisions if d.tier == llm.name) / n,
        accuracy_without=acc_without, gain=accuracy - acc_without, in_scope_accuracy_without=in_w, oos_recall_without=oos_w,
    )


def guarantee_report(router: Router, primary: Sequence[TierTrace | None], gold: Sequence[set[str]]) -> GuaranteeReport | None:
    """Check the primary tier's certified gate on a split: ``primary`` holds each message's trace entry
    of that tier (None where it did not score the message), ``gold`` the true label sets."""
    cert = router.guarantee
    if cert is None:
        return None
    curve = router.curves[router.primary.name]
    seen = [(t, g) for t, g in zip(primary, gold) if t is not None]
    accepted = [(t, g) for t, g in seen if t.verdict in ("accept", "flag")]
    correct = sum(set(t.labels) == g for t, g in accepted)
    n_acc = len(accepted)
    escalation = 1.0 - n_acc / len(seen) if seen else 0.0
    acc = correct / n_acc if n_acc else None
    plain_thr = plain_esc = price = None
    if curve.plain is not None and seen:
        p = curve.plain
        kept = sum(1 for t, _ in seen if (t.confidence or 0.0) >= p.threshold and (t.margin is None or t.margin >= p.min_margin))
        plain_thr, plain_esc = p.threshold, 1.0 - kept / len(seen)
        price = escalation - plain_esc
    low, high = accuracy_interval(correct, n_acc)
    gap = router.guarantee_gap()
    return GuaranteeReport(
        tier=router.primary.name, target_accuracy=cert.target_accuracy, probability=cert.probability, window=cert.window,
        certified=cert.certified, threshold=cert.threshold, certified_lower_bound=cert.certified_lower_bound,
        min_margin=cert.min_margin, validation_accepted=cert.n_accepted, validation_escalation_rate=cert.escalation_rate,
        in_force=cert.certified and not gap, note=gap,
        messages=len(seen), accepted=n_acc, correct=correct, accepted_accuracy=acc, interval=(low, high),
        escalation_rate=escalation, meets_target=None if acc is None else acc >= cert.target_accuracy - 1e-12,
        consistent=high >= cert.target_accuracy - 1e-12, plain_threshold=plain_thr, plain_escalation_rate=plain_esc,
        price=price,
    )


def _oos_label(router: Router, gold: Sequence[set[str]]) -> str | None:
    present = set().union(*gold)
    for name in (router.unknown_label, *OOS_LABELS):
        if name and name in present:
            return name
    return None


def is_oos_verdict(decision: Decision) -> bool:
    """Whether a tier's out-of-scope detector called the decision's message out of scope (the unknown verdict)."""
    return any(t.verdict == "unknown" and t.oos_score is not None for t in decision.trace)


def oos_curve(router: Router, decisions: Sequence[Decision], gold: Sequence[set[str]],
              thresholds: Sequence[float] = (0.9, 0.93, 0.95, 0.96, 0.97, 0.975, 0.98, 0.985, 0.99, 0.995)
              ) -> list[dict[str, float | None]]:
    """The out-of-scope trade-off on a split from the decisions' traces: each message's score at the *last* tier with a
    detector that scored it, compared with each threshold (earlier tiers' verdicts as they were). A message counts as
    right when not rejected and its decision's labels were right — or, rejected, when its gold label is the unknown label."""
    if not router.detectors:
        return []
    oos = _oos_label(router, gold)
    rows = []
    for d, g in zip(decisions, gold):
        last = next((t for t in reversed(d.trace) if t.oos_score is not None), None)
        if last is None:
            continue
        guess = set(last.labels) if is_oos_verdict(d) else set(d.labels)
        rows.append((last.oos_score, oos is not None and oos in g, guess == g))
    if not rows:
        return []
    s = np.array([r[0] for r in rows])
    is_oos = np.array([r[1] for r in rows])
    right = np.array([r[2] for r in rows])
    from frontdesk.gating.oos import budget_curve

    # JSON has no NaN: a split without unknown-label messages has no recall
    return [{k: (None if v != v else v) for k, v in p.items()} for p in budget_curve(s, is_oos, right, thresholds)]
