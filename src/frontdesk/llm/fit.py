"""Fitting the LLM tier's acceptance policy on validation data (``train --llm``, ``frontdesk llm fit``).

The validation messages that no earlier tier accepts are the ones the LLM will see in production.
Up to ``calibration_size`` of them (a seeded sample) are sent to the LLM through the real tier
(prompt, candidates, retries); every answer is recorded in the model directory
(``llm_fit_answers.jsonl``), so fitting again — another gate target, a re-saved model — replays
them instead of calling the LLM. The policy is then fitted on the answers
(:func:`frontdesk.llm.acceptance.fit_policy`) and installed in the router.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from frontdesk.cascade.router import Router
from frontdesk.data.dataset import Dataset
from frontdesk.errors import ConfigError
from frontdesk.llm.acceptance import AcceptancePolicy, fit_policy
from frontdesk.llm.prompt import PROMPT_VERSION

ANSWERS_FILE = "llm_fit_answers.jsonl"
_CHUNK = 10


@dataclass(frozen=True)
class FitResult:
    """The router with its LLM tier and fitted policy, and what fitting did."""

    router: Router
    policy: AcceptancePolicy
    reached: int
    """validation messages no tier before the LLM accepts"""
    asked: int
    """of those, the ones the LLM tier was asked about (at most calibration_size)"""
    new_calls: int
    """answers that were not in the recording (real LLM calls)"""


def reached_llm(router: Router, texts: list[str]) -> list[int]:
    """Indices of ``texts`` that no tier before the LLM accepts (the classifier alone routes them); a message
    called out of scope (the unknown verdict) is decided before the LLM tier, so it does not reach it either."""
    decisions = router.without_llm().route_batch(texts)
    return [i for i, d in enumerate(decisions)
            if not any(t.verdict in ("accept", "flag") or (t.verdict == "unknown" and t.oos_score is not None) for t in d.trace)]


def fit_llm(
    router: Router,
    data: Dataset,
    params: Mapping[str, Any] | Any = None,
    *,
    provider: Any = None,
    answers: Path | None = None,
    calibration_size: int | None = None,
    seed: int = 13,
    progress: Callable[[int, int], None] | None = None,
) -> FitResult:
    """Add (or keep) the LLM tier, call it on validation messages that reach it, fit the acceptance policy.

    ``params``: LLM tier settings on top of the router's saved ones (see :meth:`Router.with_llm`).
    ``answers``: the recording to replay and extend (None: call the LLM for every message).
    ``progress(done, total)`` is called as answers come in.
    """
    if not data.validation:
        raise ConfigError("fitting the LLM tier's acceptance policy needs a validation split", field="data")
    r = router.with_llm(params, provider=provider)
    tier = r.llm_tier
    assert tier is not None
    if not r._evidence_tiers:  # noqa: SLF001 - the router's own bookkeeping
        raise ConfigError("the acceptance policy weighs the LLM against a calibrated tier before it (linear, encoder, …): "
                          "train one first", field="tiers")
    recorded_before = 0
    if answers is not None:
        tier.use_recording(answers, "through")  # type: ignore[attr-defined]
        recorded_before = len(tier.recording)  # type: ignore[attr-defined]
    val = data.validation
    texts = [ex.text for ex in val]
    reached = reached_llm(r, texts)
    n = calibration_size or tier.params.calibration_size  # type: ignore[attr-defined]
    chosen = sorted(random.Random(seed).sample(reached, min(n, len(reached))))
    observations = []
    for start in range(0, len(chosen), _CHUNK):
        observations.extend(r.observe_llm([texts[i] for i in chosen[start: start + _CHUNK]]))
        if progress:
            progress(min(start + _CHUNK, len(chosen)), len(chosen))
    primary = r.curves.get(r.primary.name)
    target = tier.params.accept_accuracy or (primary.chosen.accepted_accuracy if primary else 0.9)  # type: ignore[attr-defined]
    policy = fit_policy(observations, [val[i].labels for i in chosen], labels=r.labels, llm_model=tier.params.model_name,  # type: ignore[attr-defined]
                        provider=tier.params.provider, prompt_version=PROMPT_VERSION, target_accuracy=target,  # type: ignore[attr-defined]
                        n_reached=len(reached), seed=seed)
    r.set_llm_policy(policy)
    new_calls = len(tier.recording) - recorded_before if answers is not None else len(chosen)  # type: ignore[attr-defined]
    return FitResult(r, policy, len(reached), len(chosen), new_calls)
