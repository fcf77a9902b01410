"""The LLM tier's acceptance policy: fitted on recorded validation answers, or the safe default.

Fitting runs over real HTTP against fake OpenAI servers that know the gold labels: one right on
~80 % of messages (a wrong candidate otherwise), one always wrong, both stating confidence 0.9 —
the two kinds of LLM the policy must tell apart. The bundled support dataset is the data; the
linear gate is made strict (0.95) so that most messages reach the LLM.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fake_llm_servers import FakeOpenAIServer, RecordedRequest, answer

from frontdesk import Dataset, GatePolicy, Router, RouterSettings
from frontdesk.errors import ConfigError, ModelError
from frontdesk.evaluation.evaluate import evaluate
from frontdesk.llm.acceptance import POLICY_FILE, AcceptancePolicy, Evidence, Observation, fit_policy, safe_outcome, sign_test
from frontdesk.llm.fit import ANSWERS_FILE, fit_llm, reached_llm

LABELS = ("billing_issue", "refund_request", "shipping_status")


def obs(answer_: str | None, guess: str = "billing_issue", p: dict[str, float] | None = None, conf: float = 0.9) -> Observation:
    ranked = tuple(sorted((p or {"billing_issue": 0.5, "refund_request": 0.3, "shipping_status": 0.2}).items(), key=lambda kv: -kv[1]))
    return Observation((Evidence("linear", ranked),), (guess,), (answer_,) if answer_ else (), conf)


def test_the_safe_default_never_changes_the_label() -> None:
    agree, disagree, none = safe_outcome(obs("billing_issue")), safe_outcome(obs("refund_request")), safe_outcome(obs(None))
    assert (agree.verdict, agree.labels, agree.kind) == ("flag", ["billing_issue"], "agree")
    assert (disagree.verdict, disagree.labels, disagree.kind) == ("escalate", ["billing_issue"], "guess")
    assert (none.verdict, none.labels, none.kind) == ("escalate", ["billing_issue"], "none")
    assert agree.confidence == 0.5  # the classifier's probability, not the LLM's 0.9


def synthetic(rng: np.random.Generator, llm_right: float, n: int = 120) -> tuple[list[Observation], list[list[str]]]:
    """Messages where the classifier's guess is right ~50 % of the time and the LLM ``llm_right`` of the time."""
    out, gold = [], []
    for _ in range(n):
        p_guess = float(rng.uniform(0.3, 0.7))
        truth = "billing_issue" if rng.random() < p_guess else "refund_request"
        wrong = "shipping_status" if truth == "refund_request" else "refund_request"
        said = truth if rng.random() < llm_right else wrong
        out.append(obs(said, p={"billing_issue": p_guess, "refund_request": (1 - p_guess) * 0.7, "shipping_status": (1 - p_guess) * 0.3}))
        gold.append([truth])
    return out, gold


def test_a_good_llm_overrules_the_guess_and_a_bad_one_never_does() -> None:
    rng = np.random.default_rng(13)
    good = fit_policy(*synthetic(rng, 0.95), labels=LABELS, llm_model="m", target_accuracy=0.9)
    bad = fit_policy(*synthetic(rng, 0.0), labels=LABELS, llm_model="m", target_accuracy=0.9)
    assert good.fitted.overrules > 0.8 and not good.keeps_guess and good.fitted.policy_accuracy > 0.9
    assert bad.keeps_guess and bad.fitted.llm_accuracy == 0.0
    o = bad.decide(obs("refund_request"))
    assert o.kind == "guess" and o.labels == ["billing_issue"] and "keeps the classifier's guess" in o.reason
    assert "worse than the classifier's guess" in bad.describe()
    o = good.decide(obs("refund_request"))
    assert o.kind == "llm" and o.labels == ["refund_request"]


def contested(llm_wins: int, guess_wins: int) -> tuple[list[Observation], list[list[str]]]:
    """60 agreements (45 right) and disagreements that all look alike: the LLM says refund_request, the guess is
    billing_issue; the LLM is right in ``llm_wins`` of them, the guess in ``guess_wins``."""
    p = {"billing_issue": 0.45, "refund_request": 0.4, "shipping_status": 0.15}
    out = [obs("billing_issue", p=p) for _ in range(60)] + [obs("refund_request", p=p) for _ in range(llm_wins + guess_wins)]
    gold = [["billing_issue"]] * 45 + [["shipping_status"]] * 15 + [["refund_request"]] * llm_wins + [["billing_issue"]] * guess_wins
    return out, gold


def test_the_llm_overrules_the_guess_only_when_validation_shows_it_wins() -> None:
    assert sign_test(0, 0) == 1.0 and sign_test(5, 0) == 1 / 32 and abs(sign_test(3, 3) - 42 / 64) < 1e-12
    coin = fit_policy(*contested(22, 18), labels=LABELS, llm_model="m", target_accuracy=0.9)
    f = coin.fitted
    assert f.llm_accuracy > f.guess_accuracy  # the LLM *looks* a little better …
    assert not coin.overrule and f.overrule_p > 0.05 and f.overrule_wins <= 22 and f.overrule_losses <= 18  # … unproven
    assert coin.keeps_guess and f.overrules == 0.0
    o = coin.decide(obs("refund_request", p={"billing_issue": 0.45, "refund_request": 0.4, "shipping_status": 0.15}))
    assert o.kind == "guess" and o.labels == ["billing_issue"] and "did not prove" in o.reason
    assert "not shown to beat the guess" in coin.describe() and "won" in coin.describe()
    proven = fit_policy(*contested(34, 6), labels=LABELS, llm_model="m", target_accuracy=0.9)
    assert proven.overrule and proven.fitted.overrule_p < 0.001 and (proven.fitted.overrule_wins, proven.fitted.overrule_losses) == (34, 6)
    o = proven.decide(obs("refund_request", p={"billing_issue": 0.45, "refund_request": 0.4, "shipping_status": 0.15}))
    assert o.kind == "llm" and o.labels == ["refund_request"]
    # a policy saved before the sign test (no 'overrule' key) keeps overruling as it was fitted to
    data = json.loads(proven.model_dump_json())
    del data["overrule"]
    assert AcceptancePolicy.model_validate(data).overrule


def test_fitting_needs_enough_answers() -> None:
    with pytest.raises(ConfigError, match="at least 10"):
        fit_policy([obs("billing_issue")] * 5 + [None] * 20, [["billing_issue"]] * 25, labels=LABELS, llm_model="m", target_accuracy=0.9)


# -- over real HTTP ------------------------------------------------------------------------------

def message_of(rec: RecordedRequest) -> str:
    m = re.search(r"<<<MESSAGE (\w+)>>>\n(.*)\n<<<END \1>>>", rec.user, re.S)
    assert m, rec.user
    return m.group(2)


def gold_llm(gold: dict[str, str], right: float):  # noqa: ANN201
    """A fake LLM right on ``right`` of the messages (when the gold label is a candidate), a wrong candidate
    otherwise; stated confidence always 0.9. Which messages is fixed by a hash of the text."""

    def behave(rec: RecordedRequest):  # noqa: ANN202
        enum = [x for x in rec.enum or [] if x != "none"]
        text = message_of(rec)
        g, h = gold.get(text), int(hashlib.sha256(text.encode()).hexdigest(), 16)
        if g in enum and (h % 1000) < right * 1000:
            return answer([g], 0.9, "gold")
        wrong = [x for x in enum if x != g]
        return answer([wrong[h % len(wrong)]], 0.9, "wrong")

    return behave


@pytest.fixture(scope="module")
def gold(support: Dataset) -> dict[str, str]:
    return {ex.text: ex.labels[0] for ex in support.validation + support.test}


@pytest.fixture(scope="module")
def strict(router: Router) -> Router:
    """The support router with a strict linear gate, so most validation and test messages reach the LLM."""
    return Router(router.tiers, {"linear": GatePolicy(threshold=0.95)}, RouterSettings(), curves=router.curves,
                  descriptions=router.descriptions, examples=router.examples, example_index=router.example_index)


def params(server: FakeOpenAIServer, **extra: object) -> dict:
    return {"provider": "openai", "model": "fake-gpt", "base_url": server.base_url, "retries": 0, "timeout_s": 5.0, **extra}


def test_a_fitted_policy_lets_a_good_llm_lift_accuracy(strict: Router, support: Dataset, gold: dict[str, str], tmp_path: Path) -> None:
    with FakeOpenAIServer(default=gold_llm(gold, 0.8)) as server:
        fitted = fit_llm(strict, support, params(server), answers=tmp_path / ANSWERS_FILE)
        assert fitted.asked == fitted.reached >= fitted.new_calls == len(server.requests) > 50
        report, decisions = evaluate(fitted.router, support.test)
    base, _ = evaluate(strict, support.test)
    assert not fitted.policy.keeps_guess and fitted.policy.fitted.llm_accuracy > fitted.policy.fitted.guess_accuracy
    assert report.llm is not None and report.llm.gain > 0.05 and report.accuracy > base.accuracy
    assert report.llm.accuracy_without == pytest.approx(base.accuracy)  # the counterfactual is the classifier alone
    assert report.llm.outcomes.get("llm", 0) > 0  # the LLM overruled the classifier where it was more likely right
    overruled = [d for d in decisions if d.trace[-1].outcome == "llm" or (len(d.trace) > 1 and d.trace[1].outcome == "llm")]
    assert overruled and all("fitted policy" in d.reason for d in overruled)


def test_an_always_wrong_llm_cannot_lower_accuracy(strict: Router, support: Dataset, gold: dict[str, str], tmp_path: Path) -> None:
    with FakeOpenAIServer(default=gold_llm(gold, 0.0)) as server:
        fitted = fit_llm(strict, support, params(server), answers=tmp_path / ANSWERS_FILE)
        report, _ = evaluate(fitted.router, support.test)
    base, _ = evaluate(strict, support.test)
    assert fitted.policy.keeps_guess and fitted.policy.fitted.llm_accuracy == 0.0
    assert report.accuracy == pytest.approx(base.accuracy) and report.llm.keeps_guess
    assert "keeps the guess" in report.llm.policy and report.llm.outcomes.get("llm", 0) == 0


def test_a_refit_replays_the_recorded_answers(strict: Router, support: Dataset, gold: dict[str, str], tmp_path: Path) -> None:
    with FakeOpenAIServer(default=gold_llm(gold, 0.8)) as server:
        first = fit_llm(strict, support, params(server), answers=tmp_path / ANSWERS_FILE)
        calls = len(server.requests)
        again = fit_llm(strict, support, params(server, accept_accuracy=0.99), answers=tmp_path / ANSWERS_FILE)
        assert len(server.requests) == calls and again.new_calls == 0 and first.new_calls == calls
    assert again.policy.fitted.n_answered == first.policy.fitted.n_answered and again.policy.fitted.target_accuracy == 0.99


def test_the_policy_is_saved_and_reused_for_the_same_llm_model(strict: Router, support: Dataset, gold: dict[str, str],
                                                               tmp_path: Path) -> None:
    with FakeOpenAIServer(default=gold_llm(gold, 0.8)) as server:
        fitted = fit_llm(strict, support, params(server))
        fitted.router.save(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / POLICY_FILE).read_text())
    assert saved["llm_model"] == "fake-gpt" and "coef" in saved["llm_right"] and not list((tmp_path / "m").rglob("*.pkl"))
    loaded = Router.load(tmp_path / "m")
    assert loaded.active_llm_policy is not None and loaded.gates["llm"] == fitted.policy.gate
    with FakeOpenAIServer(default=gold_llm(gold, 0.8)) as elsewhere:  # --llm-base-url alone: same model, policy kept
        moved = loaded.with_llm({"provider": "openai", "base_url": elsewhere.base_url})
        assert moved.active_llm_policy is not None and moved.llm_tier.params.model_name == "fake-gpt"
        d = moved.route(support.test[0].text)
        assert d.labels and (d.tier == "linear" or elsewhere.requests)
    from frontdesk.tiers.llm import LLMParams

    configured = loaded.with_llm(LLMParams(provider="openai", model=None, base_url="http://127.0.0.1:9/v1"))  # serve --llm …
    assert configured.active_llm_policy is not None and configured.llm_tier.params.base_url == "http://127.0.0.1:9/v1"
    other = loaded.with_llm({"provider": "openai", "model": "another-model", "base_url": "http://127.0.0.1:9/v1"})
    assert other.active_llm_policy is None and "another-model" in other.llm_policy_note
    (tmp_path / "m" / POLICY_FILE).write_text("{not json")
    with pytest.raises(ModelError, match="llm fit"):
        Router.load(tmp_path / "m")


def test_the_prompt_shows_the_training_examples_nearest_to_the_message(strict: Router, support: Dataset) -> None:
    texts = [support.test[i].text for i in reached_llm(strict, [ex.text for ex in support.test])[:2]]
    systems = []
    for text in texts:
        with FakeOpenAIServer() as server:
            strict.with_llm(params(server)).route(text)
            systems.append(server.last.system)
            cands = [x for x in server.last.enum if x != "none"]
        near = strict.example_index.nearest(text, cands, 2)
        assert all(json.dumps(e, ensure_ascii=False) in systems[-1] for c in cands for e in near[c])
    assert systems[0] != systems[1]  # another message, other examples


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "frontdesk", *args], capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "OPENAI_API_KEY": "sk-test"})


def test_cli_train_with_an_llm_fits_the_policy_and_eval_reports_it(support_dir: Path, gold: dict[str, str], tmp_path: Path) -> None:
    with FakeOpenAIServer(default=gold_llm(gold, 0.8)) as server:
        res = cli("train", "--data", str(support_dir), "--out", str(tmp_path / "m"), "--max-escalation", "0.5",
                  "--llm", "openai", "--llm-model", "fake-gpt", "--llm-base-url", server.base_url, "--json")
        assert res.returncode == 0, res.stderr
        summary = json.loads(res.stdout)
        assert summary["llm"]["asked"] == len(server.requests) > 10 and (tmp_path / "m" / ANSWERS_FILE).is_file()
    with FakeOpenAIServer(default=gold_llm(gold, 0.8)) as moved:  # the same model at another endpoint
        res = cli("eval", "--model", str(tmp_path / "m"), "--data", str(support_dir), "--llm", "openai", "--llm-base-url", moved.base_url,
                  "--report", str(tmp_path / "r.html"))
    assert res.returncode == 0, res.stderr
    assert "LLM tier — fitted acceptance policy (fake-gpt" in res.stdout and "gain:" in res.stdout
    assert "LLM tier: gain over the classifier&#39;s guess" in (tmp_path / "r.html").read_text()
    res = cli("llm", "show", "--model", str(tmp_path / "m"))
    assert res.returncode == 0 and "openai:fake-gpt" in res.stdout and "fitted acceptance policy" in res.stdout


def test_cli_llm_fit_adds_an_llm_tier_to_a_trained_model(support_dir: Path, gold: dict[str, str], tmp_path: Path) -> None:
    res = cli("train", "--data", str(support_dir), "--out", str(tmp_path / "m"), "--max-escalation", "0.5")
    assert res.returncode == 0, res.stderr
    res = cli("llm", "fit", "--model", str(tmp_path / "m"), "--data", str(support_dir))
    assert res.returncode == 2 and "no LLM tier yet" in res.stderr
    with FakeOpenAIServer(default=gold_llm(gold, 0.0)) as server:
        res = cli("llm", "fit", "--model", str(tmp_path / "m"), "--data", str(support_dir), "--llm", "openai",
                  "--llm-model", "fake-gpt", "--llm-base-url", server.base_url)
        assert res.returncode == 0, res.stderr
        assert "keeps the guess" in res.stdout
        calls = len(server.requests)
        res = cli("llm", "fit", "--model", str(tmp_path / "m"), "--data", str(support_dir), "--llm-accept-accuracy", "0.9")
        assert res.returncode == 0, res.stderr
        assert len(server.requests) == calls and "0 new calls" in res.stdout  # the refit replayed the recording
    model = Router.load(tmp_path / "m")
    assert model.llm_tier is not None and model.active_llm_policy is not None and model.active_llm_policy.keeps_guess
