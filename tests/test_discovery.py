"""New-intent discovery: synthetic new intents in noise, decisions from a real SQLite store, the CLI command."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from frontdesk import ConfigError, Decision, LabelScore, TierTrace
from frontdesk.cli.monitor import register
from frontdesk.loop.discovery import Cluster, candidates_from_store, discover
from frontdesk.store.store import Store

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)

INTENTS = {
    "crypto_staking": (["how do i stake my {x}", "what is the staking reward for {x}", "can i unstake my {x} early",
                        "is staking {x} safe", "when are staking rewards for {x} paid out",
                        "how long is the lock up period when staking {x}", "what is the minimum amount of {x} for staking",
                        "why did my {x} staking rewards drop"],
                       ["ethereum", "solana", "cardano", "polkadot", "cosmos", "tezos"]),
    "pet_insurance": (["does pet insurance cover my {x}", "how much is pet insurance for a {x}",
                       "i want to buy pet insurance for my {x}", "can i claim pet insurance for my {x} vet bills",
                       "is my {x} too old for pet insurance", "what does pet insurance exclude for a {x}",
                       "how do i file a pet insurance claim for my {x}", "cancel the pet insurance policy for my {x}"],
                      ["dog", "cat", "puppy", "kitten", "rabbit", "parrot"]),
    "gift_wrapping": (["can you gift wrap the {x}", "is gift wrapping available for a {x}",
                       "how much does gift wrapping cost for a {x}", "add gift wrap and a card to the {x}",
                       "please gift wrap the {x} i ordered", "can the {x} be gift wrapped with a ribbon",
                       "i forgot to choose gift wrapping for my {x}", "do you offer gift wrapping paper for a {x}"],
                      ["book", "watch", "sweater", "headphones", "lamp", "scarf"]),
}
NOISE_WORDS = (
    "weather tomorrow train ticket berlin invoice password reset printer jammed spaghetti recipe football score volcano "
    "museum guitar lesson parking permit tax refund wedding dress bicycle tire flat library hours yoga class dentist "
    "appointment mortgage rate passport renewal laptop battery swollen garden hose leaking concert tickets piano tuner "
    "chess club election results microwave sparks elevator broken tennis racket restring bakery gluten sushi delivery "
    "marathon training plumber emergency telescope lens astronomy podcast episode sunscreen allergy thermostat schedule "
    "karaoke night violin strings carpet stain lawnmower engine snorkel rental hiking boots blister"
).split()


def synthetic(seed: int, per_intent: int = 40, noise: int = 60) -> list[tuple[str, str]]:
    """40 distinct messages for each of 3 new intents, plus word-salad noise, shuffled: (text, true label)."""
    rng = random.Random(seed)
    items = []
    for label, (templates, slots) in INTENTS.items():
        texts = sorted({t.format(x=s) for t in templates for s in slots})
        items += [(t, label) for t in rng.sample(texts, per_intent)]
    items += [(" ".join(rng.sample(NOISE_WORDS, rng.randint(4, 7))), "noise") for _ in range(noise)]
    rng.shuffle(items)
    return items


def majority(cluster: Cluster, truth: list[str]) -> tuple[str, float, int]:
    label, count = Counter(truth[i] for i in cluster.indices).most_common(1)[0]
    return label, count / cluster.size, count


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_discover_separates_three_new_intents_in_noise(seed: int) -> None:
    items = synthetic(seed)
    truth = [label for _, label in items]
    clusters = discover([t for t, _ in items], top=10)
    assert [c.rank for c in clusters] == list(range(1, len(clusters) + 1))
    assert [c.size for c in clusters] == sorted((c.size for c in clusters), reverse=True)  # biggest first
    top3 = [majority(c, truth) for c in clusters[:3]]
    assert {label for label, _, _ in top3} == set(INTENTS)  # the three new intents are the three biggest clusters
    for label, purity, count in top3:
        assert purity == 1.0, (label, purity)
        assert count >= 28, (label, count)  # most of the intent's 40 messages in one cluster
    for c in clusters:
        assert c.size >= 5 and 0 < c.coherence <= 1
        assert 1 <= len(c.examples) <= 5 and len(set(c.examples)) == len(c.examples)
        assert all(items[c.indices[0]][0] != "" for _ in c.examples)
        assert c.decision_ids == [] and c.guess is None  # plain texts
    pet = next(c for c in clusters[:3] if majority(c, truth)[0] == "pet_insurance")
    assert "pet insurance" in pet.terms[:3] or "insurance" in pet.terms[:3]
    assert all("pet insurance" in ex for ex in pet.examples)


def test_noise_alone_gives_no_big_cluster() -> None:
    rng = random.Random(5)
    noise = [" ".join(rng.sample(NOISE_WORDS, rng.randint(4, 7))) for _ in range(150)]
    clusters = discover(noise, min_cluster_size=5)
    assert all(c.size < 20 for c in clusters)


def test_discover_parameters() -> None:
    items = [t for t, _ in synthetic(0)]
    assert len(discover(items, top=2)) == 2
    exact = discover(items, n_clusters=3, min_cluster_size=2, top=10)
    assert 1 <= len(exact) <= 3 and sum(c.size for c in exact) <= len(items)
    assert discover(["only", "three", "texts"]) == []
    two = discover(["pepperoni pizza order"] * 3 + ["mortgage rate fixed"] * 3, min_cluster_size=3)
    assert [c.size for c in two] == [3, 3] and two[0].examples == ["pepperoni pizza order"]  # distinct examples only
    with pytest.raises(ConfigError, match="min_cluster_size"):
        discover(items, min_cluster_size=1)
    with pytest.raises(ConfigError, match="distance_threshold"):
        discover(items, distance_threshold=0)
    with pytest.raises(ConfigError, match="rank"):
        discover(items, rank="biggest")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="at most"):
        discover(["x"] * 5001)


# -- decisions -----------------------------------------------------------------------------------------
def unknown_decision(text: str, guess: str, conf: float, *, created: datetime) -> Decision:
    """A decision the primary tier was not confident about, mapped to 'oos' (fallback='unknown')."""
    trace = [TierTrace(tier="linear", kind="linear", verdict="unknown", labels=[guess], confidence=conf,
                       top=[LabelScore(label=guess, score=conf)], reason=f"confidence {conf:.2f} < 0.80")]
    return Decision(text=text, labels=["oos"], confidence=conf, tier="linear", escalated=False, flagged=False,
                    trace=trace, created_at=created)


def confident_decision(text: str, label: str, *, created: datetime) -> Decision:
    trace = [TierTrace(tier="linear", kind="linear", verdict="accept", labels=[label], confidence=0.97,
                       top=[LabelScore(label=label, score=0.97)])]
    return Decision(text=text, labels=[label], confidence=0.97, tier="linear", escalated=False, flagged=False,
                    trace=trace, created_at=created)


def fill_store(store: Store) -> tuple[list[Decision], dict[str, str]]:
    """A day of traffic: confident known intents, plus the synthetic new intents and noise as 'oos'."""
    truth: dict[str, str] = {}
    out: list[Decision] = []
    t = T0
    for i, (text, label) in enumerate(synthetic(0)):
        t += timedelta(minutes=1)
        d = unknown_decision(text, "order_status" if label == "gift_wrapping" else "billing", 0.3 + (i % 4) / 10, created=t)
        out.append(d)
        truth[d.id] = label
        t += timedelta(minutes=1)
        out.append(confident_decision(f"where is my parcel number {i}", "order_status", created=t))
    human = Decision(text="my crypto staking rewards never arrived", labels=["billing"], confidence=0.2, tier="human",
                     escalated=True, flagged=True, created_at=t + timedelta(minutes=1),
                     trace=[TierTrace(tier="linear", kind="linear", verdict="escalate", labels=["billing"], confidence=0.2),
                            TierTrace(tier="human", kind="human", verdict="review", labels=["billing"], confidence=0.2)])
    flagged = confident_decision("refund for a damaged lamp", "refund", created=t + timedelta(minutes=2)).model_copy(
        update={"flagged": True})
    store.save_decisions([*out, human, flagged])
    return [*out, human, flagged], truth


def test_candidates_and_discovery_over_sqlite_store(tmp_path: Path) -> None:
    with Store(f"sqlite:///{tmp_path / 'fd.db'}") as store:
        stored, truth = fill_store(store)
        candidates = candidates_from_store(store)
        assert len(candidates) == 180 + 2  # the unknown ones, the human-review one, the flagged one
        assert all(d.labels == ["oos"] or d.tier == "human" or d.flagged for d in candidates)
        assert [d.created_at for d in candidates] == sorted(d.created_at for d in candidates)  # oldest first
        assert len(candidates_from_store(store, include_flagged=False)) == 181
        assert candidates_from_store(store, limit=10) == candidates[-10:]  # the most recent
        later = candidates_from_store(store, since=T0 + timedelta(minutes=300))
        assert 0 < len(later) < len(candidates)
        with pytest.raises(ConfigError, match="limit"):
            candidates_from_store(store, limit=0)
    clusters = discover(candidates, top=5)
    top3 = clusters[:3]
    labels = [Counter(truth.get(i, "other") for i in c.decision_ids).most_common(1)[0][0] for c in top3]
    assert set(labels) == set(INTENTS)
    by_id = {d.id: d for d in stored}
    for c in top3:
        assert len(c.decision_ids) == c.size and all(i in by_id for i in c.decision_ids)
        assert [by_id[i].text for i in c.decision_ids] == [candidates[j].text for j in c.indices]
        assert c.mean_confidence is not None and 0.3 <= c.mean_confidence <= 0.6
    gift = next(c for c, lab in zip(top3, labels) if lab == "gift_wrapping")
    assert gift.guess == "order_status" and gift.guess_share == 1.0  # the model's best guess before the fallback
    novelty = discover(candidates, top=5, rank="novelty")
    assert {c.size for c in novelty[:3]} == {c.size for c in top3}


def test_cli_discover(tmp_path: Path) -> None:
    db = tmp_path / "fd.db"
    with Store(f"sqlite:///{db}") as store:
        fill_store(store)
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    result = runner.invoke(app, ["discover", "--store", f"sqlite:///{db}", "--top", "3", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert len(data) == 3 and all(len(c["examples"]) == 5 and c["decision_ids"] for c in data)
    terms = " ".join(t for c in data for t in c["terms"])
    assert "insurance" in terms and "gift" in terms and "staking" in terms
    result = runner.invoke(app, ["discover", "--store", f"sqlite:///{db}", "--top", "3"])
    assert result.exit_code == 0, result.output
    assert "#1" in result.output and "#3" in result.output and "#4" not in result.output
    assert "terms:" in result.output and "•" in result.output and "model's guess" in result.output
    empty = tmp_path / "empty.db"
    with Store(f"sqlite:///{empty}"):
        pass
    result = runner.invoke(app, ["discover", "--store", f"sqlite:///{empty}"])
    assert result.exit_code == 0 and "no cluster" in result.output
