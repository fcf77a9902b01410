"""``frontdesk.yaml``: the runtime configuration, validated with errors that name the field.

One file says which model to serve and how: gate overrides and per-label thresholds (ops retune
them without retraining), guardrail rules that run before any model, preprocessing, where each
label goes (queue, priority, SLA, model tier, tool cap) and which sinks receive the targets.
Relative paths are resolved against the config file's folder. ``frontdesk init`` writes a
commented starter file (:data:`STARTER`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from frontdesk.errors import ConfigError, validation_message
from frontdesk.intake.extract.config import ExtractConfig, Urgency
from frontdesk.loop.drift import DriftConfig
from frontdesk.intake.preprocessor import PreprocessConfig
from frontdesk.routing.actions import ActionSpec, check_action_names
from frontdesk.routing.targets import LabelTarget, QueueRoute, SignalPolicy, TargetsConfig
from frontdesk.shared.config import SharedConfig
from frontdesk.tiers.llm import LLMParams
from frontdesk.tiers.rules import Rule


class LabelConfig(BaseModel):
    """Per-label settings: a description (for the LLM tier), a gate threshold and the target."""

    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(None, description="one line on what the label means, shown to the LLM tier (overrides labels.yaml)")
    threshold: float | None = Field(None, ge=0.0, le=1.0, description="the primary tier's threshold for this label")
    queue: str | None = Field(None, description="team queue; None = targets.default_queue")
    priority: int = Field(3, ge=1, le=5, description="1 = most urgent")
    sla_minutes: int | None = Field(None, ge=1, description="minutes until a target of this label is due; None = no SLA")
    model_tier: str | None = Field(None, description="a key of targets.model_tiers")
    tools_max: int | None = Field(None, ge=1, description="at most this many tools handed to the agent (tool narrowing); None = all that match")
    fields: list[str] | None = Field(None, description="rule fields reported for this label; None = extract.default_fields")
    urgency: Urgency | None = Field(None, description="urgency prior of this label; None = extract.urgency.default")
    action: str | None = Field(None, description="action run for accepted decisions: a key of actions, or a registered "
                               "Python action (entry point group frontdesk.actions)")
    extract_schema: dict[str, Any] | None = Field(
        None, description="JSON Schema (type: object) of the fields the LLM tier extracts for this label, in the same "
        "call as the label; invalid values are dropped with a reason")

    @field_validator("extract_schema")
    @classmethod
    def _schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        from frontdesk.intake.extract.llm_fields import check_schema

        check_schema(value)
        return value

    def target(self) -> LabelTarget:
        queue = QueueRoute(queue=self.queue, priority=self.priority, sla_minutes=self.sla_minutes) if self.queue else None
        return LabelTarget(queue=queue, model_tier=self.model_tier, tools_max=self.tools_max)


class TargetDefaults(BaseModel):
    """Where decisions go when their label names no queue, and which model tier an agent gets (per-label targets are under
    ``labels``; see :class:`~frontdesk.routing.targets.TargetsConfig`)."""

    model_config = ConfigDict(extra="forbid")

    default_queue: QueueRoute = Field(default_factory=lambda: QueueRoute(queue="triage", priority=3),
                                      description="the queue of an accepted label without labels.<label>.queue")
    review_queue: QueueRoute = Field(default_factory=lambda: QueueRoute(queue="human-review", priority=2),
                                     description="the queue of messages that went to human review")
    language_queue: QueueRoute | None = Field(
        None, description="messages in an unsupported language go here (e.g. a translation team); None = review_queue"
    )
    model_tiers: dict[str, str] = Field(default_factory=lambda: {"simple": "small-model", "reasoning": "large-model", "tool_use": "tool-model"},
                                        description="model tier name → the model an agent should run for it (reported on each target)")
    default_model_tier: str = Field("simple", description="the model tier of a label without labels.<label>.model_tier")
    most_capable_tier: str = Field("reasoning", description="the model tier of a message below low_confidence or sent to human review")
    low_confidence: float = Field(0.6, ge=0.0, le=1.0, description="below this confidence a target gets most_capable_tier")
    model_tier_router: Literal["labels", "llm"] = Field(
        "labels", description="labels: each label's model_tier (free); llm: an LLM picks the tier per message (one extra call)"
    )
    signals: SignalPolicy = Field(default_factory=SignalPolicy,
                                  description="urgency/sentiment → priority, SLA and requires_human (extract stage)")


Scope = Literal["route", "admin"]


class ApiKey(BaseModel):
    """One API key, stored as the SHA-256 of the key (``frontdesk keys create`` prints both)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="who the key is for (shown in logs and 403 messages, never the key)")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="hex SHA-256 of the key; the key itself is never stored")
    scopes: list[Scope] = Field(min_length=1, description="route: the route endpoints; admin: feedback, review, reload")


class AuthConfig(BaseModel):
    """API-key auth. Disabled only in development mode (``frontdesk serve --model``)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="with no keys every request gets 401: add one with `frontdesk keys create`")
    keys: list[ApiKey] = Field(default_factory=list, description="the accepted keys (`frontdesk keys create` prints an entry)")
    protect_metrics: bool = Field(False, description="/metrics needs a key too (any scope; Prometheus: authorization credentials)")
    protect_docs: bool = Field(False, description="/docs, /redoc and /openapi.json need a key too (any scope)")


class ServerConfig(BaseModel):
    """The HTTP service."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="bind address (0.0.0.0: every interface); `serve --host` overrides it")
    port: int = Field(8080, ge=1, le=65535, description="TCP port; `serve --port` overrides it")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="larger requests get 413")
    max_batch: int = Field(256, ge=1, description="messages per /v1/route/batch request")
    watch_config: bool = Field(True, description="reload when frontdesk.yaml changes on disk")
    watch_interval_s: float = Field(1.0, gt=0, description="how often the watcher compares the file's content hash")
    read_timeout_s: float = Field(
        30.0, gt=0, description="a request body not fully received this many seconds after the request started gets "
        "408 and the connection is closed (a client announcing more bytes than it sends cannot hold a worker forever)",
    )


class ConsoleConfig(BaseModel):
    """The browser console under ``/ui`` (review queue, decision search, dashboard, discovery)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="serve the console under /ui")
    session_ttl_s: int = Field(12 * 3600, ge=60, le=30 * 86400, description="a sign-in lasts this long (seconds)")
    undo_window_s: float = Field(10.0, ge=0, le=3600, description="a reviewer may undo a resolution this long after it")
    page_size: int = Field(50, ge=5, le=500, description="review items / search results per page")
    secure_cookies: bool | None = Field(
        None, description="mark cookies Secure (HTTPS only); None = when the request came over HTTPS")


class FrontdeskConfig(BaseModel):
    """The whole ``frontdesk.yaml``."""

    model_config = ConfigDict(extra="forbid")

    model: Path = Field(description="model directory written by `frontdesk train`")
    router: dict[str, Any] = Field(default_factory=dict, description="RouterSettings overrides (max_chars, fallback, …)")
    gates: dict[str, dict[str, Any]] = Field(default_factory=dict, description="tier name → GatePolicy overrides "
                                             "(threshold, flag_threshold, min_margin, oos_threshold, oos_detection, …)")
    labels: dict[str, LabelConfig] = Field(default_factory=dict, description="per label: description, threshold, queue, "
                                           "priority, SLA, model tier, tools, fields, urgency, action; a label the model does "
                                           "not know (other than its unknown label) is an error")
    rules: list[Rule] = Field(default_factory=list, description="guardrails, checked before any model")
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig, description="inbound cleanup (HTML, quotes, "
                                         "signatures, Unicode), language detection and the duplicate window")
    targets: TargetDefaults = Field(default_factory=TargetDefaults, description="default and review queues, model tiers "
                                    "and the urgency/sentiment signals")
    sinks: list[str] = Field(default_factory=list, description="stdout, jsonl:///path, http(s)://…, redis://…")
    tools: Path | None = Field(None, description="tool catalogue (JSON/YAML) for tool narrowing")
    llm: LLMParams | None = Field(None, description="add an LLM tier after the model tiers (provider, model, base_url, …)")
    store: str = Field("sqlite:///frontdesk.db", description="SQLAlchemy URL: sqlite:///path or postgresql+psycopg://…")
    store_sync: Literal["full", "normal"] = Field(
        "normal", description="SQLite only: normal (default) survives a crashed or killed process — every acknowledged "
        "decision is in the WAL — but not an OS crash or power loss; full also fsyncs every commit (power-loss safe, "
        "~2 ms per commit batch: p95 19.5 ms instead of 4.9 ms at 200 req/s here)",
    )
    store_busy_timeout_s: float = Field(
        10.0, gt=0, description="SQLite only: how long a commit waits for another writer's lock before the request "
        "gets 503 (nothing stored; the client retries)",
    )
    server: ServerConfig = Field(default_factory=ServerConfig, description="the HTTP service: bind address, request limits, "
                                 "config watching")
    drift: DriftConfig = Field(default_factory=DriftConfig, description="drift monitoring of the service (window, alert thresholds, webhook)")
    auth: AuthConfig = Field(default_factory=AuthConfig, description="API keys and what needs one")
    shared: SharedConfig | None = Field(None, description="Redis shared by replicas: dedup, LLM cache, reloads and drift "
                                        "across every serve/consume process (redis://host:6379/0, or a mapping)")
    console: ConsoleConfig = Field(default_factory=ConsoleConfig, description="the browser console under /ui")
    extract: ExtractConfig = Field(default_factory=ExtractConfig, description="rule fields, PII masking, sentiment, urgency")
    actions: dict[str, ActionSpec] = Field(default_factory=dict, description="actions by name: webhooks, or settings "
                                           "for registered Python actions")

    @model_validator(mode="after")
    def _label_extract(self) -> FrontdeskConfig:
        problems = []
        known = set(self.extract.known_fields)
        for label, lc in self.labels.items():
            if lc.fields is not None:
                try:
                    self.extract.check_fields(lc.fields, f"labels.{label}.fields")
                except ValueError as exc:
                    problems.append(str(exc))
            if lc.extract_schema is not None:
                clash = sorted(set(lc.extract_schema.get("properties", {})) & known)
                if clash:
                    problems.append(f"labels.{label}.extract_schema: properties {clash} clash with rule fields; rename them "
                                    f"(rule fields: {', '.join(sorted(known))})")
        named = {f"labels.{label}.action": lc.action for label, lc in self.labels.items() if lc.action}
        problems += check_action_names(named, self.actions)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def targets_config(self) -> TargetsConfig:
        """The TargetsConfig that :func:`~frontdesk.routing.targets.fan_out` uses."""
        t = self.targets
        try:
            return TargetsConfig(
                labels={name: lc.target() for name, lc in self.labels.items()}, default_queue=t.default_queue,
                review_queue=t.review_queue, model_tiers=t.model_tiers, default_model_tier=t.default_model_tier,
                most_capable_tier=t.most_capable_tier, low_confidence=t.low_confidence, signals=t.signals,
            )
        except ValidationError as exc:
            raise ConfigError(validation_message(exc), field="labels/targets") from exc

    def resolve(self, base: Path) -> FrontdeskConfig:
        """Make relative paths relative to ``base`` (the config file's folder)."""
        updates: dict[str, Any] = {}
        if not self.model.is_absolute():
            updates["model"] = base / self.model
        if self.tools is not None and not self.tools.is_absolute():
            updates["tools"] = base / self.tools
        if self.llm is not None:
            llm_paths = {k: base / v for k in ("record", "replay") if (v := getattr(self.llm, k)) is not None and not v.is_absolute()}
            if llm_paths:
                updates["llm"] = self.llm.model_copy(update=llm_paths)
        sinks = [f"jsonl://{base / s[len('jsonl://'):]}" if s.startswith("jsonl://") and not s.startswith("jsonl:///") else s for s in self.sinks]
        updates["sinks"] = sinks
        prefix = "sqlite:///"
        if self.store.startswith(prefix) and not self.store.startswith(prefix + "/") and self.store != prefix + ":memory:":
            updates["store"] = prefix + str(base / self.store[len(prefix):])
        return self.model_copy(update=updates)


def parse_config(data: Any, *, base: Path | None = None, source: str = "config") -> FrontdeskConfig:
    """Validate a mapping (parsed YAML) into a FrontdeskConfig; errors name the field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must be a YAML mapping with at least 'model: <model directory>'")
    try:
        config = FrontdeskConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {validation_message(exc)}") from exc
    return config.resolve(base) if base is not None else config


def read_config_bytes(path: str | Path) -> bytes:
    """The bytes of a config file, or a ConfigError that says why they cannot be read (any OS error)."""
    p = Path(path)
    try:
        return p.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(f"no config file at {p}: create one with `frontdesk init`") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"{p} is a directory, not a config file: point at frontdesk.yaml itself") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read {p} ({exc.strerror or type(exc).__name__}): check the path and its permissions") from exc


def config_from_bytes(data: bytes, path: str | Path) -> FrontdeskConfig:
    """Parse and validate the bytes of ``frontdesk.yaml`` read from ``path`` (relative paths resolve against its folder)."""
    p = Path(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p} is not valid UTF-8 (byte {exc.start}): save it as UTF-8") from exc
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{p} is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from exc
    except RecursionError as exc:
        raise ConfigError(f"{p} nests too deeply to be a frontdesk config") from exc
    return parse_config(parsed, base=p.resolve().parent, source=str(p))


def load_config(path: str | Path) -> FrontdeskConfig:
    """Read and validate ``frontdesk.yaml``; every failure is a ConfigError that says why."""
    return config_from_bytes(read_config_bytes(path), path)


STARTER = """\
# frontdesk.yaml — runtime configuration (validated on load; errors name the field).
# Paths are relative to this file.

model: model                     # directory written by `frontdesk train --out model`

router:
  max_chars: 10000               # longer messages are truncated (the decision says truncated: true)
  fallback: human                # no tier confident → human | unknown
  # unknown_label: oos           # where out-of-scope messages go (default: the data's own oos class; none → human review)

gates:                           # retune thresholds without retraining (tier name → overrides)
  linear: {}
    # threshold: 0.80            # escalate below this confidence
    # flag_threshold: 0.90       # accept but flag for review below this
    # min_margin: 0.05           # escalate when top-1 and top-2 are closer than this
    # oos_threshold: 0.99        # out of scope at or above this score (default: fitted at training; higher = fewer)
    # oos_detection: false       # switch this tier's out-of-scope detector off

labels: {}                       # per label: description, threshold, where it goes
  # refund_request:
  #   description: The customer explicitly asks for their money back.
  #   threshold: 0.85
  #   queue: billing
  #   priority: 2                # 1 = most urgent … 5
  #   sla_minutes: 240
  #   model_tier: simple         # a key of targets.model_tiers
  #   tools_max: 10
  #   fields: [amounts, dates, emails, order_ids]   # rule fields for this label (default: extract.default_fields)
  #   urgency: normal            # urgency prior: low | normal | high | critical
  #   action: open_refund        # runs for accepted decisions (a key of actions, or a registered Python action)
  #   extract_schema:            # fields the LLM tier extracts with the label (same call), JSON Schema
  #     type: object
  #     properties:
  #       amount: {type: number}
  #       merchant: {type: string}
  #       requested_outcome: {type: string, enum: [refund, replacement, explanation]}

rules:                           # guardrails: checked before any model, case/diacritics-insensitive
  - label: legal_or_complaint
    keywords: ["lawyer*", "attorney", "sue", "lawsuit", "small claims court"]
  # - label: abuse
  #   patterns: ['\\bkill (you|u)\\b']

preprocess:
  html: true                     # HTML → text
  strip_quotes: true             # drop quoted earlier messages
  strip_signature: true          # drop signatures and "Sent from my iPhone"
  normalize: true                # Unicode NFKC, invisible characters, whitespace
  detect_language: true
  supported_languages: null      # e.g. [en, de]; others go to targets.language_queue
  dedup_window_s: 60             # same sender + same text within this → the earlier decision
  # max_input_chars: null        # characters read per message before cleaning (null: router.max_chars)

targets:
  default_queue: {queue: triage, priority: 3}
  review_queue: {queue: human-review, priority: 2}
  # language_queue: {queue: translation, priority: 3}
  model_tiers: {simple: small-model, reasoning: large-model, tool_use: tool-model}
  default_model_tier: simple
  most_capable_tier: reasoning   # low confidence or human review → this tier
  low_confidence: 0.6
  signals:                       # the extract stage's urgency/sentiment → priority, SLA, requires_human
    priority: {critical: 1, high: 2}          # at most this priority number for this urgency
    sla_minutes: {critical: 30, high: 120}    # at most this SLA
    requires_human:              # hold the action until a reviewer approves (and add a review item)
      very_negative: true
      rules: [legal_or_complaint]

sinks: []                        # where routed targets are delivered, e.g.
  # - jsonl://routed.jsonl       # each target carries the customer's text; add ?redact=true to any sink
  # - stdout?redact=true         # to replace it by its length and hash (stdout output ends up in logs)
  # - https://hooks.example.com/frontdesk
  # - redis://localhost:6379/0

# tools: tools.yaml              # tool catalogue for agent tool narrowing

extract:                         # classify → extract → act (pip install 'frontdesk[extract]')
  enabled: true
  store_pii: false               # false: stored decisions keep masked text and placeholders only (cards are always masked)
  default_locale: en-GB          # date order (…-US: month first) and phone region; per message: metadata.locale
  default_fields: [amounts, dates, emails, phones, cards, ibans, order_ids]
  # ids:                         # id fields: a regex with a named group 'id' (order_ids, tracking_ids built in)
  #   ticket_ids: {pattern: '\\bCS[-\\s]?(?P<id>\\d{6})\\b', prefix: "CS-"}
  mask:                          # PII → <EMAIL_1>, <PHONE_1> … before any tier, LLM, sink or log sees the text
    types: [EMAIL, PHONE, CARD, IBAN, PIN]
    # patterns: [{type: CUSTOMER_ID, pattern: '\\bCU-\\d{8}\\b'}]
  # urgency: {default: normal, keywords: {high: [chargeback, "account locked"]}}

actions: {}                      # what labels.<label>.action names
  # open_refund:
  #   webhook: https://hooks.example.com/refunds   # POSTed once per decision (Idempotency-Key: <decision id>:<action>)
  #   on_review: skip            # decisions that went to human review: skip | hold (run once a reviewer approves)

# llm:                           # an LLM tier after the classifier, before human review
#   provider: local              # local (xllamacpp, offline) | llama-cpp | openai (any compatible endpoint) | anthropic | a plug-in
#   model: qwen2.5-coder-1.5b    # e.g. gpt-4o-mini, claude-3-5-haiku-latest, llama3.1 (Ollama)
#   base_url: null               # e.g. http://localhost:11434/v1 (Ollama), http://vllm:8000/v1
#   api_key_env: null            # default OPENAI_API_KEY / ANTHROPIC_API_KEY; keys are never logged
#   candidates_k: 5              # the LLM chooses among the classifier's top-5 labels
#   timeout_s: 30                # per attempt
#   deadline_s: 30               # the whole call, retries and waits included; then human review
#   retries: 2                   # timeouts, 429 and 5xx, jittered backoff, Retry-After honoured
#   max_concurrency: 4           # LLM calls in flight; max_waiting: 4 more queue, the rest → review ("LLM tier busy")
#   breaker_failures: 5          # or breaker_timeouts: 2 → skip the LLM for breaker_cooldown_s, then one trial call
#   cache_ttl_s: 3600
#   price_input_per_1m: 0.15     # USD per 1M tokens, for cost reporting
#   price_output_per_1m: 0.60
#   policy: auto                 # auto: the acceptance policy fitted for this LLM model (frontdesk llm fit), else the
#                                #   safe default; safe: the LLM never changes the classifier's label
#   injection_guard: review      # injection signals → human review (verify: the LLM's answer may stand, flagged; off)

store: sqlite:///frontdesk.db    # every decision, feedback and review item; or postgresql+psycopg://user@host/db
store_sync: normal               # SQLite: normal (kill -9 safe, not power-loss safe) | full (fsync per commit, slower)
store_busy_timeout_s: 10         # SQLite: a commit waits this long for another writer's lock, then 503 (retry)

server:
  host: 127.0.0.1
  port: 8080
  max_body_bytes: 1000000        # larger requests get 413
  max_batch: 256
  read_timeout_s: 30             # a body not received within this gets 408 (slow or lying clients)
  watch_config: true             # edit this file → thresholds/routes reload without a restart

drift:                           # rolling monitors on /metrics; alerts to the log (+ webhook_url)
  window: 500                    # decisions per rolling window
  unknown_rate_alert: 0.03       # alert when more than 3% are unknown / out of scope
  confidence_drop_alert: 0.05    # alert when mean tier-1 confidence falls this much below the baseline
  # accepted_accuracy_target: 0.97  # alert when the 95% upper bound of the accuracy measured from feedback and
  #                                 # reviews is below this (default: the model's `train --guarantee` target)
  # accepted_accuracy_min_labelled: 50   # labelled accepted decisions the alert needs (window: 1000)
  # webhook_url: https://hooks.example.com/frontdesk-alerts

# shared: redis://localhost:6379/0  # replicas (N × serve, consume workers) share dedup, the LLM cache,
                                 #   reloads (a version key) and the drift window; or a mapping: url, prefix,
                                 #   dedup, llm_cache, reload, drift, lease_s, wait_s, watch_interval_s

console:                         # the browser console at /ui: sign in with an API key
  enabled: true                  # admin keys work the review queue; route keys see, read-only
  session_ttl_s: 43200           # a sign-in lasts 12 hours
  undo_window_s: 10              # press u within this many seconds to undo a resolution
  page_size: 50

auth:                            # API keys; only their SHA-256 is stored here
  enabled: true                  # with no keys, every request gets 401 — create one first:
  keys: []                       #   frontdesk keys create --name ops --scope admin
  # - name: web-frontend         # and paste the entry it prints here, e.g.
  #   sha256: <64 hex chars printed by `frontdesk keys create`>
  #   scopes: [route]            # route: /v1/route*; admin: feedback, review queue, reload (and route)
  protect_metrics: false         # true: /metrics needs a key too
  protect_docs: false            # true: /docs and /openapi.json need a key too
"""
