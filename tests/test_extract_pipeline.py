"""The extract stage inside the pipeline: masked text for every tier and sink, fields and signals on the
decision, store_pii, targets driven by urgency/sentiment, and the LLM tier over real HTTP (a fake
OpenAI-compatible server): prompts without PII across a corpus, fields in the same call."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import yaml
from fake_llm_servers import FakeOpenAIServer, RecordedRequest, answer, text_only

from frontdesk import InputError, Message
from frontdesk.config import STARTER, parse_config
from frontdesk.pipeline import Pipeline
from frontdesk.store.store import Store

BANK = Path(__file__).resolve().parents[1] / "bench" / "data" / "extract"
PII_TEXT = ("I was charged €1.234,50 twice on 3/4 for order #55123. Card 4111 1111 1111 1111, "
            "call me on 07911 123456 or mail jane.doe@example.com. Refund to DE89 3704 0044 0532 0130 00")
META = {"sent_at": "2026-03-06T09:14:00+00:00", "locale": "en-GB"}


def config(tmp_path: Path, model: Path, **overrides: object) -> dict:
    data = yaml.safe_load(STARTER)
    data.update(model=str(model), sinks=[f"jsonl://{tmp_path / 'routed.jsonl'}"], store=f"sqlite:///{tmp_path / 'fd.db'}")
    data.update(overrides)
    return data


def pipeline(tmp_path: Path, model: Path, **overrides: object) -> Pipeline:
    return Pipeline(__import__("frontdesk").Router.load(model), parse_config(config(tmp_path, model, **overrides)))


def test_decision_has_fields_signals_and_only_masked_text(saved_model: Path, tmp_path: Path) -> None:
    p = pipeline(tmp_path, saved_model)
    out = p.route(Message(text=PII_TEXT, sender="u1", channel="email", metadata=META))
    p.close()
    d = out.decision
    assert d.text == ("I was charged €1.234,50 twice on 3/4 for order #55123. Card <CARD_1>, call me on <PHONE_1> "
                      "or mail <EMAIL_1>. Refund to <IBAN_1>")
    assert d.message is not None and d.message.text == d.text and d.original_text is None and d.pii is None
    assert d.fields == {"amounts": [{"value": "1234.50", "currency": "EUR"}], "dates": ["2025-04-03"],
                        "emails": ["<EMAIL_1>"], "phones": ["<PHONE_1>"], "cards": ["**** **** **** 1111"],
                        "ibans": ["<IBAN_1>"], "order_ids": ["55123"]}
    assert d.sentiment is not None and d.urgency in ("normal", "high")
    target = out.targets[0]
    assert target.fields == d.fields and target.urgency == d.urgency and target.sentiment == d.sentiment.label
    delivered = (tmp_path / "routed.jsonl").read_text()
    for secret in ("4111 1111 1111 1111", "07911 123456", "jane.doe@example.com", "DE89 3704"):
        assert secret not in delivered and secret not in d.model_dump_json()


def test_store_pii_keeps_the_originals_in_the_store_only(saved_model: Path, tmp_path: Path) -> None:
    p = pipeline(tmp_path, saved_model, extract={"store_pii": True})
    out = p.route(Message(text=PII_TEXT, metadata=META))
    p.close()
    d = out.decision
    assert "<EMAIL_1>" in d.text  # the tiers still saw the masked text
    assert d.original_text == PII_TEXT.replace("4111 1111 1111 1111", "**** **** **** 1111")  # cards: masked, always
    assert d.pii is not None and d.pii.placeholders["<EMAIL_1>"] == "jane.doe@example.com"
    assert d.pii.fields["phones"] == ["+447911123456"] and d.pii.fields["ibans"] == ["DE89370400440532013000"]
    assert d.pii.fields["cards"] == ["**** **** **** 1111"] and d.pii.placeholders["<CARD_1>"] == "**** **** **** 1111"
    assert "4111 1111 1111 1111" not in d.model_dump_json()
    assert out.targets[0].fields["emails"] == ["<EMAIL_1>"]  # what leaves the process stays masked
    with Store(f"sqlite:///{tmp_path / 'x.db'}") as store:
        store.save_decision(d)
        assert store.get_decision(d.id) == d


def test_html_original_is_masked_with_the_same_numbers(saved_model: Path, tmp_path: Path) -> None:
    html = "<p>Please refund me, mail <b>ana@example.org</b></p><p>Thanks,<br>Ana<br>ana@example.org</p>"
    p = pipeline(tmp_path, saved_model)
    d = p.route(html).decision
    p.close()
    assert "ana@example.org" not in (d.original_text or "") and "<EMAIL_1>" in (d.original_text or "")


@pytest.mark.parametrize(("meta", "needle"), [({"sent_at": "yesterday"}, "metadata.sent_at"),
                                                ({"locale": "British"}, "metadata.locale")])
def test_unreadable_metadata_is_an_input_error(saved_model: Path, tmp_path: Path, meta: dict, needle: str) -> None:
    p = pipeline(tmp_path, saved_model)
    with pytest.raises(InputError, match=needle):
        p.route(Message(text="refund me", metadata=meta))
    p.close()


def test_metadata_locale_and_time_drive_dates_and_phones(saved_model: Path, tmp_path: Path) -> None:
    p = pipeline(tmp_path, saved_model, extract={"store_pii": True})
    us = p.route(Message(text="charged twice on 3/4, call (415) 555-0132", metadata={"locale": "en-US", **{
        "sent_at": "2026-05-14T13:20:00-04:00"}})).decision
    gb = p.route(Message(text="charged twice on 3/4", metadata={"sent_at": "2026-05-14T13:20:00+01:00"})).decision
    p.close()
    assert us.fields["dates"] == ["2026-03-04"] and us.pii is not None and us.pii.fields["phones"] == ["+14155550132"]
    assert gb.fields["dates"] == ["2026-04-03"]


def test_signals_raise_priority_shorten_sla_and_require_a_human(saved_model: Path, tmp_path: Path) -> None:
    p = pipeline(tmp_path, saved_model, labels={"account_access": {"queue": "accounts", "priority": 3, "sla_minutes": 600,
                                                                   "urgency": "high"}})
    hacked = p.route("Someone hacked my account and is using it right now, lock it!").decision
    lawyer = p.route("The refund never came. I am talking to my LAWYER tomorrow.")
    furious = p.route("This is the WORST service ever, you useless thieves, I want my money!!!").decision
    calm = p.route("how do I change my delivery address?").decision
    p.close()
    assert hacked.urgency == "critical"
    routed_hacked = fan(p, hacked)  # STARTER: signals.priority {critical: 1}, sla_minutes {critical: 30}
    assert routed_hacked.priority == 1 and routed_hacked.sla_minutes is not None and routed_hacked.sla_minutes <= 30
    assert lawyer.decision.requires_human and lawyer.targets[0].requires_human and lawyer.targets[0].needs_review
    assert furious.sentiment is not None and furious.sentiment.very_negative and furious.requires_human
    assert not calm.requires_human and calm.urgency in ("low", "normal")
    with Store(f"sqlite:///{tmp_path / 'rh.db'}") as store:
        store.save_decisions([lawyer.decision, furious, calm])
        reasons = {i.decision_id: i.reason for i in store.review_queue()}
        assert reasons[lawyer.decision.id] == "requires_human" and calm.id not in reasons


def fan(p: Pipeline, decision):  # noqa: ANN001, ANN201 - the first target of a decision under the pipeline's targets
    from frontdesk.routing.targets import fan_out

    return fan_out(decision, p.targets)[0]


# -- the LLM tier over real HTTP ----------------------------------------------------------------
def llm_pipeline(tmp_path: Path, model: Path, server: FakeOpenAIServer, **overrides: object) -> Pipeline:
    """Every message goes to the LLM: the classifier's gate accepts nothing and calls nothing out of scope."""
    llm = {"provider": "openai", "model": "gpt-4o-mini", "base_url": server.base_url, "retries": 0, "cache_ttl_s": 0}
    return pipeline(tmp_path, model, gates={"linear": {"threshold": 1.0, "oos_detection": False}}, llm=llm, rules=[], **overrides)


def test_llm_prompts_carry_no_pii_across_the_corpus(saved_model: Path, tmp_path: Path) -> None:
    rows = [json.loads(line) for name in ("extraction_corpus.jsonl", "extraction_holdout.jsonl")
            for line in (BANK / name).read_text().splitlines()]
    rows = [r for r in rows if r["pii"]]
    surfaces = {p["surface"] for r in rows for p in r["pii"]}
    with FakeOpenAIServer() as server:
        p = llm_pipeline(tmp_path, saved_model, server, extract={"default_locale": "en-GB"})
        for r in rows:
            d = p.route(Message(text=r["text"], metadata={"sent_at": r["sent_at"], "locale": r["locale"]})).decision
            assert d.tier == "llm", d.reason
        p.close()
        requests = list(server.requests)
    assert len(rows) >= 90 and len(surfaces) >= 90 and len(requests) == len(rows)  # one call per message
    log = "\n".join(r.raw.decode("utf-8") + json.dumps(r.body, ensure_ascii=False) for r in requests)
    leaked = sorted(s for s in surfaces if s in log)
    assert leaked == []  # 0 PII values in the fake LLM server's log
    assert sum("<EMAIL_1>" in r.user for r in requests) >= 20 and sum("<CARD_1>" in r.user for r in requests) >= 20


SCHEMA = {"type": "object", "required": ["amount"], "properties": {
    "amount": {"type": "number", "minimum": 0}, "merchant": {"type": "string", "maxLength": 60},
    "date": {"type": "string", "format": "date", "pattern": r"^\d{4}-\d{2}-\d{2}$"},
    "requested_outcome": {"type": "string", "enum": ["refund", "explanation", "replacement"]}}}


def test_llm_returns_the_labels_fields_in_the_same_call(saved_model: Path, tmp_path: Path) -> None:
    def reply(rec: RecordedRequest):  # noqa: ANN202 - the model fills billing_issue's fields, one of them invalid
        label = "billing_issue" if "billing_issue" in (rec.enum or []) else rec.enum[0]
        return text_only(json.dumps({"labels": [label], "confidence": 0.9, "rationale": "double charge",
                                     "fields": {label: {"amount": 49.9, "merchant": "Brightcart <EMAIL_1>",
                                                        "date": "last Tuesday", "requested_outcome": "refund",
                                                        "colour": "red"}}}))

    with FakeOpenAIServer(default=reply) as server:
        p = llm_pipeline(tmp_path, saved_model, server, labels={"billing_issue": {"extract_schema": SCHEMA}},
                         extract={"store_pii": True})
        d = p.route(Message(text="You charged me £49.90 twice, the receipt went to jane@example.com", metadata=META)).decision
        p.close()
        assert len(server.requests) == 1  # one call: label and fields together
        req = server.requests[0]
    assert d.tier == "llm" and d.labels == ["billing_issue"]
    schema = req.schema
    assert schema is not None and set(schema["properties"]["fields"]["properties"]) == {"billing_issue"}
    assert schema["properties"]["fields"]["properties"]["billing_issue"]["additionalProperties"] is False
    assert "jane@example.com" not in req.raw.decode()
    assert d.fields["amount"] == 49.9 and d.fields["requested_outcome"] == "refund"
    assert d.fields["merchant"] == "Brightcart <EMAIL_1>" and d.pii is not None
    assert d.pii.fields["merchant"] == "Brightcart jane@example.com"  # unmasked only in the PII record
    assert "date" not in d.fields and "colour" not in d.fields  # invalid values dropped, never repaired
    assert d.fields["amounts"] == [{"value": "49.90", "currency": "GBP"}]  # the rules path ran too
    notes = d.trace[-1].field_notes or []
    assert any("date" in n and "dropped" in n for n in notes) and any("colour" in n for n in notes)


def test_confident_routine_messages_never_call_the_llm(saved_model: Path, tmp_path: Path) -> None:
    with FakeOpenAIServer() as server:
        llm = {"provider": "openai", "model": "gpt-4o-mini", "base_url": server.base_url}
        p = pipeline(tmp_path, saved_model, llm=llm, gates={"linear": {"threshold": 0.0, "min_margin": 0.0}},
                     labels={"billing_issue": {"extract_schema": SCHEMA}})
        d = p.route(Message(text="I was charged twice, £12.99 on 3/4, order #55123", metadata=META)).decision
        p.close()
        assert server.requests == []
    assert d.tier == "linear" and d.fields["amounts"] == [{"value": "12.99", "currency": "GBP"}]
    assert "amount" not in d.fields  # the LLM's fields come only with an LLM answer


def test_llm_without_schemas_sends_the_plain_answer_schema(saved_model: Path, tmp_path: Path) -> None:
    with FakeOpenAIServer() as server:
        server.enqueue(answer(None, 0.9))
        p = llm_pipeline(tmp_path, saved_model, server)
        d = p.route("where is my parcel?").decision
        p.close()
        assert "fields" not in (server.requests[0].schema or {}).get("properties", {})
    assert d.tier == "llm" and d.trace[-1].fields is None


def test_old_stored_decisions_still_load(tmp_path: Path) -> None:
    """A decision stored before the extract stage (no fields, sentiment, actions …) loads with defaults."""
    old = {"id": "abc", "text": "hi", "labels": ["x"], "confidence": 0.9, "tier": "linear", "escalated": False,
           "flagged": False, "reason": "", "truncated": False, "trace": [{"tier": "linear", "kind": "linear",
           "verdict": "accept"}], "cost_usd": 0.0, "latency_ms": 1.0, "created_at": dt.datetime(2025, 1, 1).isoformat()}
    from frontdesk import Decision

    d = Decision.model_validate_json(json.dumps(old))
    assert d.fields == {} and d.sentiment is None and d.actions == [] and not d.requires_human and d.pii is None
