"""Hypothesis strategies for hostile HTTP requests to the service (used by tests/test_fuzz_bodies.py and
bench/reliability.py): valid-looking bodies with one or more poisoned fields, lone surrogates,
NaN/Infinity/1e999, huge integers, deep nesting, unknown fields, wrong types, broken or non-UTF-8
bytes, odd content types and encodings, and query strings out of range."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff", "\ud83d"]
NUMBERS = [float("nan"), float("inf"), float("-inf"), 1e308, -1e308, 2**63, -(2**63) - 1, 10**30, 0, -1, 1.5]


@dataclass
class Probe:
    """One request: method, path, body bytes, headers; ``valid`` when it is a well-formed request."""

    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    note: str = ""


def _poisoned_text() -> st.SearchStrategy[str]:
    plain = st.text(min_size=0, max_size=40)
    with_surrogate = st.builds(lambda a, s, b: a + s + b, st.text(max_size=10), st.sampled_from(SURROGATES), st.text(max_size=10))
    controls = st.text(alphabet=st.characters(codec=None, min_codepoint=0, max_codepoint=0x20), min_size=1, max_size=10)
    odd = st.sampled_from(["", "   ", "\u200b\ufeff", "\x00", "\U0001f600", "e\u0301"])
    return st.one_of(plain, with_surrogate, with_surrogate, controls, odd)


def _scalar() -> st.SearchStrategy[Any]:
    return st.one_of(_poisoned_text(), st.none(), st.booleans(), st.integers(), st.sampled_from(NUMBERS), st.floats(),
                     _poisoned_text())


def _json_value(max_leaves: int = 20) -> st.SearchStrategy[Any]:
    return st.recursive(_scalar(), lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(_poisoned_text(), inner, max_size=4)), max_leaves=max_leaves)


def _deep(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for i in range(depth):
        value = {"a": value} if i % 2 else [value]
    return value


def _field_value(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly (about 85 %) a good value, sometimes anything at all."""
    bad = st.one_of(_scalar(), _json_value(6), st.integers(20, 400).map(_deep))
    return st.integers(0, 19).flatmap(lambda n: bad if n in (5, 6, 7) else good)  # hypothesis favours 0 and the maximum


def _message() -> st.SearchStrategy[dict[str, Any]]:
    good_text = st.sampled_from(["where is my parcel?", "I was charged twice", "cancel my subscription", "refund please",
                                 "<p>my <b>card</b> is broken</p>", "Hallo, wo ist mein Paket?"])
    base = st.fixed_dictionaries({"text": _field_value(good_text)}, optional={
        "sender": _field_value(st.text(max_size=20)),
        "channel": _field_value(st.sampled_from(["email", "chat"])),
        "metadata": _field_value(st.dictionaries(st.text(max_size=8), st.one_of(
            _json_value(8), _json_value(8), st.integers(2, 400).map(_deep)), max_size=4)),
    })
    extra = st.dictionaries(st.text(min_size=1, max_size=8), _scalar(), max_size=2)
    return st.builds(lambda b, e, n: {**b, **e} if n == 5 else b, base, extra, st.integers(0, 9))


def _labels() -> st.SearchStrategy[Any]:
    good = st.lists(st.sampled_from(["billing_issue", "refund_request", "delivery_status", "nope"]), min_size=1, max_size=3)
    return _field_value(good)


def _encode(obj: Any, ascii_only: bool) -> bytes:
    return json.dumps(obj, ensure_ascii=ascii_only, allow_nan=True).encode("utf-8", "surrogatepass")


@st.composite
def _json_probe(draw: st.DrawFn, decision_ids: list[str]) -> Probe:
    kind = draw(st.sampled_from(["route", "route", "batch", "feedback", "review"]))
    ids = decision_ids or ["0" * 32]
    some_id = draw(st.one_of(st.sampled_from(ids), _poisoned_text().filter(lambda s: s and "/" not in s and "?" not in s and "#" not in s)))
    if kind == "route":
        path, obj = "/v1/route", draw(_message())
    elif kind == "batch":
        path, obj = "/v1/route/batch", {"messages": draw(st.lists(_message(), min_size=0, max_size=4))}
    elif kind == "feedback":
        path, obj = "/v1/feedback", draw(st.fixed_dictionaries(
            {"decision_id": _field_value(st.sampled_from(ids)), "labels": _labels()},
            optional={"actor": _field_value(st.text(max_size=10)), "note": _field_value(st.text(max_size=30))}))
    else:
        from urllib.parse import quote

        safe_id = quote(some_id.encode("utf-8", "surrogatepass"), safe="")
        path, obj = f"/v1/review/{safe_id}", draw(st.fixed_dictionaries(
            {"labels": _labels()}, optional={"reviewer": _field_value(st.text(max_size=10))}))
    if draw(st.integers(0, 9)) == 5:
        obj = draw(_json_value())  # not even an object
    body = _encode(obj, draw(st.integers(0, 3)) != 2)  # mostly \u escapes; sometimes raw (surrogates → invalid UTF-8)
    mutation = draw(st.sampled_from(["none"] * 20 + ["truncate", "latin1", "bom", "garbage", "empty"]))
    if mutation == "truncate" and body:
        body = body[: draw(st.integers(0, len(body) - 1))]
    elif mutation == "latin1":
        body = body.replace(b"e", b"\xe9", 1)
    elif mutation == "bom":
        body = b"\xef\xbb\xbf" + body
    elif mutation == "garbage":
        body = draw(st.binary(max_size=64))
    elif mutation == "empty":
        body = b""
    content_type = draw(st.sampled_from(["application/json"] * 60 + [
        "application/json; charset=utf-8", "application/problem+json", "text/plain", "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x", "", "application/json; charset=latin-1"]))
    headers = {"Content-Type": content_type} if content_type else {}
    if draw(st.integers(0, 49)) == 25:
        headers["Content-Encoding"] = draw(st.sampled_from(["gzip", "br", "identity"]))
    return Probe("POST", path, body, headers, f"{kind}/{mutation}")


@st.composite
def _query_probe(draw: st.DrawFn) -> Probe:
    value = st.one_of(st.integers(), st.sampled_from(["9223372036854775808", "-1", "1e3", "", "NaN", "%00", "%ED%A0%80"]),
                      st.text(max_size=10).map(lambda t: t.encode("utf-8", "surrogatepass").hex()))
    params = draw(st.dictionaries(st.sampled_from(["limit", "offset", "status", "x"]), value, max_size=3))
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return Probe("GET", "/v1/review" + (f"?{query}" if query else ""), None, {}, "query")


def probes(decision_ids: list[str]) -> st.SearchStrategy[Probe]:
    """Any hostile request (JSON endpoints mostly, the review list's query string sometimes)."""
    return st.one_of(_json_probe(decision_ids), _json_probe(decision_ids), _json_probe(decision_ids), _query_probe())
