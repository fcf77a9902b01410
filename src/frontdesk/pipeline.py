"""The inbound pipeline: preprocess → dedup → language → router (rules + tiers) → targets → sinks.

:class:`Pipeline` is what the CLI's ``serve`` and the service run for every message; the
:class:`~frontdesk.cascade.router.Router` alone only classifies. Every accepted message ends in a Decision:
duplicates get the earlier decision back (no second classification or LLM call), messages in an
unsupported language go to the language/review queue, and a sink that fails to deliver is
reported in :attr:`Routed.delivery_errors` without losing the decision.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from frontdesk.config import FrontdeskConfig, load_config
from pydantic import ValidationError

from frontdesk.errors import ConfigError, FrontdeskError, validation_message
from frontdesk.gating.gate import GatePolicy
from frontdesk.intake.dedup import DedupStore, Deduplicator
from frontdesk.intake.preprocessor import Prepared, Preprocessor
from frontdesk.cascade.router import Router, RouterSettings, coerce_message
from frontdesk.routing.sinks import Sink, sink_from_url
from frontdesk.routing.targets import RoutedTarget, check_labels, fan_out
from frontdesk.tiers.rules import RulesTier
from frontdesk.routing.tools import ToolCatalog
from frontdesk.types import Decision, Message, TierTrace

if TYPE_CHECKING:
    from frontdesk.shared import SharedState

log = logging.getLogger("frontdesk.pipeline")


@dataclass
class Routed:
    """The outcome of one message: its Decision, the targets it fanned out to, delivery problems."""

    decision: Decision
    targets: list[RoutedTarget] = field(default_factory=list)
    delivery_errors: list[str] = field(default_factory=list)
    dedup_key: bytes | None = field(default=None, repr=False)
    """The dedup claim this message holds until its decision is committed (see :class:`Deduplicator`)."""


class Uncommitted:
    """The decisions of one request that are not committed yet, and the dedup claims they hold.

    Use one per request (or per batch)::

        with pipeline.uncommitted() as batch:
            routed = [batch.decide(m) for m in messages]
            store.save_decisions([r.decision for r in routed])
            batch.committed()
        # leaving the block without committed() releases the claims: a retry is decided afresh

    Copies of a message inside the same batch are duplicates of its first copy (they commit in the
    same transaction); copies from other requests wait until this one is committed or abandoned.
    """

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.routed: list[Routed] = []
        self._done = False

    def decide(self, message: str | bytes | Message, *, decision_id: str | None = None) -> Routed:
        """Decide one message of this batch (everything but delivery). ``decision_id`` fixes the decision's
        id (a stream consumer derives it from the entry id, so a redelivered entry maps to the same decision)."""
        routed = self.pipeline._decide(message, owner=self, decision_id=decision_id)
        self.routed.append(routed)
        return routed

    def drop(self, routed: Routed) -> None:
        """Take a decision out of the batch before the commit (it will not be stored, e.g. another consumer
        stored this entry's decision first): its dedup claim is released."""
        if any(r is routed for r in self.routed):
            self.routed = [r for r in self.routed if r is not routed]
            self.pipeline.dedup.release(routed.dedup_key)

    def committed(self) -> None:
        """Every decision of the batch is durable: duplicates may now point at them."""
        for r in self.routed:
            self.pipeline.dedup.confirm(r.dedup_key)
        self._done = True

    def abandon(self) -> None:
        """Nothing of the batch was stored: release its claims."""
        if not self._done:
            for r in self.routed:
                self.pipeline.dedup.release(r.dedup_key)
            self._done = True

    def __enter__(self) -> Uncommitted:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abandon()


def configure_router(router: Router, config: FrontdeskConfig) -> Router:
    """A new Router with the config applied: guardrail rules first, gate and label-threshold overrides,
    router settings. The given router is not changed (reloads build a fresh one)."""
    tiers = [t for t in router.tiers if t.kind != "rules" or not config.rules]
    if config.rules:
        rules = RulesTier("guardrails", {"rules": [r.model_dump() for r in config.rules]})
        rules.labels_ = tuple(dict.fromkeys([*router.labels, *(r.label for r in config.rules)]))
        tiers.insert(0, rules)
    gates = dict(router.gates)
    if config.rules:
        gates["guardrails"] = rules.default_gate()
    names = {t.name for t in tiers}
    for name, overrides in config.gates.items():
        if name == "llm" and config.llm is not None:
            continue  # applied after the LLM tier is attached
        if name not in names:
            raise ConfigError(f"no tier named {name!r}; tiers: {', '.join(sorted(names))}", field=f"gates.{name}")
        merged = {**(gates.get(name) or GatePolicy()).model_dump(), **overrides}
        try:
            gates[name] = GatePolicy(**merged)
        except ValidationError as exc:
            raise ConfigError(validation_message(exc), field=f"gates.{name}") from exc
    label_thresholds = {label: lc.threshold for label, lc in config.labels.items() if lc.threshold is not None}
    primary = router.primary.name
    if label_thresholds:
        base = gates.get(primary) or GatePolicy()
        gates[primary] = base.model_copy(update={"label_thresholds": {**base.label_thresholds, **label_thresholds}})
    settings = RouterSettings(**{**router.settings.model_dump(), **config.router}) if config.router else router.settings
    descriptions = {**router.descriptions, **{k: v.description for k, v in config.labels.items() if v.description}}
    out = Router(tiers, {}, settings, curves=router.curves, descriptions=descriptions, examples=router.examples, meta=router.meta)
    for name, policy in gates.items():
        if name in names:
            out.set_gate(name, policy)  # validates label thresholds against the label set
    if config.llm is not None:
        out = out.with_llm(config.llm)
        if "llm" in config.gates:
            out.set_gate("llm", {**out.gates["llm"].model_dump(), **config.gates["llm"]})
    return out


class Pipeline:
    """Route inbound messages end to end. Build it with :meth:`from_config` or from a Router."""

    def __init__(
        self,
        router: Router,
        config: FrontdeskConfig | None = None,
        *,
        sinks: Sequence[Sink] | None = None,
        catalog: ToolCatalog | None = None,
        clock: Callable[[], float] = time.monotonic,
        shared: SharedState | None = None,
    ) -> None:
        self.config = config or FrontdeskConfig(model=Path("."))
        self.shared = shared
        self._own_shared = False
        self.router = configure_router(router, self.config)
        self.targets = self.config.targets_config()
        check_labels(self.targets, self.router.tiers[0].labels_ + self.router.labels)
        self.preprocessor = Preprocessor(self.config.preprocess)
        window = self.config.preprocess.dedup_window_s
        self.dedup: DedupStore[Decision]
        if shared is not None and shared.config.dedup:  # across replicas
            self.dedup = shared.deduplicator(window, Decision.model_dump_json, Decision.model_validate_json)
        else:
            self.dedup = Deduplicator(window_s=window, clock=clock)
        if shared is not None and shared.config.llm_cache:
            for tier in self.router.tiers:
                if hasattr(tier, "share_cache"):
                    tier.share_cache(shared)
        self.sinks = list(sinks) if sinks is not None else [sink_from_url(u) for u in self.config.sinks]
        self.catalog = catalog if catalog is not None else (ToolCatalog.load(self.config.tools) if self.config.tools else None)
        if self.catalog is not None:
            self.catalog.check_intents(self.router.labels)
        self.model_router = None
        if self.config.targets.model_tier_router == "llm":
            if self.config.llm is None:
                raise ConfigError("model_tier_router: llm needs an llm: section (the provider to ask)", field="targets.model_tier_router")
            from frontdesk.llm.model_tier_router import LLMModelRouter
            from frontdesk.tiers.llm import make_provider

            self.model_router = LLMModelRouter(make_provider(self.config.llm, "llm-router"), self.config.targets.model_tiers,
                                               timeout_s=self.config.llm.timeout_s)

    @classmethod
    def from_config(cls, config: FrontdeskConfig | str | Path, **kwargs: Any) -> Pipeline:
        """Load the model the config names and apply the config to it. With a ``shared:`` section and no
        ``shared=`` given, the pipeline opens (and on :meth:`close` closes) its own connection to it."""
        cfg = config if isinstance(config, FrontdeskConfig) else load_config(config)
        own = "shared" not in kwargs and cfg.shared is not None
        if own:
            from frontdesk.shared import SharedState

            kwargs["shared"] = SharedState(cfg.shared)  # type: ignore[arg-type]
        try:
            pipeline = cls(Router.load(cfg.model), cfg, **kwargs)
        except BaseException:
            if own:
                kwargs["shared"].close()
            raise
        pipeline._own_shared = own
        return pipeline

    def route(self, message: str | bytes | Message) -> Routed:
        """Preprocess, dedup, classify, fan out and deliver one message (library use: no store, so the
        decision counts as committed once it is returned)."""
        with self.uncommitted() as batch:
            routed = batch.decide(message)
            batch.committed()
        routed.delivery_errors = self.deliver(routed.targets)
        return routed

    def uncommitted(self) -> Uncommitted:
        """A batch of decisions whose dedup claims are confirmed only once the caller has stored them."""
        return Uncommitted(self)

    def decide(self, message: str | bytes | Message) -> Routed:
        """Everything but delivery and dedup memory: the decision is not remembered for dedup (use
        :meth:`uncommitted` to remember decisions once they are stored)."""
        return self._decide(message, owner=None)

    def _decide(self, message: str | bytes | Message, *, owner: object | None, decision_id: str | None = None) -> Routed:
        started = time.perf_counter()
        text, msg = coerce_message(message)
        prepared = self.preprocessor(text)
        sender = msg.sender if msg else None
        earlier, key = self.dedup.claim(sender, prepared.text, owner) if owner is not None else (None, None)
        if earlier is not None:
            decision = earlier.model_copy(update={
                "id": decision_id or uuid.uuid4().hex, "duplicate_of": earlier.id, "created_at": datetime.now(timezone.utc),
                "latency_ms": (time.perf_counter() - started) * 1e3, "cost_usd": 0.0, "message": msg,
                "reason": f"duplicate of {earlier.id} (same sender and text within {self.dedup.window_s:g} s): {earlier.reason}",
            })
            return Routed(decision)  # the earlier decision's targets were delivered already
        try:
            decision, targets = self._classify(text, msg, prepared, started, decision_id)
        except BaseException:
            self.dedup.release(key)
            raise
        self.dedup.settle(key, decision)
        return Routed(decision, targets, dedup_key=key)

    def _classify(self, text: str, msg: Message | None, prepared: Prepared, started: float,
                  decision_id: str | None = None) -> tuple[Decision, list[RoutedTarget]]:
        """Language check, the cascade, fan-out to targets (one message that is not a duplicate)."""
        sender = msg.sender if msg else None
        routed_msg = Message(text=prepared.text, sender=sender, channel=msg.channel if msg else None,
                             language=prepared.language, metadata=msg.metadata if msg else {})
        if not prepared.language_supported:
            decision = self._unsupported_language(prepared.text, prepared.language, prepared.language_confidence, started, routed_msg)
        else:
            decision = self.router.route(routed_msg)
        decision = decision.model_copy(update={
            "language": prepared.language,
            "original_text": text if prepared.text != text else None,
            "latency_ms": (time.perf_counter() - started) * 1e3,
        })
        if decision_id is not None:
            decision = decision.model_copy(update={"id": decision_id})
        return decision, self._targets(decision, language_supported=prepared.language_supported)

    def targets_of(self, decision: Decision) -> list[RoutedTarget]:
        """The targets of an already stored decision, with the ids fan-out gave them (``{decision.id}:{i}``):
        what a redelivery sends again. A duplicate has none (its original's targets were delivered)."""
        if decision.duplicate_of:
            return []
        unsupported = any(t.tier == "language" and t.kind == "preprocess" for t in decision.trace)
        return self._targets(decision, language_supported=not unsupported)

    def _targets(self, decision: Decision, *, language_supported: bool) -> list[RoutedTarget]:
        targets = fan_out(decision, self.targets, catalog=self.catalog)
        if self.model_router is not None and targets and decision.tier != "human":
            targets = self._llm_model_tier(decision.text, targets)
        if not language_supported and self.config.targets.language_queue is not None:
            q = self.config.targets.language_queue
            targets = [t.model_copy(update={"queue": q.queue, "priority": q.priority, "sla_minutes": q.sla_minutes}) for t in targets]
        return targets

    def _llm_model_tier(self, text: str, targets: list[RoutedTarget]) -> list[RoutedTarget]:
        """Let the LLM router pick the model tier; on failure keep the label mapping (logged)."""
        try:
            choice = self.model_router.choose(text)  # type: ignore[union-attr]
        except FrontdeskError as exc:
            log.warning("LLM model-tier router failed, keeping the label mapping: %s", exc)
            return targets
        model = self.targets.model_tiers[choice.tier]
        return [t.model_copy(update={"model_tier": choice.tier, "model": model}) for t in targets]

    def _unsupported_language(self, text: str, language: str | None, confidence: float, started: float, msg: Message) -> Decision:
        supported = ", ".join(self.config.preprocess.supported_languages or [])
        reason = f"language '{language}' ({confidence:.2f}) is not supported (supported: {supported}) → translation / human review"
        trace = [TierTrace(tier="language", kind="preprocess", verdict="review", reason=reason)]
        return Decision(text=text, labels=[], confidence=0.0, tier="human", escalated=True, flagged=True, reason=reason,
                        trace=trace, message=msg)

    def deliver(self, targets: list[RoutedTarget]) -> list[str]:
        """Hand targets to every sink; failures are logged and returned, never raised."""
        errors = []
        for sink in self.sinks:
            for target in targets:
                try:
                    sink.deliver(target)
                except FrontdeskError as exc:
                    log.error("delivery of %s to %s failed: %s", target.id, type(sink).__name__, exc)
                    errors.append(f"{type(sink).__name__}: {exc}")
        return errors

    def close(self) -> None:
        """Close the sinks (and the shared-state connection when the pipeline opened it)."""
        for sink in self.sinks:
            sink.close()
        if self._own_shared and self.shared is not None:
            self.shared.close()
