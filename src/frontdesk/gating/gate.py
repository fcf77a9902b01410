"""The gate: turns one tier's label scores into accept / flag / escalate, and fits its thresholds.

Three bands (seed 003): confidence ≥ ``flag_threshold`` → accept; between ``threshold`` and
``flag_threshold`` → accept but flag for review; below ``threshold`` (the label's own threshold
when one is set) → escalate to the next tier. A top-2 ``min_margin`` escalates ambiguous
messages even when the top label looks confident. Multi-label gates accept every label whose
probability reaches its threshold.

Thresholds are fitted on validation data to a stated :class:`Objective`: a target accuracy on the
accepted messages, or a maximum escalation rate (the LLM budget). With ``Objective.guarantee`` the
threshold is *certified* instead (:mod:`frontdesk.gating.guarantee`): accuracy on accepted ≥ the
target with the stated probability over the draw of the validation data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from frontdesk.errors import ConfigError
from frontdesk.gating.guarantee import CertifiedThreshold, fit_certified_threshold
from frontdesk.types import Verdict

STANDARD_RATES = (0.05, 0.10, 0.15, 0.20, 0.30)
MARGIN_GRID = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2)


class GateResult(NamedTuple):
    """The gate's verdict on one tier result."""

    verdict: Verdict
    labels: list[str]
    confidence: float
    margin: float | None
    reason: str


class GatePolicy(BaseModel):
    """Thresholds of one tier's gate; built from config or fitted by :func:`fit_gate`.

    Single-label: ``threshold`` / ``label_thresholds`` are escalation thresholds on the top label's
    probability. Multi-label: ``decision_threshold`` / ``label_thresholds`` decide which labels are
    in the set, and ``threshold`` / ``flag_threshold`` apply to the set's confidence (the product
    of the ranked labels' certainties).
    """

    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(0.7, ge=0.0, le=1.0, description="escalate when confidence is below this")
    flag_threshold: float | None = Field(None, ge=0.0, le=1.0, description="accept but flag below this (review band)")
    label_thresholds: dict[str, float] = Field(default_factory=dict, description="per-label overrides of threshold")
    min_margin: float = Field(0.0, ge=0.0, le=1.0, description="escalate when top1 - top2 is below this")
    multi_label: bool = Field(False, description="several labels per message (see decision_threshold)")
    decision_threshold: float = Field(
        0.5, ge=0.0, le=1.0,
        description="multi-label only: a label is in the set when its probability reaches this (label_thresholds override it)",
    )
    oos_detection: bool = Field(
        True, description="use the tier's out-of-scope detector (a model trained with one): a message that fits none of the "
                          "known labels goes to the unknown label or human review, or on to a later tier that can judge it")
    oos_threshold: float | None = Field(
        None, ge=0.0, le=1.0,
        description="out-of-scope score (share of in-scope validation messages that look more in scope) at or above which a "
                    "message is out of scope; None: the threshold fitted at training (higher: fewer messages called unknown)")

    @model_validator(mode="after")
    def _check(self) -> GatePolicy:
        if self.flag_threshold is not None and self.flag_threshold < self.threshold:
            raise ValueError(f"flag_threshold {self.flag_threshold} must be ≥ threshold {self.threshold}")
        for label, t in self.label_thresholds.items():
            if not 0.0 <= t <= 1.0:
                raise ValueError(f"label_thresholds[{label!r}] = {t} is outside [0, 1]")
        return self

    def check_labels(self, labels: Sequence[str]) -> None:
        """Raise :class:`ConfigError` when a per-label threshold names a label the model does not know."""
        unknown = sorted(set(self.label_thresholds) - set(labels))
        if unknown:
            raise ConfigError(
                f"threshold set for unknown label(s) {unknown}; known labels: {', '.join(sorted(labels)[:20])}"
                + (" …" if len(labels) > 20 else ""),
                field="gate.label_thresholds",
            )

    def threshold_for(self, label: str) -> float:
        """The escalation threshold that applies to ``label``."""
        return self.label_thresholds.get(label, self.threshold)

    def judge(self, ranked: Sequence[tuple[str, float]]) -> GateResult:
        """Apply the policy to (label, probability) pairs sorted best first."""
        if not ranked:
            return GateResult("escalate", [], 0.0, None, "the tier proposed no label")
        if self.multi_label:
            return self._judge_multi(ranked)
        label, conf = ranked[0]
        margin = conf - ranked[1][1] if len(ranked) > 1 else conf
        t = self.label_thresholds.get(label, self.threshold)
        if conf < t:
            kind = "label threshold" if label in self.label_thresholds else "threshold"
            return GateResult("escalate", [label], conf, margin, f"confidence {conf:.2f} for '{label}' < {kind} {t:.2f}")
        if margin < self.min_margin:
            other, p2 = ranked[1]
            return GateResult(
                "escalate", [label], conf, margin,
                f"ambiguous: margin {margin:.2f} between '{label}' ({conf:.2f}) and '{other}' ({p2:.2f}) < {self.min_margin:.2f}",
            )
        if self.flag_threshold is not None and conf < self.flag_threshold:
            return GateResult(
                "flag", [label], conf, margin,
                f"confidence {conf:.2f} for '{label}' is in the review band [{t:.2f}, {self.flag_threshold:.2f})",
            )
        return GateResult("accept", [label], conf, margin, f"confidence {conf:.2f} for '{label}' ≥ {max(t, self.flag_threshold or 0):.2f}")

    def _judge_multi(self, ranked: Sequence[tuple[str, float]]) -> GateResult:
        # A label is in the set when its probability reaches its decision threshold; the set's
        # confidence is the product of each ranked label's certainty (p if in, 1 - p if out).
        dt, lt = self.decision_threshold, self.label_thresholds
        chosen: list[str] = []
        conf = 1.0
        for label, p in ranked:
            if p >= lt.get(label, dt):
                chosen.append(label)
                conf *= p
            else:
                conf *= 1.0 - p
        if not chosen:
            label, p = ranked[0]
            return GateResult("escalate", [label], p, None, f"no label reached its threshold: best '{label}' {p:.2f} < {lt.get(label, dt):.2f}")
        if conf < self.threshold:
            return GateResult("escalate", chosen, conf, None, f"set confidence {conf:.2f} for {chosen} < threshold {self.threshold:.2f}")
        if self.flag_threshold is not None and conf < self.flag_threshold:
            return GateResult("flag", chosen, conf, None,
                              f"set confidence {conf:.2f} for {chosen} is in the review band [{self.threshold:.2f}, {self.flag_threshold:.2f})")
        return GateResult("accept", chosen, conf, None, f"set confidence {conf:.2f} for {chosen} ≥ {max(self.threshold, self.flag_threshold or 0):.2f}")

    def judge_many(self, probs: np.ndarray, labels: Sequence[str], top_k: int | None = None) -> GateVerdicts:
        """Vectorised :meth:`judge` over a probability matrix (n, L; columns follow ``labels``): for each row the
        same verdict, labels, confidence, margin and reason as judging its ``top_k`` ranked labels one at a time."""
        return GateVerdicts(self, np.asarray(probs, dtype=np.float64), tuple(labels), top_k)


PER_LABEL_GUARANTEE = ("a guarantee certifies one global threshold, per-label thresholds would be many more parameters "
                       "fitted on the same validation data: drop per_label (--per-label-thresholds) or the guarantee")


class Objective(BaseModel):
    """What threshold fitting optimises: exactly one of ``target_accuracy`` / ``max_escalation``.

    target_accuracy: the lowest threshold whose accepted messages reach this accuracy (fewest
    escalations). max_escalation: the most accurate threshold that escalates at most this share.
    flag_accuracy: when set, a review band is fitted so that messages above it reach this accuracy.
    per_label: fit a threshold per label (labels with ≥ ``min_label_support`` validation predictions).
    guarantee: certify the threshold instead of fitting it (see :func:`fit_certified_gate`).
    """

    model_config = ConfigDict(extra="forbid")

    target_accuracy: float | None = Field(None, gt=0.0, le=1.0, description="the lowest threshold whose accepted messages "
                                          "reach this accuracy on validation (fewest escalations)")
    max_escalation: float | None = Field(None, ge=0.0, le=1.0, description="the most accurate threshold that escalates at "
                                         "most this share of validation (the LLM / review budget); the default is 0.2")
    flag_accuracy: float | None = Field(None, gt=0.0, le=1.0, description="also fit a review band: accepted messages below "
                                        "its upper edge are flagged, so the unflagged ones reach this accuracy")
    per_label: bool = Field(False, description="one threshold per label (labels with at least min_label_support validation "
                                               "predictions; the rest use the global one)")
    fit_margin: bool = Field(True, description="also search a top-2 margin rule (0–0.2) jointly with the threshold")
    min_label_support: int = Field(20, ge=1, description="validation predictions a label needs for its own threshold")
    guarantee: float | None = Field(
        None, gt=0.0, lt=1.0,
        description="probability, over the draw of the validation data, that the accuracy on accepted messages of the "
                    "traffic is ≥ target_accuracy (a certified threshold; needs target_accuracy)")
    guarantee_window: int | None = Field(
        None, ge=1, description="with guarantee: certify every window of this many accepted messages instead of the "
                                "accepted traffic as a whole (stricter, escalates more)")
    min_margin: float = Field(
        0.0, ge=0.0, le=1.0, description="top-2 margin used when it is not fitted (fit_margin off, or with a guarantee: "
                                         "a certified gate keeps the margin rule fixed)")
    defer: bool = Field(
        True, description="a tier followed by a calibrated local model tier (linear → encoder) also escalates the messages "
                          "that tier answers better on validation: its threshold is raised to where the two together are "
                          "most accurate (within 0.1 % of validation), never lowered. Off: each gate to the objective alone. "
                          "A certified gate is never moved")
    on_uncertified: Literal["fail", "plain"] = Field(
        "fail", description="with guarantee, when no threshold can be certified: fail (raise ConfigError saying what to "
                            "change) or plain (keep the plain fit, marked NOT CERTIFIED in the model and in eval)")

    @model_validator(mode="after")
    def _one(self) -> Objective:
        if self.target_accuracy is not None and self.max_escalation is not None:
            raise ValueError("give target_accuracy or max_escalation, not both")
        if self.guarantee is not None and self.target_accuracy is None:
            raise ValueError("a guarantee certifies an accuracy on accepted messages: give target_accuracy "
                             "(--target-accuracy) with guarantee (--guarantee)")
        if self.guarantee_window is not None and self.guarantee is None:
            raise ValueError("guarantee_window (--guarantee-window) needs guarantee (--guarantee)")
        if self.guarantee is not None and self.per_label:
            raise ValueError(PER_LABEL_GUARANTEE)
        if self.target_accuracy is None and self.max_escalation is None:
            self.max_escalation = 0.2
        return self

    def describe(self) -> str:
        """A short human-readable statement of the objective."""
        if self.guarantee is not None:
            scope = f" on every window of {self.guarantee_window} accepted messages" if self.guarantee_window else ""
            return (f"accuracy on accepted ≥ {self.target_accuracy:.3f}{scope} with probability ≥ {self.guarantee:.3f} "
                    "over the validation draw (certified threshold)")
        if self.target_accuracy is not None:
            return f"accuracy on accepted ≥ {self.target_accuracy:.3f} with the fewest escalations"
        return f"highest accuracy on accepted with escalation ≤ {self.max_escalation:.3f}"

    def without_guarantee(self) -> Objective:
        """The same objective as a plain fit (later cascade tiers; the reference fit of a certified gate)."""
        return self.model_copy(update={"guarantee": None, "guarantee_window": None})


class OperatingPoint(BaseModel):
    """One point of the accuracy-vs-escalation trade-off."""

    threshold: float
    escalation_rate: float
    accepted_accuracy: float
    min_margin: float = 0.0
    target_escalation: float | None = None


class OperatingCurve(BaseModel):
    """The validation trade-off curve of one tier and the point the objective chose."""

    points: list[OperatingPoint]
    standard: list[OperatingPoint] = Field(default_factory=list, description="best thresholds for 5/10/15/20/30% escalation")
    chosen: OperatingPoint
    objective: str
    note: str = ""
    guarantee: CertifiedThreshold | None = Field(
        None, description="the certificate of this gate (Objective.guarantee); None when none was asked for")
    plain: OperatingPoint | None = Field(
        None, description="with a guarantee: the plain fit to the same target, to show the price of the guarantee")


def _curve(conf: np.ndarray, correct: np.ndarray, n_total: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thresholds (accept conf ≥ t), escalation rates and accepted accuracies, one per distinct t."""
    if len(conf) == 0:
        return np.array([1.0]), np.array([1.0]), np.array([1.0])
    order = np.argsort(-conf, kind="stable")
    c, ok = conf[order], correct[order].astype(np.float64)
    k = np.arange(1, len(c) + 1)
    acc = np.cumsum(ok) / k
    last = np.r_[c[1:] != c[:-1], True]
    return c[last], 1.0 - k[last] / n_total, acc[last]


def _pick(thr: np.ndarray, esc: np.ndarray, acc: np.ndarray, obj: Objective) -> int | None:
    if obj.target_accuracy is not None:
        ok = np.flatnonzero(acc >= obj.target_accuracy - 1e-12)
        return int(ok[np.argmin(esc[ok])]) if len(ok) else None
    ok = np.flatnonzero(esc <= obj.max_escalation + 1e-12)  # type: ignore[operator]
    if not len(ok):
        return None
    best = acc[ok].max()
    cands = ok[acc[ok] >= best - 1e-12]
    return int(cands[np.argmin(esc[cands])])


def _scores(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-1 index, confidence and top-2 margin per row."""
    top2 = -np.partition(-probs, 1, axis=1)[:, :2] if probs.shape[1] > 1 else np.c_[probs, np.zeros(len(probs))]
    return probs.argmax(axis=1), top2[:, 0], top2[:, 0] - top2[:, 1]


def fit_gate(
    probs: np.ndarray, targets: Sequence[Sequence[str]], labels: Sequence[str], objective: Objective | None = None,
    *, multi_label: bool = False, top_k: int | None = None, next_correct: np.ndarray | None = None,
    next_tier: str = "the next tier",
) -> tuple[GatePolicy, OperatingCurve]:
    """Fit a gate on validation ``probs`` (n, L; columns follow ``labels``).

    Single-label: escalation threshold and margin to the objective. Multi-label (``multi_label``
    or any target with several labels): per-label decision thresholds that maximise exact-match
    on validation, then the set-confidence threshold to the objective. ``next_correct`` (one bool
    per validation row: is the next local tier's top label right?) raises the threshold where that
    tier is the better judge (``Objective.defer``; see :func:`defer_threshold`).
    """
    obj = objective or Objective()
    probs = np.asarray(probs, dtype=np.float64)
    n = len(probs)
    if n == 0:
        raise ConfigError("cannot fit thresholds without validation examples: add a validation split")
    if obj.guarantee is not None:
        return fit_certified_gate(probs, targets, labels, obj, multi_label=multi_label)
    if multi_label or any(len(t) > 1 for t in targets):
        return _fit_multi(probs, targets, labels, obj, top_k)
    pred, conf, margin = _scores(probs)
    correct = np.array([labels[p] in set(t) for p, t in zip(pred, targets)])
    thr0, esc0, acc0 = _curve(conf, correct, n)
    points = _downsample(thr0, esc0, acc0)
    standard = _standard_points(thr0, esc0, acc0)

    best: tuple[float, float, float, float] | None = None  # (score key...), threshold, margin
    chosen: OperatingPoint | None = None
    for m in (MARGIN_GRID if obj.fit_margin else (obj.min_margin,)):
        passing = margin >= m
        thr, esc, acc = _curve(conf[passing], correct[passing], n)
        i = _pick(thr, esc, acc, obj)
        if i is None:
            continue
        key = (-esc[i], acc[i]) if obj.target_accuracy is not None else (acc[i], -esc[i])
        if best is None or key > best[:2]:
            best = (*key, float(thr[i]), m)
            chosen = OperatingPoint(threshold=float(thr[i]), escalation_rate=float(esc[i]), accepted_accuracy=float(acc[i]), min_margin=m)
    note = ""
    if chosen is None:  # objective unreachable: take the most accurate point that accepts anything
        i = int(np.argmax(acc0))
        chosen = OperatingPoint(threshold=float(thr0[i]), escalation_rate=float(esc0[i]), accepted_accuracy=float(acc0[i]))
        note = f"objective ({obj.describe()}) not reachable on validation; chose the most accurate threshold"
    policy = GatePolicy(threshold=chosen.threshold, min_margin=chosen.min_margin)

    if obj.per_label:
        policy, chosen = _fit_per_label(pred, conf, correct, labels, obj, policy)
    if obj.defer and next_correct is not None:
        policy, chosen, why = _deferred(policy, chosen, pred, conf, margin, correct, np.asarray(next_correct, dtype=bool),
                                        labels, next_tier)
        note = "; ".join(x for x in (note, why) if x)
    if obj.flag_accuracy is not None:
        policy = _with_review_band(policy, conf, correct, _accepted(policy, pred, conf, margin, labels), obj.flag_accuracy)
    curve = OperatingCurve(points=points, standard=standard, chosen=chosen, objective=obj.describe(), note=note)
    return policy, curve


DEFER_TOLERANCE = 0.001
"""How much validation accuracy (share of messages) deferring may leave on the table for fewer escalations."""


def defer_threshold(conf: np.ndarray, correct: np.ndarray, next_correct: np.ndarray,
                    tolerance: float = DEFER_TOLERANCE) -> tuple[float, float, float]:
    """The confidence below which a tier should hand its messages to the next one: the lowest threshold at which
    the pair (this tier accepting ``conf ≥ t``, the next tier's top label for the rest) is within ``tolerance``
    of its best validation accuracy (and never by less than one message). Returns (threshold, pair accuracy
    there, pair accuracy accepting all); the threshold is -inf when this tier should keep every message.

    Why: a cheap tier's gate fitted to its own objective accepts wherever *it* is accurate enough, yet a
    local model behind it (an encoder after TF-IDF) may be right more often on the same messages; the cascade
    is then less accurate than its last tier alone (CLINC150: 95.9 % vs 96.5 % in-scope).
    """
    n = len(conf)
    order = np.argsort(-conf, kind="stable")
    c = conf[order]
    mine = np.r_[0, np.cumsum(correct[order])]
    theirs = np.r_[0, np.cumsum(next_correct[order])]
    pair = mine + (theirs[-1] - theirs)  # right answers when the k most confident rows are accepted
    ks = np.r_[0, np.flatnonzero(np.r_[c[1:] != c[:-1], True]) + 1]  # k at distinct confidences only
    best = pair[ks].max()
    k = int(ks[pair[ks] >= best - max(1.0, tolerance * n)].max())
    threshold = float(c[k - 1]) if k > 0 else 1.0  # k = 0: the next tier is the better judge of every message
    return (-np.inf if k == n else threshold), float(pair[k] / n), float(pair[n] / n)


def _deferred(policy: GatePolicy, chosen: OperatingPoint, pred: np.ndarray, conf: np.ndarray, margin: np.ndarray,
              correct: np.ndarray, next_correct: np.ndarray, labels: Sequence[str],
              next_tier: str) -> tuple[GatePolicy, OperatingPoint, str]:
    """Raise the gate's thresholds to :func:`defer_threshold` (never lower them); the new operating point and a note."""
    t, _, _ = defer_threshold(conf, correct, next_correct)
    if t <= min([policy.threshold, *policy.label_thresholds.values()]):
        return policy, chosen, ""
    raised = policy.model_copy(update={
        "threshold": max(policy.threshold, t),
        "label_thresholds": {lab: max(v, t) for lab, v in policy.label_thresholds.items()}})
    was, now = _accepted(policy, pred, conf, margin, labels), _accepted(raised, pred, conf, margin, labels)
    point = OperatingPoint(threshold=raised.threshold, escalation_rate=float(1.0 - now.mean()),
                           accepted_accuracy=float(correct[now].mean()) if now.any() else 1.0, min_margin=raised.min_margin)
    before, after = (float(np.where(a, correct, next_correct).mean()) for a in (was, now))
    why = (f"raised from {chosen.threshold:.3f} to {raised.threshold:.3f}: {next_tier} answers the messages in between "
           f"better; with it, validation accuracy {before:.2%} → {after:.2%}, escalation "
           f"{chosen.escalation_rate:.1%} → {point.escalation_rate:.1%}")
    return raised, point, why


def _accepted(policy: GatePolicy, pred: np.ndarray, conf: np.ndarray, margin: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """Which validation rows a single-label ``policy`` accepts (its label's threshold and the margin rule)."""
    thr = np.array([policy.threshold_for(labels[p]) for p in pred]) if policy.label_thresholds else policy.threshold
    return (conf >= thr) & (margin >= policy.min_margin)


def fit_certified_gate(
    probs: np.ndarray, targets: Sequence[Sequence[str]], labels: Sequence[str], objective: Objective,
    *, multi_label: bool = False,
) -> tuple[GatePolicy, OperatingCurve]:
    """Fit a single-label gate whose threshold is certified (``objective.guarantee``; see
    :func:`~frontdesk.gating.guarantee.fit_certified_threshold`).

    The margin rule is fixed at ``objective.min_margin`` (fitting it on the same validation data
    would select on the data being tested). The plain fit to the same target is computed too: it
    is the reference for the price of the guarantee (``curve.plain``), and the gate that is kept
    when nothing certifies and ``on_uncertified == "plain"`` (then ``curve.note`` says NOT
    CERTIFIED). With ``on_uncertified == "fail"`` an uncertified fit raises :class:`ConfigError`
    saying what to change. Multi-label gates and per-label thresholds are refused.
    """
    obj = objective
    if obj.guarantee is None or obj.target_accuracy is None:
        raise ConfigError("fit_certified_gate needs an objective with target_accuracy and guarantee", field="objective.guarantee")
    if multi_label or any(len(t) > 1 for t in targets):
        raise ConfigError("a guarantee is only available for single-label models: a multi-label gate fits its label "
                          "decision thresholds on the same validation data the guarantee would be tested on; drop "
                          "the guarantee (--guarantee) for this model", field="objective.guarantee")
    if obj.per_label:
        raise ConfigError(PER_LABEL_GUARANTEE, field="objective.guarantee")
    probs = np.asarray(probs, dtype=np.float64)
    pred, conf, margin = _scores(probs)
    correct = np.array([labels[p] in set(t) for p, t in zip(pred, targets)])
    try:
        cert = fit_certified_threshold(conf, correct, obj.target_accuracy, obj.guarantee,
                                       eligible=margin >= obj.min_margin, window=obj.guarantee_window)
    except ValueError as exc:
        raise ConfigError(str(exc), field="objective.guarantee") from exc
    cert = cert.model_copy(update={"min_margin": obj.min_margin})
    plain_policy, plain = fit_gate(probs, targets, labels, obj.without_guarantee())
    if cert.certified:
        assert cert.threshold is not None and cert.accepted_accuracy is not None
        policy = GatePolicy(threshold=cert.threshold, min_margin=obj.min_margin)
        chosen = OperatingPoint(threshold=cert.threshold, escalation_rate=cert.escalation_rate,
                                accepted_accuracy=cert.accepted_accuracy, min_margin=obj.min_margin)
        if obj.flag_accuracy is not None:  # the band only flags accepted messages: the guarantee is untouched
            policy = _with_review_band(policy, conf, correct, (conf >= policy.threshold) & (margin >= policy.min_margin),
                                       obj.flag_accuracy)
        note = ""
    elif obj.on_uncertified == "fail":
        raise ConfigError(f"{cert.reason}; or keep an uncertified plain fit with on_uncertified='plain' "
                          "(--on-uncertified plain)", field="objective.guarantee")
    else:
        policy, chosen = plain_policy, plain.chosen
        note = f"NOT CERTIFIED ({cert.reason}); the plain fit to the target is used" + (f"; {plain.note}" if plain.note else "")
    curve = OperatingCurve(points=plain.points, standard=plain.standard, chosen=chosen, objective=obj.describe(),
                           note=note, guarantee=cert, plain=plain.chosen)
    return policy, curve


def _with_review_band(policy: GatePolicy, conf: np.ndarray, correct: np.ndarray, accepted: np.ndarray, flag_accuracy: float) -> GatePolicy:
    """Add the review band: the lowest ``flag_threshold`` above which accepted messages reach ``flag_accuracy``
    (no band when the accepted messages already do, or never do)."""
    t_f, _, a_f = _curve(conf[accepted], correct[accepted], len(conf))
    ok = np.flatnonzero(a_f >= flag_accuracy)
    if len(ok) and t_f[ok].min() > policy.threshold:
        return policy.model_copy(update={"flag_threshold": float(t_f[ok].min())})
    return policy


def _standard_points(thr: np.ndarray, esc: np.ndarray, acc: np.ndarray) -> list[OperatingPoint]:
    out = []
    for rate in STANDARD_RATES:
        i = _pick(thr, esc, acc, Objective(max_escalation=rate))
        if i is not None:
            out.append(OperatingPoint(threshold=float(thr[i]), escalation_rate=float(esc[i]), accepted_accuracy=float(acc[i]), target_escalation=rate))
    return out


def multi_label_sets(probs: np.ndarray, thresholds: np.ndarray, top_k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised twin of the multi-label gate: (included mask (n, L), set confidence (n,)).

    Only each row's ``top_k`` labels count towards the confidence, as in ``GatePolicy.judge``.
    """
    inc = probs >= thresholds
    cert = np.where(inc, probs, 1.0 - probs)
    if top_k is not None and top_k < probs.shape[1]:
        keep = np.zeros_like(inc)
        np.put_along_axis(keep, np.argpartition(-probs, top_k - 1, axis=1)[:, :top_k], True, axis=1)
        cert = np.where(keep, cert, 1.0)
        inc &= keep
    return inc, cert.prod(axis=1)


def _fit_multi(
    probs: np.ndarray, targets: Sequence[Sequence[str]], labels: Sequence[str], obj: Objective, top_k: int | None
) -> tuple[GatePolicy, OperatingCurve]:
    n, L = probs.shape
    index = {label: j for j, label in enumerate(labels)}
    Y = np.zeros((n, L), dtype=bool)
    for i, t in enumerate(targets):
        for label in t:
            if label in index:
                Y[i, index[label]] = True
    grid = np.round(np.arange(0.05, 0.951, 0.05), 2)

    def exact(th: np.ndarray) -> float:
        inc, _ = multi_label_sets(probs, th, top_k)
        return float(((inc == Y).all(axis=1) & inc.any(axis=1)).mean())

    best_t = max(grid, key=lambda t: (exact(np.full(L, t)), -abs(t - 0.5)))
    th = np.full(L, best_t)
    support = Y.sum(axis=0)
    for _ in range(2):  # coordinate ascent on the per-label decision thresholds
        for j in np.flatnonzero(support >= obj.min_label_support):
            scores = []
            for t in grid:
                trial = th.copy()
                trial[j] = t
                scores.append((exact(trial), -abs(t - best_t), t))
            th[j] = max(scores)[2]
    inc, conf = multi_label_sets(probs, th, top_k)
    correct = (inc == Y).all(axis=1) & inc.any(axis=1)
    conf = np.where(inc.any(axis=1), conf, 0.0)
    thr, esc, acc = _curve(conf, correct, n)
    i = _pick(thr, esc, acc, obj)
    note = ""
    if i is None:
        i = int(np.argmax(acc))
        note = f"objective ({obj.describe()}) not reachable on validation; chose the most accurate threshold"
    chosen = OperatingPoint(threshold=float(thr[i]), escalation_rate=float(esc[i]), accepted_accuracy=float(acc[i]))
    policy = GatePolicy(
        threshold=chosen.threshold, multi_label=True, decision_threshold=float(best_t),
        label_thresholds={labels[j]: float(th[j]) for j in range(L) if th[j] != best_t},
    )
    if obj.flag_accuracy is not None:
        policy = _with_review_band(policy, conf, correct, conf >= policy.threshold, obj.flag_accuracy)
    curve = OperatingCurve(points=_downsample(thr, esc, acc), standard=_standard_points(thr, esc, acc), chosen=chosen,
                           objective=obj.describe() + " (set confidence; exact match of the label set)", note=note)
    return policy, curve


def _fit_per_label(
    pred: np.ndarray, conf: np.ndarray, correct: np.ndarray, labels: Sequence[str], obj: Objective, base: GatePolicy
) -> tuple[GatePolicy, OperatingPoint]:
    """Per-label thresholds: each label with enough support gets the lowest threshold reaching the
    accuracy target; under an escalation budget the target is searched so the budget holds."""

    def thresholds_for(target: float) -> dict[str, float]:
        out = {}
        for j in np.unique(pred):
            mask = pred == j
            if mask.sum() < obj.min_label_support:
                continue
            thr, esc, acc = _curve(conf[mask], correct[mask], int(mask.sum()))
            ok = np.flatnonzero(acc >= target)
            out[labels[j]] = float(thr[ok].min()) if len(ok) else float(thr.max())
        return out

    def evaluate(lt: dict[str, float]) -> tuple[float, float]:
        t = np.array([lt.get(labels[j], base.threshold) for j in pred])
        accepted = conf >= t
        return 1.0 - accepted.mean(), float(correct[accepted].mean()) if accepted.any() else 1.0

    if obj.target_accuracy is not None:
        lt = thresholds_for(obj.target_accuracy)
    else:
        lo, hi, lt = 0.0, 1.0, thresholds_for(0.0)
        for _ in range(25):
            mid = (lo + hi) / 2
            cand = thresholds_for(mid)
            if evaluate(cand)[0] <= obj.max_escalation + 1e-12:  # type: ignore[operator]
                lo, lt = mid, cand
            else:
                hi = mid
    esc, acc = evaluate(lt)
    policy = base.model_copy(update={"label_thresholds": lt, "min_margin": 0.0})
    return policy, OperatingPoint(threshold=base.threshold, escalation_rate=esc, accepted_accuracy=acc)


def _downsample(thr: np.ndarray, esc: np.ndarray, acc: np.ndarray, max_points: int = 200) -> list[OperatingPoint]:
    idx = np.unique(np.linspace(0, len(thr) - 1, min(max_points, len(thr))).round().astype(int))
    return [OperatingPoint(threshold=float(thr[i]), escalation_rate=float(esc[i]), accepted_accuracy=float(acc[i])) for i in idx]


def apply_threshold(conf: np.ndarray, correct: np.ndarray, threshold: float) -> tuple[float, float]:
    """(escalation rate, accepted accuracy) of accepting ``conf ≥ threshold``."""
    conf = np.asarray(conf)
    accepted = conf >= threshold
    esc = 1.0 - float(accepted.mean()) if len(conf) else 0.0
    acc = float(np.asarray(correct)[accepted].mean()) if accepted.any() else 1.0
    return esc, acc


class GateVerdicts:
    """The gate's verdicts on a batch (:meth:`GatePolicy.judge_many`): arrays, plus each row's labels and reason on demand.

    ``verdict`` holds "accept" / "flag" / "escalate" per row; ``confidence`` the top label's probability
    (single-label) or the set's confidence (multi-label); ``margin`` top1 - top2 (NaN for multi-label, where
    ``judge`` gives None). Ties between equal probabilities are broken by column order.
    """

    __slots__ = ("policy", "names", "verdict", "confidence", "margin", "top", "_second", "_p2", "_t", "_ranks", "_inc")

    def __init__(self, policy: GatePolicy, probs: np.ndarray, names: tuple[str, ...], top_k: int | None) -> None:
        self.policy, self.names = policy, names
        n, n_labels = probs.shape
        if n_labels == 0:
            self.verdict = np.full(n, "escalate", dtype=object)
            self.confidence, self.margin, self.top = np.zeros(n), np.full(n, np.nan), np.full(n, -1)
            return
        if policy.multi_label:
            self._init_multi(probs, top_k)
        else:
            self._init_single(probs)

    def _init_single(self, probs: np.ndarray) -> None:
        p, n = self.policy, len(probs)
        if probs.shape[1] > 1:
            two = np.argpartition(-probs, 1, axis=1)[:, :2]
            pp = np.take_along_axis(probs, two, axis=1)
            swap = (pp[:, 1] > pp[:, 0]) | ((pp[:, 1] == pp[:, 0]) & (two[:, 1] < two[:, 0]))
            self.top, self._second = np.where(swap, two[:, 1], two[:, 0]), np.where(swap, two[:, 0], two[:, 1])
            self.confidence, self._p2 = np.where(swap, pp[:, 1], pp[:, 0]), np.where(swap, pp[:, 0], pp[:, 1])
            self.margin = self.confidence - self._p2
        else:
            self.top, self._second = np.zeros(n, dtype=np.int64), np.full(n, -1)
            self.confidence = probs[:, 0].copy()
            self._p2, self.margin = np.zeros(n), self.confidence.copy()
        self._t = np.array([p.label_thresholds.get(name, p.threshold) for name in self.names])[self.top]
        escalate = self.confidence < self._t
        ambiguous = ~escalate & (self.margin < p.min_margin) & (self._second >= 0)
        flag = ~escalate & ~ambiguous & (self.confidence < p.flag_threshold if p.flag_threshold is not None else False)
        self.verdict = np.where(escalate | ambiguous, "escalate", np.where(flag, "flag", "accept")).astype(object)

    def _init_multi(self, probs: np.ndarray, top_k: int | None) -> None:
        p, (n, n_labels) = self.policy, probs.shape
        k = n_labels if top_k is None else max(1, min(top_k, n_labels))
        cols = np.argpartition(-probs, k - 1, axis=1)[:, :k] if k < n_labels else np.tile(np.arange(n_labels), (n, 1))
        pk = np.take_along_axis(probs, cols, axis=1)
        order = np.lexsort((cols, -pk), axis=1) if n else cols  # best first, ties by column
        self._ranks = np.take_along_axis(cols, order, axis=1)
        pk = np.take_along_axis(pk, order, axis=1)
        self._t = np.array([p.label_thresholds.get(name, p.decision_threshold) for name in self.names])[self._ranks]
        self._inc = pk >= self._t
        conf = np.where(self._inc, pk, 1.0 - pk).prod(axis=1)
        chosen = self._inc.any(axis=1)
        self.top, self._p2 = self._ranks[:, 0], pk[:, 0]
        self.confidence = np.where(chosen, conf, pk[:, 0])
        self.margin = np.full(n, np.nan)
        low = self.confidence < p.threshold
        flag = ~low & (self.confidence < p.flag_threshold if p.flag_threshold is not None else False)
        self.verdict = np.where(~chosen | low, "escalate", np.where(flag, "flag", "accept")).astype(object)

    def __len__(self) -> int:
        return len(self.verdict)

    def labels(self, i: int) -> list[str]:
        """Row ``i``'s labels: the top label, or (multi-label) the chosen set in rank order (the best label when none)."""
        if self.top[i] < 0:
            return []
        if not self.policy.multi_label:
            return [self.names[self.top[i]]]
        chosen = [self.names[j] for j, inc in zip(self._ranks[i].tolist(), self._inc[i].tolist()) if inc]
        return chosen or [self.names[self.top[i]]]

    def reason(self, i: int) -> str:
        """Row ``i``'s reason, worded exactly as :meth:`GatePolicy.judge` words it."""
        p, verdict, conf = self.policy, self.verdict[i], float(self.confidence[i])
        if self.top[i] < 0:
            return "the tier proposed no label"
        if p.multi_label:
            chosen = self.labels(i)
            if not self._inc[i].any():
                return f"no label reached its threshold: best '{chosen[0]}' {conf:.2f} < {float(self._t[i, 0]):.2f}"
            if verdict == "escalate":
                return f"set confidence {conf:.2f} for {chosen} < threshold {p.threshold:.2f}"
            if verdict == "flag":
                return f"set confidence {conf:.2f} for {chosen} is in the review band [{p.threshold:.2f}, {p.flag_threshold:.2f})"
            return f"set confidence {conf:.2f} for {chosen} ≥ {max(p.threshold, p.flag_threshold or 0):.2f}"
        label, t, margin = self.names[self.top[i]], float(self._t[i]), float(self.margin[i])
        if conf < t:
            kind = "label threshold" if label in p.label_thresholds else "threshold"
            return f"confidence {conf:.2f} for '{label}' < {kind} {t:.2f}"
        if verdict == "escalate":
            other, p2 = self.names[self._second[i]], float(self._p2[i])
            return f"ambiguous: margin {margin:.2f} between '{label}' ({conf:.2f}) and '{other}' ({p2:.2f}) < {p.min_margin:.2f}"
        if verdict == "flag":
            return f"confidence {conf:.2f} for '{label}' is in the review band [{t:.2f}, {p.flag_threshold:.2f})"
        return f"confidence {conf:.2f} for '{label}' ≥ {max(t, p.flag_threshold or 0):.2f}"

    def result(self, i: int) -> GateResult:
        """Row ``i`` as the :class:`GateResult` that ``judge`` returns."""
        margin = None if self.policy.multi_label or self.top[i] < 0 else float(self.margin[i])
        return GateResult(self.verdict[i], self.labels(i), float(self.confidence[i]), margin, self.reason(i))
