"""The Router: runs the cascade of tiers cheapest first, gates each answer, builds the Decision.

Flow for one message: validate the text → for each tier: score → gate (accept / flag / escalate)
→ the first tier whose gate accepts answers. When no tier is confident the message goes to the
human-review tier (``tier="human"``, best guess attached), or to the unknown label when
``settings.fallback == "unknown"``. A tier that raises is recorded in the trace as an error and the
message escalates: nothing is ever dropped.

Out of scope (:mod:`frontdesk.gating.oos`): a calibrated single-label tier trained with a detector
also scores how unlike every known label the message is, before its gate. "Unsure between known
labels" is the gate's business (escalate); "none of the known labels" is the detector's: a tier with
a later detector tier passes the message on (``possibly out of scope``, the later tier's detector also
sees this tier's columns); the last one decides — the unknown label (``unknown_label``: given, or the
data's own ``oos`` class) or, without one, human review with the best guess and reason ``out of scope``.

An LLM tier's answer is not gated on the LLM's own confidence. Each message keeps the ranked output
of every calibrated tier that scored it (its *evidence*); the LLM's answer passes the injection rule
(:mod:`frontdesk.llm.injection`) and then the acceptance policy (:mod:`frontdesk.llm.acceptance`),
which weighs it against that evidence: fitted on validation (``llm_policy.json``, reused by
:meth:`Router.with_llm` when it was fitted for the same LLM model), or the safe default.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from frontdesk import __version__
from frontdesk.data.dataset import Dataset
from frontdesk.errors import ConfigError, FrontdeskError, InputError, ModelError, TierError, validation_message
from frontdesk.gating.gate import GatePolicy, GateResult, Objective, OperatingCurve, fit_gate
from frontdesk.gating.oos import (
    OOS_LABELS, OOSDetector, OOSOptions, RowGroup, label_folds, oos_reason, possibly_oos_reason, ranked_columns,
)
from frontdesk.gating.guarantee import CertifiedThreshold
from frontdesk.llm.acceptance import POLICY_FILE, AcceptancePolicy, Evidence, Observation, Outcome, safe_outcome
from frontdesk.llm.retrieval import INDEX_DIR, ExampleIndex
from frontdesk.tiers.base import ROLE_ORDER, Progress, Tier, TierContext, load_tier, save_tier, tier_class
from frontdesk.types import Decision, LabelScore, Message, TierResult, TierTrace

MODEL_FORMAT = "frontdesk-model"
MODEL_FORMAT_VERSION = 1
MANIFEST = "frontdesk.json"
OOS_DIR = "oos"
"""Sub-directory of a model with the out-of-scope detectors (``<tier>/detector.json`` + ``<tier>/reference.npy``)."""

log = logging.getLogger("frontdesk.router")


class RouterSettings(BaseModel):
    """Router-wide behaviour (saved with the model; overridable at load time)."""

    model_config = ConfigDict(extra="forbid")

    max_chars: int = Field(10_000, ge=1, description="longer texts are truncated and the decision says so")
    trace_top_k: int = Field(5, ge=1, description="scores kept per tier in the trace")
    candidates_k: int = Field(5, ge=1, description="labels a tier hands to the next (LLM namespace narrowing)")
    fallback: Literal["human", "unknown"] = Field("human", description="where a message goes when no tier is confident")
    unknown_label: str | None = Field(
        None, description="the label of messages that fit none of the known labels (the out-of-scope verdict, and "
                          "fallback 'unknown'), e.g. 'oos'; None: the data's own unknown class (oos, out_of_scope, unknown) "
                          "when it has one — otherwise out-of-scope messages go to human review")


class _Pending:
    """Per-message state while it walks the cascade."""

    __slots__ = ("text", "message", "truncated", "trace", "best", "candidates", "started", "cost", "evidence", "scan",
                 "observation", "held", "columns", "oos_flag")

    def __init__(self, text: str, message: Message | None, truncated: bool, started: float) -> None:
        self.text, self.message, self.truncated, self.started = text, message, truncated, started
        self.trace: list[TierTrace] = []
        self.best: tuple[list[str], float, str] | None = None
        self.candidates: list[str] | None = None
        self.cost = 0.0
        #: the ranked output of every calibrated tier that scored the message, in cascade order
        self.evidence: list[Evidence] = []
        #: the injection scan (llm.injection.Scan), computed once, only when an LLM tier guards the cascade
        self.scan: Any = None
        #: what the LLM tier's acceptance policy saw (None: the LLM did not answer)
        self.observation: Observation | None = None
        #: the injection rule sent the message to human review (whatever ``settings.fallback`` says)
        self.held = False
        #: out-of-scope columns of every tier with a detector that scored the message ("<tier>.<column>")
        self.columns: dict[str, float] = {}
        #: (tier, score, threshold) while a tier's "possibly out of scope" waits for a later detector's verdict
        self.oos_flag: tuple[str, float, float] | None = None


class Router:
    """An ordered cascade of tiers with one gate per tier. Train it, route with it, save/load it."""

    def __init__(
        self,
        tiers: Sequence[Tier],
        gates: Mapping[str, GatePolicy] | None = None,
        settings: RouterSettings | None = None,
        *,
        curves: Mapping[str, OperatingCurve] | None = None,
        descriptions: Mapping[str, str] | None = None,
        examples: Mapping[str, Sequence[str]] | None = None,
        meta: Mapping[str, Any] | None = None,
        detectors: Mapping[str, OOSDetector] | None = None,
        llm_policy: AcceptancePolicy | None = None,
        example_index: ExampleIndex | None = None,
    ) -> None:
        if not tiers:
            raise ConfigError("a router needs at least one tier", field="tiers")
        names = [t.name for t in tiers]
        if len(set(names)) != len(names):
            raise ConfigError(f"tier names must be unique, got {names}", field="tiers")
        self.tiers = list(tiers)
        self._position = {t.name: i for i, t in enumerate(self.tiers)}
        self.settings = settings or RouterSettings()
        self.detectors: dict[str, OOSDetector] = {}
        for name, det in (detectors or {}).items():
            self.tier(name)  # a detector belongs to a tier of this cascade
            self.detectors[name] = det
        self.gates: dict[str, GatePolicy] = {}
        for name, policy in (gates or {}).items():
            self.set_gate(name, policy)
        self.curves = dict(curves or {})
        self.descriptions = dict(descriptions or {})
        self.examples = {k: list(v) for k, v in (examples or {}).items()}
        self.meta = dict(meta or {})
        self.example_index = example_index
        self.llm_policy = llm_policy
        for t in self.tiers:
            if "examples" in t.needs and example_index is not None:
                t.use_example_index(example_index)
        self._llm = _llm_tier(self.tiers)
        self._evidence_tiers = [t.name for t in self.tiers[: self._position[self._llm.name]] if t.calibrated] if self._llm else []
        self._active_policy, self.llm_policy_note = self._resolve_policy()

    @property
    def labels(self) -> tuple[str, ...]:
        """The label set of the primary tier (every tier of a cascade shares it)."""
        return self.primary.labels_

    @property
    def known_labels(self) -> tuple[str, ...]:
        """Every label some tier can answer: the model's, then those only a guardrail adds (e.g. a rule's ``legal``)."""
        return tuple(dict.fromkeys(label for t in (self.primary, *self.tiers) for label in t.labels_))

    @property
    def primary(self) -> Tier:
        """The first calibrated model tier (guardrails before it only pre-route); else the first model tier."""
        models = [t for t in self.tiers if t.role == "model"]
        return next((t for t in models if t.calibrated), models[0] if models else self.tiers[0])

    @property
    def unknown_label(self) -> str | None:
        """Where out-of-scope messages go: ``settings.unknown_label``, else the data's own unknown class
        (``oos``, ``out_of_scope``, ``unknown``) when the labels have one, else None (human review)."""
        if self.settings.unknown_label:
            return self.settings.unknown_label
        return next((label for label in OOS_LABELS if label in self.labels), None)

    def oos_detector(self, tier_name: str) -> OOSDetector | None:
        """The out-of-scope detector in force for a tier: None when it has none or its gate turns it off."""
        det = self.detectors.get(tier_name)
        gate = self.gates.get(tier_name)
        if det is None or (gate is not None and (not gate.oos_detection or gate.multi_label)):
            return None
        return det

    def oos_threshold(self, tier_name: str) -> float:
        """The out-of-scope threshold in force for a tier with a detector (the gate's override, else the fitted one)."""
        gate = self.gates.get(tier_name)
        if gate is not None and gate.oos_threshold is not None:
            return gate.oos_threshold
        return self.detectors[tier_name].threshold_

    def next_oos_tier(self, tier_name: str) -> str | None:
        """The first tier after ``tier_name`` whose detector is in force: where a possibly out-of-scope message
        goes; None when ``tier_name``'s out-of-scope verdict is final."""
        after = self.tiers[self._position[tier_name] + 1 :]
        return next((t.name for t in after if self.oos_detector(t.name) is not None), None)

    def tier(self, name: str) -> Tier:
        """The tier called ``name``."""
        for t in self.tiers:
            if t.name == name:
                return t
        raise ConfigError(f"no tier named {name!r}; tiers: {', '.join(t.name for t in self.tiers)}", field="tiers")

    def set_gate(self, tier_name: str, policy: GatePolicy | Mapping[str, Any]) -> None:
        """Replace one tier's gate (e.g. after ops tune thresholds); validated against the labels."""
        tier = self.tier(tier_name)
        if not isinstance(policy, GatePolicy):
            try:
                policy = GatePolicy(**policy)
            except ValidationError as exc:
                raise ConfigError(validation_message(exc), field=f"gates.{tier_name}") from exc
        if tier.labels_:
            policy.check_labels(tier.labels_)
        if policy.oos_threshold is not None and tier_name not in self.detectors:
            raise ConfigError(f"tier '{tier_name}' has no out-of-scope detector to set a threshold for"
                              + (f" (detectors: {', '.join(self.detectors)})" if self.detectors else
                                 ": the model was trained without one; retrain with out-of-scope detection on (the default)"),
                              field=f"gates.{tier_name}.oos_threshold")
        self.gates[tier_name] = policy
        self._warn_if_uncertified(tier_name)

    # -- training -------------------------------------------------------------------------
    @classmethod
    def train(
        cls,
        data: Dataset | str | Path,
        tiers: Sequence[str] = ("linear",),
        *,
        objective: Objective | None = None,
        settings: RouterSettings | None = None,
        tier_params: Mapping[str, Mapping[str, Any]] | None = None,
        progress: Progress | None = None,
        oos: OOSOptions | None = None,
        fitted: Mapping[str, Tier] | None = None,
    ) -> Router:
        """Fit each tier on train, calibrate it and fit its gate on validation, cheapest tier first.

        ``oos`` (default: on) also fits an out-of-scope detector for every calibrated single-label tier on
        validation; the unknown class (``settings.unknown_label``, else a label of ``OOS_LABELS`` in the
        data) gives its out-of-scope examples, when the data has any. ``fitted`` maps tier kinds to tiers
        already trained on this dataset's train split (e.g. a fine-tuned encoder from an earlier run): they
        are used as they are, only their gates and detectors are fitted.
        """
        dataset = data if isinstance(data, Dataset) else Dataset.load(data)
        if not dataset.validation:
            raise ConfigError(
                "the dataset has no validation split: calibration and thresholds are fitted on it "
                "(add validation.jsonl, or pass a single file so frontdesk splits it)",
                field="data",
            )
        settings = settings or RouterSettings()
        objective = objective or Objective()
        oos = oos or OOSOptions()
        built: list[Tier] = []
        gates: dict[str, GatePolicy] = {}
        curves: dict[str, OperatingCurve] = {}
        infos: dict[str, Any] = {}
        val_texts = [ex.text for ex in dataset.validation]
        val_targets = [ex.labels for ex in dataset.validation]
        primary_done = False
        stack = _OOSStack(dataset, settings, oos)
        # Three passes: fit every tier (and its validation scores), then the gates cheapest tier first — a gate
        # sees the next local model's validation answers, so it hands over what that tier judges better
        # (Objective.defer) — then each tier's out-of-scope detector on the messages its gates let through.
        scored: dict[str, tuple[np.ndarray, dict[str, np.ndarray] | None]] = {}
        for kind in tiers:
            if fitted is not None and kind in fitted:
                tier = fitted[kind]
            else:
                params = (tier_params or {}).get(kind)
                tier = tier_class(kind)(kind, params) if params is not None else tier_class(kind)(kind)
                tier.fit(dataset, progress)
            if tier.calibrated:
                if stack.enabled:
                    tier.fit_oos(dataset, stack.unknown, progress)
                    scored[tier.name] = tier.predict_with_oos(val_texts)
                else:
                    scored[tier.name] = (tier.predict_proba(val_texts), None)
            built.append(tier)
        for i, tier in enumerate(built):
            gates[tier.name] = tier.default_gate()
            if tier.name in scored:
                probs, columns = scored[tier.name]
                after = built[i + 1] if i + 1 < len(built) and built[i + 1].name in scored else None
                defer = after is not None and _may_defer(tier, after, dataset)
                gates[tier.name], curves[tier.name] = fit_gate(
                    probs, val_targets, tier.labels_, _tier_objective(objective, primary_done),
                    multi_label=dataset.multi_label, top_k=getattr(getattr(tier, "params", None), "top_k", None),
                    next_correct=_top_label_right(after, scored[after.name][0], dataset) if defer and after is not None else None,
                    next_tier=f"the {after.name} tier" if after is not None else "the next tier",
                )
                primary_done = True
                stack.add(tier, gates[tier.name], probs, columns, progress)
            infos[tier.name] = tier.info()
            if tier.name in stack.detectors:
                infos[tier.name]["oos"] = stack.detectors[tier.name].info_
        meta = {
            "dataset": dataset.name,
            "sizes": {"train": len(dataset.train), "validation": len(dataset.validation), "test": len(dataset.test)},
            "objective": objective.model_dump(),
            "oos": {**oos.model_dump(), "unknown_label": stack.unknown},
            "tiers": infos,
            "trained_at": datetime.now(timezone.utc).isoformat(),
        }
        index = ExampleIndex.build((ex.text, ex.labels) for ex in dataset.train)
        return cls(built, gates, settings, curves=curves, descriptions=dataset.descriptions, examples=dataset.label_examples(3),
                   meta=meta, example_index=index, detectors=stack.detectors)

    def with_tier(self, tier: Tier, *, gate: GatePolicy | Mapping[str, Any] | None = None, data: Dataset | None = None) -> Router:
        """A copy of this router with ``tier`` added where its role puts it: after the tiers of the same or an
        earlier role (guardrail → model → llm → human), before the rest. A tier of the same name, or a second
        ``llm`` tier, is replaced.

        The tier joins the model (:meth:`Tier.attach`): it gets the label set, descriptions, examples and
        example index. With ``data`` an unfitted tier is trained on ``data.train`` first, and a calibrated
        tier's gate is fitted on ``data.validation`` with the model's objective; else the gate is ``gate``,
        the LLM tier's acceptance policy gate, or the tier's default gate.
        """
        if data is not None and not tier.fitted:
            tier.fit(data)
        if tuple(tier.labels_) not in ((), tuple(self.labels)) and tier.role == "model":
            raise ConfigError(f"tier {tier.name!r} was trained on other labels than the model ({len(tier.labels_)} vs "
                              f"{len(self.labels)}): train it on the model's data", field="tiers")
        if not tier.fitted or tier.needs:
            tier.attach(self.context)
        if "descriptions" in tier.needs and (missing := [lab for lab in self.labels if not self.descriptions.get(lab)]):
            log.warning("tier %s reads label descriptions, but %d of %d labels have none (labels.yaml, or labels.<label>."
                        "description in frontdesk.yaml): it sees their bare names", tier.name, len(missing), len(self.labels))
        replaced = {t.name for t in self.tiers if t.name == tier.name or (tier.role == "llm" and t is self._llm)}
        kept = [t for t in self.tiers if t.name not in replaced]
        rank = ROLE_ORDER[tier.role]
        at = next((i for i, t in enumerate(kept) if ROLE_ORDER.get(t.role, 1) > rank), len(kept))
        out = self._copy([*kept[:at], tier, *kept[at:]],  # a replaced tier's out-of-scope detector does not fit the new one
                         detectors={n: d for n, d in self.detectors.items() if n not in replaced})
        if gate is None and data is not None and tier.calibrated:
            objective = Objective(**self.meta["objective"]) if isinstance(self.meta.get("objective"), dict) else Objective()
            probs = tier.predict_proba([ex.text for ex in data.validation])
            gate, out.curves[tier.name] = fit_gate(
                probs, [ex.labels for ex in data.validation], tier.labels_, _tier_objective(objective, primary_done=True),
                multi_label=data.multi_label, top_k=getattr(getattr(tier, "params", None), "top_k", None))
            out._defer_to(tier, probs, data, objective)
        if gate is not None:
            out.set_gate(tier.name, gate)
        elif tier is out._llm and out._active_policy is not None:
            out.gates[tier.name] = out._active_policy.gate
        else:
            out.gates[tier.name] = tier.default_gate()
        return out

    def refit_oos(self, data: Dataset | str | Path, oos: OOSOptions | None = None, *, progress: Progress | None = None) -> Router:
        """Fit the out-of-scope detectors (and the columns' support, e.g. centroids) again on ``data``, the tiers and
        gates as they are: after ``frontdesk export`` (INT8 moves the encoder's embeddings a little), or to try
        another budget without retraining. ``oos``: the options (default: those the model was trained with)."""
        dataset = data if isinstance(data, Dataset) else Dataset.load(data)
        if not dataset.validation:
            raise ConfigError("refitting the out-of-scope detectors needs the validation split of the training data", field="data")
        if oos is None:
            saved = self.meta.get("oos") if isinstance(self.meta.get("oos"), dict) else {}
            oos = OOSOptions(**{k: v for k, v in saved.items() if k in OOSOptions.model_fields})
        stack = _OOSStack(dataset, self.settings, oos)
        texts = [ex.text for ex in dataset.validation]
        for tier in self.tiers:
            if not tier.calibrated:
                continue
            if stack.enabled:
                tier.fit_oos(dataset, stack.unknown, progress)
                probs, columns = tier.predict_with_oos(texts)
            else:
                probs, columns = tier.predict_proba(texts), None
            stack.add(tier, self.gates.get(tier.name) or tier.default_gate(), probs, columns, progress)
            if isinstance(self.meta.get("tiers", {}).get(tier.name), dict) and tier.name in stack.detectors:
                self.meta["tiers"][tier.name]["oos"] = stack.detectors[tier.name].info_
        self.detectors = stack.detectors
        self.meta["oos"] = {**oos.model_dump(), "unknown_label": stack.unknown}
        return self

    def with_llm(self, params: Mapping[str, Any] | Any = None, *, provider: Any = None, name: str = "llm") -> Router:
        """A copy of this router with an LLM tier (:meth:`with_tier`: after the model tiers, before human review).

        The LLM sees the labels' descriptions and the training examples nearest to each message (the
        model's example index). Used by ``--llm`` and the ``llm:`` config section. A model that
        already has an LLM tier keeps its settings except those given in ``params`` (``--llm-base-url``
        alone points it at another endpoint), and its fitted acceptance policy stays in force as long
        as the LLM model name is the same; otherwise the tier runs with the safe default.
        """
        from frontdesk.tiers.llm import LLMTier

        merged = _merged_llm_params(getattr(self._llm, "params", None), params)
        return self.with_tier(LLMTier(name, merged, provider=provider))

    def _defer_to(self, tier: Tier, probs: np.ndarray, data: Dataset, objective: Objective) -> None:
        """A model tier just joined with validation data: refit the gate of the calibrated tier right before it, so
        that gate hands it what it judges better (``Objective.defer``; what ``train`` does for a whole cascade)."""
        at = self.tiers.index(tier)
        before = self.tiers[at - 1] if at > 0 else None
        if (before is None or not objective.defer or not before.calibrated or not _may_defer(before, tier, data)
                or (objective.guarantee is not None and before is self.primary)):
            return
        keep = self.gates[before.name]
        gate, curve = fit_gate(before.predict_proba([ex.text for ex in data.validation]), [ex.labels for ex in data.validation],
                               before.labels_, _tier_objective(objective, before is not self.primary),
                               next_correct=_top_label_right(tier, probs, data), next_tier=f"the {tier.name} tier")
        self.gates[before.name] = gate.model_copy(update={"oos_detection": keep.oos_detection, "oos_threshold": keep.oos_threshold})
        self.curves[before.name] = curve

    def without(self, role: str) -> Router:
        """A copy of this router without its tiers of ``role`` (e.g. ``"llm"``: the classifier alone)."""
        return self._copy([t for t in self.tiers if t.role != role])

    def without_llm(self) -> Router:
        """A copy of this router without its LLM tier (the classifier alone)."""
        return self.without("llm")

    @property
    def context(self) -> TierContext:
        """What a tier joining this model gets (:meth:`Tier.attach`)."""
        return TierContext(self.labels, self.descriptions, self.examples, self.example_index,
                           multi_label=any(g.multi_label for g in self.gates.values()))

    def _copy(self, tiers: Sequence[Tier], **changes: Any) -> Router:
        """A router with ``tiers`` and this one's gates (of those tiers), settings, curves, labels' context and
        policy; ``changes`` override constructor arguments."""
        names = {t.name for t in tiers}
        kwargs: dict[str, Any] = {
            "gates": {n: g for n, g in self.gates.items() if n in names}, "settings": self.settings, "curves": self.curves,
            "descriptions": self.descriptions, "examples": self.examples, "meta": self.meta, "llm_policy": self.llm_policy,
            "example_index": self.example_index, "detectors": {n: d for n, d in self.detectors.items() if n in names},
            **changes}
        return Router(tiers, **kwargs)

    @property
    def llm_tier(self) -> Tier | None:
        """The LLM tier, if the cascade has one."""
        return self._llm

    @property
    def active_llm_policy(self) -> AcceptancePolicy | None:
        """The acceptance policy the LLM tier runs with (None: the safe default; ``llm_policy_note`` says why)."""
        return self._active_policy

    def set_llm_policy(self, policy: AcceptancePolicy | None) -> None:
        """Install a fitted acceptance policy (and its gate) for the LLM tier; None removes it."""
        self.llm_policy = policy
        self._active_policy, self.llm_policy_note = self._resolve_policy()
        if self._llm is not None:
            self.gates[self._llm.name] = self._active_policy.gate if self._active_policy is not None else self._llm.default_gate()

    def _resolve_policy(self) -> tuple[AcceptancePolicy | None, str]:
        """The policy in force for the LLM tier, and a sentence saying which and why."""
        if self._llm is None:
            return None, "no LLM tier"
        params = self._llm.params  # type: ignore[attr-defined]
        if params.policy == "safe":
            return None, "safe default (llm.policy: safe): the LLM never changes the classifier's label"
        if self.llm_policy is None:
            return None, "safe default (no acceptance policy fitted: frontdesk llm fit): the LLM never changes the classifier's label"
        why = self.llm_policy.mismatch(self.labels, self._evidence_tiers, params.model_name)
        if why is not None:
            return None, f"safe default: the saved acceptance policy does not apply ({why}); refit it with frontdesk llm fit"
        return self.llm_policy, f"fitted acceptance policy ({self.llm_policy.llm_model}, {self.llm_policy.fitted_at})"

    # -- the certified gate (Objective.guarantee) ------------------------------------------------
    @property
    def guarantee(self) -> CertifiedThreshold | None:
        """The certificate of the primary tier's gate, None when no guarantee was asked for at training.

        Only the primary tier is certified: later tiers see only what earlier gates escalated, a
        set chosen on the same validation data, so their gates keep the plain objective.
        ``certified`` is False when training kept an uncertified plain fit (``on_uncertified="plain"``).
        """
        curve = getattr(self, "curves", {}).get(self.primary.name)
        return curve.guarantee if curve is not None else None

    def guarantee_gap(self) -> str:
        """Why the running primary gate is not the certified one ("" when it is, or there is no guarantee).

        A gate changed after training (``gates:`` in frontdesk.yaml, :meth:`set_gate`) is not covered:
        the certificate was computed for one threshold and margin rule.
        """
        cert = self.guarantee
        gate = self.gates.get(self.primary.name)
        if cert is None or gate is None:
            return ""
        if not cert.certified:
            return f"NOT CERTIFIED at training ({cert.reason}); the plain fit is in use"
        problems = []
        if abs(gate.threshold - (cert.threshold or 0.0)) > 1e-9:
            problems.append(f"threshold {gate.threshold:.4f} instead of the certified {cert.threshold:.4f}")
        if abs(gate.min_margin - cert.min_margin) > 1e-9:
            problems.append(f"margin {gate.min_margin:.2f} instead of {cert.min_margin:.2f}")
        if gate.label_thresholds:
            problems.append(f"{len(gate.label_thresholds)} per-label thresholds")
        if not problems:
            return ""
        return (f"the gate of tier '{self.primary.name}' was changed after training ({', '.join(problems)}): the "
                "guarantee does not cover it; retrain with --guarantee or restore the certified gate")

    def _warn_if_uncertified(self, tier_name: str) -> None:
        if tier_name == self.primary.name and (gap := self.guarantee_gap()) and self.guarantee and self.guarantee.certified:
            log.warning("%s", gap)

    # -- routing --------------------------------------------------------------------------
    def route(self, message: str | bytes | Message) -> Decision:
        """Route one message through the cascade and return its Decision."""
        return self._run([self._prepare(message)])[0]

    def route_batch(self, messages: Iterable[str | bytes | Message]) -> list[Decision]:
        """Route many messages; each tier scores its whole share in one batch."""
        items = [self._prepare(m) for m in messages]
        return self._run(items) if items else []

    def _prepare(self, message: str | bytes | Message) -> _Pending:
        started = time.perf_counter()
        text, msg = coerce_message(message)
        truncated = len(text) > self.settings.max_chars
        if truncated:
            text = text[: self.settings.max_chars]
        return _Pending(text, msg, truncated, started)

    def _run(self, items: list[_Pending]) -> list[Decision | None]:
        out: list[Decision | None] = [None] * len(items)
        pending = list(range(len(items)))
        k_cand = self.settings.candidates_k
        for tier in self.tiers:
            if not pending:
                break
            gate = self.gates.get(tier.name) or tier.default_gate()
            det = self.oos_detector(tier.name)
            oos_t = self.oos_threshold(tier.name) if det is not None else None
            oos_next = self.next_oos_tier(tier.name) if det is not None else None
            if tier is self._llm and self._guarded:
                pending, asked = self._hold_suspects(tier, items, pending)
            else:
                asked = pending
                pending = []
            cands = [items[i].candidates for i in asked] if "candidates" in tier.needs else [None] * len(asked)
            results = _score_many(tier, [items[i].text for i in asked], cands)
            for i, res in zip(asked, results):
                item = items[i]
                if isinstance(res, BaseException):
                    reason = res.reason if isinstance(res, TierError) else f"{type(res).__name__}: {res}"
                    spent = res.latency_ms if isinstance(res, TierError) else 0.0
                    item.trace.append(TierTrace(tier=tier.name, kind=tier.kind, role=tier.role, verdict="error", reason=reason,
                                                latency_ms=spent))
                    pending.append(i)
                    continue
                item.cost += res.cost_usd
                oos_score = None
                if tier is self._llm and item.evidence:
                    g, best_source, outcome = self._accept_llm(tier, item, res, gate)
                else:
                    g, best_source, outcome = gate.judge(res.ranked), tier.name, None
                    if det is not None and oos_t is not None:
                        oos_score, g = self._judge_oos(item, tier.name, det, oos_t, oos_next, res, g)
                    if tier.calibrated:
                        item.evidence.append(Evidence(tier.name, tuple(res.ranked)))
                        g = self._prescan(tier, item, g)
                self._trace(item, tier, res, g, outcome, oos_score, oos_t)
                if g.labels:
                    item.best = (g.labels, g.confidence, best_source)
                    if tier is not self._llm:
                        item.candidates = [lab for lab, _ in res.ranked[:k_cand]]
                if g.verdict == "unknown":
                    assert oos_score is not None and oos_t is not None
                    out[i] = self._unknown(item, tier.name, oos_score, oos_t)
                elif g.verdict in ("accept", "flag"):
                    out[i] = self._decide(item, g.labels, g.confidence, tier.name, flagged=g.verdict == "flag", reason=g.reason)
                else:
                    pending.append(i)
            pending.sort()
        for i in pending:
            out[i] = self._fallback(items[i])
        return out

    def _judge_oos(self, item: _Pending, tier: str, det: OOSDetector, threshold: float, next_tier: str | None,
                   res: TierResult, g: GateResult) -> tuple[float, GateResult]:
        """Score the message's out-of-scope columns (this tier's and earlier detector tiers') and turn the gate's
        verdict into escalate (possibly out of scope, a later detector tier judges it) or unknown (this tier's
        verdict is final) when the score reaches ``threshold``."""
        for key, value in (res.oos if res.oos is not None else ranked_columns(res.ranked)).items():
            item.columns[f"{tier}.{key}"] = value
        score = det.score_one(item.columns)
        if score < threshold:
            item.oos_flag = None  # a later tier's detector overrules an earlier "possibly out of scope"
            return score, g
        if next_tier is not None:
            item.oos_flag = (tier, score, threshold)
            return score, g._replace(verdict="escalate", reason=possibly_oos_reason(score, threshold, next_tier))
        return score, g._replace(verdict="unknown", reason=oos_reason(score, threshold))

    def _unknown(self, item: _Pending, tier: str, score: float, threshold: float) -> Decision:
        """The out-of-scope verdict: the unknown label when there is one, else human review with the best guess."""
        why = f"{tier}: {oos_reason(score, threshold)}"
        label = self.unknown_label
        if label is not None:
            return self._decide(item, [label], score, tier, flagged=False, reason=f"{why} → '{label}'")
        labels, conf, source = item.best or ([], 0.0, "none")
        guess = f"best guess {labels} ({conf:.2f} from {source})" if labels else "no tier produced a guess"
        reason = f"{why} → human review, {guess}"
        item.trace.append(TierTrace(tier="human", kind="human", role="human", verdict="review", labels=labels, confidence=conf,
                                    reason=reason))
        return self._decide(item, labels, conf, "human", flagged=True, reason=reason)

    def _trace(self, item: _Pending, tier: Tier, res: TierResult, g: GateResult, outcome: str | None,
               oos_score: float | None = None, oos_threshold: float | None = None) -> None:
        item.trace.append(TierTrace(
            tier=tier.name, kind=tier.kind, role=tier.role, verdict=g.verdict, labels=g.labels, confidence=g.confidence,
            margin=g.margin, top=[LabelScore(label=lab, score=s) for lab, s in res.ranked[: self.settings.trace_top_k]],
            reason=g.reason, latency_ms=res.latency_ms, cost_usd=res.cost_usd, tokens=res.tokens,
            rationale=res.rationale, outcome=outcome, fields=res.info.get("fields"), field_notes=res.info.get("field_notes"),
            oos_score=oos_score, oos_threshold=oos_threshold,
        ))

    # -- the LLM tier: injection rule first, then the acceptance policy -----------------------------
    @property
    def _guarded(self) -> bool:
        """Whether an LLM tier with an injection guard is in the cascade."""
        return self._llm is not None and self._llm.params.injection_guard != "off"  # type: ignore[attr-defined]

    def _scan(self, item: _Pending) -> Any:
        if item.scan is None:
            from frontdesk.llm.injection import scan

            item.scan = scan(item.text, self.labels)
        return item.scan

    def _prescan(self, tier: Tier, item: _Pending, g: GateResult) -> GateResult:
        """With injection signals, a tier before the LLM may not accept either: the injection rule decides."""
        llm = self._llm
        if (not self._guarded or g.verdict not in ("accept", "flag") or not llm.params.injection_prescan  # type: ignore[union-attr]
                or self._position[tier.name] > self._position[llm.name]):  # type: ignore[union-attr]
            return g
        s = self._scan(item)
        if not s.signals:
            return g
        from frontdesk.llm.injection import INJECTION_REASON, describe_signals

        return GateResult("escalate", g.labels, g.confidence, g.margin,
                          f"{g.reason}, but {INJECTION_REASON}: {describe_signals(s.signals)} → the injection rule decides")

    def _clean_evidence(self, item: _Pending) -> list[tuple[str, float]]:
        """The last calibrated tier's ranking of the message without the parts the injection scan flagged."""
        clean = self._scan(item).clean_text
        if not item.evidence or not clean.strip():
            return []
        return list(self.tier(item.evidence[-1].tier).score(clean).ranked)

    def _hold_suspects(self, tier: Tier, items: list[_Pending], pending: list[int]) -> tuple[list[int], list[int]]:
        """In ``review`` mode, messages with injection signals go to human review without an LLM call.

        Returns (held, to ask the LLM). A held message's best guess is what the earlier tier says
        about the message without the flagged parts (the attacker controls the rest).
        """
        if tier.params.injection_guard != "review":  # type: ignore[attr-defined]
            return [], pending
        from frontdesk.llm.injection import review_reason

        held, asked = [], []
        for i in pending:
            item = items[i]
            s = self._scan(item)
            if not s.signals:
                asked.append(i)
                continue
            ranked = self._clean_evidence(item)
            supported = ranked[0] if ranked else None
            if supported is not None:
                item.best = ([supported[0]], supported[1], item.evidence[-1].tier)
            labels, conf = (item.best[0], item.best[1]) if item.best else ([], 0.0)
            item.held = True
            item.trace.append(TierTrace(tier=tier.name, kind=tier.kind, role=tier.role, verdict="escalate", labels=labels, confidence=conf,
                                        reason=review_reason(s.signals, supported), outcome="injection"))
            held.append(i)
        return held, asked

    def _accept_llm(self, tier: Tier, item: _Pending, res: TierResult, gate: GatePolicy) -> tuple[GateResult, str, str]:
        """The LLM's answer through the injection rule, then the acceptance policy: (gate result, best-guess source, outcome)."""
        params = tier.params  # type: ignore[attr-defined]
        answer = tuple(lab for lab, _ in res.ranked)
        guess_source = item.best[2] if item.best else item.evidence[-1].tier
        obs = Observation(tuple(item.evidence), tuple(item.best[0]) if item.best else (), answer,
                          float(res.ranked[0][1]) if res.ranked else 0.0)
        item.observation = obs
        if self._guarded and answer:
            from frontdesk.llm.injection import judge_llm_answer

            s = self._scan(item)
            ranked = self._clean_evidence(item) if s.signals else list(item.evidence[-1].ranked)
            j = judge_llm_answer(answer, ranked, s.signals, on_signals=params.injection_guard,
                                 echoed=s.echoed if params.label_echo else ())
            if j.verdict == "review":
                item.held = True
                if j.supported is not None:
                    return GateResult("escalate", [j.supported], dict(ranked).get(j.supported, 0.0), None, j.reason), \
                        item.evidence[-1].tier, "injection"
                labels, conf = (item.best[0], item.best[1]) if item.best else ([], 0.0)
                return GateResult("escalate", labels, conf, None, j.reason), guess_source, "injection"
            if j.verdict == "flag":
                return GateResult("flag", list(answer), obs.confidence, None, j.reason), tier.name, "injection"
        policy = self._active_policy
        o: Outcome = policy.decide(obs, gate) if policy is not None else safe_outcome(obs)
        source = tier.name if o.kind in ("llm", "agree") and policy is not None else guess_source
        return GateResult(o.verdict, o.labels, o.confidence, None, o.reason), source, o.kind

    def observe_llm(self, texts: Sequence[str | Message]) -> list[Observation | None]:
        """Route ``texts`` and return what the LLM tier's acceptance policy saw for each (None: the LLM
        was not asked, failed, or the injection rule held the message). Used to fit the policy."""
        items = [self._prepare(t) for t in texts]
        self._run(items)
        return [None if it.held else it.observation for it in items]

    def _fallback(self, item: _Pending) -> Decision:
        if item.oos_flag is not None:  # possibly out of scope, and no later detector tier could judge it (it failed)
            return self._unknown(item, *item.oos_flag)
        why = "; ".join(f"{t.tier}: {t.reason}" for t in item.trace if t.verdict == "error" or (t.verdict == "escalate" and t.labels))
        labels, conf, source = item.best or ([], 0.0, "none")
        if self.settings.fallback == "unknown" and item.best is not None and not item.held:
            last = item.trace[-1]
            last.verdict = "unknown"
            unknown = self.unknown_label or "unknown"
            return self._decide(item, [unknown], conf, source, flagged=False, reason=f"{why} → no tier was confident: '{unknown}'")
        guess = f"best guess {labels} ({conf:.2f} from {source})" if labels else "no tier produced a guess"
        reason = f"{why} → human review, {guess}"
        item.trace.append(TierTrace(tier="human", kind="human", role="human", verdict="review", labels=labels, confidence=conf,
                                    reason=reason))
        return self._decide(item, labels, conf, "human", flagged=True, reason=reason)

    def _decide(self, item: _Pending, labels: list[str], conf: float, tier: str, *, flagged: bool, reason: str) -> Decision:
        if item.truncated:
            reason = f"{reason} (text truncated to {self.settings.max_chars} characters)"
        escalated = self._position.get(tier, len(self.tiers)) > self._position[self.primary.name]
        return Decision(
            text=item.text, labels=labels, confidence=conf, tier=tier, escalated=escalated,
            flagged=flagged, reason=reason, truncated=item.truncated, trace=item.trace, cost_usd=item.cost,
            latency_ms=(time.perf_counter() - item.started) * 1e3, message=item.message,
        )

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the model directory: ``frontdesk.json``, one sub-directory per tier, the example index
        (``examples/``) and the LLM tier's acceptance policy (``llm_policy.json``) when there are."""
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        entries = [save_tier(tier, root, f"tiers/{tier.name}") for tier in self.tiers]
        if self.example_index is not None:
            self.example_index.save(root / INDEX_DIR)
        if self.llm_policy is not None:
            self.llm_policy.save(root)
        else:
            (root / POLICY_FILE).unlink(missing_ok=True)
        manifest = {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            "frontdesk_version": __version__,
            "labels": list(self.labels),
            "descriptions": self.descriptions,
            "examples": self.examples,
            "settings": self.settings.model_dump(),
            "tiers": entries,
            "gates": {name: g.model_dump() for name, g in self.gates.items()},
            "curves": {name: c.model_dump() for name, c in self.curves.items()},
            "oos": {name: f"{OOS_DIR}/{name}" for name in self.detectors},
            "meta": self.meta,
            "example_index": INDEX_DIR if self.example_index is not None else None,
            "llm_policy": POLICY_FILE if self.llm_policy is not None else None,
        }
        for name, det in self.detectors.items():
            det.save(root / OOS_DIR / name)
        (root / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False, default=str))
        return root

    @classmethod
    def load(cls, path: str | Path, *, settings: RouterSettings | None = None) -> Router:
        """Read a model directory written by :meth:`save`."""
        root = Path(path)
        manifest_path = root / MANIFEST
        if not manifest_path.is_file():
            raise ModelError(f"no {MANIFEST} here: not a frontdesk model directory (train one with `frontdesk train`)", path=root)
        try:
            manifest = json.loads(manifest_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelError(f"{MANIFEST} is not valid JSON ({exc}): the model directory is damaged, retrain", path=root) from exc
        if not isinstance(manifest, dict) or manifest.get("format") != MODEL_FORMAT:
            raise ModelError(f"{MANIFEST} is not a frontdesk model manifest", path=root)
        version = manifest.get("format_version")
        if version != MODEL_FORMAT_VERSION:
            raise ModelError(
                f"saved by frontdesk {manifest.get('frontdesk_version', '?')} in model format {version}; this frontdesk "
                f"{__version__} reads format {MODEL_FORMAT_VERSION}: retrain the model or install a matching frontdesk",
                path=root,
            )
        try:
            tiers = [load_tier(entry, root) for entry in manifest["tiers"]]
            router = cls(
                tiers,
                {name: GatePolicy(**g) for name, g in manifest.get("gates", {}).items()},
                settings or RouterSettings(**manifest.get("settings", {})),
                curves={name: OperatingCurve(**c) for name, c in manifest.get("curves", {}).items()},
                descriptions=manifest.get("descriptions", {}),
                examples=manifest.get("examples", {}),
                meta=manifest.get("meta", {}),
                detectors={name: OOSDetector.load(root / rel) for name, rel in manifest.get("oos", {}).items()},
                llm_policy=AcceptancePolicy.load(root) if manifest.get("llm_policy") else None,
                example_index=ExampleIndex.load(root / manifest["example_index"]) if manifest.get("example_index") else None,
            )
        except FrontdeskError:
            raise
        except (KeyError, TypeError, ValidationError) as exc:
            raise ModelError(f"{MANIFEST} is incomplete or invalid ({exc}): retrain the model", path=root) from exc
        return router


class _OOSStack:
    """Fits the out-of-scope detectors of a cascade on validation, tier by tier (``Router.train``).

    Each tier's detector combines its own columns with those of the earlier detector tiers (prefixed
    ``"<tier>."``); its budget is spent on the in-scope validation messages that *reach* it (earlier gates
    escalated them or earlier detectors passed them on), since only those can it send the wrong way.
    """

    def __init__(self, dataset: Dataset, settings: RouterSettings, options: OOSOptions) -> None:
        self.dataset, self.options = dataset, options
        self.enabled = options.enabled and not dataset.multi_label
        #: the unknown class whose validation messages are the out-of-scope examples (None: the data has none)
        self.unknown = settings.unknown_label or next((label for label in OOS_LABELS if label in dataset.labels), None)
        self.gold = [ex.labels[0] for ex in dataset.validation]
        self.oos = np.array([g == self.unknown for g in self.gold], dtype=bool)
        self.reach = np.ones(len(self.gold), dtype=bool)
        self.columns: dict[str, np.ndarray] = {}
        self.use: list[str] = []
        self.detectors: dict[str, OOSDetector] = {}

    def add(self, tier: Tier, gate: GatePolicy, probs: np.ndarray, columns: dict[str, np.ndarray] | None,
            progress: Progress | None) -> None:
        """Fit ``tier``'s detector (when ``columns`` are given) and narrow the rows that reach the next tier."""
        escalates = gate.judge_many(probs, tier.labels_).verdict == "escalate"
        if columns is None:
            self.reach &= escalates
            return
        name, labels = tier.name, tier.labels_
        correct = np.array([labels[p] == g for p, g in zip(probs.argmax(axis=1).tolist(), self.gold)])
        own = {f"{name}.{k}": np.asarray(v, dtype=np.float64) for k, v in columns.items()}
        use = [f"{name}.{c}" for c in tier.oos_column_names() if c in columns] + self.use
        budget, on = self.options.resolve(bool(self.oos.any()))
        cost = self.reach & ~self.oos & (correct if on == "correct" else True)
        groups = self._fold_groups(tier, progress) if self.options.label_folds and not self.use else []
        try:
            det = OOSDetector.fit({**self.columns, **own}, self.oos, cost=cost, groups=groups, use=use, budget=budget, budget_on=on)
        except ConfigError as exc:
            log.warning("tier %s: no out-of-scope detector (%s)", name, exc)
            self.reach &= escalates
            return
        det.info_.update(unknown_label=self.unknown, label_folds=self.options.label_folds if groups else 0,
                         reaching_validation=int(self.reach.sum()))
        self.detectors[name] = det
        self.reach &= escalates | det.is_oos({**self.columns, **own})
        self.columns.update(own)
        self.use = use

    def _fold_groups(self, tier: Tier, progress: Progress | None) -> list[RowGroup]:
        """Pseudo-OOS rows: per label fold, a model of the same tier trained without that fold's labels, whose
        columns on validation mark the held-out labels' messages (and the unknown class's) out of scope."""
        data, k = self.dataset, self.options.label_folds
        texts = [ex.text for ex in data.validation]
        groups = []
        for j, held in enumerate(label_folds(tier.labels_, k, unknown=self.unknown)):
            if progress:
                progress(f"out-of-scope label fold {j + 1}/{k}", j / k)
            sub = Dataset([ex for ex in data.train if ex.labels[0] not in held], [ex for ex in data.validation if ex.labels[0] not in held],
                          [], labels=tuple(label for label in data.labels if label not in held), name=f"{data.name}-fold{j + 1}")
            params = getattr(tier, "params", None)
            fold = (type(tier)(tier.name, params) if params is not None else type(tier)(tier.name)).fit(sub)
            fold.fit_oos(sub, self.unknown)
            _, cols = fold.predict_with_oos(texts)
            groups.append(RowGroup({f"{tier.name}.{c}": np.asarray(v, dtype=np.float64) for c, v in cols.items()},
                                   np.array([g in held or g == self.unknown for g in self.gold])))
        return groups


def _may_defer(tier: Tier, after: Tier, data: Dataset) -> bool:
    """Whether ``tier``'s gate may hand messages to ``after`` (Objective.defer): a local model tier on the same
    single-label label set (not an LLM, not multi-label data)."""
    return not data.multi_label and after.role == "model" and tuple(after.labels_) == tuple(tier.labels_)


def _top_label_right(tier: Tier, probs: np.ndarray, data: Dataset) -> np.ndarray:
    """Per validation message: is ``tier``'s top label (from its validation ``probs``) the gold one?"""
    return np.array([tier.labels_[p] == ex.labels[0] for p, ex in zip(probs.argmax(axis=1).tolist(), data.validation)])


def _tier_objective(objective: Objective, primary_done: bool) -> Objective:
    """The objective of one tier's gate: a guarantee certifies the primary (first calibrated) tier only."""
    return objective.without_guarantee() if primary_done and objective.guarantee is not None else objective


def coerce_message(message: str | bytes | Message) -> tuple[str, Message | None]:
    """Validate one inbound message: (text, the Message if one was given), or :class:`InputError`."""
    msg: Message | None = None
    if isinstance(message, Message):
        msg, text = message, message.text
    elif isinstance(message, bytes):
        try:
            text = message.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"message is not valid UTF-8 (byte {exc.start}): send UTF-8 text") from exc
    elif isinstance(message, str):
        text = message
    else:
        raise InputError(f"message must be str, bytes or Message, got {type(message).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(f"message contains characters that are not valid Unicode (position {exc.start}): send UTF-8 text") from exc
    if not text.strip():
        raise InputError("message text is empty or whitespace only: there is nothing to route")
    return text, msg


def _llm_tier(tiers: Sequence[Tier]) -> Tier | None:
    """The cascade's tier of role ``llm`` (at most one, an LLMTier: the router reads its acceptance settings)."""
    found = [t for t in tiers if t.role == "llm"]
    if not found:
        return None
    from frontdesk.tiers.llm import LLMTier

    if len(found) > 1 or not isinstance(found[0], LLMTier):
        raise ConfigError(f"tiers {[t.name for t in found]} have role 'llm': a cascade has at most one, an LLMTier (to plug "
                          "in another LLM, register a provider: frontdesk.llm.registry)", field="tiers")
    return found[0]


def _merged_llm_params(saved: Any, params: Mapping[str, Any] | Any) -> Any:
    """LLM tier settings: the saved tier's (when there is one) with the explicitly given ones on top.

    Only settings actually given count (``None`` values and pydantic defaults do not), so
    ``--llm openai --llm-base-url URL`` keeps the saved model name. A different provider drops the
    saved endpoint and key variable, which belong to the old provider.
    """
    from frontdesk.tiers.llm import LLMParams

    raw = params.model_dump(include=params.model_fields_set) if isinstance(params, LLMParams) else dict(params or {})
    given = {k: v for k, v in raw.items() if v is not None}
    if saved is None:
        return LLMParams(**given) if isinstance(params, LLMParams) else given
    base = saved.model_dump(exclude_unset=False)
    if given.get("provider", saved.provider) != saved.provider:
        base.pop("base_url", None)
        base.pop("api_key_env", None)
    return {**base, **given}


def _score_many(tier: Tier, texts: list[str], cands: list[list[str] | None]) -> list[TierResult | BaseException]:
    """Score a batch; if the batch call fails, score one by one so one bad message fails alone."""

    def one(text: str, cand: list[str] | None) -> TierResult | BaseException:
        try:
            return tier.score(text, cand)
        except Exception as exc:  # noqa: BLE001 - a failing tier escalates, it never drops a message
            return exc

    if len(texts) == 1:
        return [one(texts[0], cands[0])]
    try:
        return list(tier.score_batch(texts, cands))
    except Exception:  # noqa: BLE001
        return [one(t, c) for t, c in zip(texts, cands)]
