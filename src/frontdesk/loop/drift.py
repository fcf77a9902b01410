"""Drift monitoring: is the model still seeing the traffic it was trained for?

A :class:`DriftMonitor` watches the stream of Decisions over a rolling window and compares it with
a **baseline** (the model's validation data routed once, or the first decisions it observed):

* **mean primary-tier confidence** — the calibrated confidence of the first model tier (seed 000:
  "a downward trend indicates retraining is needed"), plus its **trend**: the least-squares slope of
  the mean confidence over the last ``trend_windows`` consecutive windows;
* **unknown rate** — see :func:`is_unknown`: the decision's (first) label is one of
  ``unknown_labels`` (e.g. ``oos``, what ``RouterSettings(fallback="unknown")`` assigns), or it went
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
  answered with L.

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

from __future__ import annotations

import heapq
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from frontdesk.errors import ConfigError, validation_message
from frontdesk.types import Decision

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from frontdesk.cascade.router import Router
    from frontdesk.store.store import Store

log = logging.getLogger("frontdesk.loop.drift")

AlertKind = Literal["unknown_rate", "unknown_rate_rise", "confidence_drop", "confidence_trend", "psi", "escalation_rate"]
ALERT_KINDS: tuple[str, ...] = ("unknown_rate", "unknown_rate_rise", "confidence_drop", "confidence_trend", "psi",
                                "escalation_rate")
NO_LABEL = "(none)"
"""The label-distribution bucket of decisions without any label."""
_SKIP_KINDS = frozenset({"rules", "human", "preprocess"})
_PSI_SMOOTHING = 0.5  # pseudo-count added to every bucket before the PSI's log ratios
_RESUM_EVERY = 100_000  # evictions between exact recomputations of the running confidence sum


# -- configuration ------------------------------------------------------------------------------
class DriftConfig(BaseModel):
    """What to watch and when to alert. Every ``*_alert`` threshold can be ``None`` (that alert is off).

    Window: ``window`` decisions (the most recent), or ``window_s`` seconds; give only ``window_s``
    for a purely time-based window, both to keep whichever is smaller.
    """

    model_config = ConfigDict(extra="forbid")

    window: int | None = Field(500, ge=1, description="number of most recent decisions in the rolling window")
    window_s: float | None = Field(None, gt=0, description="or: decisions of the last window_s seconds")
    min_window: int = Field(100, ge=1, description="decisions the window needs before any alert changes state")
    baseline_size: int | None = Field(None, ge=1, description="without a given baseline: freeze one from the first "
                                      "baseline_size decisions observed (default: window, or 500)")
    unknown_labels: list[str] = Field(default_factory=lambda: ["oos", "unknown"],
                                      description="labels that mean 'no known intent'")
    count_human_as_unknown: bool = Field(False, description="also count human-review decisions that carry a best "
                                         "guess as unknown (for routers with fallback='human')")
    unknown_rate_alert: float | None = Field(0.03, ge=0, le=1, description="alert when the window's unknown rate ≥ this")
    unknown_rate_rise_alert: float | None = Field(None, gt=0, le=1, description="alert when the unknown rate is this "
                                                  "much above the baseline's (for models with a high base rate)")
    confidence_drop_alert: float | None = Field(0.05, gt=0, le=1, description="alert when the mean primary-tier "
                                                "confidence is this much below the baseline's")
    confidence_slope_alert: float | None = Field(None, gt=0, description="alert when the mean confidence falls by at "
                                                 "least this much per window over the last trend_windows windows")
    trend_windows: int = Field(5, ge=2, description="completed windows the confidence trend is fitted over")
    psi_alert: float | None = Field(0.2, gt=0, description="alert when the label-distribution PSI (noise "
                                    "subtracted) ≥ this")
    psi_noise_correction: bool = Field(True, description="subtract the PSI that sampling noise alone would give")
    escalation_rate_alert: float | None = Field(None, ge=0, le=1, description="alert when the escalation rate ≥ this")
    hysteresis: float = Field(0.1, ge=0, lt=1, description="an alert clears below threshold × (1 − hysteresis)")
    recall_window: int = Field(500, ge=1, description="feedback items kept for per-label recall")
    webhook_url: str | None = Field(None, description="POST each alert transition here as JSON")
    webhook_timeout_s: float = Field(2.0, gt=0, le=60)

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {value!r}")
        return value

    @model_validator(mode="after")
    def _windows(self) -> DriftConfig:
        if self.window_s is not None and "window" not in self.model_fields_set:
            self.window = None  # window_s alone: a purely time-based window
        if self.window is None and self.window_s is None:
            raise ValueError("give window (decisions) or window_s (seconds)")
        if self.window is not None and self.min_window > self.window:
            raise ValueError(f"min_window ({self.min_window}) is larger than window ({self.window}): alerts could "
                             "never fire; lower min_window or widen the window")
        return self

    @classmethod
    def make(cls, **values: Any) -> DriftConfig:
        """Like ``DriftConfig(**values)`` but raises :class:`ConfigError` naming the field."""
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ConfigError(validation_message(exc), field="drift") from exc

    @property
    def block_size(self) -> int:
        """Decisions per trend point when the window is count-based."""
        return self.window or 500


# -- what one decision contributes -------------------------------------------------------------
def primary_confidence(decision: Decision, primary_tier: str | None = None) -> float | None:
    """The confidence of the first model tier in the decision's trace (``primary_tier`` names it; by
    default the first entry that is not guardrail rules, preprocessing or human review). None when
    that tier did not answer (a guardrail rule routed the message, the tier failed)."""
    for entry in decision.trace:
        if primary_tier is not None:
            if entry.tier == primary_tier:
                return entry.confidence if entry.verdict != "error" else None
            continue
        if entry.kind in _SKIP_KINDS:
            continue
        if entry.verdict == "error" or entry.confidence is None:
            return None
        return entry.confidence
    return None


def is_unknown(decision: Decision, unknown_labels: Iterable[str] = ("oos", "unknown"), *,
               count_human_as_unknown: bool = False) -> bool:
    """Whether a decision counts as unknown: its first label is an unknown label, or it went to human
    review (``tier == "human"``) with no label; with ``count_human_as_unknown`` any human-review
    decision counts."""
    if decision.labels and decision.labels[0] in set(unknown_labels):
        return True
    if decision.tier == "human":
        return count_human_as_unknown or not decision.labels
    return False


def is_escalated(decision: Decision) -> bool:
    """Answered past the first model tier, human review included."""
    return decision.escalated or decision.tier == "human"


@dataclass(slots=True, frozen=True)
class _Condition:
    value: float
    threshold: float
    message: str
    advice: str
    inclusive: bool = False  # fire at value == threshold (a drop "by ≥ x"); rates fire strictly above

    def fires(self) -> bool:
        return self.value >= self.threshold - 1e-12 if self.inclusive else self.value > self.threshold


@dataclass(slots=True)
class _Obs:
    t: float
    confidence: float | None
    escalated: bool
    unknown: bool
    labels: tuple[int, ...]  # bucket indices


# -- values -------------------------------------------------------------------------------------
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


def psi(window: Sequence[float], baseline: Sequence[float], *, n: float, m: float,
        smoothing: float = _PSI_SMOOTHING) -> tuple[float, np.ndarray]:
    """Population stability index Σ (p − q)·ln(p / q) between window counts and baseline shares.

    ``window`` holds counts (``n`` in all), ``baseline`` the shares of ``m`` observations; both get
    ``smoothing`` pseudo-counts per bucket so that empty buckets give finite terms. Returns
    ``(psi, per-bucket terms)``.
    """
    p_counts = np.asarray(window, dtype=float)
    q_share = np.asarray(baseline, dtype=float)
    k = len(p_counts)
    p = (p_counts + smoothing) / (n + smoothing * k)
    q = (q_share * m + smoothing) / (m + smoothing * k)
    terms = (p - q) * np.log(p / q)
    return float(terms.sum()), terms


def psi_noise(baseline: Sequence[float], *, n: int, m: int, draws: int = 64, seed: int = 0) -> float:
    """The PSI that sampling noise alone gives: the mean PSI between a window of ``n`` and a baseline
    of ``m`` observations both drawn from the baseline shares (Monte Carlo, ``draws`` pairs).

    It grows with the number of labels K, roughly (K − 1)·(1/n + 1/m): with 150 labels, a
    500-decision window and a 3,000-decision baseline it is ≈ 0.3 — above the usual 0.2 rule of
    thumb without any drift at all, hence ``DriftConfig.psi_noise_correction``.
    """
    q = np.asarray(baseline, dtype=float)
    total = q.sum()
    if n < 1 or m < 1 or total <= 0:
        return 0.0
    q = q / total
    rng = np.random.default_rng(seed)
    windows = rng.multinomial(n, q, size=draws)
    bases = rng.multinomial(m, q, size=draws) / m
    return float(np.mean([psi(windows[i], bases[i], n=n, m=m)[0] for i in range(draws)]))


def _round2(n: int) -> int:
    """n rounded to two significant digits (the PSI-noise cache key)."""
    if n < 100:
        return n
    digits = 10 ** (len(str(n)) - 2)
    return int(round(n / digits) * digits)


# -- the monitor ----------------------------------------------------------------------------------
class DriftMonitor:
    """Rolling-window drift statistics over observed decisions, with alerting (see the module docstring).

    ``baseline``: what normal looks like (:class:`Baseline`); without one, the first
    ``config.baseline_size`` decisions observed become the baseline (until then the baseline-relative
    alerts — confidence drop, unknown-rate rise, PSI — cannot fire). ``labels``: the model's label set
    (buckets of the label distribution). ``primary_tier``: the tier whose confidence is tracked
    (default: the first model tier in each trace). ``clock``: seconds since the epoch (time windows,
    alert times). ``notify``: deliver transitions to the log and the webhook (False for replays).

    Thread-safe: one lock guards the state; :meth:`observe` is O(1) amortised (deques with running
    sums) and never raises on a well-formed Decision.
    """

    def __init__(self, config: DriftConfig | None = None, *, baseline: Baseline | None = None,
                 labels: Sequence[str] | None = None, primary_tier: str | None = None,
                 clock: Callable[[], float] = time.time, notify: bool = True) -> None:
        self.config = config or DriftConfig()
        self._clock = clock
        self.notify = notify
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._collector: Any = None
        self._history: deque[Alert] = deque(maxlen=1000)
        self._reset_state(baseline, labels, primary_tier)

    @classmethod
    def from_router(cls, router: Router, config: DriftConfig | None = None, *,
                    baseline_texts: Sequence[str] | None = None, **kwargs: Any) -> DriftMonitor:
        """A monitor for ``router``: its labels, its primary tier, its unknown label added to
        ``unknown_labels`` when it falls back to one, and a baseline from routing ``baseline_texts``
        (e.g. the validation split) when given — otherwise from the first window."""
        cfg = config or DriftConfig()
        if router.settings.fallback == "unknown" and router.settings.unknown_label not in cfg.unknown_labels:
            cfg = cfg.model_copy(update={"unknown_labels": [*cfg.unknown_labels, router.settings.unknown_label]})
        baseline = Baseline.from_router(router, baseline_texts, cfg) if baseline_texts else None
        return cls(cfg, baseline=baseline, labels=router.labels, primary_tier=router.primary.name, **kwargs)

    # -- state -----------------------------------------------------------------------------------
    def _reset_state(self, baseline: Baseline | None, labels: Sequence[str] | None, primary_tier: str | None) -> None:
        cfg = self.config
        self.primary_tier = primary_tier
        self._unknown_labels = frozenset(cfg.unknown_labels)
        self._bucket: dict[str, int] = {}
        self._names: list[str] = []
        self._counts: list[int] = []
        for name in [*(labels or ()), *cfg.unknown_labels, *((baseline.label_distribution) if baseline else ())]:
            self._index(name)
        self._items: deque[_Obs] = deque()
        self._q_key: tuple[int, int] | None = None
        self._q = np.zeros(0)
        self._noise: dict[tuple[Any, int], float] = {}
        self._observed = 0
        self._conf_sum = 0.0
        self._conf_n = 0
        self._esc = 0
        self._unk = 0
        self._label_total = 0
        self._evictions = 0
        # trend: consecutive blocks of block_size decisions (or window_s seconds)
        self._blocks: deque[float] = deque(maxlen=cfg.trend_windows)
        self._block_sum, self._block_conf_n, self._block_n, self._block_start = 0.0, 0, 0, None
        # baseline
        self.baseline = baseline
        self._baseline_target = cfg.baseline_size or cfg.window or 500
        self._pending_baseline: list[Decision] | None = [] if baseline is None else None
        # feedback recall
        self._feedback: deque[tuple[tuple[str, ...], frozenset[str]]] = deque()
        self._support: dict[str, int] = {}
        self._hits: dict[str, int] = {}
        self._active: dict[str, Alert] = {}

    def reset(self, *, baseline: Baseline | None = None, labels: Sequence[str] | None = None,
              primary_tier: str | None = None) -> None:
        """Start over (e.g. after a new model is loaded): empty windows, no active alerts (nothing is
        reported cleared), the given baseline or a new one from the next decisions; ``labels`` and
        ``primary_tier`` are the new model's."""
        with self._lock:
            self._reset_state(baseline, labels, primary_tier)

    def _index(self, name: str) -> int:
        idx = self._bucket.get(name)
        if idx is None:
            idx = self._bucket[name] = len(self._names)
            self._names.append(name)
            self._counts.append(0)
        return idx

    # -- observing -------------------------------------------------------------------------------
    def observe(self, decision: Decision, *, at: float | None = None) -> None:
        """Record one decision (``at``: its time in epoch seconds, default now). A duplicate of an
        earlier decision (``duplicate_of`` set) is ignored: it was routed once already."""
        if decision.duplicate_of:
            return
        cfg = self.config
        conf = primary_confidence(decision, self.primary_tier)
        unknown = (bool(decision.labels) and decision.labels[0] in self._unknown_labels) or (
            decision.tier == "human" and (cfg.count_human_as_unknown or not decision.labels))
        escalated = decision.escalated or decision.tier == "human"
        with self._lock:
            t = self._clock() if at is None else at
            obs = _Obs(t, conf, escalated, unknown, tuple(self._index(x) for x in (decision.labels or [NO_LABEL])))
            self._items.append(obs)
            self._observed += 1
            if conf is not None:
                self._conf_sum += conf
                self._conf_n += 1
            self._esc += escalated
            self._unk += unknown
            for i in obs.labels:
                self._counts[i] += 1
            self._label_total += len(obs.labels)
            self._evict(t)
            self._trend(obs)
            if self._pending_baseline is not None:
                self._pending_baseline.append(decision)
                if len(self._pending_baseline) >= self._baseline_target:
                    self.baseline = Baseline.from_decisions(
                        self._pending_baseline, cfg, primary_tier=self.primary_tier,
                        source=f"first {len(self._pending_baseline)} decisions observed")
                    self._pending_baseline = None

    def observe_feedback(self, decision: Decision, labels: Sequence[str]) -> None:
        """Record the true ``labels`` of a routed decision (user feedback or a review), for per-label
        recall: a label counts as recalled when a model tier (not human review) answered with it."""
        predicted = frozenset(decision.labels) if decision.tier != "human" else frozenset()
        true = tuple(dict.fromkeys(labels))
        with self._lock:
            self._feedback.append((true, predicted))
            for label in true:
                self._support[label] = self._support.get(label, 0) + 1
                if label in predicted:
                    self._hits[label] = self._hits.get(label, 0) + 1
            while len(self._feedback) > self.config.recall_window:
                old_true, old_pred = self._feedback.popleft()
                for label in old_true:
                    self._support[label] -= 1
                    if label in old_pred:
                        self._hits[label] -= 1

    def _evict(self, now: float) -> None:
        cfg, items = self.config, self._items
        while items and ((cfg.window is not None and len(items) > cfg.window)
                         or (cfg.window_s is not None and items[0].t < now - cfg.window_s)):
            old = items.popleft()
            if old.confidence is not None:
                self._conf_sum -= old.confidence
                self._conf_n -= 1
            self._esc -= old.escalated
            self._unk -= old.unknown
            for i in old.labels:
                self._counts[i] -= 1
            self._label_total -= len(old.labels)
            self._evictions += 1
            if self._evictions % _RESUM_EVERY == 0:  # keep float round-off from accumulating
                self._conf_sum = math.fsum(o.confidence for o in items if o.confidence is not None)
        if self._conf_n == 0:
            self._conf_sum = 0.0

    def _trend(self, obs: _Obs) -> None:
        cfg = self.config
        if self._block_start is None:
            self._block_start = obs.t
        if cfg.window is None and cfg.window_s is not None and obs.t - self._block_start >= cfg.window_s:
            self._close_block(obs.t)
        if obs.confidence is not None:
            self._block_sum += obs.confidence
            self._block_conf_n += 1
        self._block_n += 1
        if cfg.window is not None and self._block_n >= cfg.block_size:
            self._close_block(None)

    def _close_block(self, start: float | None) -> None:
        if self._block_conf_n:
            self._blocks.append(self._block_sum / self._block_conf_n)
        self._block_sum, self._block_conf_n, self._block_n, self._block_start = 0.0, 0, 0, start

    # -- reading ----------------------------------------------------------------------------------
    def _stats(self) -> dict[str, Any]:
        """The numbers the alerts need (caller holds the lock)."""
        cfg = self.config
        if cfg.window_s is not None:
            self._evict(self._clock())
        n = len(self._items)
        out: dict[str, Any] = {
            "n": n,
            "confidence_mean": self._conf_sum / self._conf_n if self._conf_n else None,
            "confidence_n": self._conf_n,
            "unknown_rate": self._unk / n if n else None,
            "escalation_rate": self._esc / n if n else None,
            "psi": None, "psi_noise": None, "terms": None, "q": None,
            "trend": None,
        }
        blocks = list(self._blocks)
        if len(blocks) >= 2:
            x = np.arange(len(blocks), dtype=float)
            out["trend"] = float(np.polyfit(x, np.asarray(blocks), 1)[0])
        out["trend_points"] = blocks
        base = self.baseline
        if base is not None and self._label_total:
            key = (id(base), len(self._names))
            if self._q_key != key:
                for name in base.label_distribution:
                    self._index(name)
                self._q = np.array([base.label_distribution.get(name, 0.0) for name in self._names])
                self._q_key = (id(base), len(self._names))
            q = self._q
            value, terms = psi(self._counts, q, n=self._label_total, m=base.n)
            n_key = _round2(self._label_total)
            noise = self._noise.get((self._q_key, n_key))
            if noise is None:
                if len(self._noise) > 256:
                    self._noise.clear()
                noise = self._noise[(self._q_key, n_key)] = psi_noise(q, n=n_key, m=base.n)
            out.update(psi=value, psi_noise=noise, terms=terms, q=q)
        return out

    def snapshot(self) -> DriftSnapshot:
        """The current window's numbers (see :class:`DriftSnapshot`)."""
        with self._lock:
            s = self._stats()
            shares = {name: c / self._label_total for name, c in zip(self._names, self._counts) if c} if self._label_total else {}
            shifts: list[LabelShift] = []
            if s["terms"] is not None:
                order = np.argsort(-s["terms"])[:5]
                shifts = [LabelShift(label=self._names[i], baseline=float(s["q"][i]),
                                     window=self._counts[i] / self._label_total, psi=float(s["terms"][i]))
                          for i in order if s["terms"][i] > 0]
            recall = {label: LabelRecall(support=sup, recall=self._hits.get(label, 0) / sup)
                      for label, sup in sorted(self._support.items()) if sup > 0}
            return DriftSnapshot(
                at=datetime.fromtimestamp(self._clock(), timezone.utc), observed=self._observed, n=s["n"],
                confidence_mean=s["confidence_mean"], confidence_n=s["confidence_n"], confidence_trend=s["trend"],
                trend_points=s["trend_points"], unknown_rate=s["unknown_rate"], escalation_rate=s["escalation_rate"],
                psi=s["psi"], psi_noise=s["psi_noise"], top_shifts=shifts,
                label_distribution=dict(sorted(shares.items(), key=lambda kv: -kv[1])), recall=recall,
                feedback_n=len(self._feedback), baseline=self.baseline, active_alerts=sorted(self._active),
            )

    @property
    def observed(self) -> int:
        """Decisions observed since the start (or the last reset)."""
        return self._observed

    def active_alerts(self) -> list[Alert]:
        """The alerts firing now (their firing transitions)."""
        with self._lock:
            return list(self._active.values())

    def history(self) -> list[Alert]:
        """The last 1000 transitions, oldest first."""
        with self._lock:
            return list(self._history)

    # -- alerting ---------------------------------------------------------------------------------
    def _conditions(self, s: dict[str, Any]) -> dict[str, _Condition | None]:
        """kind → its condition now, or None when it cannot be evaluated (too few decisions, no baseline)."""
        cfg, base = self.config, self.baseline
        out: dict[str, _Condition | None] = {}
        n = s["n"]
        enough = n >= cfg.min_window
        last = f"over the last {n} decisions"
        if cfg.unknown_rate_alert is not None:
            out["unknown_rate"] = _Condition(
                s["unknown_rate"], cfg.unknown_rate_alert, f"unknown rate {s['unknown_rate']:.1%} {last} "
                f"(threshold {cfg.unknown_rate_alert:.1%})", "look for new intents: `frontdesk discover`") if enough else None
        if cfg.unknown_rate_rise_alert is not None:
            out["unknown_rate_rise"] = None
            if enough and base is not None and base.unknown_rate is not None:
                rise = s["unknown_rate"] - base.unknown_rate
                out["unknown_rate_rise"] = _Condition(
                    rise, cfg.unknown_rate_rise_alert, f"unknown rate {s['unknown_rate']:.1%} {last} vs "
                    f"{base.unknown_rate:.1%} in the baseline: {rise * 100:+.2f} points (threshold "
                    f"+{cfg.unknown_rate_rise_alert * 100:.2f})", "look for new intents: `frontdesk discover`")
        if cfg.escalation_rate_alert is not None:
            out["escalation_rate"] = _Condition(
                s["escalation_rate"], cfg.escalation_rate_alert, f"escalation rate {s['escalation_rate']:.1%} {last} "
                f"(threshold {cfg.escalation_rate_alert:.1%})", "check the review queue and the model") if enough else None
        if cfg.confidence_drop_alert is not None:
            out["confidence_drop"] = None
            if s["confidence_n"] >= cfg.min_window and base is not None and base.confidence_mean is not None:
                drop = base.confidence_mean - s["confidence_mean"]
                out["confidence_drop"] = _Condition(
                    drop, cfg.confidence_drop_alert, f"mean primary-tier confidence {s['confidence_mean']:.3f} over the "
                    f"last {s['confidence_n']} decisions vs {base.confidence_mean:.3f} in the baseline: {-drop:+.3f} "
                    f"(alert at -{cfg.confidence_drop_alert:.3f})", "consider retraining with the recent feedback",
                    inclusive=True)
        if cfg.confidence_slope_alert is not None:
            out["confidence_trend"] = None
            pts = s["trend_points"]
            if s["trend"] is not None and len(pts) >= cfg.trend_windows:
                out["confidence_trend"] = _Condition(
                    -s["trend"], cfg.confidence_slope_alert, f"mean confidence trend {s['trend']:+.4f} per window over "
                    f"the last {len(pts)} windows ({pts[0]:.3f} → {pts[-1]:.3f}; alert at "
                    f"-{cfg.confidence_slope_alert:.4f})", "consider retraining with the recent feedback", inclusive=True)
        if cfg.psi_alert is not None:
            out["psi"] = None
            if enough and s["psi"] is not None:
                value = s["psi"] - s["psi_noise"] if cfg.psi_noise_correction else s["psi"]
                top = ", ".join(f"{self._names[i]} {float(s['q'][i]):.1%}→{self._counts[i] / self._label_total:.1%}"
                                for i in np.argsort(-s["terms"])[:3])
                noise = f" minus {s['psi_noise']:.3f} sampling noise = {value:.3f}" if cfg.psi_noise_correction else ""
                out["psi"] = _Condition(value, cfg.psi_alert, f"label-distribution PSI {s['psi']:.3f}{noise} {last} "
                                        f"(threshold {cfg.psi_alert:.3f}); largest shifts: {top}",
                                        "look for new intents and retrain")
        return out

    def check(self) -> list[Alert]:
        """Evaluate every configured alert; return the transitions since the last check (fired or
        cleared) and deliver them (log, webhook) when ``notify`` is on. Cheap (O(labels)) except for
        the webhook POST of a transition (up to ``webhook_timeout_s``): in a service, call it from
        :meth:`start`'s thread rather than in the request path.

        A rate or PSI alert fires when its value goes *above* the threshold, a confidence alert when the
        drop (or fall per window) reaches it; an alert clears below ``threshold × (1 − hysteresis)``.
        """
        with self._lock:
            conditions = self._conditions(self._stats())
            now = datetime.fromtimestamp(self._clock(), timezone.utc)
            events: list[Alert] = []
            for kind, cond in conditions.items():
                if cond is None:
                    continue  # not enough data: nothing changes state
                active = kind in self._active
                common = {"kind": kind, "value": cond.value, "threshold": cond.threshold, "at": now,
                          "observed": self._observed}
                if not active and cond.fires():
                    alert = Alert(state="firing", message=f"{cond.message} — {cond.advice}", **common)
                    self._active[kind] = alert
                    events.append(alert)
                elif active and cond.value < cond.threshold * (1 - self.config.hysteresis):
                    del self._active[kind]
                    events.append(Alert(state="cleared", message=f"{cond.message}: back to normal", **common))
            self._history.extend(events)
        if events and self.notify:
            self._deliver(events)
        return events

    def _deliver(self, events: list[Alert]) -> None:
        for alert in events:
            log.warning("drift alert %s %s: %s", alert.kind, alert.state, alert.message)
        url = self.config.webhook_url
        if url is None:
            return
        try:
            import httpx
        except ImportError:  # pragma: no cover - httpx ships with the server extra
            log.error("drift webhook %s not called: pip install httpx", url)
            return
        for alert in events:
            body = {"source": "frontdesk", "type": "drift_alert", "alert": alert.model_dump(mode="json")}
            try:
                resp = httpx.post(url, json=body, timeout=self.config.webhook_timeout_s)
                if not 200 <= resp.status_code < 300:
                    log.error("drift webhook %s answered HTTP %s for %s alert: check the receiver",
                              url, resp.status_code, alert.kind)
            except Exception as exc:  # noqa: BLE001 - alert delivery must never break the caller
                log.error("drift webhook %s failed for %s alert (%s: %s): the alert is still logged and in "
                          "the metrics", url, alert.kind, type(exc).__name__, exc)

    # -- background checking -----------------------------------------------------------------------
    def start(self, interval_s: float = 15.0) -> None:
        """Run :meth:`check` every ``interval_s`` seconds in a daemon thread (idempotent)."""
        if interval_s <= 0:
            raise ConfigError(f"interval_s must be > 0, got {interval_s}", field="interval_s")
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, args=(interval_s,), name="frontdesk-drift", daemon=True)
            self._thread.start()

    def _run(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                self.check()
            except Exception:  # noqa: BLE001 - keep monitoring
                log.exception("drift check failed")

    def close(self) -> None:
        """Stop the background checker (if started)."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=5)
            self._thread = None

    # -- Prometheus ----------------------------------------------------------------------------------
    def register(self, registry: CollectorRegistry) -> None:
        """Expose the monitor on ``registry`` as gauges computed at scrape time:
        ``frontdesk_drift_confidence_mean``, ``frontdesk_drift_confidence_trend``,
        ``frontdesk_drift_unknown_rate``, ``frontdesk_drift_escalation_rate``, ``frontdesk_drift_psi``
        (noise subtracted when configured), ``frontdesk_drift_window_decisions`` and
        ``frontdesk_drift_alerts_active{kind}`` (1 while that alert fires; set by :meth:`check`).
        NaN where there is no value yet."""
        collector = _DriftCollector(self)
        try:
            registry.register(collector)
        except ValueError as exc:
            raise ConfigError(f"drift gauges are already registered on this registry ({exc}): register each "
                              "monitor once, on its own registry", field="registry") from exc
        self._collector = collector

    def _gauges(self) -> dict[str, Any]:
        with self._lock:
            s = self._stats()
            nan = float("nan")
            value = None
            if s["psi"] is not None:
                value = s["psi"] - s["psi_noise"] if self.config.psi_noise_correction else s["psi"]
            kinds = [k for k in ALERT_KINDS if self._threshold(k) is not None]
            return {
                "confidence_mean": nan if s["confidence_mean"] is None else s["confidence_mean"],
                "confidence_trend": nan if s["trend"] is None else s["trend"],
                "unknown_rate": nan if s["unknown_rate"] is None else s["unknown_rate"],
                "escalation_rate": nan if s["escalation_rate"] is None else s["escalation_rate"],
                "psi": nan if value is None else value,
                "window_decisions": float(s["n"]),
                "alerts": {k: 1.0 if k in self._active else 0.0 for k in kinds},
            }

    def _threshold(self, kind: str) -> float | None:
        cfg = self.config
        return {"unknown_rate": cfg.unknown_rate_alert, "unknown_rate_rise": cfg.unknown_rate_rise_alert,
                "confidence_drop": cfg.confidence_drop_alert, "confidence_trend": cfg.confidence_slope_alert,
                "psi": cfg.psi_alert, "escalation_rate": cfg.escalation_rate_alert}[kind]


_GAUGES = {
    "confidence_mean": "mean primary-tier confidence over the drift window",
    "confidence_trend": "slope of the mean confidence per window over the last trend windows",
    "unknown_rate": "share of unknown decisions (unknown label, or human review without a label) in the window",
    "escalation_rate": "share of decisions answered past the first model tier (human review included) in the window",
    "psi": "label-distribution PSI vs the baseline (sampling noise subtracted when configured)",
    "window_decisions": "decisions in the drift window",
}


class _DriftCollector:
    """Prometheus collector: one consistent set of drift gauges per scrape."""

    def __init__(self, monitor: DriftMonitor) -> None:
        self.monitor = monitor

    def describe(self) -> list[Any]:
        from prometheus_client.core import GaugeMetricFamily

        fams = [GaugeMetricFamily(f"frontdesk_drift_{name}", doc) for name, doc in _GAUGES.items()]
        return [*fams, GaugeMetricFamily("frontdesk_drift_alerts_active", "drift alerts firing, by kind", labels=["kind"])]

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import GaugeMetricFamily

        values = self.monitor._gauges()
        for name, doc in _GAUGES.items():
            yield GaugeMetricFamily(f"frontdesk_drift_{name}", doc, value=values[name])
        fam = GaugeMetricFamily("frontdesk_drift_alerts_active", "drift alerts firing, by kind", labels=["kind"])
        for kind, v in values["alerts"].items():
            fam.add_metric([kind], v)
        yield fam


# -- replaying a store ---------------------------------------------------------------------------------
class _ReplayClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def drift_report(store: Store, *, since: datetime | None = None, until: datetime | None = None,
                 config: DriftConfig | None = None, baseline: Baseline | None = None,
                 labels: Sequence[str] | None = None, primary_tier: str | None = None,
                 check_every: int = 1) -> DriftReport:
    """Replay the stored decisions (``since <= created_at < until``) and their feedback, in time order,
    through a :class:`DriftMonitor` checked every ``check_every`` decisions; the report holds the final
    snapshot, every alert transition and the alerts still firing. Nothing is logged or POSTed (the
    alerts are history). Without ``baseline`` the first ``baseline_size`` replayed decisions are it."""
    if check_every < 1:
        raise ConfigError(f"check_every must be ≥ 1, got {check_every}", field="check_every")
    clock = _ReplayClock()
    monitor = DriftMonitor(config, baseline=baseline, labels=labels, primary_tier=primary_tier, clock=clock, notify=False)
    decisions = store.decisions(since=since, until=until)
    by_id = {d.id: d for d in decisions}
    feedback = [f for f in store.feedback(since=since)
                if f.decision_id in by_id and (until is None or f.created_at < _aware(until))]
    events: Iterable[tuple[float, int, int, Any]] = heapq.merge(
        ((d.created_at.timestamp(), 0, i, d) for i, d in enumerate(decisions)),
        ((f.created_at.timestamp(), 1, i, f) for i, f in enumerate(feedback)),
    )
    alerts: list[Alert] = []
    clock.t = time.time() if not decisions else decisions[0].created_at.timestamp()
    seen = 0
    for ts, kind, _i, item in events:
        clock.t = max(clock.t, ts)
        if kind == 0:
            monitor.observe(item, at=ts)
            seen += 1
            if seen % check_every == 0:
                alerts.extend(monitor.check())
        else:
            monitor.observe_feedback(by_id[item.decision_id], item.labels)
    if decisions and seen % check_every:
        alerts.extend(monitor.check())
    return DriftReport(snapshot=monitor.snapshot(), alerts=alerts, active=monitor.active_alerts(),
                       decisions=len(decisions), feedback=len(feedback), since=since)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value
