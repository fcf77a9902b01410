"""The OpenAI-compatible and Anthropic providers, with the real SDKs against fake servers on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import math
import socket
import time
import traceback
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone

import pytest

pytest.importorskip("openai")
pytest.importorskip("anthropic")

from fake_llm_servers import (  # noqa: E402
    FakeAnthropicServer,
    FakeOpenAIServer,
    anthropic_server,  # noqa: F401 - a fixture
    answer,
    content_filter,
    empty,
    hang,
    hang_up,
    malformed,
    no_choices,
    openai_server,  # noqa: F401 - a fixture
    out_of_set,
    raw,
    refusal,
    slow,
    status,
    text_only,
    trickle,
)

from frontdesk.errors import ConfigError  # noqa: E402
from frontdesk.llm.providers.anthropic_api import AnthropicProvider  # noqa: E402
from frontdesk.llm.base import LLMRequest, LLMResponse, Provider, ProviderError  # noqa: E402
from frontdesk.llm.deadline import deadline_scope  # noqa: E402
from frontdesk.llm.providers.openai_compat import (  # noqa: E402
    LOCAL_PLACEHOLDER_KEY,
    OpenAIProvider,
    is_local_url,
    label_probs_from_logprobs,
    label_value_spans,
    parse_retry_after,
    strip_code_fence,
)

CANDIDATES = ("card_lost", "billing_issue", "refund_status")
SCHEMA = {
    "type": "object",
    "properties": {
        "labels": {"type": "array", "items": {"type": "string", "enum": [*CANDIDATES, "none"]}, "minItems": 1, "maxItems": 2},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "rationale": {"type": "string"},
    },
    "required": ["labels", "confidence", "rationale"],
    "additionalProperties": False,
}
KEY = "sk-test-SECRET-0123456789abcdef"


def request(timeout_s: float = 5.0, **kw) -> LLMRequest:
    return LLMRequest(system="You classify customer messages. Answer in JSON.",
                      user="<<<MESSAGE\nI lost my card yesterday\nMESSAGE>>>",
                      schema=SCHEMA, allowed=CANDIDATES, timeout_s=timeout_s, **kw)


@pytest.fixture
def no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "MY_LLM_KEY"):
        monkeypatch.delenv(var, raising=False)


def openai_provider(server: FakeOpenAIServer, **kw) -> OpenAIProvider:
    kw.setdefault("api_key", KEY)
    return OpenAIProvider("gpt-test", base_url=server.base_url, **kw)


def anthropic_provider(server: FakeAnthropicServer, **kw) -> AnthropicProvider:
    kw.setdefault("api_key", KEY)
    return AnthropicProvider("claude-test", base_url=server.base_url, **kw)


def fail(provider, req: LLMRequest | None = None) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        provider.complete(req or request())
    return info.value


# == pure helpers ==================================================================================


def tok(text: str, lp: float, raw: bytes | None = None) -> tuple[str, float, list[int] | None]:
    return (text, lp, list(raw) if raw is not None else list(text.encode()))


def test_label_probs_sum_the_tokens_spanning_the_label_including_a_token_that_straddles_the_quote() -> None:
    text = '{"labels": ["billing_issue"], "confidence": 0.8}'
    tokens = [tok('{"', -0.01), tok("labels", -0.01), tok('":', 0.0), tok(' ["', -0.02),
              tok("bill", -0.1), tok("ing", -0.2), tok("_issue", -0.3), tok('"],', -0.05),
              tok(' "', 0.0), tok("confidence", 0.0), tok('":', 0.0), tok(" 0.8", -1.0), tok("}", 0.0)]
    probs = label_probs_from_logprobs(text, tokens, CANDIDATES)
    # ' ["' ends with the opening quote: it does not overlap the label's characters, '"],' does not either
    assert probs == {"billing_issue": pytest.approx(math.exp(-0.6))}
    straddling = [tok('{"labels": ["bill', -0.5), tok("ing_issue", -0.25), tok('"], "confidence": 0.8}', -2.0)]
    assert label_probs_from_logprobs(text, straddling, CANDIDATES) == {"billing_issue": pytest.approx(math.exp(-0.75))}


def test_label_probs_use_token_bytes_for_characters_split_across_tokens() -> None:
    label = "café_refund"
    text = json.dumps({"labels": [label]}, ensure_ascii=False)
    e_acute = "é".encode()
    before, after = text.split("é")
    tokens = [tok(before, -0.5), ("bytes:\\xc3", -0.1, [e_acute[0]]), ("bytes:\\xa9", -0.2, [e_acute[1]]),
              tok(after, -0.3)]
    # the first token also contains '{"labels": ["' (not the label); the label spans all four tokens
    assert label_probs_from_logprobs(text, tokens, [label]) == {label: pytest.approx(math.exp(-1.1))}


def test_label_probs_multi_label_and_labels_outside_the_answer() -> None:
    text = '{"labels": ["card_lost", "refund_status"]}'
    tokens = [tok('{"labels": ["', 0.0), tok("card_lost", -0.4), tok('", "', 0.0), tok("refund", -0.1),
              tok("_status", -0.1), tok('"]}', 0.0)]
    probs = label_probs_from_logprobs(text, tokens, CANDIDATES)
    assert probs == {"card_lost": pytest.approx(math.exp(-0.4)), "refund_status": pytest.approx(math.exp(-0.2))}
    assert "billing_issue" not in probs


def test_label_spans_skip_keys_and_mentions_inside_other_strings() -> None:
    text = '{"card_lost": 1, "rationale": "not \\"card_lost\\" but billing_issue", "labels": ["card_lost"]}'
    spans = label_value_spans(text, CANDIDATES)
    assert set(spans) == {"card_lost"}  # billing_issue only appears inside the rationale's text
    start, end = spans["card_lost"]
    assert text[start - 1:end + 1] == '"card_lost"' and start > text.index('"labels"')


def test_label_probs_none_when_tokens_do_not_spell_the_answer() -> None:
    assert label_probs_from_logprobs('{"labels": ["card_lost"]}', [], CANDIDATES) is None
    assert label_probs_from_logprobs('{"labels": ["card_lost"]}', [tok('{"labels": ["other"]}', -1.0)], CANDIDATES) is None
    # leading whitespace in the tokens that the server stripped from the content is tolerated
    spaced = [tok("\n", 0.0), tok('{"labels": ["', 0.0), tok("card_lost", -0.3), tok('"]}', 0.0)]
    assert label_probs_from_logprobs('{"labels": ["card_lost"]}', spaced, CANDIDATES) == {"card_lost": pytest.approx(math.exp(-0.3))}


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after({"retry-after": "7"}) == 7.0
    assert parse_retry_after({"retry-after": "1.5"}) == 1.5
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    now = time.time()
    date = format_datetime(datetime.fromtimestamp(now, timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=now) == pytest.approx(30, abs=1)
    past = format_datetime(datetime.fromtimestamp(now, timezone.utc) - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after({"retry-after": past}, now=now) == 0.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({"retry-after": "-3"}) is None
    assert parse_retry_after({}) is None and parse_retry_after(None) is None


def test_local_urls_and_code_fences() -> None:
    for url in ("http://localhost:11434/v1", "http://127.0.0.1:8000/v1", "http://[::1]:1234/v1", "http://127.0.0.2/v1"):
        assert is_local_url(url), url
    for url in ("https://api.openai.com/v1", "http://10.0.0.5:8000/v1", "https://localhost.example.com/v1", None):
        assert not is_local_url(url), url
    assert strip_code_fence('```json\n{"a": 1}\n```') == '{"a": 1}'
    assert strip_code_fence('{"a": 1}') == '{"a": 1}'


# == OpenAI-compatible =============================================================================


def test_openai_answer_request_shape_usage_and_label_probs(openai_server: FakeOpenAIServer) -> None:
    openai_server.enqueue(answer("billing_issue", 0.8, "about a bill", token_probs={"billing_issue": 0.6}))
    provider = openai_provider(openai_server)
    assert isinstance(provider, Provider)
    resp = provider.complete(request(max_tokens=123, temperature=0.0))

    assert isinstance(resp, LLMResponse)
    assert json.loads(resp.text) == {"labels": ["billing_issue"], "confidence": 0.8, "rationale": "about a bill"}
    assert resp.model == "gpt-test"
    # label_probs come from the token log-probs (0.6), not from the self-reported confidence (0.8)
    assert resp.label_probs == {"billing_issue": pytest.approx(0.6, rel=1e-6)}
    sent = openai_server.last
    usage = sent.response["usage"]
    assert (resp.input_tokens, resp.output_tokens) == (usage["prompt_tokens"], usage["completion_tokens"])
    assert resp.input_tokens > 0 and resp.output_tokens > 0

    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    body = sent.body
    assert body["model"] == "gpt-test"
    assert body["messages"] == [{"role": "system", "content": request().system}, {"role": "user", "content": request().user}]
    assert body["response_format"] == {"type": "json_schema", "json_schema": {"name": "classification", "schema": SCHEMA, "strict": True}}
    assert sent.enum == [*CANDIDATES, "none"]
    assert body["logprobs"] is True
    assert body["max_tokens"] == 123 and body["temperature"] == 0.0
    assert len(openai_server.requests) == 1


def test_openai_default_answer_multi_label_and_logprobs_off(openai_server: FakeOpenAIServer) -> None:
    provider = openai_provider(openai_server)
    resp = provider.complete(request())  # empty queue: the first enum label
    assert json.loads(resp.text)["labels"] == ["card_lost"]
    assert resp.label_probs == {"card_lost": pytest.approx(0.9, rel=1e-6)}

    openai_server.enqueue(answer(["card_lost", "refund_status"], 0.7, token_probs={"card_lost": 0.95}))
    resp = provider.complete(request())
    assert resp.label_probs == {"card_lost": pytest.approx(0.95, rel=1e-6), "refund_status": pytest.approx(0.7, rel=1e-6)}

    quiet = openai_provider(openai_server, logprobs=False)
    resp = quiet.complete(request())
    assert "logprobs" not in openai_server.last.body and resp.label_probs is None


def test_openai_server_without_logprobs_gives_no_label_probs() -> None:
    with FakeOpenAIServer(logprobs=False) as server:
        resp = openai_provider(server).complete(request())
        assert server.last.body["logprobs"] is True
        assert resp.label_probs is None and json.loads(resp.text)["labels"] == ["card_lost"]


@pytest.mark.parametrize(
    ("behaviour", "kind", "code"),
    [
        (status(429), "rate_limit", 429),
        (status(500), "server_error", 500),
        (status(503), "server_error", 503),
        (status(400, message="Invalid 'messages': empty."), "client_error", 400),
        (status(404), "client_error", 404),
        (hang_up(), "connection", None),
        (empty(), "bad_response", None),
        (no_choices(), "bad_response", None),
        (raw("<html>gateway</html>"), "bad_response", None),
        (raw({"unexpected": True}), "bad_response", None),
        (refusal(), "refusal", None),
        (content_filter(), "refusal", None),
    ],
    ids=lambda v: getattr(v, "kind", None) and f"{v.kind}{v.code if v.kind == 'status' else ''}",
)
def test_openai_failures_map_to_kinds_with_one_request_each(openai_server: FakeOpenAIServer, behaviour, kind: str, code) -> None:
    openai_server.enqueue(behaviour)
    err = fail(openai_provider(openai_server))
    assert err.kind == kind
    assert err.status == code
    assert err.tier == "llm"
    assert err.retryable == (kind in {"rate_limit", "server_error", "connection", "timeout"})
    assert len(openai_server.requests) == 1  # the SDK's own retries are off
    assert KEY not in str(err)


def test_openai_timeout_uses_the_request_timeout(openai_server: FakeOpenAIServer) -> None:
    openai_server.enqueue(hang())
    provider = openai_provider(openai_server, tier_name="llm-big")
    err = fail(provider, request(timeout_s=0.3))
    assert err.kind == "timeout" and err.retryable and err.tier == "llm-big"
    assert openai_server.held == 1  # the server still holds the request: the client's timeout ended the call
    assert len(openai_server.requests) == 1
    openai_server.release()
    # the provider still works after a timed-out call (the dead connection is not reused)
    assert json.loads(provider.complete(request()).text)["labels"] == ["card_lost"]


@pytest.mark.parametrize("which", ["openai", "anthropic"])
def test_a_trickling_server_is_cut_off_at_the_deadline(which: str) -> None:
    """A byte every 50 ms never trips a 5 s per-read timeout; the call's deadline still ends the call."""
    server = FakeOpenAIServer() if which == "openai" else FakeAnthropicServer()
    with server:
        provider = openai_provider(server) if which == "openai" else anthropic_provider(server)
        server.enqueue(trickle(0.05))  # ~500 bytes: 25 s to send, status line and headers included
        with deadline_scope(time.monotonic() + 0.5):
            err = fail(provider, request(timeout_s=5.0))
        rec = server.last
        assert err.kind == "timeout" and not rec.finished and 0 < rec.sent_bytes
        # the client closed its connection (it did not leave a reader behind): the server's writes start failing
        deadline = time.monotonic() + 20
        while not rec.client_gone and time.monotonic() < deadline:
            time.sleep(0.02)
        assert rec.client_gone and not rec.finished
        # outside a deadline scope the same client waits for the whole (short) trickle
        server.enqueue(trickle(0.001))
        assert json.loads(provider.complete(request(timeout_s=5.0)).text)["labels"] == ["card_lost"]


def test_openai_slow_but_within_the_limit_answers(openai_server: FakeOpenAIServer) -> None:
    openai_server.enqueue(slow(0.2, answer("refund_status", 0.66)))
    resp = openai_provider(openai_server).complete(request(timeout_s=5))
    assert json.loads(resp.text)["labels"] == ["refund_status"]


def test_openai_retry_after_header(openai_server: FakeOpenAIServer) -> None:
    provider = openai_provider(openai_server)
    openai_server.enqueue(status(429, retry_after=7))
    err = fail(provider)
    assert (err.kind, err.retry_after) == ("rate_limit", 7.0)
    openai_server.enqueue(status(429, headers={"retry-after-ms": "1500"}))
    assert fail(provider).retry_after == 1.5
    when = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=60), usegmt=True)
    openai_server.enqueue(status(429, retry_after=when))
    assert fail(provider).retry_after == pytest.approx(60, abs=2)
    openai_server.enqueue(status(429))
    assert fail(provider).retry_after is None
    openai_server.enqueue(status(503, retry_after=4))
    err = fail(provider)
    assert (err.kind, err.retry_after) == ("server_error", 4.0)


def test_openai_malformed_and_out_of_set_answers_are_returned_for_the_tier_to_validate(openai_server: FakeOpenAIServer) -> None:
    provider = openai_provider(openai_server)
    openai_server.enqueue(malformed("Sure! It is about a card."))
    resp = provider.complete(request())
    assert resp.text == "Sure! It is about a card."
    with pytest.raises(ValueError):
        json.loads(resp.text)
    assert not resp.label_probs

    openai_server.enqueue(out_of_set("refund_request"))
    resp = provider.complete(request())
    assert json.loads(resp.text)["labels"] == ["refund_request"]
    assert resp.label_probs == {}  # refund_request is not an allowed label: no probability for it


def test_openai_code_fence_and_truncated_answers(openai_server: FakeOpenAIServer) -> None:
    def completion(content: str, finish: str) -> dict:
        return {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "gpt-test",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish, "logprobs": None}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}

    provider = openai_provider(openai_server)
    openai_server.enqueue(raw(completion('```json\n{"labels": ["card_lost"], "confidence": 1, "rationale": ""}\n```', "stop")))
    resp = provider.complete(request())
    assert json.loads(resp.text)["labels"] == ["card_lost"] and (resp.input_tokens, resp.output_tokens) == (10, 5)
    openai_server.enqueue(raw(completion('{"labels": ["card_lo', "length")))
    err = fail(provider, request(max_tokens=16))
    assert err.kind == "bad_response" and "max_tokens=16" in str(err)


def test_openai_json_schema_rejected_falls_back_to_json_object_once_and_remembers() -> None:
    with FakeOpenAIServer(json_schema=False) as server:
        provider = openai_provider(server)
        resp = provider.complete(request())
        first, second = server.requests
        assert first.status == 400 and first.body["response_format"]["type"] == "json_schema"
        assert second.body["response_format"] == {"type": "json_object"}
        # json_object mode cannot carry the schema: it goes into the system prompt
        assert json.dumps(SCHEMA, ensure_ascii=False) in second.body["messages"][0]["content"]
        assert json.loads(resp.text)["labels"] == ["card_lost"]
        assert provider.structured == "json_object"

        server.clear()
        provider.complete(request())
        (only,) = server.requests
        assert only.body["response_format"] == {"type": "json_object"}


def test_openai_other_400s_do_not_trigger_the_fallback(openai_server: FakeOpenAIServer) -> None:
    openai_server.enqueue(status(400, message="This model's maximum context length is 4096 tokens."))
    provider = openai_provider(openai_server)
    err = fail(provider)
    assert err.kind == "client_error" and "maximum context length" in str(err)
    assert len(openai_server.requests) == 1 and provider.structured == "json_schema"


def test_openai_unsupported_parameters_are_adapted_once() -> None:
    with FakeOpenAIServer(unsupported={"max_tokens", "logprobs", "temperature"}) as server:
        provider = openai_provider(server)
        resp = provider.complete(request(max_tokens=50))
        assert [r.status for r in server.requests] == [400, 400, 400, 200]
        final = server.last.body
        assert final["max_completion_tokens"] == 50
        assert not {"max_tokens", "logprobs", "temperature"} & set(final)
        assert resp.label_probs is None
        server.clear()
        provider.complete(request())
        assert [r.status for r in server.requests] == [200]


def test_openai_structured_none_and_json_object_modes(openai_server: FakeOpenAIServer) -> None:
    for mode, expected in (("none", None), ("json_object", {"type": "json_object"})):
        resp = openai_provider(openai_server, structured=mode).complete(request())
        body = openai_server.last.body
        assert body.get("response_format") == expected
        assert '"enum"' in body["messages"][0]["content"]
        assert json.loads(resp.text)["labels"] == ["card_lost"]  # the fake found the enum in the prompt
    with pytest.raises(ConfigError):
        OpenAIProvider("gpt-test", base_url=openai_server.base_url, structured="xml")  # type: ignore[arg-type]


def test_openai_connection_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    provider = OpenAIProvider("gpt-test", base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY)
    err = fail(provider)
    assert err.kind == "connection" and err.retryable


def test_openai_missing_key(no_keys, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as info:
        OpenAIProvider("gpt-test")
    assert "OPENAI_API_KEY" in str(info.value)
    with pytest.raises(ConfigError) as info:
        OpenAIProvider("gpt-test", base_url="https://openrouter.ai/api/v1", api_key_env="MY_LLM_KEY")
    assert "MY_LLM_KEY" in str(info.value) and "openrouter.ai" in str(info.value)
    monkeypatch.setenv("MY_LLM_KEY", "   ")  # blank counts as missing
    with pytest.raises(ConfigError):
        OpenAIProvider("gpt-test", base_url="https://openrouter.ai/api/v1", api_key_env="MY_LLM_KEY")


def test_openai_key_from_env_and_local_placeholder(no_keys, monkeypatch: pytest.MonkeyPatch, openai_server: FakeOpenAIServer) -> None:
    OpenAIProvider("gpt-test", base_url=openai_server.base_url).complete(request())  # local: no key needed
    assert openai_server.last.headers["authorization"] == f"Bearer {LOCAL_PLACEHOLDER_KEY}"
    monkeypatch.setenv("MY_LLM_KEY", KEY)
    OpenAIProvider("gpt-test", base_url=openai_server.base_url, api_key_env="MY_LLM_KEY").complete(request())
    assert openai_server.last.headers["authorization"] == f"Bearer {KEY}"
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)  # the SDK's own variable is honoured
    OpenAIProvider("gpt-test").complete(request())
    assert len(openai_server.requests) == 3


def _assert_no_key(err: BaseException, caplog: pytest.LogCaptureFixture, provider) -> None:
    everything = [str(err), repr(err), getattr(err, "reason", ""), "".join(traceback.format_exception(err)),
                  caplog.text, repr(provider)] + [r.getMessage() for r in caplog.records]
    for text in everything:
        assert KEY not in text


def test_openai_api_key_never_in_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("openai", "httpx2", "httpcore2", "frontdesk"):
        caplog.set_level(logging.DEBUG, logger=name)
    with FakeOpenAIServer(require_key="the-right-key", json_schema=False) as server:
        provider = openai_provider(server)
        err = fail(provider)
        assert err.kind == "client_error" and err.status == 401
        assert KEY in json.dumps(server.last.response)  # the server did echo the key back …
        _assert_no_key(err, caplog, provider)          # … and the provider redacted it
        assert "***" in str(err)
        server.require_key = KEY
        for behaviour in (status(429, retry_after=1), status(500), hang_up(), empty(), refusal()):
            server.enqueue(behaviour)
            _assert_no_key(fail(provider), caplog, provider)
        provider.complete(request())  # the json_schema fallback logs a warning: without the key
        assert any("json_object" in r.getMessage() for r in caplog.records)
        _assert_no_key(err, caplog, provider)


# == Anthropic =====================================================================================


def test_anthropic_answer_request_shape_and_usage(anthropic_server: FakeAnthropicServer) -> None:
    anthropic_server.enqueue(answer("refund_status", 0.75, "asks where the refund is"))
    provider = anthropic_provider(anthropic_server)
    assert isinstance(provider, Provider)
    resp = provider.complete(request(max_tokens=99))

    assert json.loads(resp.text) == {"labels": ["refund_status"], "confidence": 0.75, "rationale": "asks where the refund is"}
    assert resp.label_probs is None and resp.model == "claude-test"
    sent = anthropic_server.last
    assert (resp.input_tokens, resp.output_tokens) == (sent.response["usage"]["input_tokens"], sent.response["usage"]["output_tokens"])
    assert resp.input_tokens > 0 and resp.output_tokens > 0
    assert sent.path == "/v1/messages"
    assert anthropic_server.sent_key(sent) == KEY and "anthropic-version" in sent.headers
    body = sent.body
    assert body["model"] == "claude-test" and body["max_tokens"] == 99
    assert body["system"] == request().system
    assert body["messages"] == [{"role": "user", "content": request().user}]
    (tool,) = body["tools"]
    assert tool["name"] == "classify" and tool["input_schema"] == SCHEMA
    assert body["tool_choice"] == {"type": "tool", "name": "classify"}
    assert sent.enum == [*CANDIDATES, "none"]
    assert len(anthropic_server.requests) == 1


@pytest.mark.parametrize(
    ("behaviour", "kind", "code"),
    [
        (status(429), "rate_limit", 429),
        (status(500), "server_error", 500),
        (status(529), "server_error", 529),
        (status(503), "server_error", 503),
        (status(400, message="tools.0.input_schema: invalid"), "client_error", 400),
        (status(401), "client_error", 401),
        (hang_up(), "connection", None),
        (empty(), "bad_response", None),
        (text_only("It is about a refund."), "bad_response", None),
        (raw("<html>bad gateway</html>"), "bad_response", None),
        (refusal(), "refusal", None),
    ],
    ids=lambda v: getattr(v, "kind", None) and f"{v.kind}{v.code if v.kind == 'status' else ''}",
)
def test_anthropic_failures_map_to_kinds_with_one_request_each(anthropic_server: FakeAnthropicServer, behaviour, kind: str, code) -> None:
    anthropic_server.enqueue(behaviour)
    err = fail(anthropic_provider(anthropic_server))
    assert err.kind == kind and err.status == code
    assert len(anthropic_server.requests) == 1  # no SDK retries, not even for 529 / 5xx
    assert KEY not in str(err)


def test_anthropic_timeout_and_retry_after(anthropic_server: FakeAnthropicServer) -> None:
    provider = anthropic_provider(anthropic_server)
    anthropic_server.enqueue(hang())
    err = fail(provider, request(timeout_s=0.3))
    assert err.kind == "timeout" and anthropic_server.held == 1  # ended by the client, not by the server
    anthropic_server.release()
    anthropic_server.enqueue(status(429, retry_after=12))
    err = fail(provider)
    assert (err.kind, err.retry_after, err.status) == ("rate_limit", 12.0, 429)
    anthropic_server.enqueue(status(529, retry_after=3))
    err = fail(provider)
    assert (err.kind, err.retry_after) == ("server_error", 3.0) and "Overloaded" in str(err)
    assert len(anthropic_server.requests) == 3


def test_anthropic_malformed_and_out_of_set_are_returned_for_the_tier_to_validate(anthropic_server: FakeAnthropicServer) -> None:
    provider = anthropic_provider(anthropic_server)
    anthropic_server.enqueue(malformed("no idea"), out_of_set("refund_request"))
    assert json.loads(provider.complete(request()).text) == {"text": "no idea"}
    assert json.loads(provider.complete(request()).text)["labels"] == ["refund_request"]


def test_anthropic_missing_key_and_local_placeholder(no_keys, monkeypatch: pytest.MonkeyPatch, anthropic_server: FakeAnthropicServer) -> None:
    with pytest.raises(ConfigError) as info:
        AnthropicProvider("claude-test")
    assert "ANTHROPIC_API_KEY" in str(info.value)
    with pytest.raises(ConfigError) as info:
        AnthropicProvider("claude-test", base_url="https://llm-gateway.example.com", api_key_env="MY_LLM_KEY")
    assert "MY_LLM_KEY" in str(info.value)
    AnthropicProvider("claude-test", base_url=anthropic_server.base_url).complete(request())
    assert anthropic_server.sent_key() == LOCAL_PLACEHOLDER_KEY
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    AnthropicProvider("claude-test", base_url=anthropic_server.base_url).complete(request())
    assert anthropic_server.sent_key() == KEY


def test_anthropic_api_key_never_in_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("anthropic", "httpx2", "httpcore2", "frontdesk"):
        caplog.set_level(logging.DEBUG, logger=name)
    with FakeAnthropicServer(require_key="the-right-key") as server:
        provider = anthropic_provider(server)
        err = fail(provider)
        assert (err.kind, err.status) == ("client_error", 401)
        assert KEY in json.dumps(server.last.response)
        _assert_no_key(err, caplog, provider)
        server.require_key = KEY
        for behaviour in (status(529), hang_up(), empty(), refusal()):
            server.enqueue(behaviour)
            _assert_no_key(fail(provider), caplog, provider)
        provider.complete(request())
        _assert_no_key(err, caplog, provider)


# == the fake servers themselves ===================================================================


def test_fake_servers_stop_cleanly_and_record_unknown_paths() -> None:
    server = FakeOpenAIServer().start()
    port = server.port
    server.enqueue(hang())
    provider = openai_provider(server)
    with pytest.raises(ProviderError):
        provider.complete(request(timeout_s=0.2))
    assert server.held == 1
    server.stop()  # wakes the held handler: it hangs up instead of waiting for a release that never comes
    deadline = time.monotonic() + 30
    while server.held and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.held == 0 and server.last.released_at is None and server.last.status is None
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
    with FakeAnthropicServer() as other:
        bad = OpenAIProvider("gpt-test", base_url=other.url + "/v1", api_key=KEY)  # wrong protocol: 404
        err = fail(bad)
        assert (err.kind, err.status) == ("client_error", 404)
        assert other.last.path == "/v1/chat/completions" and other.last.status == 404
