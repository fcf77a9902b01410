"""The LLM tier's acceptance policy: does the LLM's answer beat the classifier's best guess?

An LLM's self-reported confidence says little about whether it is right, and a weak LLM must not
make the cascade worse than the classifier it sits behind. So the answer is judged with what the
earlier tiers said about the same message (:class:`Observation`):

* **Fitted policy** (:class:`AcceptancePolicy`): two small logistic models, fitted on LLM answers
  to validation messages that reached the LLM, estimate P(the LLM's label is right) and P(the
  classifier's guess is right) from the earlier tiers' probability of the LLM's pick, its rank,
  whether the two agree, the guess's probability and the LLM's stated or log-prob confidence
  (:data:`FEATURES`). The more probable label is kept — the LLM's, or the classifier's guess — and
  its calibrated probability goes through the LLM tier's gate (fitted on out-of-fold
  probabilities to the accuracy the first tier's accepted messages reach): accept, flag, or human
  review with that label as the best guess. An LLM that is worse than the guess ends up never
  overruling it, and one that is not *shown* to be better does not either: on validation, the
  disagreements the policy would overrule must be won by the LLM more often than lost, by a
  one-sided sign test at :data:`OVERRULE_P` (else ``overrule`` is off and the policy only ever
  keeps the guess — accepting it, or sending it to review). Without that, a 1.5B model that is as
  good as a coin flip on the hard messages moves best guesses at random.
* **Safe default** (:func:`safe_outcome`, no policy fitted for this LLM): the LLM never changes the
  label. Agreement with the classifier's guess → the guess stands, flagged (a human looks; without
  calibration an agreement is not proof); disagreement → human review with the classifier's guess.
  Accuracy is the classifier's by construction; the LLM only sorts messages for the reviewers.

The injection rule (:mod:`frontdesk.llm.injection`) runs first; only answers it lets ``pass``
reach this policy. The policy is saved in the model directory as JSON (``llm_policy.json``).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from frontdesk.errors import ConfigError, ModelError
from frontdesk.gating.gate import GatePolicy, Objective, fit_gate

POLICY_FILE = "llm_policy.json"
POLICY_FORMAT = "frontdesk-llm-policy"
POLICY_VERSION = 1
MIN_ANSWERS = 10
KEEPS_GUESS_BELOW = 0.05
OVERRULE_P = 0.05
"""The LLM may overrule the classifier's guess only when, on validation, its wins over losses in the disagreements it
would overrule have a one-sided sign-test p-value at or below this."""
_EPS = 1e-3

#: what the logistic models see, in this order
FEATURES = ("log_p_answer", "log_p_guess", "agree", "inv_rank_answer", "llm_confidence", "log_p_answer_first_tier")

Kind = Literal["llm", "agree", "guess", "none"]
"""Whose label the policy kept: the LLM's (overruling the guess), both (they agree), the classifier's
guess (overruling the LLM), or neither (the LLM chose none of the candidates)."""


@dataclass(frozen=True)
class Evidence:
    """One calibrated tier's view of a message: its name and (label, probability) ranking, best first."""

    tier: str
    ranked: tuple[tuple[str, float], ...]

    def prob(self, labels: Sequence[str]) -> float:
        """The smallest probability of ``labels`` (0 for a label outside the ranking)."""
        p = dict(self.ranked)
        return min((p.get(label, 0.0) for label in labels), default=0.0)

    def rank(self, labels: Sequence[str]) -> int:
        """The worst 1-based rank of ``labels`` (len(ranked) + 1 for a label outside it)."""
        order = {label: i + 1 for i, (label, _) in enumerate(self.ranked)}
        return max((order.get(label, len(self.ranked) + 1) for label in labels), default=len(self.ranked) + 1)


@dataclass(frozen=True)
class Observation:
    """What the acceptance policy sees for one message that reached the LLM."""

    evidence: tuple[Evidence, ...]
    """the calibrated tiers that scored the message, in cascade order (at least one)"""
    guess: tuple[str, ...]
    """the classifier's best guess: the labels of the last tier that proposed any"""
    answer: tuple[str, ...]
    """the LLM's labels (empty: none of the candidates fit)"""
    confidence: float
    """the LLM's confidence: from log-probabilities when the provider gives them, else as stated"""

    @property
    def agree(self) -> bool:
        return bool(self.answer) and set(self.answer) == set(self.guess)

    @property
    def guess_prob(self) -> float:
        return self.evidence[-1].prob(self.guess) if self.evidence and self.guess else 0.0


def features(obs: Observation) -> np.ndarray:
    """The :data:`FEATURES` of one observation (the LLM answered at least one label)."""
    last, first = obs.evidence[-1], obs.evidence[0]
    return np.array([
        math.log(last.prob(obs.answer) + _EPS),
        math.log(obs.guess_prob + _EPS),
        1.0 if obs.agree else 0.0,
        1.0 / last.rank(obs.answer),
        float(obs.confidence),
        math.log(first.prob(obs.answer) + _EPS),
    ])


@dataclass(frozen=True)
class Outcome:
    """The policy's verdict on one answer: ``labels`` with calibrated ``confidence``, and why."""

    verdict: Literal["accept", "flag", "escalate"]
    labels: list[str]
    confidence: float
    kind: Kind
    reason: str


class LogisticModel(BaseModel):
    """A fitted logistic regression on standardised features (or a constant rate), stored as numbers."""

    model_config = ConfigDict(extra="forbid")

    mean: list[float] = Field(default_factory=list)
    scale: list[float] = Field(default_factory=list)
    coef: list[float] = Field(default_factory=list)
    intercept: float = 0.0
    constant: float | None = Field(None, description="the smoothed rate, when the fitting data had (almost) one class only")

    def predict(self, X: np.ndarray) -> np.ndarray:
        """P(positive) for each row of ``X``."""
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        if self.constant is not None:
            return np.full(len(X), self.constant)
        z = ((X - np.asarray(self.mean)) / np.asarray(self.scale)) @ np.asarray(self.coef) + self.intercept
        return 1.0 / (1.0 + np.exp(-z))

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray, *, C: float = 1.0) -> LogisticModel:
        """Fit on ``X`` (n, d) and 0/1 targets; fewer than 3 of either class → the smoothed constant rate."""
        from sklearn.linear_model import LogisticRegression

        y = np.asarray(y, dtype=int)
        if min(int(y.sum()), int(len(y) - y.sum())) < 3:
            return cls(constant=float((y.sum() + 1) / (len(y) + 2)))
        mean = X.mean(axis=0)
        scale = X.std(axis=0)
        scale[scale < 1e-9] = 1.0
        lr = LogisticRegression(C=C, max_iter=2000).fit((X - mean) / scale, y)
        return cls(mean=mean.tolist(), scale=scale.tolist(), coef=lr.coef_[0].tolist(), intercept=float(lr.intercept_[0]))


class FitSummary(BaseModel):
    """What fitting saw and chose, on the validation messages that reached the LLM (reported by ``eval``)."""

    n_reached: int = Field(description="validation messages no earlier tier accepted")
    n_called: int = Field(description="of those, the ones the LLM was asked about (at most calibration_size)")
    n_answered: int = Field(description="answers with a label")
    n_none: int = Field(0, description="answers 'none of the candidates'")
    n_failed: int = Field(0, description="failed calls (left out)")
    llm_accuracy: float = Field(description="the LLM's label right, of answered")
    guess_accuracy: float = Field(description="the classifier's guess right, of answered")
    agreement: float = Field(description="LLM and guess agree, of answered")
    policy_accuracy: float = Field(description="the label the policy keeps right, of answered (out-of-fold)")
    overrules: float = Field(description="the policy keeps the LLM's label where it disagrees with the guess, share of disagreements")
    overrule_wins: int = Field(0, description="of the disagreements the model would overrule (out-of-fold): the LLM right, the guess wrong")
    overrule_losses: int = Field(0, description="… the guess right, the LLM wrong")
    overrule_p: float = Field(0.0, description="one-sided sign-test p-value of those wins over losses (OVERRULE_P decides)")
    accepted: float = Field(description="accepted (not sent to human review), of answered")
    accepted_accuracy: float = Field(description="accuracy of those")
    target_accuracy: float
    note: str = ""


class AcceptancePolicy(BaseModel):
    """The fitted policy (saved as ``llm_policy.json``); see the module docstring."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["frontdesk-llm-policy"] = POLICY_FORMAT
    version: int = POLICY_VERSION
    llm_model: str = Field(description="the LLM model the answers came from (reused only for the same model name)")
    provider: str = ""
    prompt_version: str = ""
    labels_digest: str = Field(description="sha256 of the label set it was fitted for")
    evidence_tiers: list[str] = Field(description="the calibrated tiers whose rankings the features read")
    features: list[str] = Field(default_factory=lambda: list(FEATURES))
    llm_right: LogisticModel
    guess_right: LogisticModel
    gate: GatePolicy
    overrule: bool = Field(True, description="may the LLM's label replace the classifier's guess (the sign test on validation)")
    fitted: FitSummary
    fitted_at: str = ""

    # -- use ---------------------------------------------------------------------------------------
    def mismatch(self, labels: Sequence[str], evidence_tiers: Sequence[str], llm_model: str) -> str | None:
        """Why this policy does not apply to a router with ``labels`` / tiers and LLM ``llm_model`` (None: it does)."""
        if self.labels_digest != labels_digest(labels):
            return "it was fitted for another label set"
        if list(evidence_tiers) != self.evidence_tiers:
            return f"it was fitted behind the tiers {self.evidence_tiers}, the model has {list(evidence_tiers)}"
        if llm_model != self.llm_model:
            return f"it was fitted for LLM model {self.llm_model!r}, this LLM tier runs {llm_model!r}"
        return None

    def probabilities(self, obs: Observation) -> tuple[float, float]:
        """(P(the LLM's label is right), P(the classifier's guess is right)) for one answered message."""
        x = features(obs)
        return float(self.llm_right.predict(x)[0]), float(self.guess_right.predict(x)[0])

    def decide(self, obs: Observation, gate: GatePolicy | None = None) -> Outcome:
        """Keep the more probable of the LLM's label and the classifier's guess; gate its probability."""
        gate = gate or self.gate
        if not obs.answer:
            return Outcome("escalate", list(obs.guess), obs.guess_prob, "none", "the LLM chose none of the candidates")
        pa, pg = self.probabilities(obs)
        a, g = _show(obs.answer), _show(obs.guess)
        if obs.agree:
            labels, p, kind = list(obs.answer), pa, "agree"
            why = f"fitted policy: the LLM agrees with the classifier's guess {g}, P(right) {pa:.2f}"
        elif pa >= pg and self.overrule:
            labels, p, kind = list(obs.answer), pa, "llm"
            why = f"fitted policy: P(LLM's {a} right) {pa:.2f} ≥ P(classifier's {g} right) {pg:.2f} → the LLM's label"
        else:
            labels, p, kind = list(obs.guess), pg, "guess"
            why = (f"fitted policy: P(LLM's {a} right) {pa:.2f} < P(classifier's {g} right) {pg:.2f}" if pa < pg else
                   f"fitted policy: P(LLM's {a} right) {pa:.2f} ≥ P(classifier's {g} right) {pg:.2f}, but the LLM did not "
                   "prove it beats the guess on validation") + " → keeps the classifier's guess"
        verdict, band = _bands(p, gate)
        return Outcome(verdict, labels, p, kind, f"{why}; {band}")

    def describe(self) -> str:
        """One paragraph for ``frontdesk eval``: what the policy learnt about this LLM."""
        f = self.fitted
        head = (f"fitted on {f.n_answered} answers of {self.llm_model} to validation messages that reached it "
                f"({f.n_called} asked of {f.n_reached} reached; {f.n_none} 'none', {f.n_failed} failed): "
                f"LLM right {f.llm_accuracy:.1%}, classifier's guess right {f.guess_accuracy:.1%}, agreement {f.agreement:.1%}; "
                f"policy right {f.policy_accuracy:.1%}, overrules the guess on {f.overrules:.0%} of disagreements"
                + (f" (where it would: {f.overrule_wins} won, {f.overrule_losses} lost, sign test p = {f.overrule_p:.2g})"
                   if f.overrule_wins + f.overrule_losses else "") + ", "
                f"accepts {f.accepted:.0%} at {f.accepted_accuracy:.1%} (target {f.target_accuracy:.1%})")
        if not self.overrule and f.overrule_wins + f.overrule_losses:
            head += f". The LLM is not shown to beat the guess (p > {OVERRULE_P}): the fitted policy keeps the guess"
        elif self.keeps_guess:
            head += ". The LLM is worse than the classifier's guess: the fitted policy keeps the guess"
        return head + (f". {f.note}" if f.note else "")

    @property
    def keeps_guess(self) -> bool:
        """True when, on validation, the policy kept the classifier's guess in (nearly) every disagreement
        (the LLM overruled it in under 5 % of them: where both are almost surely wrong, either label will do)."""
        return not self.overrule or self.fitted.overrules < KEEPS_GUESS_BELOW

    # -- persistence -------------------------------------------------------------------------------
    def save(self, model_dir: Path) -> Path:
        """Write ``llm_policy.json`` into the model directory."""
        path = Path(model_dir) / POLICY_FILE
        path.write_text(self.model_dump_json(indent=2), encoding="utf-8")
        return path

    @classmethod
    def load(cls, model_dir: Path) -> AcceptancePolicy | None:
        """The policy saved in ``model_dir`` (None when there is none)."""
        path = Path(model_dir) / POLICY_FILE
        if not path.is_file():
            return None
        try:
            return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, ValidationError) as exc:
            raise ModelError(f"{POLICY_FILE} is invalid ({str(exc).splitlines()[0]}): refit it with `frontdesk llm fit`, "
                             f"or delete it to run the LLM tier with the safe default", path=path) from exc


def safe_outcome(obs: Observation) -> Outcome:
    """The policy without fitting: the LLM never changes the label (see the module docstring)."""
    g = _show(obs.guess)
    if not obs.answer:
        return Outcome("escalate", list(obs.guess), obs.guess_prob, "none", "the LLM chose none of the candidates")
    hint = "no policy fitted for this LLM (frontdesk llm fit)"
    if obs.agree:
        return Outcome("flag", list(obs.guess), obs.guess_prob, "agree",
                       f"the LLM agrees with the classifier's guess {g} ({obs.guess_prob:.2f}); {hint}: it stands, flagged")
    return Outcome("escalate", list(obs.guess), obs.guess_prob, "guess",
                   f"the LLM answered {_show(obs.answer)}, the classifier's guess is {g} ({obs.guess_prob:.2f}); "
                   f"{hint}: the guess goes to human review")


def fit_policy(
    observations: Sequence[Observation | None],
    gold: Sequence[Sequence[str]],
    *,
    labels: Sequence[str],
    llm_model: str,
    provider: str = "",
    prompt_version: str = "",
    target_accuracy: float,
    flag_accuracy: float | None = None,
    n_reached: int | None = None,
    seed: int = 13,
) -> AcceptancePolicy:
    """Fit the policy on the observations of validation messages that reached the LLM.

    ``observations[i]`` is None when the call failed (left out); ``gold[i]`` the true labels. The
    gate is fitted on out-of-fold probabilities so that the messages it accepts reach
    ``target_accuracy`` (none accepted when no threshold does).
    """
    if len(observations) != len(gold):
        raise ValueError("one gold label set per observation")
    answered = [(o, set(g)) for o, g in zip(observations, gold) if o is not None and o.answer]
    n_none = sum(1 for o in observations if o is not None and not o.answer)
    n_failed = sum(1 for o in observations if o is None)
    if len(answered) < MIN_ANSWERS:
        raise ConfigError(
            f"only {len(answered)} validation messages that reached the LLM got an answer ({n_none} 'none', {n_failed} failed); "
            f"fitting the acceptance policy needs at least {MIN_ANSWERS}: add validation data, raise calibration_size, or "
            f"run the LLM tier with the safe default (no policy)", field="llm.calibration_size")
    obs = [o for o, _ in answered]
    X = np.stack([features(o) for o in obs])
    y_llm = np.array([set(o.answer) == g for o, g in answered])
    y_guess = np.array([set(o.guess) == g for o, g in answered])
    agree = np.array([o.agree for o in obs])
    llm_right, guess_right = LogisticModel.fit(X, y_llm), LogisticModel.fit(X, y_guess)
    pa, pg = _out_of_fold(X, y_llm, seed), _out_of_fold(X, y_guess, seed)
    would = ~agree & (pa >= pg)  # the disagreements the models would overrule: is the LLM shown to win them?
    wins, losses = int((would & y_llm & ~y_guess).sum()), int((would & ~y_llm & y_guess).sum())
    p_value = sign_test(wins, losses)
    overrule = p_value <= OVERRULE_P
    take_llm = agree | (would if overrule else False)
    conf = np.where(take_llm, pa, pg)
    right = np.where(take_llm, y_llm, y_guess)
    objective = Objective(target_accuracy=target_accuracy, fit_margin=False, flag_accuracy=flag_accuracy)
    targets = [["ok"] if r else [] for r in right]
    gate, curve = fit_gate(conf[:, None], targets, ["ok"], objective)
    note = ""
    if curve.note:  # no threshold reaches the target: accept nothing, the policy only picks the label for review
        gate = GatePolicy(threshold=1.0)
        note = f"no threshold reaches {target_accuracy:.1%} on validation: the LLM tier accepts nothing, it picks the best guess for review"
    accepted = conf >= gate.threshold
    disagree = ~agree
    summary = FitSummary(
        n_reached=n_reached if n_reached is not None else len(observations), n_called=len(observations),
        n_answered=len(obs), n_none=n_none, n_failed=n_failed,
        llm_accuracy=float(y_llm.mean()), guess_accuracy=float(y_guess.mean()), agreement=float(agree.mean()),
        policy_accuracy=float(right.mean()),
        overrules=float(take_llm[disagree].mean()) if disagree.any() else 0.0,
        overrule_wins=wins, overrule_losses=losses, overrule_p=p_value,
        accepted=float(accepted.mean()), accepted_accuracy=float(right[accepted].mean()) if accepted.any() else 0.0,
        target_accuracy=target_accuracy, note=note,
    )
    return AcceptancePolicy(
        llm_model=llm_model, provider=provider, prompt_version=prompt_version, labels_digest=labels_digest(labels),
        evidence_tiers=[e.tier for e in obs[0].evidence], llm_right=llm_right, guess_right=guess_right, gate=gate,
        overrule=overrule, fitted=summary, fitted_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def sign_test(wins: int, losses: int) -> float:
    """One-sided sign test: P(at least ``wins`` of ``wins + losses`` fair coin flips come up heads); 1.0 with no
    contested message (nothing shows the LLM better)."""
    n = wins + losses
    if n == 0:
        return 1.0
    return float(sum(math.comb(n, k) for k in range(wins, n + 1)) / 2 ** n)


def labels_digest(labels: Sequence[str]) -> str:
    """A short fingerprint of a label set (order-independent)."""
    return hashlib.sha256("\n".join(sorted(labels)).encode("utf-8")).hexdigest()[:16]


def _out_of_fold(X: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """P(positive) for each row from a model that did not see it (5-fold; in-sample when a class is tiny)."""
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y, dtype=int)
    minority = min(int(y.sum()), int(len(y) - y.sum()))
    if minority < 5:
        return LogisticModel.fit(X, y).predict(X)
    out = np.empty(len(y))
    for train, test in StratifiedKFold(n_splits=5, shuffle=True, random_state=seed).split(X, y):
        out[test] = LogisticModel.fit(X[train], y[train]).predict(X[test])
    return out


def _bands(p: float, gate: GatePolicy) -> tuple[Literal["accept", "flag", "escalate"], str]:
    if p < gate.threshold:
        return "escalate", f"{p:.2f} < threshold {gate.threshold:.2f} → human review with this label as the best guess"
    if gate.flag_threshold is not None and p < gate.flag_threshold:
        return "flag", f"{p:.2f} in the review band [{gate.threshold:.2f}, {gate.flag_threshold:.2f})"
    return "accept", f"{p:.2f} ≥ {max(gate.threshold, gate.flag_threshold or 0):.2f}"


def _show(labels: Sequence[str]) -> str:
    return ", ".join(f"'{lab}'" for lab in labels) if labels else "nothing"
