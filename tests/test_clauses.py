"""The clause tier: candidate boundaries, entities with "and", joint decoding vs one-vs-rest, the gate, persistence."""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from frontdesk import ClauseParams, ClauseTier, ConfigError, DataError, Dataset, Example, ModelError, Router, Tier, TierResult, register_tier
from frontdesk.tiers.clauses.segments import Splitter
from frontdesk.tiers.linear import LinearTier

# A smart home: which device goes on and which goes off is only visible within a clause ("turn on the lights …
# and turn off the heating …" has the same words as the reverse), and music genres hold an "and" of their own.
SLOTS = {
    "room": ["kitchen", "hall", "bedroom", "living room", "garage", "office"],
    "genre": ["rock and roll", "rhythm and blues", "drum and bass", "jazz", "techno", "folk"],
    "artist": ["adele", "the beatles", "miles davis", "nina simone", "daft punk"],
}
TEMPLATES = {
    "lights_on": ["turn on the lights in the {room}", "switch the {room} lights on", "lights on in the {room} please",
                  "turn the {room} lights on"],
    "lights_off": ["turn off the lights in the {room}", "switch the {room} lights off", "lights off in the {room} please",
                   "turn the {room} lights off"],
    "heating_on": ["turn on the heating in the {room}", "switch the {room} heating on", "heating on in the {room} please",
                   "turn the {room} heating on"],
    "heating_off": ["turn off the heating in the {room}", "switch the {room} heating off", "heating off in the {room} please",
                    "turn the {room} heating off"],
    "play_music": ["play some {genre}", "play {genre} by {artist}", "put on {genre} music", "i want to hear {artist}"],
}
JOINERS = (" and ", " and then ", " , ", " and also ", " , and then ")


def examples(seed: int, n_single: int, n_multi: int, max_k: int, joiners: Sequence[str] = JOINERS) -> list[Example]:
    """``n_single`` one-intent messages per label plus ``n_multi`` messages of 2..max_k intents joined by ``joiners``."""
    rng = random.Random(seed)
    labels = sorted(TEMPLATES)

    def sentence(intent: str) -> str:
        return rng.choice(TEMPLATES[intent]).format(**{k: rng.choice(v) for k, v in SLOTS.items()})

    out = [Example(sentence(label), (label,)) for label in labels for _ in range(n_single)]
    for _ in range(n_multi):
        intents = rng.sample(labels, rng.randint(2, max_k))
        text = sentence(intents[0])
        for intent in intents[1:]:
            text += rng.choice(joiners) + sentence(intent)
        out.append(Example(text, tuple(intents)))
    rng.shuffle(out)
    return out


def home_data(joiners: Sequence[str] = JOINERS) -> Dataset:
    """Train: singles and two-intent messages; validation and test: up to three intents."""
    return Dataset(examples(1, 30, 120, 2, joiners), examples(2, 10, 60, 3, joiners), examples(3, 0, 300, 3, joiners))


def exact_match(probs: np.ndarray, labels: Sequence[str], data: Sequence[Example]) -> np.ndarray:
    """Per message: does {labels with p ≥ 0.5} equal the gold set?"""
    return np.array([{labels[j] for j in np.flatnonzero(p >= 0.5)} == set(ex.labels) for p, ex in zip(probs, data)])


@pytest.fixture(scope="module")
def data() -> Dataset:
    return home_data()


@pytest.fixture(scope="module")
def tier(data: Dataset) -> ClauseTier:
    return ClauseTier().fit(data)


def test_splitter_finds_runs_of_joiners_between_words() -> None:
    split = Splitter(ClauseParams().joiners)
    p = split.parse("Play Jazz, and then turn ON the lights")
    assert p.cands == ((2, 5),) and p.clauses([0]) == ["Play Jazz", "turn ON the lights"]  # original text kept
    assert p.clauses([]) == ["Play Jazz, and then turn ON the lights"]
    assert split.parse("and play jazz and").cands == ()  # no clause before the first or after the last joiner
    p = split.parse("play rock and roll as well as turn off the lights")
    assert [" ".join(p.tokens[s:e]) for s, e in p.cands] == ["and", "as well as"]
    assert split.parse("play jazz und dann mach licht an").cands == ()
    german = Splitter(["und", "und dann", ","])
    p = german.parse("spiel jazz und dann mach das Licht an, bitte")
    assert p.clauses(range(len(p.cands))) == ["spiel jazz", "mach das Licht an", "bitte"]


def test_clause_tier_recovers_the_intents_one_vs_rest_loses(tier: ClauseTier, data: Dataset) -> None:
    texts = [ex.text for ex in data.test]
    linear = LinearTier().fit(data)
    ok_linear = exact_match(linear.predict_proba(texts), linear.labels_, data.test)
    ok_clauses = exact_match(tier.predict_proba(texts), tier.labels_, data.test)
    lost = [i for i, ex in enumerate(data.test) if {linear.labels_[j] for j in np.flatnonzero(linear.predict_proba([ex.text])[0] >= 0.5)} < set(ex.labels)]
    assert ok_clauses.mean() >= 0.95 and ok_clauses.mean() >= ok_linear.mean() + 0.05, (ok_clauses.mean(), ok_linear.mean())
    assert len(lost) >= 5 and ok_clauses[lost].mean() >= 0.9  # the intents one-vs-rest drops, the clause tier finds
    three = np.array([len(ex.labels) == 3 for ex in data.test])
    assert three.any() and ok_clauses[three].mean() >= 0.9  # three intents, though train had at most two
    decoded = tier.decode("turn on the lights in the kitchen and then turn off the heating in the hall")
    assert decoded == [("turn on the lights in the kitchen", "lights_on"), ("turn off the heating in the hall", "heating_off")]


def test_and_inside_an_entity_is_not_a_boundary(tier: ClauseTier, data: Dataset) -> None:
    assert any("rock and roll" in ex.text and len(ex.labels) == 1 for ex in data.train)  # what training showed
    p = tier.splitter.parse("play some rock and roll")
    assert len(p.cands) == 1 and tier._boundary_proba(p)[0] < 0.5
    assert tier.decode("play some rock and roll") == [("play some rock and roll", "play_music")]
    ranked = tier.score("play some rock and roll").ranked
    assert ranked[0][0] == "play_music" and ranked[0][1] >= 0.5 and ranked[1][1] < 0.5
    text = "play some rock and roll and turn off the lights in the garage"
    assert tier.decode(text) == [("play some rock and roll", "play_music"), ("turn off the lights in the garage", "lights_off")]
    res = tier.score(text)
    assert {label for label, p in res.ranked if p >= 0.5} == {"play_music", "lights_off"}
    assert res.info["clauses"] == [["play some rock and roll", "play_music"], ["turn off the lights in the garage", "lights_off"]]


def test_probabilities_are_calibrated_set_memberships(tier: ClauseTier, data: Dataset) -> None:
    texts = [ex.text for ex in data.test]
    probs = tier.predict_proba(texts)
    assert probs.shape == (len(texts), 5) and probs.min() >= 0 and probs.max() <= 1
    decoded = [{label for _, label in tier.decode(t)} for t in texts[:60]]
    assert np.mean([{tier.labels_[j] for j in np.flatnonzero(p >= 0.5)} == d for p, d in zip(probs, decoded)]) >= 0.95
    info = tier.info()
    assert info["ece_after"] < 0.05 and info["ece_after"] <= info["ece_before"] + 1e-9 and info["validation_exact_match"] >= 0.9 and info["temperature"] > 0
    assert info["weights"]["fitted"] and len(info["weight_grid_exact_match"]) == 25  # the given pair is one of the grid's
    assert info["derived_splits"]["train"]["unambiguous"] > 0 and info["clauses"]["train"] > 100
    results = tier.score_batch(texts[:20])
    for res, p in zip(results, probs[:20]):
        assert [s for _, s in res.ranked] == sorted(p, reverse=True) and len(res.ranked) == 5
    assert tier.score(texts[0]).ranked == results[0].ranked


def test_training_is_deterministic(tier: ClauseTier, data: Dataset) -> None:
    again = ClauseTier().fit(data)
    texts = [ex.text for ex in data.test[:50]]
    np.testing.assert_array_equal(again.predict_proba(texts), tier.predict_proba(texts))
    assert again.weights_ == tier.weights_


def test_save_load_round_trip(tier: ClauseTier, data: Dataset, tmp_path: Path) -> None:
    tier.save(tmp_path)
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert "clauses.json" in files and "boundary_coef.npy" in files
    assert "members/clause/linear.json" in files and "members/message/linear.json" in files
    assert all(f.endswith((".json", ".npy")) for f in files)  # no pickles
    again = ClauseTier.load(tmp_path, "clauses")
    texts = [ex.text for ex in data.test]
    np.testing.assert_array_equal(again.predict_proba(texts), tier.predict_proba(texts))
    assert again.params == tier.params and again.labels_ == tier.labels_ and again.info() == tier.info()
    assert again.decode(texts[0]) == tier.decode(texts[0])

    (tmp_path / "boundary_coef.npy").unlink()
    with pytest.raises(ModelError, match="boundary_coef.npy"):
        ClauseTier.load(tmp_path, "clauses")
    import shutil

    shutil.rmtree(tmp_path / "members" / "clause")
    with pytest.raises(ModelError, match="members/clause is missing"):
        ClauseTier.load(tmp_path, "clauses")


def test_router_fits_a_multi_label_gate_and_routes_several_labels(data: Dataset, tmp_path: Path) -> None:
    router = Router.train(data, ["clauses"])
    gate = router.gates["clauses"]
    assert gate.multi_label and router.labels == tuple(sorted(TEMPLATES)) and "clauses" in router.curves
    decision = router.route("turn off the heating in the office and also play jazz by miles davis")
    assert set(decision.labels) == {"heating_off", "play_music"} and decision.trace[0].kind == "clauses"
    decisions = router.route_batch([ex.text for ex in data.test])
    assert np.mean([set(d.labels) == set(ex.labels) for d, ex in zip(decisions, data.test)]) >= 0.95
    assert sum(d.tier == "clauses" for d in decisions) >= 0.7 * len(decisions)  # the gate accepts most
    loaded = Router.load(router.save(tmp_path / "model"))
    assert [d.labels for d in loaded.route_batch([ex.text for ex in data.test[:30]])] == [d.labels for d in decisions[:30]]


def test_single_label_data_is_an_error_that_names_the_right_tiers() -> None:
    singles = Dataset.from_examples([("turn on the lights", "lights_on"), ("play jazz", "play_music")] * 3,
                                    [("lights on", "lights_on")])
    with pytest.raises(DataError, match="linear or encoder tier"):
        ClauseTier().fit(singles)
    no_validation = Dataset(home_data().train)
    with pytest.raises(DataError, match="add validation examples"):
        ClauseTier().fit(no_validation)


def test_joiners_are_configurable() -> None:
    data = home_data(joiners=(" und ", " und dann ", " ; "))
    default = Splitter(ClauseParams().joiners)
    assert all(len(default.parse(ex.text).cands) == 0 for ex in data.train if " und " in ex.text and "rock" not in ex.text
               and "rhythm" not in ex.text and "drum" not in ex.text and ";" not in ex.text)
    tier = ClauseTier(params={"joiners": ["und", "und dann", ";"]}).fit(data)
    ok = exact_match(tier.predict_proba([ex.text for ex in data.test]), tier.labels_, data.test)
    assert ok.mean() >= 0.95
    assert tier.decode("switch the hall lights on und dann put on techno music") == [
        ("switch the hall lights on", "lights_on"), ("put on techno music", "play_music")]


class WordCountTier(Tier):
    """A tiny calibrated single-label tier (multinomial naive Bayes on words): any such tier can classify clauses."""

    kind = "test_wordcount"
    calibrated = True

    def __init__(self, name: str | None = None, params: dict[str, Any] | None = None) -> None:
        super().__init__(name)
        self.alpha = float((params or {}).get("alpha", 0.5))
        self.prior: dict[str, float] = {}
        self.counts: dict[str, dict[str, int]] = {}

    def fit(self, data: Dataset, progress: Any = None) -> WordCountTier:
        self.labels_ = tuple(sorted({ex.labels[0] for ex in data.train}))
        per = {label: Counter() for label in self.labels_}
        for ex in data.train:
            per[ex.labels[0]].update(ex.text.lower().split())
        freq = Counter(ex.labels[0] for ex in data.train)
        self.prior = {label: freq[label] / len(data.train) for label in self.labels_}
        self.counts = {label: dict(c) for label, c in per.items()}
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        vocab = {w for c in self.counts.values() for w in c}
        out = []
        for text in texts:
            logp = []
            for label in self.labels_:
                c = self.counts[label]
                total = sum(c.values()) + self.alpha * len(vocab)
                logp.append(math.log(self.prior[label]) + sum(math.log((c.get(w, 0) + self.alpha) / total) for w in text.lower().split()))
            z = np.exp(np.array(logp) - max(logp))
            out.append(z / z.sum())
        return np.array(out)

    def score(self, text: str, candidates: Sequence[str] | None = None) -> TierResult:
        p = self.predict_proba([text])[0]
        return TierResult(sorted(zip(self.labels_, p.tolist()), key=lambda x: -x[1]))

    def save(self, path: Path) -> None:
        (path / "counts.json").write_text(json.dumps({"alpha": self.alpha, "labels": self.labels_, "prior": self.prior, "counts": self.counts}))

    @classmethod
    def load(cls, path: Path, name: str) -> WordCountTier:
        meta = json.loads((path / "counts.json").read_text())
        tier = cls(name, {"alpha": meta["alpha"]})
        tier.labels_, tier.prior, tier.counts = tuple(meta["labels"]), meta["prior"], meta["counts"]
        return tier


register_tier("test_wordcount", WordCountTier)


def test_the_clause_classifier_is_any_calibrated_tier(data: Dataset, tmp_path: Path) -> None:
    tier = ClauseTier(params={"clause_tier": "test_wordcount", "clause_params": {"alpha": 0.1}}).fit(data)
    assert isinstance(tier.clause_tier_, WordCountTier) and tier.clause_tier_.alpha == 0.1
    texts = [ex.text for ex in data.test]
    assert exact_match(tier.predict_proba(texts), tier.labels_, data.test).mean() >= 0.9
    tier.save(tmp_path)
    assert json.loads((tmp_path / "clauses.json").read_text())["members"][0] == {
        "role": "clause", "name": "clause", "kind": "test_wordcount", "path": "members/clause"}
    again = ClauseTier.load(tmp_path, "clauses")
    assert isinstance(again.clause_tier_, WordCountTier)
    np.testing.assert_array_equal(again.predict_proba(texts[:40]), tier.predict_proba(texts[:40]))


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"clause_tier": "rules"}, "no calibrated predict_proba"),
        ({"clause_tier": "no_such_tier"}, "unknown tier kind"),
        ({"clause_tier": "clauses"}, "single-label kind"),
        ({"joiners": ["and", "  "]}, "contain no word or punctuation"),
        ({"max_clauses": 0}, "max_clauses"),
        ({"split_on": ["and"]}, "Extra inputs"),
        ({"clause_params": {"C": -1}}, "clauses.clause_params: C"),
        ({"message_params": {"classifer": "svm"}}, "clauses.message_params: classifer"),
    ],
)
def test_config_errors_are_clear(data: Dataset, params: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        ClauseTier(params=params).fit(data)
