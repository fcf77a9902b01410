from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from frontdesk import (
    ConfigError,
    Dataset,
    Decision,
    GatePolicy,
    InputError,
    Message,
    ModelError,
    Router,
    RouterSettings,
    Tier,
    TierError,
    TierResult,
    register_tier,
)


def test_route_returns_a_serialisable_decision(router: Router) -> None:
    d = router.route("I was charged twice for the same order, please fix the invoice")
    assert isinstance(d, Decision) and d.labels and 0 <= d.confidence <= 1
    assert d.tier in {"linear", "human"} and d.trace[0].tier == "linear"
    assert d.trace[0].top and d.trace[0].latency_ms > 0 and d.latency_ms >= d.trace[0].latency_ms
    again = Decision.model_validate_json(d.model_dump_json())
    assert again == d
    assert json.loads(d.model_dump_json())["labels"] == d.labels


def test_confident_and_escalated_paths(router: Router) -> None:
    strict = Router(router.tiers, {"linear": GatePolicy(threshold=1.0)})
    d = strict.route("where is my parcel?")
    assert d.tier == "human" and d.escalated and d.flagged and d.needs_review
    assert d.labels == d.trace[0].labels  # best guess attached
    assert "< threshold 1.00" in d.reason and "human review" in d.reason
    assert [t.tier for t in d.trace] == ["linear", "human"]
    lax = Router(router.tiers, {"linear": GatePolicy(threshold=0.0)})
    d = lax.route("where is my parcel?")
    assert d.tier == "linear" and not d.escalated and not d.flagged


def test_unknown_fallback(router: Router) -> None:
    r = Router(router.tiers, {"linear": GatePolicy(threshold=1.0)}, RouterSettings(fallback="unknown", unknown_label="oos"))
    d = r.route("what's the capital of peru")
    assert d.labels == ["oos"] and d.tier == "linear" and d.trace[-1].verdict == "unknown" and "'oos'" in d.reason


@pytest.mark.parametrize(
    ("bad", "needle"),
    [("", "empty"), ("   \n\t", "empty"), (42, "got int"), (None, "got NoneType"), (b"caf\xe9", "not valid UTF-8"),
     ("bad \ud800 surrogate", "not valid Unicode")],
)
def test_bad_input_is_a_clear_error(router: Router, bad: object, needle: str) -> None:
    with pytest.raises(InputError, match=needle):
        router.route(bad)  # type: ignore[arg-type]


def test_long_text_is_truncated_and_flagged(router: Router) -> None:
    small = Router(router.tiers, router.gates, RouterSettings(max_chars=50))
    d = small.route("my refund never arrived " * 100)
    assert d.truncated and len(d.text) == 50 and "truncated to 50 characters" in d.reason
    assert router.route(b"refund please").labels  # UTF-8 bytes are accepted


def test_message_object_keeps_metadata(router: Router) -> None:
    d = router.route(Message(text="cancel my subscription", sender="u1", channel="email", metadata={"k": 1}))
    assert d.message is not None and d.message.sender == "u1" and d.message.metadata == {"k": 1}


def test_batch_matches_single(router: Router, support: Dataset) -> None:
    texts = [ex.text for ex in support.test[:40]]
    batch = router.route_batch(texts)
    single = [router.route(t) for t in texts]
    assert [(d.labels, d.tier) for d in batch] == [(d.labels, d.tier) for d in single]
    assert [d.confidence for d in batch] == pytest.approx([d.confidence for d in single])


class EchoTier(Tier):
    """A test tier: answers with the first candidate the earlier tier proposed, or fails on demand."""

    kind = "echo"
    needs = frozenset({"candidates"})
    seen: list[Sequence[str] | None] = []

    def score(self, text: str, candidates: Sequence[str] | None = None) -> TierResult:
        EchoTier.seen.append(candidates)
        if "explode" in text:
            raise TierError(self.name, "simulated provider timeout after 5.0 s")
        if "crash" in text:
            raise RuntimeError("unexpected bug")
        return TierResult([(candidates[0], 0.99)] if candidates else [], cost_usd=0.002, latency_ms=3.0, rationale="echo")

    def save(self, path: Path) -> None:
        (path / "echo.json").write_text(json.dumps(list(self.labels_)))

    @classmethod
    def load(cls, path: Path, name: str) -> EchoTier:
        tier = cls(name)
        tier.labels_ = tuple(json.loads((path / "echo.json").read_text()))
        return tier


register_tier("echo", EchoTier)


def _cascade(router: Router) -> Router:
    echo = EchoTier("echo")
    echo.labels_ = router.labels
    return Router([router.tiers[0], echo], {"linear": GatePolicy(threshold=1.0), "echo": GatePolicy(threshold=0.9)})


def test_a_plugged_in_tier_gets_candidates_and_answers(router: Router) -> None:
    cascade = _cascade(router)
    EchoTier.seen.clear()
    d = cascade.route("I want my money back for the broken blender")
    assert d.tier == "echo" and d.escalated and not d.flagged
    assert EchoTier.seen[-1] is not None and len(EchoTier.seen[-1]) == 5
    assert d.labels == [EchoTier.seen[-1][0]] and d.cost_usd == pytest.approx(0.002)
    assert [t.verdict for t in d.trace] == ["escalate", "accept"] and d.trace[1].rationale == "echo"


@pytest.mark.parametrize(("text", "reason"), [("please explode", "simulated provider timeout"), ("crash now", "RuntimeError: unexpected bug")])
def test_a_failing_tier_escalates_to_human_never_drops(router: Router, text: str, reason: str) -> None:
    d = _cascade(router).route(text)
    assert d.tier == "human" and d.labels == d.trace[0].labels
    assert d.trace[1].verdict == "error" and reason in d.trace[1].reason and reason in d.reason
    batch = _cascade(router).route_batch(["fine message about refunds", text])  # one failure does not sink the batch
    assert batch[0].tier == "echo" and batch[1].tier == "human"


def test_save_load_round_trip(router: Router, saved_model: Path, support: Dataset) -> None:
    loaded = Router.load(saved_model)
    assert loaded.labels == router.labels and loaded.gates == router.gates
    assert loaded.descriptions == router.descriptions and loaded.curves["linear"] == router.curves["linear"]
    for ex in support.test[:20]:
        a, b = router.route(ex.text), loaded.route(ex.text)
        assert (a.labels, a.tier) == (b.labels, b.tier) and a.confidence == pytest.approx(b.confidence)


def test_cascade_with_plugged_tier_saves_and_loads(router: Router, tmp_path: Path) -> None:
    cascade = _cascade(router)
    cascade.save(tmp_path / "m")
    loaded = Router.load(tmp_path / "m")
    assert [t.kind for t in loaded.tiers] == ["linear", "echo"] and loaded.route("refund please").tier == "echo"


def test_load_errors_are_clear(saved_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a frontdesk model directory"):
        Router.load(tmp_path)
    import shutil

    copy = Path(shutil.copytree(saved_model, tmp_path / "copy"))
    manifest = json.loads((copy / "frontdesk.json").read_text())
    manifest["format_version"] = 99
    (copy / "frontdesk.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="format 99.*retrain"):
        Router.load(copy)
    manifest["format_version"] = 1
    (copy / "frontdesk.json").write_text(json.dumps(manifest))
    shutil.rmtree(copy / "tiers" / "linear")
    with pytest.raises(ModelError, match="tier directory tiers/linear is missing"):
        Router.load(copy)
    (copy / "frontdesk.json").write_text("{")
    with pytest.raises(ModelError, match="not valid JSON"):
        Router.load(copy)


def test_gate_config_errors(router: Router) -> None:
    with pytest.raises(ConfigError, match="unknown label"):
        router.set_gate("linear", {"threshold": 0.5, "label_thresholds": {"no_such_label": 0.9}})
    with pytest.raises(ConfigError, match="gates.linear"):
        router.set_gate("linear", {"threshold": "high"})
    with pytest.raises(ConfigError, match="no tier named 'llm'"):
        router.set_gate("llm", {"threshold": 0.5})
    with pytest.raises(ConfigError, match="unknown tier kind 'gpt5'"):
        Router.train(Dataset.from_examples([("a", "x"), ("b", "y")], [("a", "x")]), ["gpt5"])


def test_training_needs_validation() -> None:
    with pytest.raises(ConfigError, match="no validation split"):
        Router.train(Dataset.from_examples([("a", "x"), ("b", "y")]))
