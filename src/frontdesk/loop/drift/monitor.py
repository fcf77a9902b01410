"""The drift monitor: a rolling window of decisions compared with a baseline, alerts with hysteresis."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np

from frontdesk.errors import ConfigError
from frontdesk.loop.drift.accuracy import ALL_TIERS, AcceptedAccuracyWindow
from frontdesk.loop.drift.alerts import deliver_alerts
from frontdesk.loop.drift.config import ALERT_KINDS, DriftConfig
from frontdesk.loop.drift.psi import psi, psi_noise, round2
from frontdesk.loop.drift.signals import NO_LABEL, is_unknown, primary_confidence
from frontdesk.loop.drift.values import AcceptedAccuracy, Alert, Baseline, DriftSnapshot, LabelRecall, LabelShift
from frontdesk.types import Decision

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from frontdesk.cascade.router import Router

log = logging.getLogger("frontdesk.loop.drift")

_RESUM_EVERY = 100_000  # evictions between exact recomputations of the running confidence sum


@dataclass(slots=True, frozen=True)
class _Condition:
    value: float
    threshold: float
    message: str
    advice: str
    inclusive: bool = False  # fire at value == threshold (a drop "by ≥ x"); rates fire strictly above
    fire: bool | None = None  # set: overrides the comparisons (alerts that are tests, not thresholds on a rate)
    clear: bool | None = None

    def fires(self) -> bool:
        if self.fire is not None:
            return self.fire
        return self.value >= self.threshold - 1e-12 if self.inclusive else self.value > self.threshold

    def clears(self, hysteresis: float) -> bool:
        if self.clear is not None:
            return self.clear
        return self.value < self.threshold * (1 - hysteresis)


@dataclass(slots=True)
class _Obs:
    t: float
    confidence: float | None
    escalated: bool
    unknown: bool
    labels: tuple[int, ...]  # bucket indices


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
        self._model_target: float | None = None
        self._reset_state(baseline, labels, primary_tier)

    @classmethod
    def from_router(cls, router: Router, config: DriftConfig | None = None, *,
                    baseline_texts: Sequence[str] | None = None, **kwargs: Any) -> DriftMonitor:
        """A monitor for ``router``: its labels, its primary tier, its unknown label added to
        ``unknown_labels`` when it falls back to one, and a baseline from routing ``baseline_texts``
        (e.g. the validation split) when given — otherwise from the first window."""
        cfg = config or DriftConfig()
        unknown = router.unknown_label or ("unknown" if router.settings.fallback == "unknown" else None)
        if unknown is not None and unknown not in cfg.unknown_labels:
            cfg = cfg.model_copy(update={"unknown_labels": [*cfg.unknown_labels, unknown]})
        baseline = Baseline.from_router(router, baseline_texts, cfg) if baseline_texts else None
        monitor = cls(cfg, baseline=baseline, labels=router.labels, primary_tier=router.primary.name, **kwargs)
        monitor.use_model_target(router)
        return monitor

    def use_model_target(self, router: Router) -> None:
        """Take the accepted-accuracy target from ``router``'s guarantee (``frontdesk train --guarantee``;
        certified or kept as an uncertified plain fit); ``config.accepted_accuracy_target`` wins when set.
        Call it after a model reload: a promoted model may carry a different guarantee."""
        cert = router.guarantee
        with self._lock:
            self._model_target = cert.target_accuracy if cert is not None else None

    @property
    def accepted_accuracy_target(self) -> float | None:
        """The target of the accepted_accuracy alert: the config's, else the model's guarantee's, else None."""
        configured = self.config.accepted_accuracy_target
        return configured if configured is not None else self._model_target

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
        self._accuracy = AcceptedAccuracyWindow(cfg.accepted_accuracy_window)
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
        unknown = is_unknown(decision, self._unknown_labels, count_human_as_unknown=cfg.count_human_as_unknown)
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
        recall (a label counts as recalled when a model tier, not human review, answered with it) and
        for the accepted accuracy of the tier that answered (:mod:`frontdesk.loop.drift.accuracy`)."""
        predicted = frozenset(decision.labels) if decision.tier != "human" else frozenset()
        true = tuple(dict.fromkeys(labels))
        with self._lock:
            self._accuracy.add(decision, true)
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
            n_key = round2(self._label_total)
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
                feedback_n=len(self._feedback), accepted_accuracy=self._accepted_accuracy(),
                baseline=self.baseline, active_alerts=sorted(self._active),
            )

    def _accepted_accuracy(self) -> dict[str, AcceptedAccuracy]:
        """Accepted accuracy by answering tier, the primary tier and 'all' always present (caller holds the lock)."""
        conf, target = self.config.accepted_accuracy_confidence, self.accepted_accuracy_target
        primary = self.primary_tier or ALL_TIERS
        tiers = dict.fromkeys([primary, *self._accuracy.tiers(), ALL_TIERS])
        return {t: self._accuracy.estimate(t, confidence=conf, target=target if t == primary else None) for t in tiers}

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

        def rate(key: str, what: str, threshold: float, hint: str) -> _Condition | None:
            """A share of the window's decisions above ``threshold`` (None: too few decisions)."""
            return _Condition(s[key], threshold, f"{what} {s[key]:.1%} {last} (threshold {threshold:.1%})", hint) if enough else None

        if cfg.unknown_rate_alert is not None:
            out["unknown_rate"] = rate("unknown_rate", "unknown rate", cfg.unknown_rate_alert, "look for new intents: `frontdesk discover`")
        if cfg.unknown_rate_rise_alert is not None:
            out["unknown_rate_rise"] = None
            if enough and base is not None and base.unknown_rate is not None:
                rise = s["unknown_rate"] - base.unknown_rate
                out["unknown_rate_rise"] = _Condition(
                    rise, cfg.unknown_rate_rise_alert, f"unknown rate {s['unknown_rate']:.1%} {last} vs "
                    f"{base.unknown_rate:.1%} in the baseline: {rise * 100:+.2f} points (threshold "
                    f"+{cfg.unknown_rate_rise_alert * 100:.2f})", "look for new intents: `frontdesk discover`")
        if cfg.escalation_rate_alert is not None:
            out["escalation_rate"] = rate("escalation_rate", "escalation rate", cfg.escalation_rate_alert,
                                          "check the review queue and the model")
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
        target = self.accepted_accuracy_target
        if cfg.accepted_accuracy_alert and target is not None:
            out["accepted_accuracy"] = self._accuracy_condition(target)
        return out

    def _accuracy_condition(self, target: float) -> _Condition | None:
        """The accepted_accuracy alert: fires when the interval's upper bound for the primary tier (every model
        tier together when the monitor knows none, e.g. a replay) is below the target (evidence the accuracy
        is below it), clears once the estimate is back at the target. None with too few labelled decisions."""
        cfg = self.config
        tier = self.primary_tier or ALL_TIERS
        a = self._accuracy.estimate(tier, confidence=cfg.accepted_accuracy_confidence, target=target)
        if a.labelled < cfg.accepted_accuracy_min_labelled or a.high is None or a.estimate is None:
            return None
        return _Condition(
            a.high, target, f"accepted accuracy of tier '{tier}' {a.estimate:.3f} from {a.labelled} labelled decisions, "
            f"{cfg.accepted_accuracy_confidence:.0%} interval [{a.low:.3f}, {a.high:.3f}], target {target:.3f} (alert while "
            "the upper bound is below the target, until the estimate is back at it)", "check the recent feedback and the review queue, look for drift, retrain (the labels "
            "come from feedback and reviews, which over-sample errors: confirm correct answers too)",
            fire=a.high < target, clear=a.estimate >= target)

    def check(self) -> list[Alert]:
        """Evaluate every configured alert; return the transitions since the last check (fired or
        cleared) and deliver them (log, webhook) when ``notify`` is on. Cheap (O(labels)) except for
        the webhook POST of a transition (up to ``webhook_timeout_s``): in a service, call it from
        :meth:`start`'s thread rather than in the request path.

        A rate or PSI alert fires when its value goes *above* the threshold, a confidence alert when the
        drop (or fall per window) reaches it; an alert clears below ``threshold × (1 − hysteresis)``.
        The accepted_accuracy alert fires when the upper bound of the primary tier's interval is below the
        target and clears when the point estimate is back at the target (the band between the two is its
        hysteresis).
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
                elif active and cond.clears(self.config.hysteresis):
                    del self._active[kind]
                    events.append(Alert(state="cleared", message=f"{cond.message}: back to normal", **common))
            self._history.extend(events)
        if events and self.notify:
            self._deliver(events)
        return events

    def _deliver(self, events: list[Alert]) -> None:
        deliver_alerts(events, self.config.webhook_url, timeout_s=self.config.webhook_timeout_s)

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
        ``frontdesk_drift_alerts_active{kind}`` (1 while that alert fires; set by :meth:`check`), and the
        accepted accuracy from feedback: ``frontdesk_accepted_accuracy{tier, bound="estimate"|"low"|"high"}``,
        ``frontdesk_accepted_accuracy_labelled{tier}`` and ``frontdesk_accepted_accuracy_target{tier}``
        (the primary tier's, when there is a target). NaN where there is no value yet."""
        from frontdesk.loop.drift.prometheus import DriftCollector

        collector = DriftCollector(self)
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
                "accepted_accuracy": list(self._accepted_accuracy().values()),
            }

    def _threshold(self, kind: str) -> float | None:
        cfg = self.config
        return {"unknown_rate": cfg.unknown_rate_alert, "unknown_rate_rise": cfg.unknown_rate_rise_alert,
                "confidence_drop": cfg.confidence_drop_alert, "confidence_trend": cfg.confidence_slope_alert,
                "psi": cfg.psi_alert, "escalation_rate": cfg.escalation_rate_alert,
                "accepted_accuracy": self.accepted_accuracy_target if cfg.accepted_accuracy_alert else None}[kind]
