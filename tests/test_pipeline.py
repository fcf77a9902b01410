"""The inbound pipeline end to end: config → preprocess → dedup → language → rules → model → targets → sinks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from frontdesk import ConfigError, Dataset, Message, Router
from frontdesk.config import STARTER, load_config, parse_config
from frontdesk.pipeline import Pipeline
from frontdesk.routing.sinks import JsonlSink, WebhookSink

HTML_EMAIL = """<html><head><style>p { color: red }</style></head><body>
<p>Hi team,</p><p>I was charged <b>twice</b> for order #4411 this month, please fix the invoice.</p>
<p>Best regards,<br>Dana Smith<br>Head of Procurement, Acme Ltd</p>
<div class="gmail_quote">On Mon, 3 Mar 2025 at 10:00, Brightcart Support &lt;help@brightcart.com&gt; wrote:<br>
<blockquote>Thanks for reaching out about your delivery, is there anything else?</blockquote></div>
</body></html>"""


def write_config(tmp_path: Path, model: Path, **overrides: object) -> Path:
    data = yaml.safe_load(STARTER)
    data["model"] = str(model)
    data["sinks"] = [f"jsonl://{tmp_path / 'routed.jsonl'}"]
    data.update(overrides)
    path = tmp_path / "frontdesk.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_starter_config_is_valid(saved_model: Path, tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, saved_model))
    assert cfg.model == saved_model and cfg.rules[0].label == "legal_or_complaint"
    assert cfg.preprocess.dedup_window_s == 60


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("model: m\nrouter: [unclosed\n", "not valid YAML at line"),
        ("model: m\ntresholds: {}\n", "tresholds: Extra inputs are not permitted"),
        ("model: m\nrouter: {}\nlabels: {a: {priority: 9}}\n", "labels.a.priority"),
        ("model: m\nrules: [{label: legal, patterns: ['(']}]\n", "rules.0.patterns"),
        ("- just a list\n", "must be a YAML mapping"),
        ("model: m\ntargets: {default_model_tier: huge}\n", "unknown model tier"),
    ],
)
def test_bad_config_names_the_field(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace("(", r"\(")):
        cfg = load_config(path)
        cfg.targets_config()


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="frontdesk init"):
        load_config(tmp_path / "nope.yaml")


@pytest.fixture()
def pipeline(saved_model: Path, tmp_path: Path) -> Pipeline:
    p = Pipeline.from_config(write_config(tmp_path, saved_model))
    yield p
    p.close()


def test_html_email_is_cleaned_routed_and_delivered(pipeline: Pipeline, tmp_path: Path) -> None:
    out = pipeline.route(Message(text=HTML_EMAIL, sender="dana@acme.test", channel="email"))
    d = out.decision
    assert "<p>" not in d.text and "charged twice" in d.text
    assert "Thanks for reaching out" not in d.text and "Head of Procurement" not in d.text
    # the stored original is masked too (extract.store_pii is off by default): the quoted address is PII
    assert d.original_text == HTML_EMAIL.replace("help@brightcart.com", "<EMAIL_1>") and d.language == "en"
    assert d.labels == ["billing_issue"]
    assert len(out.targets) == 1 and out.targets[0].parent_id == d.id and out.delivery_errors == []
    lines = [json.loads(x) for x in (tmp_path / "routed.jsonl").read_text().splitlines()]
    assert [x["id"] for x in lines] == [out.targets[0].id]


def test_dedup_returns_the_earlier_decision(saved_model: Path, tmp_path: Path) -> None:
    now = [1000.0]
    p = Pipeline.from_config(write_config(tmp_path, saved_model), clock=lambda: now[0])
    first = p.route(Message(text="Where is my parcel? Order 7781", sender="u1")).decision
    again = p.route(Message(text="where is my parcel?  order 7781", sender="u1"))
    assert again.decision.duplicate_of == first.id and again.decision.id != first.id
    assert again.decision.labels == first.labels and again.targets == [] and "duplicate of" in again.decision.reason
    other = p.route(Message(text="Where is my parcel? Order 7781", sender="u2")).decision
    assert other.duplicate_of is None
    now[0] += 61  # after the window: classified afresh
    assert p.route(Message(text="Where is my parcel? Order 7781", sender="u1")).decision.duplicate_of is None


def test_unsupported_language_goes_to_the_language_queue(saved_model: Path, tmp_path: Path) -> None:
    path = write_config(tmp_path, saved_model, preprocess={"supported_languages": ["en"]},
                        targets={"language_queue": {"queue": "translation", "priority": 3}})
    p = Pipeline.from_config(path)
    out = p.route("Hallo, ich habe meine Bestellung immer noch nicht erhalten. Wo ist mein Paket?")
    assert out.decision.language == "de" and out.decision.tier == "human" and out.decision.labels == []
    assert "language 'de'" in out.decision.reason and [t.queue for t in out.targets] == ["translation"]
    assert p.route("Hello, my parcel has still not arrived, where is it?").decision.language == "en"


def test_guardrails_preroute_before_the_model(pipeline: Pipeline) -> None:
    out = pipeline.route("The refund never came. I am talking to my LAWYER tomorrow.")
    assert out.decision.labels == ["legal_or_complaint"] and out.decision.tier == "guardrails"
    assert out.decision.trace[0].rationale.startswith("matched")
    normal = pipeline.route("please cancel my subscription at the end of the month")
    assert normal.decision.tier in ("linear", "human") and normal.decision.trace[0].tier == "guardrails"


def test_three_bands_and_targets_end_to_end(saved_model: Path, tmp_path: Path) -> None:
    path = write_config(
        tmp_path, saved_model, gates={"linear": {"threshold": 0.5, "flag_threshold": 0.97, "min_margin": 0.0}},
        labels={"shipping_status": {"queue": "logistics", "priority": 2, "sla_minutes": 60, "model_tier": "tool_use"}},
    )
    p = Pipeline.from_config(path)
    outcomes = [p.route(t) for t in [
        "Hi, where is my order #5521? The tracking page has not updated for a week.",
        "my package",
        "hmm",
    ]]
    bands = {o.decision.tier if o.decision.tier == "human" else ("flag" if o.decision.flagged else "accept") for o in outcomes}
    ship = outcomes[0]
    assert ship.decision.labels == ["shipping_status"]
    t = ship.targets[0]
    assert t.queue == "logistics" and t.priority == 2 and t.due_at is not None
    assert (t.due_at - t.created_at).total_seconds() == 3600
    assert t.model_tier == ("tool_use" if t.confidence >= 0.6 else "reasoning")
    for o in outcomes:
        d = o.decision
        if d.tier == "human":
            assert o.targets[0].queue == "human-review" and o.targets[0].model_tier == "reasoning"
        elif d.flagged:
            assert "review band" in d.reason and o.targets[0].needs_review
        else:
            assert not o.targets[0].needs_review
    assert len(bands) >= 2


def test_label_threshold_from_config(saved_model: Path, tmp_path: Path) -> None:
    p = Pipeline.from_config(write_config(tmp_path, saved_model, labels={"shipping_status": {"threshold": 1.0}}))
    d = p.route("Hi, where is my order #5521? The tracking page has not updated for a week.").decision
    assert d.tier == "human" and "label threshold 1.00" in d.reason


def test_config_naming_unknown_labels_or_tiers_fails(saved_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown label"):
        Pipeline.from_config(write_config(tmp_path, saved_model, labels={"nope": {"queue": "x"}}))
    with pytest.raises(ConfigError, match="no tier named 'llm'"):
        Pipeline.from_config(write_config(tmp_path, saved_model, gates={"llm": {"threshold": 0.5}}))


def test_multi_intent_fans_out_with_a_parent_id(tmp_path: Path) -> None:
    parts = {"refund": ["refund my order", "I want my money back", "give me a refund", "refund the last payment"],
             "cancel": ["cancel my plan", "stop my subscription", "close my account now", "end my membership"],
             "track": ["where is my parcel", "track my package", "my order has not arrived", "delivery status please"]}
    train = [(t, k) for k, ts in parts.items() for t in ts]
    train += [(f"{a} and {b}", [ka, kb]) for ka, ta in parts.items() for kb, tb in parts.items() if ka < kb for a, b in zip(ta, tb)]
    router = Router.train(Dataset.from_examples(train, train), ["linear"])
    p = Pipeline(router, parse_config({"model": ".", "rules": [], "gates": {"linear": {"threshold": 0.0}}}), sinks=[JsonlSink(tmp_path / "t.jsonl")])
    out = p.route("refund my order and cancel my plan")
    assert set(out.decision.labels) == {"refund", "cancel"}
    assert len(out.targets) == 2 and {t.label for t in out.targets} == {"refund", "cancel"}
    assert {t.parent_id for t in out.targets} == {out.decision.id} and out.targets[0].id != out.targets[1].id


def test_a_failing_sink_loses_nothing(router: Router) -> None:
    cfg = parse_config({"model": ".", "rules": []})
    p = Pipeline(router, cfg, sinks=[WebhookSink("http://127.0.0.1:9/hook", retries=0, timeout_s=0.5)])
    out = p.route("where is my parcel")
    assert out.decision.labels and out.delivery_errors and "WebhookSink" in out.delivery_errors[0]
