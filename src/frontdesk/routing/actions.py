"""Actions: what happens automatically once a message is classified (classify → extract → **act**).

``labels.<label>.action`` names an action. An action is a **webhook** (``actions.<name>.webhook``,
POSTed through the webhook sink's retry machinery) or a **Python callable** registered in code with
:func:`register_action` or by an installed package under the ``frontdesk.actions`` entry-point group::

    [project.entry-points."frontdesk.actions"]
    open_refund = "acme_frontdesk:open_refund"      # def open_refund(call: ActionCall) -> JSON-able result

Rules (:meth:`ActionRunner.plan`):

* an action runs only for an accepted decision: for a decision that went to human review (tier
  ``human``) or was flagged, it is *skipped* — unless ``actions.<name>.on_review: hold``, which
  *holds* it until a reviewer approves;
* a decision with ``requires_human`` (very negative, a legal/abuse rule …) *holds* its action until a
  reviewer approves it through the review API (``POST /v1/review/{id}`` with ``"action": "approve"``) —
  also when it is flagged or went to review (the policy asked for a person, not for no action);
* a duplicate decision never runs its action again.

Every action is **idempotent by decision id**: its state lives in a ledger (the store's ``actions``
table, or :class:`MemoryLedger` without a store). Running it takes a claim (``pending → running``),
so a retried request, a second replica or a second call of :meth:`ActionRunner.run` finds it claimed
or done and does not fire it again; the webhook's ``Idempotency-Key`` is ``"<decision id>:<action>"``.
The result (or the error) is recorded on the ledger and shows up in ``Decision.actions``.

What an action gets (:class:`ActionCall`): the decision's id, labels, masked text, fields, urgency and
sentiment. A webhook always gets the masked view (PII as placeholders); a Python action runs in the
process and also gets the original values when ``extract.store_pii`` kept them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from frontdesk.errors import ConfigError, FrontdeskError
from frontdesk.plugins import ACTIONS_GROUP, PluginRegistry
from frontdesk.types import ActionResult, ActionStatus, Decision

log = logging.getLogger("frontdesk.actions")

ENTRY_POINT_GROUP = ACTIONS_GROUP
DEFAULT_LEASE_S = 300.0
"""A claim older than this is taken to belong to a crashed worker and may be taken again."""


class ActionCall(BaseModel):
    """What an action receives. ``id`` (``"<decision id>:<action>"``) is its idempotency key."""

    model_config = ConfigDict(extra="forbid")

    id: str
    action: str
    label: str | None
    decision_id: str
    labels: list[str]
    text: str = Field(description="the message as the tiers saw it (PII masked)")
    fields: dict[str, Any] = Field(default_factory=dict, description="extracted fields (PII masked for webhooks)")
    urgency: str | None = None
    sentiment: str | None = None
    requires_human: bool = False
    approved_by: str | None = Field(None, description="the reviewer who released a held action")
    pii: dict[str, str] | None = Field(None, description="placeholder → original; Python actions only, with store_pii")


ActionFunc = Callable[[ActionCall], Any]


class ActionSpec(BaseModel):
    """``actions.<name>`` in frontdesk.yaml: a webhook, or the settings of a registered Python action."""

    model_config = ConfigDict(extra="forbid")

    webhook: str | None = Field(None, description="POST the ActionCall as JSON here; None = a registered Python action")
    headers: dict[str, str] = Field(default_factory=dict, description="extra HTTP headers (e.g. Authorization)")
    timeout_s: float = Field(5.0, gt=0, description="per webhook attempt")
    retries: int = Field(3, ge=0, description="extra attempts on connection errors, timeouts, 429 and 5xx")
    backoff_s: float = Field(0.2, ge=0, description="first wait before a retry (doubles each time)")
    on_review: Literal["skip", "hold"] = Field(
        "skip", description="a decision that went to human review: skip the action, or hold it until a reviewer approves")

    @field_validator("webhook")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"webhook must be an http:// or https:// URL, got {value!r}")
        return value


# -- the registry -------------------------------------------------------------------------------
def _action_plugin(name: str, obj: Any) -> ActionFunc:
    if not callable(obj):
        raise TypeError(f"expected a callable, got {type(obj).__name__}")
    return obj


ACTIONS: PluginRegistry[ActionFunc] = PluginRegistry(
    "action", ENTRY_POINT_GROUP, field="actions", how="actions.NAME.webhook in frontdesk.yaml, register_action('NAME', func)",
    coerce=_action_plugin)
"""Python actions by name (:mod:`frontdesk.plugins`); webhooks are configured, not registered."""


def register_action(name: str, func: ActionFunc, *, replace: bool = False) -> ActionFunc:
    """Make ``func`` the Python action called ``name`` (``labels.<label>.action: name``); returns ``func``."""
    return ACTIONS.register(name, func, replace=replace)


def unregister_action(name: str) -> None:
    """Forget a Python action registered in code."""
    ACTIONS.unregister(name)


def action_names() -> list[str]:
    """Every registered Python action: in code and by entry points (not loaded)."""
    return ACTIONS.names()


def get_action(name: str) -> ActionFunc:
    """The Python action called ``name`` (an entry point is loaded on first use); else ConfigError."""
    return ACTIONS.get(name)


def check_action_names(named: Mapping[str, str], specs: Mapping[str, ActionSpec]) -> list[str]:
    """Problems with the action names ``named`` (``{"labels.x.action": name}``), one string each."""
    problems = []
    registered: set[str] | None = None
    for where, name in named.items():
        spec = specs.get(name)
        if spec is not None and spec.webhook:
            continue
        if registered is None:
            registered = set(action_names())
        if name not in registered:
            problems.append(f"{where}: unknown action {name!r}; define actions.{name}.webhook, or register a Python "
                            f"action under the {ENTRY_POINT_GROUP!r} entry points (known: "
                            f"{', '.join(sorted({*specs, *registered})) or 'none'})")
    return problems


# -- the ledger ---------------------------------------------------------------------------------
class ActionLedger(Protocol):
    """Where action state lives: the store (durable, shared by replicas) or memory (library use)."""

    def record_actions(self, decision_id: str, actions: Sequence[ActionResult]) -> None:
        """Insert actions not recorded yet (existing ones are left as they are)."""

    def claim_action(self, decision_id: str, name: str, *, lease_s: float) -> bool:
        """Atomically take a pending action (or one whose claim is older than ``lease_s``): True if taken."""

    def finish_action(self, decision_id: str, name: str, status: ActionStatus, *, result: Any = None,
                      error: str | None = None) -> None:
        """Record the outcome of a claimed action."""

    def actions_of(self, decision_id: str) -> list[ActionResult]:
        """The recorded actions of a decision (empty if none)."""

    def review_actions(self, decision_id: str, *, approve: bool, reviewer: str | None,
                       keep: Sequence[str], add: Sequence[ActionResult]) -> list[ActionResult]:
        """A reviewer's verdict: held actions named in ``keep`` become pending (approve) or rejected;
        other held ones are cancelled; ``add`` is recorded as new. Returns the actions afterwards."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class _Row:
    result: ActionResult
    claimed_at: datetime | None = None


class MemoryLedger:
    """An in-process ledger (library use without a store): idempotent within this process only."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], _Row] = {}
        self._lock = threading.Lock()

    def record_actions(self, decision_id: str, actions: Sequence[ActionResult]) -> None:
        with self._lock:
            for a in actions:
                self._rows.setdefault((decision_id, a.name), _Row(a.model_copy(update={"updated_at": _now()})))

    def claim_action(self, decision_id: str, name: str, *, lease_s: float) -> bool:
        with self._lock:
            row = self._rows.get((decision_id, name))
            if row is None:
                return False
            stale = row.claimed_at is not None and _now() - row.claimed_at > timedelta(seconds=lease_s)
            if row.result.status == "pending" or (row.result.status == "running" and stale):
                row.claimed_at = _now()
                row.result = row.result.model_copy(update={"status": "running", "attempts": row.result.attempts + 1,
                                                           "updated_at": row.claimed_at})
                return True
            return False

    def finish_action(self, decision_id: str, name: str, status: ActionStatus, *, result: Any = None,
                      error: str | None = None) -> None:
        with self._lock:
            row = self._rows[(decision_id, name)]
            row.result = row.result.model_copy(update={"status": status, "result": result, "error": error, "updated_at": _now()})

    def actions_of(self, decision_id: str) -> list[ActionResult]:
        with self._lock:
            return [row.result for (d, _), row in self._rows.items() if d == decision_id]

    def review_actions(self, decision_id: str, *, approve: bool, reviewer: str | None,
                       keep: Sequence[str], add: Sequence[ActionResult]) -> list[ActionResult]:
        with self._lock:
            for (d, name), row in self._rows.items():
                if d != decision_id or row.result.status != "held":
                    continue
                status, why = _verdict(name in keep, approve, reviewer)
                row.result = row.result.model_copy(update={"status": status, "reason": why, "updated_at": _now()})
            for a in add:
                self._rows.setdefault((decision_id, a.name), _Row(a.model_copy(update={"updated_at": _now()})))
        return self.actions_of(decision_id)


def _verdict(kept: bool, approve: bool, reviewer: str | None) -> tuple[ActionStatus, str]:
    who = reviewer or "a reviewer"
    if not kept:
        return "cancelled", f"{who} relabelled the message: this label's action no longer applies"
    return ("pending", f"approved by {who}") if approve else ("rejected", f"rejected by {who}")


# -- the runner ---------------------------------------------------------------------------------
class ActionError(FrontdeskError):
    """An action failed; the message says what to check. Recorded on the decision, never raised to a client."""


class ActionRunner:
    """Plans, runs and releases the actions of decisions for one configuration.

    ``label_actions``: label → action name (``labels.<label>.action``); ``specs``: ``actions:``.
    """

    def __init__(self, label_actions: Mapping[str, str], specs: Mapping[str, ActionSpec] | None = None, *,
                 lease_s: float = DEFAULT_LEASE_S, client_factory: Callable[[float], Any] | None = None) -> None:
        self.label_actions = dict(label_actions)
        self.specs = dict(specs or {})
        self.lease_s = lease_s
        self._client_factory = client_factory
        problems = check_action_names({f"labels.{k}.action": v for k, v in self.label_actions.items()}, self.specs)
        if problems:
            raise ConfigError("; ".join(problems))

    def __bool__(self) -> bool:
        return bool(self.label_actions)

    def spec(self, name: str) -> ActionSpec:
        """The settings of action ``name`` (defaults for a registered Python action without ``actions.<name>``)."""
        return self.specs.get(name) or ActionSpec()

    def _for_labels(self, labels: Sequence[str]) -> list[tuple[str, str]]:
        """(label, action) for each label with an action; one entry per action (the first label naming it)."""
        out: dict[str, str] = {}
        for label in labels:
            name = self.label_actions.get(label)
            if name is not None and name not in out:
                out[name] = label
        return [(label, name) for name, label in out.items()]

    def plan(self, decision: Decision, *, requires_human_reason: str | None = None) -> list[ActionResult]:
        """The actions of ``decision`` before anything runs: pending, held or skipped (with the reason)."""
        out = []
        for label, name in self._for_labels(decision.labels):
            spec = self.spec(name)
            status: ActionStatus
            if decision.duplicate_of:
                status, why = "skipped", f"duplicate of decision {decision.duplicate_of}: the action belongs to that one"
            elif decision.requires_human:  # the policy asked for a person first: held even when also flagged
                status, why = "held", f"requires a human ({requires_human_reason or 'policy'}): waits for a reviewer's approval"
            elif decision.tier == "human" or decision.flagged:
                where = "went to human review" if decision.tier == "human" else "was flagged for review"
                if spec.on_review == "hold":
                    status, why = "held", f"the decision {where}: waits for a reviewer's approval"
                else:
                    status, why = "skipped", (f"the decision {where}; set actions.{name}.on_review: hold to run it "
                                              "once a reviewer approves")
            else:
                status, why = "pending", ""
            out.append(ActionResult(name=name, label=label, status=status, reason=why))
        return out

    def run(self, decision: Decision, ledger: ActionLedger, *, approved_by: str | None = None) -> list[ActionResult]:
        """Run the pending actions of a committed decision, each at most once; returns their states."""
        if decision.actions:
            ledger.record_actions(decision.id, decision.actions)  # no-op when the store recorded them with the decision
        for action in ledger.actions_of(decision.id):
            if action.status not in ("pending", "running"):
                continue
            if not ledger.claim_action(decision.id, action.name, lease_s=self.lease_s):
                continue  # another worker has it, or it finished meanwhile
            try:
                result = self._execute(action, decision, approved_by=approved_by)
            except Exception as exc:  # noqa: BLE001 - an action failure is recorded, never raised to the client
                log.error("action %s of decision %s failed: %s", action.name, decision.id, exc)
                ledger.finish_action(decision.id, action.name, "failed", error=f"{type(exc).__name__}: {exc}"[:2000])
            else:
                ledger.finish_action(decision.id, action.name, "done", result=result)
        return ledger.actions_of(decision.id)

    def review(self, decision: Decision, ledger: ActionLedger, *, approve: bool, labels: Sequence[str],
               reviewer: str | None = None) -> list[ActionResult]:
        """A reviewer's verdict on a decision's held actions, for the labels the reviewer confirmed.

        Approve: held actions of the confirmed labels run now (with ``approved_by``); held actions of
        labels the reviewer removed are cancelled; a confirmed label's action that was never planned
        (the reviewer relabelled) is added and runs. Reject: held actions are rejected, none run.
        """
        if decision.actions:
            ledger.record_actions(decision.id, decision.actions)
        wanted = self._for_labels(labels)
        keep = [name for _, name in wanted]
        existing = {a.name for a in ledger.actions_of(decision.id)}
        add = [ActionResult(name=name, label=label, status="pending", reason=f"approved by {reviewer or 'a reviewer'}")
               for label, name in wanted if name not in existing] if approve else []
        ledger.review_actions(decision.id, approve=approve, reviewer=reviewer, keep=keep, add=add)
        if not approve:
            return ledger.actions_of(decision.id)
        return self.run(decision.model_copy(update={"actions": []}), ledger, approved_by=reviewer or "reviewer")

    def resume(self, store: Any, *, older_than_s: float | None = None) -> int:
        """Run the actions a crash left pending (committed decisions whose action never ran, or whose
        claim went stale); returns how many decisions were looked at. The service calls it at start."""
        ids = store.unfinished_actions(older_than_s=self.lease_s if older_than_s is None else older_than_s)
        for decision_id in ids:
            decision = store.get_decision(decision_id)
            if decision is not None:
                self.run(decision.model_copy(update={"actions": []}), store)
        return len(ids)

    # -- execution ----------------------------------------------------------------------------
    def _call(self, action: ActionResult, decision: Decision, *, approved_by: str | None, with_pii: bool) -> ActionCall:
        fields = decision.fields
        placeholders = None
        if with_pii and decision.pii is not None:
            fields = {**fields, **decision.pii.fields}
            placeholders = dict(decision.pii.placeholders)
        return ActionCall(
            id=f"{decision.id}:{action.name}", action=action.name, label=action.label, decision_id=decision.id,
            labels=list(decision.labels), text=decision.text, fields=dict(fields), urgency=decision.urgency,
            sentiment=decision.sentiment.label if decision.sentiment else None, requires_human=decision.requires_human,
            approved_by=approved_by, pii=placeholders,
        )

    def _execute(self, action: ActionResult, decision: Decision, *, approved_by: str | None) -> Any:
        spec = self.spec(action.name)
        if spec.webhook:
            return self._webhook(spec, self._call(action, decision, approved_by=approved_by, with_pii=False))
        func = get_action(action.name)
        return func(self._call(action, decision, approved_by=approved_by, with_pii=True))

    def _webhook(self, spec: ActionSpec, call: ActionCall) -> dict[str, Any]:
        """POST through :class:`~frontdesk.routing.sinks.WebhookSink` (same retries, backoff and
        Idempotency-Key as target delivery); the result is the receiver's answer."""
        import httpx

        from frontdesk.routing.sinks import WebhookSink

        last: dict[str, Any] = {}

        def keep(response: Any) -> None:
            response.read()
            last.update(status=response.status_code, body=response.text)

        client = (self._client_factory(spec.timeout_s) if self._client_factory is not None
                  else httpx.Client(timeout=spec.timeout_s, follow_redirects=False))
        client.event_hooks["response"] = [*client.event_hooks.get("response", []), keep]
        try:
            sink = WebhookSink(spec.webhook, timeout_s=spec.timeout_s, retries=spec.retries, backoff_s=spec.backoff_s,
                               headers=spec.headers, client=client)
            sink.deliver(call)  # type: ignore[arg-type]  # any model with ``id``: the body is its JSON, the key its id
        finally:
            client.close()
        body: Any = last.get("body", "")
        try:
            import json

            body = json.loads(body) if body else None
        except ValueError:
            body = body[:2000]
        return {"status": last.get("status"), "body": body}
