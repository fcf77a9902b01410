"""Plug-ins: the one registry (unknown names, entry points, broken packages), tier roles and needs, adding a
tier to a trained model, and an outside package — built and installed with pip into a temporary directory —
that plugs a tier, an LLM provider and an action into the frontdesk CLI without a frontdesk file edited."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner

import frontdesk
from frontdesk import ConfigError, Dataset, GatePolicy, Router, Tier, TierResult, TierTrace
from frontdesk.cli.main import app
from frontdesk.llm.registry import PROVIDERS
from frontdesk.plugins import PluginRegistry, registries
from frontdesk.routing.actions import ACTIONS, get_action
from frontdesk.tiers.base import TIERS, register_tier, role_of_kind, tier_class, unregister_tier
from frontdesk.tiers.linear import LinearTier
from frontdesk.tiers.llm import LLMTier
from frontdesk.tiers.rules import RulesTier

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "frontdesk-keywords"
SRC = Path(frontdesk.__file__).resolve().parents[1]


# -- the registry ---------------------------------------------------------------------------------
def test_an_unknown_name_lists_the_known_ones_and_says_how_to_add_one() -> None:
    with pytest.raises(ConfigError) as tier:
        tier_class("gpt5")
    msg = str(tier.value)
    assert "unknown tier kind 'gpt5': use one of" in msg and "linear" in msg and "rules" in msg
    assert "register_tier('KIND', TierClass)" in msg and "'frontdesk.tiers' entry points" in msg and "frontdesk plugins" in msg
    with pytest.raises(ConfigError, match=r"unknown LLM provider 'gpt5'.*local.*register_provider\('NAME', factory\).*'frontdesk.providers'"):
        PROVIDERS.get("gpt5")
    with pytest.raises(ConfigError, match=r"unknown action 'nope'.*actions.NAME.webhook.*'frontdesk.actions'"):
        get_action("nope")


def test_the_three_registries_are_one_type_and_know_their_groups() -> None:
    regs = registries()
    assert set(regs) == {"frontdesk.tiers", "frontdesk.providers", "frontdesk.actions"}
    assert all(isinstance(r, PluginRegistry) for r in regs.values())
    assert regs["frontdesk.tiers"] is TIERS and regs["frontdesk.providers"] is PROVIDERS and regs["frontdesk.actions"] is ACTIONS
    assert {s.name: s.origin for s in TIERS.sources()}["linear"] == "built-in"


class CountTier(Tier):
    """A test tier of role model: answers the label whose name shares most words with the message."""

    kind = "count_words"
    seen: list[Sequence[str] | None] = []

    def score(self, text: str, candidates: Sequence[str] | None = None) -> TierResult:
        CountTier.seen.append(candidates)
        words = set(text.lower().split())
        ranked = sorted(((lab, len(words & set(lab.split("_"))) / 3) for lab in self.labels_), key=lambda x: -x[1])
        return TierResult([(lab, min(1.0, s)) for lab, s in ranked if s > 0][:3])

    def save(self, path: Path) -> None:
        (path / "labels.json").write_text(json.dumps(list(self.labels_)))

    @classmethod
    def load(cls, path: Path, name: str) -> CountTier:
        tier = cls(name)
        tier.labels_ = tuple(json.loads((path / "labels.json").read_text()))
        return tier


class ReviewDeskTier(CountTier):
    """A test tier of role human: always hands the message on to people (no scores)."""

    kind = "review_desk"
    role = "human"

    def score(self, text: str, candidates: Sequence[str] | None = None) -> TierResult:
        return TierResult([], rationale="queued for the review desk")


@pytest.fixture()
def count_tier() -> Iterator[type[CountTier]]:
    register_tier("count_words", CountTier)
    register_tier("review_desk", ReviewDeskTier)
    yield CountTier
    unregister_tier("count_words")
    unregister_tier("review_desk")


def test_registering_checks_the_class_and_a_taken_name(count_tier: type[CountTier]) -> None:
    register_tier("count_words", CountTier)  # the same class again: fine

    class Another(CountTier):
        kind = "count_words"

    with pytest.raises(ConfigError, match="already registered.*replace=True"):
        register_tier("count_words", Another)
    register_tier("count_words", Another, replace=True)
    assert tier_class("count_words") is Another
    class MyLinear(CountTier):
        kind = "linear"

    with pytest.raises(ConfigError, match="already registered"):
        register_tier("linear", MyLinear)  # a built-in name
    with pytest.raises(ConfigError, match=r"CountTier declares kind 'count_words'.*register it as 'count_words'"):
        register_tier("words", CountTier)
    with pytest.raises(ConfigError, match="expected a subclass of frontdesk.tiers.base.Tier"):
        register_tier("not_a_tier", dict)  # type: ignore[arg-type]

    class Odd(CountTier):
        kind = "odd"
        role = "oracle"  # type: ignore[assignment]

    with pytest.raises(ConfigError, match="declares role 'oracle': use one of guardrail, model, llm, human"):
        register_tier("odd", Odd)
    assert "count_words" in TIERS.names() and role_of_kind("count_words") == "model" and role_of_kind("nope") is None


def _dist(site: Path, name: str, version: str, entry_points: str, module: str, source: str) -> None:
    """A hand-made installed distribution: ``NAME-VERSION.dist-info`` with METADATA and entry_points.txt."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    (site / f"{module}.py").write_text(textwrap.dedent(source))


@pytest.fixture()
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Two installed packages: ``fd-shouty`` (a tier, a provider, an action) and ``fd-broken``, whose module fails."""
    site = tmp_path / "site"
    _dist(site, "fd-shouty", "2.1", """
        [frontdesk.tiers]
        shouty = fd_shouty:ShoutyTier
        wrong_kind = fd_shouty:ShoutyTier
        [frontdesk.providers]
        shout = fd_shouty:make
        [frontdesk.actions]
        shout_back = fd_shouty:shout_back
    """, "fd_shouty", """
        from frontdesk import Tier, TierResult

        class ShoutyTier(Tier):
            kind = "shouty"
            role = "guardrail"

            def score(self, text, candidates=None):
                return TierResult([("legal_or_complaint", 1.0)] if text.isupper() else [], rationale="all caps")

            def save(self, path):
                pass

            @classmethod
            def load(cls, path, name):
                return cls(name)

        def make(settings):
            raise AssertionError("not built in this test")

        def shout_back(call):
            return {"shout": call.label.upper()}
    """)
    _dist(site, "fd-broken", "0.3", """
        [frontdesk.tiers]
        broken = fd_broken:Tier
    """, "fd_broken", """
        import frontdesk_dependency_that_is_not_installed
    """)
    monkeypatch.syspath_prepend(str(site))
    yield site
    for name in ("shouty", "wrong_kind", "broken"):
        TIERS.unregister(name)
    PROVIDERS.unregister("shout")
    ACTIONS.unregister("shout_back")
    for module in ("fd_shouty", "fd_broken"):
        sys.modules.pop(module, None)


def test_installed_packages_are_listed_without_import_and_loaded_on_use(installed: Path) -> None:
    assert {"shouty", "wrong_kind", "broken"} <= set(TIERS.names()) and "shout" in PROVIDERS.names()
    assert "fd_shouty" not in sys.modules and "fd_broken" not in sys.modules  # listing reads metadata only
    origins = {s.name: (s.origin, s.target) for s in TIERS.sources()}
    assert origins["shouty"] == ("package fd-shouty 2.1", "fd_shouty:ShoutyTier")
    cls = tier_class("shouty")
    assert cls.kind == "shouty" and cls.role == "guardrail" and "fd_shouty" in sys.modules
    assert get_action("shout_back").__name__ == "shout_back"
    with pytest.raises(ConfigError, match=r"tier kind 'wrong_kind' \(entry point 'fd_shouty:ShoutyTier' of fd-shouty 2.1\): "
                                          r"ShoutyTier declares kind 'shouty'"):
        tier_class("wrong_kind")


def test_a_plugin_that_fails_to_import_names_its_package(installed: Path) -> None:
    with pytest.raises(ConfigError) as err:
        tier_class("broken")
    msg = str(err.value)
    assert "the 'broken' tier kind's entry point 'fd_broken:Tier' from fd-broken 0.3 failed to load" in msg
    assert "ModuleNotFoundError" in msg and "frontdesk_dependency_that_is_not_installed" in msg and "reinstall fd-broken" in msg
    res = CliRunner().invoke(app, ["plugins", "--check", "--json"])
    rows = {(r["group"], r["name"]): r for r in json.loads(res.stdout)}
    assert res.exit_code == 1 and "fd-broken 0.3" in rows["frontdesk.tiers", "broken"]["error"]
    assert rows["frontdesk.tiers", "shouty"]["about"] == "role guardrail; needs nothing"
    assert rows["frontdesk.actions", "shout_back"]["origin"] == "package fd-shouty 2.1"


# -- roles and needs ------------------------------------------------------------------------------
def test_builtin_tiers_declare_their_roles_and_needs() -> None:
    assert RulesTier.role == "guardrail" and LinearTier.role == "model" and LLMTier.role == "llm"
    assert LLMTier.needs == {"candidates", "descriptions", "examples"} and not LinearTier.needs
    assert LinearTier.score_is_proba and not RulesTier.score_is_proba


def test_old_trace_entries_get_the_role_their_kind_had() -> None:
    old = {"tier": "guardrails", "kind": "rules", "verdict": "accept"}
    assert TierTrace.model_validate(old).role == "guardrail"
    assert TierTrace.model_validate({**old, "kind": "preprocess"}).role == "intake"
    assert TierTrace.model_validate({**old, "kind": "linear"}).role == "model"
    assert TierTrace.model_validate({**old, "kind": "shouty", "role": "guardrail"}).role == "guardrail"


def _rules() -> RulesTier:
    return RulesTier("guard", {"rules": [{"label": "legal_or_complaint", "keywords": ["lawyer"]}]})


def test_with_tier_places_each_tier_by_its_role(router: Router, count_tier: type[CountTier]) -> None:
    with_llm = router.with_llm({"provider": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1"})
    assert [(t.name, t.role) for t in with_llm.tiers] == [("linear", "model"), ("llm", "llm")]
    r = with_llm.with_tier(ReviewDeskTier("desk")).with_tier(CountTier("count_words")).with_tier(_rules())
    assert [t.name for t in r.tiers] == ["guard", "linear", "count_words", "llm", "desk"]
    assert r.primary.name == "linear" and r.llm_tier is r.tier("llm") and with_llm.tiers[0] is r.tiers[1]
    assert r.tier("count_words").labels_ == router.labels  # joined the model: its label set
    assert r.gates["count_words"] == CountTier("x").default_gate() and r.gates["linear"] == router.gates["linear"]
    again = r.with_tier(CountTier("count_words"), gate={"threshold": 0.2})  # same name: replaced, gate given
    assert [t.name for t in again.tiers] == [t.name for t in r.tiers] and again.gates["count_words"].threshold == 0.2
    assert [t.name for t in r.without("human").tiers] == ["guard", "linear", "count_words", "llm"]
    assert [t.name for t in r.without_llm().tiers] == ["guard", "linear", "count_words", "desk"]


def test_the_llm_tier_is_one_llmtier(router: Router) -> None:
    class NotAnLLM(CountTier):
        kind = "not_llm"
        role = "llm"

    fake = NotAnLLM("fake")
    fake.labels_ = router.labels
    with pytest.raises(ConfigError, match="role 'llm': a cascade has at most one, an LLMTier.*register a provider"):
        Router([router.primary, fake])
    with pytest.raises(ConfigError, match="has role llm: add it with `frontdesk llm fit"):
        CliRunner().invoke(app, ["add-tier", "--model", "x", "--tier", "llm"], catch_exceptions=False)


def test_candidates_reach_only_the_tiers_that_need_them(router: Router, count_tier: type[CountTier]) -> None:
    unsure = Router([router.primary, CountTier("count_words")], {"linear": GatePolicy(threshold=1.0)})
    unsure.tier("count_words").labels_ = router.labels
    CountTier.seen.clear()
    unsure.route("I want my money back for the broken blender")
    assert CountTier.seen == [None]  # declares no need: scores over the whole label set

    class Narrowing(CountTier):
        kind = "narrowing"
        needs = frozenset({"candidates"})

    narrowing = Narrowing("narrowing")
    narrowing.labels_ = router.labels
    Router([router.primary, narrowing], {"linear": GatePolicy(threshold=1.0)}).route("I want my money back for the broken blender")
    assert len(CountTier.seen[-1] or ()) == router.settings.candidates_k


def test_with_tier_trains_a_tier_and_fits_its_gate_on_the_model_data(router: Router, support: Dataset) -> None:
    second = router.with_tier(LinearTier("linear2", {"C": 5.0}), data=support)
    assert [t.name for t in second.tiers] == ["linear", "linear2"] and second.tier("linear2").fitted
    assert second.gates["linear2"].threshold == pytest.approx(second.curves["linear2"].chosen.threshold)
    assert second.primary.name == "linear" and "linear2" not in router.curves  # the original is unchanged
    other = LinearTier("linear3")
    other.labels_ = ("a", "b")
    with pytest.raises(ConfigError, match="trained on other labels than the model"):
        router.with_tier(other)


def test_add_tier_cli_adds_a_registered_tier_to_a_saved_model(saved_model: Path, tmp_path: Path, count_tier: type[CountTier]) -> None:
    out = tmp_path / "with-count"
    res = CliRunner().invoke(app, ["add-tier", "--model", str(saved_model), "--tier", "count_words", "--out", str(out), "--json"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert [t["name"] for t in json.loads(res.stdout)["tiers"]] == ["linear", "count_words"]
    loaded = Router.load(out)
    assert [t.kind for t in loaded.tiers] == ["linear", "count_words"] and loaded.tier("count_words").labels_ == loaded.labels


# -- the outside package: pip-installed into a temporary directory, used through the CLI ----------------------
def _pip_install(package: Path, target: Path) -> None:
    """``pip install`` without network or build isolation (the venv's setuptools builds the wheel)."""
    cmd = [sys.executable, "-m", "pip", "install", "--no-build-isolation", "--no-deps", "--no-index", "--no-cache-dir",
           "--disable-pip-version-check", "--quiet", "--target", str(target), str(package)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def test_an_outside_package_plugs_a_tier_a_provider_and_an_action_into_the_cli(tmp_path: Path, support_dir: Path) -> None:
    source = tmp_path / "frontdesk-keywords"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    site = tmp_path / "site"
    _pip_install(source, site)
    assert (site / "frontdesk_keywords-0.1.0.dist-info" / "entry_points.txt").is_file()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(SRC), os.environ.get("PYTHONPATH", "")])}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "frontdesk", *args], capture_output=True, text=True, env=env, cwd=tmp_path,
                              timeout=300)

    res = cli("plugins", "--check", "--json")
    assert res.returncode == 0, res.stderr
    found = {(r["group"], r["name"]): r for r in json.loads(res.stdout)}
    for key in (("frontdesk.tiers", "keywords"), ("frontdesk.providers", "echo"), ("frontdesk.actions", "note")):
        assert found[key]["origin"] == "package frontdesk-keywords 0.1.0", found[key]

    model = tmp_path / "model"
    res = cli("train", "--data", str(support_dir), "--out", str(model), "--tiers", "keywords,linear", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["tiers"]["keywords"]["keywords"] > 5
    manifest = json.loads((model / "frontdesk.json").read_text())
    assert [t["kind"] for t in manifest["tiers"]] == ["keywords", "linear"]
    keywords = json.loads((model / "tiers" / "keywords" / "keywords.json").read_text())["keywords"]
    word, (label, _share) = sorted(keywords.items())[0]  # a word the tier learned means one label

    config = tmp_path / "frontdesk.yaml"
    config.write_text(json.dumps({"model": str(model), "sinks": [], "labels": {label: {"action": "note"}}}))
    res = cli("route", "--config", str(config), "--llm", "echo", "--format", "json", word, "zzqx blorp wug")
    assert res.returncode == 0, res.stderr
    by_keyword, by_llm = (json.loads(line)["decision"] for line in res.stdout.splitlines())
    # the plug-in tier answered from what it learned, and the plug-in action ran on its decision
    assert by_keyword["tier"] == "keywords" and by_keyword["labels"] == [label]
    assert by_keyword["trace"][0]["rationale"] == f"keyword {word!r}" and by_keyword["trace"][0]["role"] == "model"
    assert [(a["name"], a["status"], a["result"]["noted"]) for a in by_keyword["actions"]] == [("note", "done", label)]
    # no keyword, the linear tier unsure: the plug-in provider was asked (the LLM tier's trace entry is its answer)
    llm = by_llm["trace"][-1]
    assert [t["tier"] for t in by_llm["trace"]] == ["keywords", "linear", "llm"] and llm["role"] == "llm"
    assert llm["rationale"] == "echo" and llm["top"][0]["label"] == by_llm["trace"][1]["top"][0]["label"]
