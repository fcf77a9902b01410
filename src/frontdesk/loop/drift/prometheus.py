"""The drift monitor on Prometheus: gauges computed at scrape time, one consistent set per scrape."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from frontdesk.loop.drift.monitor import DriftMonitor
    from frontdesk.loop.drift.values import AcceptedAccuracy


_GAUGES = {
    "confidence_mean": "mean primary-tier confidence over the drift window",
    "confidence_trend": "slope of the mean confidence per window over the last trend windows",
    "unknown_rate": "share of unknown decisions (unknown label, or human review without a label) in the window",
    "escalation_rate": "share of decisions answered past the first model tier (human review included) in the window",
    "psi": "label-distribution PSI vs the baseline (sampling noise subtracted when configured)",
    "window_decisions": "decisions in the drift window",
}


class DriftCollector:
    """Prometheus collector: one consistent set of drift gauges per scrape."""

    def __init__(self, monitor: DriftMonitor) -> None:
        self.monitor = monitor

    def describe(self) -> list[Any]:
        from prometheus_client.core import GaugeMetricFamily

        fams = [GaugeMetricFamily(f"frontdesk_drift_{name}", doc) for name, doc in _GAUGES.items()]
        return [*fams, GaugeMetricFamily("frontdesk_drift_alerts_active", "drift alerts firing, by kind", labels=["kind"]),
                *_accuracy_families([])]

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import GaugeMetricFamily

        values = self.monitor._gauges()
        for name, doc in _GAUGES.items():
            yield GaugeMetricFamily(f"frontdesk_drift_{name}", doc, value=values[name])
        fam = GaugeMetricFamily("frontdesk_drift_alerts_active", "drift alerts firing, by kind", labels=["kind"])
        for kind, v in values["alerts"].items():
            fam.add_metric([kind], v)
        yield fam
        yield from _accuracy_families(values["accepted_accuracy"])


def _accuracy_families(rows: list[AcceptedAccuracy]) -> list[Any]:
    """The accepted-accuracy gauges: estimate and Clopper–Pearson bounds, labelled count, target."""
    from prometheus_client.core import GaugeMetricFamily

    nan = float("nan")
    acc = GaugeMetricFamily("frontdesk_accepted_accuracy", "accuracy of accepted decisions from feedback and review "
                            "resolutions (bound: estimate, low, high of the Clopper-Pearson interval; biased low: "
                            "feedback over-samples errors)", labels=["tier", "bound"])
    labelled = GaugeMetricFamily("frontdesk_accepted_accuracy_labelled", "labelled accepted decisions in the window",
                                 labels=["tier"])
    target = GaugeMetricFamily("frontdesk_accepted_accuracy_target", "the accuracy target the alert compares the upper "
                               "bound with (the model's guarantee, or drift.accepted_accuracy_target)", labels=["tier"])
    for row in rows:
        for bound in ("estimate", "low", "high"):
            value = getattr(row, bound)
            acc.add_metric([row.tier, bound], nan if value is None else value)
        labelled.add_metric([row.tier], float(row.labelled))
        if row.target is not None:
            target.add_metric([row.tier], row.target)
    return [acc, labelled, target]
