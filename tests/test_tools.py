from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import yaml

from frontdesk import ConfigError
from frontdesk.routing.tools import (
    ANY_INTENT,
    Tool,
    ToolCatalog,
    count_tokens,
    lexical_reranker,
    schema_tokens,
    synthetic_catalog,
)

LABELS = ["card_arrival", "card_lost", "refund_request", "exchange_rate", "top_up_failed"]


def tool(name: str, intents: list[str], description: str | None = None) -> Tool:
    return Tool(name=name, description=description or f"tool {name.replace('_', ' ')}", intents=intents,
                parameters={"type": "object", "properties": {"customer_id": {"type": "string"}}, "required": ["customer_id"]})


@pytest.fixture()
def catalog() -> ToolCatalog:
    return ToolCatalog([
        tool("track_card_delivery", ["card_arrival"], "Track where the new card is in the post and when it arrives."),
        tool("get_card_status", ["card_arrival", "card_lost"], "Current status of a payment card: active, frozen, shipped."),
        tool("freeze_card", ["card_lost"], "Freeze a lost or stolen card immediately."),
        tool("order_replacement_card", ["card_lost"], "Order a replacement for a lost, stolen or damaged card."),
        tool("refund_status", ["refund_request"], "Status of a refund for a merchant purchase."),
        tool("get_exchange_rates", ["exchange_rate"], "Current exchange rates between currencies."),
        tool("search_help_centre", [ANY_INTENT], "Search help-centre articles."),
        tool("handoff_to_human", [ANY_INTENT], "Transfer the chat to a human agent."),
    ])


def names(tools: list[Tool]) -> list[str]:
    return [t.name for t in tools]


def test_select_by_intents(catalog: ToolCatalog) -> None:
    assert names(catalog.select(["card_lost"])) == [
        "get_card_status", "freeze_card", "order_replacement_card", "search_help_centre", "handoff_to_human",
    ]
    assert names(catalog.select(["card_lost"], include_general=False)) == ["get_card_status", "freeze_card", "order_replacement_card"]
    # two labels: interleaved so both keep tools under a cap; a tool serving both appears once
    assert names(catalog.select(["card_arrival", "card_lost"], include_general=False)) == [
        "track_card_delivery", "get_card_status", "freeze_card", "order_replacement_card",
    ]
    assert names(catalog.select(["card_lost", "refund_request"], max_tools=2)) == ["get_card_status", "refund_status"]
    # a label no tool serves gets only the general tools; no labels at all likewise
    assert names(catalog.select(["top_up_failed"])) == ["search_help_centre", "handoff_to_human"]
    assert names(catalog.select([])) == ["search_help_centre", "handoff_to_human"]


def test_select_cap(catalog: ToolCatalog) -> None:
    assert names(catalog.select(["card_lost"], max_tools=2)) == ["get_card_status", "freeze_card"]
    assert len(catalog.select(["card_lost"], max_tools=4)) == 4
    assert len(catalog.select(["card_lost"], max_tools=100)) == 5
    with pytest.raises(ConfigError, match="max_tools"):
        catalog.select(["card_lost"], max_tools=0)


def test_rerank_orders_by_score_specific_before_general(catalog: ToolCatalog) -> None:
    seen: list[list[str]] = []

    def by_name_length(text: str, tools: list[Tool]) -> list[float]:
        seen.append(names(tools))
        return [float(len(t.name)) for t in tools]

    got = catalog.select(["card_lost"], "my card was stolen", rerank=by_name_length)
    assert names(got) == ["order_replacement_card", "get_card_status", "freeze_card", "search_help_centre", "handoff_to_human"]
    assert seen == [["get_card_status", "freeze_card", "order_replacement_card"], ["search_help_centre", "handoff_to_human"]]
    # the cap applies after re-ranking
    assert names(catalog.select(["card_lost"], "x", max_tools=1, rerank=by_name_length)) == ["order_replacement_card"]
    with pytest.raises(ConfigError, match="pass text="):
        catalog.select(["card_lost"], rerank=by_name_length)
    with pytest.raises(ConfigError, match="2 scores for 3 tools"):
        catalog.select(["card_lost"], "x", rerank=lambda text, tools: [1.0, 2.0])


@pytest.mark.parametrize("fitted", [False, True])
def test_lexical_reranker_prefers_the_matching_tool(catalog: ToolCatalog, fitted: bool) -> None:
    rerank = catalog.lexical_reranker() if fitted else lexical_reranker
    got = catalog.select(["card_lost"], "someone stole my wallet, please freeze my card now", max_tools=1, rerank=rerank)
    assert names(got) == ["freeze_card"]
    got = catalog.select(["card_lost"], "I need a replacement card, mine is damaged", max_tools=1, rerank=rerank)
    assert names(got) == ["order_replacement_card"]
    scores = rerank("when will my new card arrive in the post", [catalog["track_card_delivery"], catalog["get_exchange_rates"]])
    assert scores[0] > scores[1] >= 0.0
    extra = tool("not_in_catalog", ["card_lost"], "Freeze card")
    assert len(rerank("freeze", [extra, catalog["freeze_card"]])) == 2


def test_token_savings_over_10x_on_300_tools() -> None:
    cat = synthetic_catalog(LABELS * 1 + [f"topic_{i}" for i in range(60)], n=300, seed=1)
    assert len(cat) == 300
    full = schema_tokens(cat)
    rerank = cat.lexical_reranker()
    narrowed = [schema_tokens(cat.select([label], f"question about {label}", max_tools=10, rerank=rerank)) for label in LABELS]
    assert all(0 < n <= full / 10 for n in narrowed)
    assert full / statistics.fmean(narrowed) > 10


def test_schema_tokens_approximation() -> None:
    assert schema_tokens([]) == 0
    cat = synthetic_catalog(LABELS, n=40)
    text = json.dumps(cat.schemas(), separators=(",", ":"))
    chars_per_token = len(text) / schema_tokens(cat)
    assert 3.0 < chars_per_token < 5.0  # the documented ~4 chars/token calibration
    one, two = cat.tools[0], cat.tools[1]
    assert schema_tokens([one, two]) == pytest.approx(schema_tokens([one]) + schema_tokens([two]), abs=3)
    assert count_tokens("hello world") == 2 and count_tokens('{"type":"object"}') == 5
    assert count_tokens("internationalisation") == 3  # long words cost more than one token


def test_duplicate_names_are_rejected() -> None:
    with pytest.raises(ConfigError, match=r"duplicate tool name\(s\) 'a' \(tools\[0\] and tools\[2\]\)") as err:
        ToolCatalog([tool("a", ["x"]), tool("b", ["x"]), tool("a", ["y"])])
    assert err.value.field == "tools"


def test_invalid_tools_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"tools\[1\]: intents: List should have at least 1 item"):
        ToolCatalog([tool("a", ["x"]), {"name": "b", "description": "d", "intents": []}])
    with pytest.raises(ConfigError, match=r"tools\[0\]: name: String should match pattern"):
        ToolCatalog([{"name": "has space", "description": "d", "intents": ["x"]}])
    with pytest.raises(ConfigError, match=r"parameters: .*type 'object'"):
        ToolCatalog([{"name": "a", "description": "d", "intents": ["x"], "parameters": {"type": "string"}}])
    with pytest.raises(ConfigError, match=r"tools\[0\]: intent: Extra inputs are not permitted \(tool .a.\)"):
        ToolCatalog([{"name": "a", "description": "d", "intents": ["x"], "intent": "y"}])


def test_load_json_and_yaml(tmp_path: Path, catalog: ToolCatalog) -> None:
    items = [t.model_dump() for t in catalog]
    j = tmp_path / "tools.json"
    j.write_text(json.dumps(items))
    y = tmp_path / "tools.yaml"
    y.write_text(yaml.safe_dump({"tools": items}))
    for path in (j, y, str(j)):
        loaded = ToolCatalog.load(path)
        assert names(list(loaded)) == names(list(catalog)) and loaded["freeze_card"] == catalog["freeze_card"]
    assert len(ToolCatalog.load(items)) == len(catalog)
    dup = tmp_path / "dup.yaml"
    dup.write_text(yaml.safe_dump(items + items[:1]))
    with pytest.raises(ConfigError, match=r"duplicate .*\(in .*dup\.yaml\)"):
        ToolCatalog.load(dup)
    bad = tmp_path / "bad.json"
    bad.write_text("[{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        ToolCatalog.load(bad)
    (tmp_path / "obj.yaml").write_text("name: x\n")
    with pytest.raises(ConfigError, match="list of tools"):
        ToolCatalog.load(tmp_path / "obj.yaml")


def test_check_intents(catalog: ToolCatalog) -> None:
    catalog.check_intents(LABELS)
    with pytest.raises(ConfigError, match=r"unknown intent\(s\) \['exchange_rate'\] \(tools \['get_exchange_rates'\]\)"):
        catalog.check_intents([x for x in LABELS if x != "exchange_rate"])


def test_synthetic_catalog_is_realistic_and_deterministic() -> None:
    labels = [f"label_{i}" for i in range(77)]
    cat = synthetic_catalog(labels, n=300, seed=3)
    assert len(cat) == 300 and len({t.name for t in cat}) == 300
    general = [t for t in cat if t.general]
    assert 5 <= len(general) <= 30
    assert cat.intents == set(labels)  # every label has at least one tool
    for t in cat:
        props = t.parameters["properties"]
        assert 2 <= len(props) <= 6 and set(t.parameters["required"]) <= set(props)
        assert all("type" in spec and "description" in spec for spec in props.values())
        assert len(t.description.split()) >= 6
    assert [t.model_dump() for t in synthetic_catalog(labels, n=300, seed=3)] == [t.model_dump() for t in cat]
    assert names(list(synthetic_catalog(labels, n=300, seed=4))) != names(list(cat))
    assert len(synthetic_catalog(labels, n=741)) == 741
