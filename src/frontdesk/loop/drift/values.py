"""The values the drift monitor reports: the baseline, alerts, snapshots and replay reports."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from frontdesk.errors import ConfigError
from frontdesk.loop.drift.config import AlertKind, DriftConfig
from frontdesk.loop.drift.signals import NO_LABEL, is_escalated, is_unknown, primary_confidence
from frontdesk.types import Decision

if TYPE_CHECKING:
    from frontdesk.cascade.router import Router


class Baseline(BaseModel):
    """What normal looks like: predicted-label shares, mean primary confidence, unknown and escalation
    rates, over ``n`` decisions (``source`` says which)."""

    model_config = ConfigDict(extra="forbid")

    label_distribution: dict[str, float] = Field(description="predicted label → share of all predicted labels")
    confidence_mean: float | None = None
    unknown_rate: float | None = None
    escalation_rate: float | None = None
    n: int = Field(ge=1, description="decisions the baseline was computed over")
    source: str = "decisions"

    @classmethod
    def from_decisions(cls, decisions: Iterable[Decision], config: DriftConfig | None = None, *,
                       primary_tier: str | None = None, source: str = "decisions") -> Baseline:
        """The baseline of these decisions (duplicates of earlier decisions are skipped)."""
        cfg = config or DriftConfig()
        counts: dict[str, int] = {}
        n = conf_n = unk = esc = 0
        conf_sum = 0.0
        for d in decisions:
            if d.duplicate_of:
                continue
            n += 1
            c = primary_confidence(d, primary_tier)
            if c is not None:
                conf_sum += c
                conf_n += 1
            unk += is_unknown(d, cfg.unknown_labels, count_human_as_unknown=cfg.count_human_as_unknown)
            esc += is_escalated(d)
            for label in d.labels or [NO_LABEL]:
                counts[label] = counts.get(label, 0) + 1
        if n == 0:
            raise ConfigError("a baseline needs at least one decision", field="baseline")
        total = sum(counts.values())
        return cls(label_distribution={k: v / total for k, v in sorted(counts.items())},
                   confidence_mean=conf_sum / conf_n if conf_n else None, unknown_rate=unk / n,
                   escalation_rate=esc / n, n=n, source=source)

    @classmethod
    def from_router(cls, router: Router, texts: Sequence[str], config: DriftConfig | None = None, *,
                    source: str = "validation") -> Baseline:
        """Route ``texts`` (e.g. the validation split the model was tuned on) and take their baseline."""
        if not texts:
            raise ConfigError("a baseline needs at least one text (e.g. the validation split)", field="baseline")
        return cls.from_decisions(router.route_batch(list(texts)), config, primary_tier=router.primary.name,
                                  source=f"{source} ({len(texts)} messages)")


class Alert(BaseModel):
    """One alert transition: ``state`` is "firing" when the condition started, "cleared" when it ended."""

    kind: AlertKind
    state: Literal["firing", "cleared"]
    message: str = Field(description="what happened, with the numbers")
    value: float
    threshold: float
    at: datetime
    observed: int = Field(description="decisions the monitor had observed at that moment (the stream position)")


class LabelRecall(BaseModel):
    support: int = Field(description="feedback items whose true labels include this label")
    recall: float


class AcceptedAccuracy(BaseModel):
    """Accuracy of the decisions a tier accepted, from the labelled ones (feedback, review resolutions),
    with a two-sided Clopper–Pearson interval at ``confidence``. Biased low: see
    :mod:`frontdesk.loop.drift.accuracy`."""

    tier: str = Field(description="the answering tier, or 'all'")
    labelled: int = Field(description="labelled accepted decisions in the window")
    correct: int
    estimate: float | None = None
    low: float | None = None
    high: float | None = None
    confidence: float = Field(0.95, description="coverage of the interval")
    target: float | None = Field(None, description="the target the alert compares the upper bound with (primary tier)")


class LabelShift(BaseModel):
    """One label's share in the baseline and in the window, and its PSI contribution."""

    label: str
    baseline: float
    window: float
    psi: float


class DriftSnapshot(BaseModel):
    """The monitor's numbers right now (None where there is nothing to compute them from yet)."""

    at: datetime
    observed: int = Field(description="decisions observed since the start (or the last reset)")
    n: int = Field(description="decisions in the window")
    confidence_mean: float | None = Field(None, description="mean primary-tier confidence in the window")
    confidence_n: int = 0
    confidence_trend: float | None = Field(None, description="slope of the mean confidence per window over the last "
                                           "trend_windows completed windows (negative = falling)")
    trend_points: list[float] = Field(default_factory=list, description="mean confidence of those windows, oldest first")
    unknown_rate: float | None = None
    escalation_rate: float | None = None
    psi: float | None = Field(None, description="label-distribution PSI vs the baseline (raw)")
    psi_noise: float | None = Field(None, description="PSI expected from sampling noise alone (subtracted before "
                                    "comparing with psi_alert when psi_noise_correction is on)")
    top_shifts: list[LabelShift] = Field(default_factory=list, description="labels contributing most to the PSI")
    label_distribution: dict[str, float] = Field(default_factory=dict)
    recall: dict[str, LabelRecall] = Field(default_factory=dict, description="per-label recall from feedback")
    feedback_n: int = 0
    accepted_accuracy: dict[str, AcceptedAccuracy] = Field(
        default_factory=dict, description="accuracy of accepted decisions from feedback, by answering tier and 'all'")
    baseline: Baseline | None = None
    active_alerts: list[str] = Field(default_factory=list)


class DriftReport(BaseModel):
    """A replay of stored decisions through a monitor (:func:`drift_report`)."""

    snapshot: DriftSnapshot
    alerts: list[Alert] = Field(description="every transition during the replay, in order")
    active: list[Alert] = Field(description="alerts still firing at the end")
    decisions: int
    feedback: int
    since: datetime | None = None
