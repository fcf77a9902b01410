"""The inbound pipeline: preprocess → mask PII → dedup → language → router (rules + tiers) → extract → targets → sinks → actions.

:class:`Pipeline` is what the CLI's ``serve`` and the service run for every message; the
:class:`~frontdesk.cascade.router.Router` alone only classifies. Every accepted message ends in a Decision:
duplicates get the earlier decision back (no second classification or LLM call), messages in an
unsupported language go to the language/review queue, and a sink that fails to deliver is
reported in :attr:`Routed.delivery_errors` without losing the decision.

The extract stage (``extract:``) masks PII right after preprocessing, so every tier — the LLM
included —, every sink and the stored decision see ``<EMAIL_1>``-style placeholders; after
classification it adds the label's fields, sentiment and urgency, decides ``requires_human`` and
plans the label's action, which runs once the decision is committed (:meth:`Pipeline.run_actions`).
A message may carry ``metadata.sent_at`` (ISO 8601; relative dates resolve against it, default:
receipt time) and ``metadata.locale`` (e.g. ``en-US``: date order and phone region).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from frontdesk.config import FrontdeskConfig, load_config
from pydantic import ValidationError

from frontdesk.errors import ConfigError, FrontdeskError, InputError, validation_message
from frontdesk.gating.gate import GatePolicy
from frontdesk.intake.dedup import DedupStore, Deduplicator
from frontdesk.intake.extract import Extractor, Masker, Scan, check_libraries, unmask
from frontdesk.intake.preprocessor import Prepared, Preprocessor
from frontdesk.cascade.router import Router, RouterSettings, coerce_message
from frontdesk.routing.actions import ActionLedger, ActionRunner, MemoryLedger
from frontdesk.routing.sinks import Sink, sink_from_url
from frontdesk.routing.targets import RoutedTarget, check_labels, fan_out
from frontdesk.tiers.rules import RulesTier
from frontdesk.routing.tools import ToolCatalog
from frontdesk.types import Decision, Message, PiiRecord, TierTrace

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
    """A new Router with the config applied: guardrail rules first (they replace the model's guardrail tiers),
    gate and label-threshold overrides, router settings. The given router is not changed (reloads build a fresh one)."""
    tiers = [t for t in router.tiers if t.role != "guardrail" or not config.rules]
    if config.rules:
        rules = RulesTier("guardrails", {"rules": [r.model_dump() for r in config.rules]})
        rules.attach(router.context)
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
    try:
        settings = RouterSettings.model_validate({**router.settings.model_dump(), **config.router}) if config.router else router.settings
    except ValidationError as exc:
        raise ConfigError(validation_message(exc), field="router") from exc
    descriptions = {**router.descriptions, **{k: v.description for k, v in config.labels.items() if v.description}}
    out = Router(tiers, {}, settings, curves=router.curves, descriptions=descriptions, examples=router.examples, meta=router.meta,
                 detectors=router.detectors, llm_policy=router.llm_policy, example_index=router.example_index)
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
        unknown = (self.router.unknown_label,) if self.router.unknown_label else ()
        check_labels(self.targets, self.router.known_labels + unknown)
        self.preprocessor = Preprocessor(self.config.preprocess, max_chars=self.router.settings.max_chars)
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
        labels = self.config.labels
        self.extractor: Extractor | None = None
        if self.config.extract.enabled:
            check_libraries()
            self.extractor = Extractor(self.config.extract,
                                       label_fields={k: v.fields for k, v in labels.items() if v.fields is not None},
                                       label_urgency={k: v.urgency for k, v in labels.items() if v.urgency is not None})
        schemas = {k: v.extract_schema for k, v in labels.items() if v.extract_schema is not None}
        if self.router.llm_tier is not None:
            self.router.llm_tier.extract_schemas = schemas  # type: ignore[attr-defined]
        self.actions = ActionRunner({k: v.action for k, v in labels.items() if v.action}, self.config.actions)
        self.action_ledger: ActionLedger = MemoryLedger()
        """Where actions are recorded when no store is given (library use); the service uses its store."""

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
        self.run_actions(routed)
        return routed

    def run_actions(self, routed: Routed, ledger: ActionLedger | None = None) -> None:
        """Run the committed decision's pending actions (each at most once per decision id) and put their
        results on ``routed.decision.actions``. ``ledger``: the store in the service (default: in memory)."""
        if routed.decision.actions:
            done = self.actions.run(routed.decision, ledger or self.action_ledger)
            routed.decision = routed.decision.model_copy(update={"actions": done})

    def warm_up(self) -> None:
        """Load the extract stage's libraries now (the service calls it at start), not on the first message."""
        if self.extractor is not None:
            self.extractor.warm_up()

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
            skipped = [a.model_copy(update={"status": "skipped", "result": None, "error": None, "attempts": 0,
                                            "reason": f"duplicate of decision {earlier.id}: the action belongs to that one"})
                       for a in earlier.actions]
            decision = earlier.model_copy(update={
                "id": decision_id or uuid.uuid4().hex, "duplicate_of": earlier.id, "created_at": datetime.now(timezone.utc),
                "latency_ms": (time.perf_counter() - started) * 1e3, "cost_usd": 0.0,
                "message": earlier.message.model_copy(update={"metadata": msg.metadata}) if earlier.message and msg else msg,
                "reason": f"duplicate of {earlier.id} (same sender and text within {self.dedup.window_s:g} s): {earlier.reason}",
                "actions": skipped,
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
        """Language check, the cascade, fan-out to targets (one message that is not a duplicate).

        Every text the decision carries is bounded: the tiers' text (and ``message.text``) by the
        router's ``max_chars``, ``original_text`` by the preprocessor's input limit. ``decision_id`` fixes
        the decision's id (before its actions are planned: their idempotency keys contain it).
        """
        sender = msg.sender if msg else None
        max_chars = self.router.settings.max_chars
        tiers_text, scan, masker = prepared.text, None, None
        if self.extractor is not None:  # mask before any tier (the LLM included), sink or store sees the text
            locale = _locale(msg)
            scan, masker = self.extractor.scan(prepared.text, lang=prepared.language, locale=locale), Masker()
            tiers_text = self.extractor.mask(scan, masker)
        cut = len(tiers_text) > max_chars
        tiers_text = tiers_text[:max_chars]  # after masking: the cut may split a placeholder, never a PII value
        routed_msg = Message(text=tiers_text, sender=sender, channel=msg.channel if msg else None,
                             language=prepared.language, metadata=msg.metadata if msg else {})
        if not prepared.language_supported:
            decision = self._unsupported_language(tiers_text, prepared.language, prepared.language_confidence, started, routed_msg)
        else:
            decision = self.router.route(routed_msg)
        update: dict[str, object] = {"language": prepared.language,
                                     "original_text": prepared.original if prepared.original != tiers_text else None}
        if scan is not None and masker is not None:
            update |= self._extract(decision, text, prepared, scan, masker, _sent_at(msg))
        update["latency_ms"] = (time.perf_counter() - started) * 1e3
        if decision_id is not None:
            update["id"] = decision_id
        if prepared.truncated or cut:
            why = (f"message truncated: only its first {self.preprocessor.max_input_chars} characters were read"
                   if prepared.truncated else f"text truncated to {max_chars} characters")
            update |= {"truncated": True, "reason": f"{decision.reason} ({why})"}
        decision = decision.model_copy(update=update)
        if self.actions:
            decision = decision.model_copy(update={"actions": self.actions.plan(
                decision, requires_human_reason=self._requires_human(decision))})
        return decision, self._targets(decision, language_supported=prepared.language_supported)

    def targets_of(self, decision: Decision) -> list[RoutedTarget]:
        """The targets of an already stored decision, with the ids fan-out gave them (``{decision.id}:{i}``):
        what a redelivery sends again. A duplicate has none (its original's targets were delivered)."""
        if decision.duplicate_of:
            return []
        unsupported = any(t.tier == "language" and t.role == "intake" for t in decision.trace)
        return self._targets(decision, language_supported=not unsupported)

    def _targets(self, decision: Decision, *, language_supported: bool) -> list[RoutedTarget]:
        targets = fan_out(decision, self.targets, catalog=self.catalog)
        if self.model_router is not None and targets and decision.tier != "human":
            targets = self._llm_model_tier(decision.text, targets)
        if not language_supported and self.config.targets.language_queue is not None:
            q = self.config.targets.language_queue
            targets = [t.model_copy(update={"queue": q.queue, "priority": q.priority, "sla_minutes": q.sla_minutes}) for t in targets]
        return targets

    def _extract(self, decision: Decision, raw: str, prepared: Prepared, scan: Scan, masker: Masker,
                 sent_at: datetime) -> dict[str, object]:
        """The extract stage after classification: the label's fields (masked view), sentiment, urgency,
        requires_human, and what the stored decision may keep of the original text."""
        ex = self.extractor
        assert ex is not None
        label = decision.label
        fields = ex.fields(scan, label, sent_at)
        llm_fields: dict[str, object] = {}
        for entry in reversed(decision.trace):
            if entry.tier == decision.tier and entry.fields:
                llm_fields = dict(entry.fields)
                break
        tone, urgency = ex.signals(prepared.text, label)
        store_pii = self.config.extract.store_pii
        masked_view = {**ex.masked_fields(fields, scan, masker), **llm_fields}
        # the raw original (HTML, quoted thread …) masked with the same numbering, when it differs from the text
        original = (ex.mask(ex.scan(prepared.original, lang=scan.lang, locale=scan.locale), masker)
                    if prepared.original != prepared.text else decision.text)
        kept = stored_placeholders(masker.placeholders) if store_pii else {}
        original = unmask(original, kept) if kept else original
        update: dict[str, object] = {"fields": masked_view, "sentiment": tone, "urgency": urgency,
                                     "original_text": original if original != decision.text else None}
        if kept:
            update["pii"] = PiiRecord(placeholders=kept, fields={**fields, **unmask(llm_fields, kept)})
        probe = decision.model_copy(update={"sentiment": tone, "urgency": urgency})
        update["requires_human"] = self._requires_human(probe) is not None
        return update

    def _requires_human(self, decision: Decision) -> str | None:
        """Why the signal policy wants a person to look before any action (None: it does not)."""
        rules = [label for t in decision.trace if t.role == "guardrail" for label in t.labels]
        return self.targets.signals.requires_human_reason(decision, rules)

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
        trace = [TierTrace(tier="language", kind="preprocess", role="intake", verdict="review", reason=reason)]
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


def stored_placeholders(placeholders: dict[str, str]) -> dict[str, str]:
    """What ``store_pii`` may keep of a message's placeholders: card numbers only masked, PINs never."""
    from frontdesk.intake.extract.finance import masked_card

    out = {}
    for name, value in placeholders.items():
        if name.startswith("<CARD_"):
            digits = re.sub(r"\D", "", value)
            out[name] = masked_card(digits[-4:])
        elif name.startswith("<PIN_"):
            out[name] = "****"
        else:
            out[name] = value
    return out


def _locale(msg: Message | None) -> str | None:
    """``metadata.locale`` of the message (None when absent); InputError when it is not a locale."""
    value = msg.metadata.get("locale") if msg else None
    if value is None:
        return None
    if not isinstance(value, str) or not re.fullmatch(r"[a-z]{2,3}(?:[-_][A-Za-z]{2})?", value):
        raise InputError(f"metadata.locale: {value!r} is not a locale; use language-REGION such as en-GB or en-US")
    lang, _, region = value.replace("_", "-").partition("-")
    return f"{lang}-{region.upper()}" if region else lang


def _sent_at(msg: Message | None) -> datetime:
    """``metadata.sent_at`` of the message (ISO 8601; naive = UTC), else now; InputError when unreadable."""
    value = msg.metadata.get("sent_at") if msg else None
    if value is None:
        return datetime.now(timezone.utc)
    if isinstance(value, datetime):
        when = value
    else:
        try:
            when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise InputError(f"metadata.sent_at: {value!r} is not an ISO 8601 date-time (e.g. 2026-03-06T09:14:00+01:00)") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)
