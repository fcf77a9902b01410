"""Drift monitoring: is the model still seeing the traffic it was trained for?

A :class:`DriftMonitor` watches the stream of Decisions over a rolling window and compares it with
a **baseline** (the model's validation data routed once, or the first decisions it observed):

* **mean primary-tier confidence** — the calibrated confidence of the first model tier (seed 000:
  "a downward trend indicates retraining is needed"), plus its **trend**: the least-squares slope of
  the mean confidence over the last ``trend_windows`` consecutive windows;
* **unknown rate** — see :func:`is_unknown`: the decision's (first) label is one of
  ``unknown_labels`` (e.g. ``oos``, what ``RouterSettings(fallback="unknown")`` assigns), a tier's
  out-of-scope detector called the message out of scope (the unknown verdict in its trace, whether it
  went to the unknown label or to human review with reason 'out of scope'), or it went
  to human review with no label at all (no tier produced a guess: every tier failed, or the language
  is unsupported). A human-review decision *with* a best guess is not unknown (it is escalated),
  unless ``count_human_as_unknown`` is set — use that with ``fallback="human"``;
* **escalation rate** — decisions answered past the first model tier, human review included
  (``decision.escalated or decision.tier == "human"``);
* **label-distribution PSI** — the population stability index of the window's predicted labels
  against the baseline's, minus the PSI that sampling noise alone would show at this window size
  (:func:`psi_noise`; with ~150 labels it is ≈ 0.3 for a 500-decision window); new intents usually
  show up as a rising share of the unknown label;
* **per-label recall** from feedback (:meth:`DriftMonitor.observe_feedback`): of the last
  ``recall_window`` corrected decisions whose true labels include L, the share a model tier
  answered with L;
* **accepted accuracy** from the same feedback and review resolutions: of the last
  ``accepted_accuracy_window`` labelled decisions a model tier accepted, the share it got right, per
  answering tier, with a Clopper–Pearson interval; the ``accepted_accuracy`` alert fires when the
  primary tier's upper bound is below the target (the model's guarantee, ``frontdesk train
  --guarantee``, or ``accepted_accuracy_target``). Feedback over-samples errors, so the estimate is
  biased low (see :mod:`frontdesk.loop.drift.accuracy`).

:meth:`DriftMonitor.check` turns these into :class:`Alert` transitions: an alert **fires** once when
its condition starts to hold (a rate or the PSI goes above its threshold, the confidence drops by
at least its threshold) and is reported **cleared** once when the value falls below
``threshold × (1 − hysteresis)`` (the hysteresis stops an alert flapping around its threshold).
While the window holds fewer than ``min_window`` decisions nothing changes state (baseline-relative
alerts also wait for the baseline). Transitions are delivered to the log
(``logging.warning`` on the ``frontdesk.loop.drift`` logger), to an optional webhook (one JSON POST,
short timeout, failures logged and never raised) and to Prometheus (:meth:`DriftMonitor.register`).

Wiring it into a service::

    monitor = DriftMonitor.from_router(router, DriftConfig(webhook_url=...))   # baseline: the first window
    monitor.register(metrics.registry)      # frontdesk_drift_* gauges, computed at scrape time
    monitor.start(interval_s=15)            # a daemon thread runs check() (logs, webhook, gauges)
    ...
    monitor.observe(decision)               # for every committed decision: O(1), thread-safe, never raises
    ...
    monitor.close()                         # stops the checker thread

After a model reload call :meth:`DriftMonitor.reset` (new labels, new baseline). For stored decisions,
:func:`drift_report` replays a :class:`~frontdesk.store.store.Store` through a monitor (the CLI's ``drift``).
"""

from frontdesk.loop.drift.accuracy import ALL_TIERS, AcceptedAccuracyWindow, accepting_tier
from frontdesk.loop.drift.config import ALERT_KINDS, AlertKind, DriftConfig
from frontdesk.loop.drift.monitor import DriftMonitor
from frontdesk.loop.drift.psi import psi, psi_noise
from frontdesk.loop.drift.replay import drift_report
from frontdesk.loop.drift.signals import NO_LABEL, is_escalated, is_out_of_scope, is_unknown, primary_confidence
from frontdesk.loop.drift.values import (
    AcceptedAccuracy,
    Alert,
    Baseline,
    DriftReport,
    DriftSnapshot,
    LabelRecall,
    LabelShift,
)

__all__ = [
    "ALERT_KINDS", "ALL_TIERS", "AcceptedAccuracy", "AcceptedAccuracyWindow", "Alert", "AlertKind", "Baseline",
    "DriftConfig", "DriftMonitor", "DriftReport", "DriftSnapshot", "LabelRecall", "LabelShift", "NO_LABEL",
    "accepting_tier", "drift_report", "is_escalated", "is_out_of_scope", "is_unknown", "primary_confidence", "psi", "psi_noise",
]
