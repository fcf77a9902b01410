"""Prometheus metrics of the service (one registry per app, so tests can run several apps)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from frontdesk.types import Decision

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_CONF_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


class Metrics:
    """Request, tier, escalation, LLM-cost, review-queue and confidence metrics."""

    def __init__(self, review_depth: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("frontdesk_requests", "HTTP requests", ["endpoint", "status"], registry=r)
        self.request_latency = Histogram("frontdesk_request_latency_seconds", "HTTP request latency", ["endpoint"],
                                         buckets=_LATENCY_BUCKETS, registry=r)
        self.tier_latency = Histogram("frontdesk_tier_latency_seconds", "time spent in each tier", ["tier"],
                                      buckets=_LATENCY_BUCKETS, registry=r)
        self.decisions = Counter("frontdesk_decisions", "decisions by answering tier", ["tier"], registry=r)
        self.escalations = Counter("frontdesk_escalations", "decisions answered past the first model tier", registry=r)
        self.flagged = Counter("frontdesk_flagged", "decisions flagged for review", registry=r)
        self.duplicates = Counter("frontdesk_duplicates", "duplicate messages answered from the dedup window", registry=r)
        self.llm_calls = Counter("frontdesk_llm_calls", "LLM tier calls", ["tier"], registry=r)
        self.llm_cost = Counter("frontdesk_llm_cost_usd", "LLM cost in USD", ["tier"], registry=r)
        self.llm_errors = Counter("frontdesk_llm_errors", "LLM tier calls that failed (the trace verdict is 'error')",
                                  ["tier"], registry=r)
        self.confidence = Histogram("frontdesk_confidence", "decision confidence (mean = sum / count)",
                                    buckets=_CONF_BUCKETS, registry=r)
        self.reloads = Counter("frontdesk_reloads", "config reloads", ["result"], registry=r)
        self.sentiment = Counter("frontdesk_sentiment", "decisions by customer sentiment (extract stage)", ["sentiment"], registry=r)
        self.very_negative = Counter("frontdesk_very_negative", "decisions whose customer is very negative", registry=r)
        self.urgency = Counter("frontdesk_urgency", "decisions by urgency (extract stage)", ["urgency"], registry=r)
        self.requires_human = Counter("frontdesk_requires_human", "decisions that require a human before any action", registry=r)
        self.fields = Counter("frontdesk_fields_extracted", "decisions with at least one value of this field", ["field"], registry=r)
        self.actions = Counter("frontdesk_actions", "action outcomes after routing (done, failed, held, skipped …)",
                               ["action", "status"], registry=r)
        self.review_depth = Gauge("frontdesk_review_queue_depth", "pending human-review items", registry=r)
        self.review_depth.set_function(review_depth)
        self.review_age = Gauge("frontdesk_review_queue_oldest_age_seconds",
                                "age of the oldest pending human-review item (0 when none)", registry=r)
        """Set by the console (:func:`frontdesk.server.console.mount_console`) to read the store at scrape time."""

    def observe(self, decision: Decision) -> None:
        """Record one decision."""
        if decision.duplicate_of:
            self.duplicates.inc()
            return
        self.decisions.labels(decision.tier).inc()
        if decision.escalated:
            self.escalations.inc()
        if decision.flagged:
            self.flagged.inc()
        self.confidence.observe(decision.confidence)
        for t in decision.trace:
            if t.role in ("human", "intake"):
                continue
            self.tier_latency.labels(t.tier).observe(t.latency_ms / 1e3)
            if t.role == "llm":
                self.llm_calls.labels(t.tier).inc()
                self.llm_cost.labels(t.tier).inc(t.cost_usd)
                if t.verdict == "error":
                    self.llm_errors.labels(t.tier).inc()
        self.observe_extract(decision)

    def observe_extract(self, decision: Decision) -> None:
        """Record the extract stage's signals, fields and action outcomes of one decision."""
        if decision.sentiment is not None:
            self.sentiment.labels(decision.sentiment.label).inc()
            if decision.sentiment.very_negative:
                self.very_negative.inc()
        if decision.urgency is not None:
            self.urgency.labels(decision.urgency).inc()
        if decision.requires_human:
            self.requires_human.inc()
        for name, values in decision.fields.items():
            if values:
                self.fields.labels(name).inc()
        for action in decision.actions:
            self.actions.labels(action.name, action.status).inc()
