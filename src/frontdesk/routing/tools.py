"""Tool narrowing for agents: send the LLM only the tools that serve the decided intents.

An agent platform may hold hundreds of tools; putting every JSON schema in every request costs
tokens (and accuracy: models pick the wrong tool more often from a long list). Each :class:`Tool`
says which intents it serves (``"*"`` = every intent, a general tool); :meth:`ToolCatalog.select`
returns the tools for the decided labels, optionally re-ranked by similarity to the message and
capped at N. :func:`schema_tokens` estimates what the schemas cost per request, and
:func:`synthetic_catalog` builds a realistic catalogue to measure the saving (``bench/tools_narrowing.py``).
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from frontdesk.errors import ConfigError, validation_message

ANY_INTENT = "*"
"""The intent a general tool lists: it is offered for every decided intent (after the specific ones)."""

Reranker = Callable[[str, list["Tool"]], list[float]]
"""``rerank(text, tools) -> scores``: one similarity score per tool, higher = more relevant."""


class Tool(BaseModel):
    """One tool an agent can call: an OpenAI-style function (name, description, JSON-schema parameters)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="function name as the LLM API requires it")
    description: str = Field(min_length=1)
    intents: list[str] = Field(min_length=1, description="labels this tool serves; '*' = every intent")
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})

    @field_validator("parameters")
    @classmethod
    def _object_schema(cls, v: dict[str, Any]) -> dict[str, Any]:
        if v.get("type", "object") != "object":
            raise ValueError(f"must be a JSON schema of type 'object' (function arguments), got type {v.get('type')!r}")
        if not isinstance(v.get("properties", {}), dict):
            raise ValueError("'properties' must map parameter names to JSON schemas")
        return v

    @property
    def general(self) -> bool:
        """True when the tool is offered for every intent."""
        return ANY_INTENT in self.intents

    def schema(self) -> dict[str, Any]:
        """The tool as sent in an OpenAI-style ``tools`` request field."""
        return {"type": "function", "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}


class ToolCatalog:
    """A set of tools with unique names, indexed by intent."""

    def __init__(self, tools: Iterable[Tool | Mapping[str, Any]]) -> None:
        parsed: list[Tool] = []
        for i, item in enumerate(tools):
            if isinstance(item, Tool):
                parsed.append(item)
                continue
            if not isinstance(item, Mapping):
                raise ConfigError(f"expected a tool object, got {type(item).__name__}", field=f"tools[{i}]")
            try:
                parsed.append(Tool.model_validate(dict(item)))
            except ValidationError as exc:
                name = item.get("name")
                raise ConfigError(
                    validation_message(exc) + (f" (tool {name!r})" if isinstance(name, str) else ""), field=f"tools[{i}]"
                ) from exc
        seen: dict[str, int] = {}
        dupes = []
        for i, tool in enumerate(parsed):
            if tool.name in seen:
                dupes.append(f"{tool.name!r} (tools[{seen[tool.name]}] and tools[{i}])")
            seen.setdefault(tool.name, i)
        if dupes:
            raise ConfigError(f"duplicate tool name(s) {', '.join(dupes[:5])}: tool names must be unique, rename one", field="tools")
        self.tools: list[Tool] = parsed
        self._index = {t.name: i for i, t in enumerate(parsed)}
        self._by_intent: dict[str, list[Tool]] = {}
        for tool in parsed:
            for intent in dict.fromkeys(tool.intents):
                self._by_intent.setdefault(intent, []).append(tool)

    # -- loading --------------------------------------------------------------------------
    @classmethod
    def load(cls, source: str | Path | Sequence[Mapping[str, Any]]) -> ToolCatalog:
        """A catalogue from a JSON/YAML file (a list of tools, or ``{"tools": [...]}``) or a list."""
        if not isinstance(source, (str, Path)):
            return cls(source)
        path = Path(source)
        try:
            raw = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read tool catalogue {path} ({exc.strerror}): check the path", field="tools") from exc
        is_json = path.suffix.lower() == ".json"
        try:
            data = json.loads(raw) if is_json else yaml.safe_load(raw)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path} is not valid {'JSON' if is_json else 'YAML'}: {exc}", field="tools") from exc
        if isinstance(data, Mapping) and "tools" in data:
            data = data["tools"]
        if not isinstance(data, list):
            raise ConfigError(f"{path} must hold a list of tools (or a 'tools' key with one)", field="tools")
        try:
            return cls(data)
        except ConfigError as exc:
            msg = str(exc).removeprefix(f"{exc.field}: ") if exc.field else str(exc)
            raise ConfigError(f"{msg} (in {path})", field=exc.field) from exc

    # -- access ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.tools)

    def __iter__(self):  # noqa: ANN204 - Iterator[Tool]
        return iter(self.tools)

    def __getitem__(self, name: str) -> Tool:
        try:
            return self.tools[self._index[name]]
        except KeyError:
            raise KeyError(f"no tool named {name!r}") from None

    @property
    def intents(self) -> set[str]:
        """Every intent some tool serves (without ``'*'``)."""
        return set(self._by_intent) - {ANY_INTENT}

    def check_intents(self, labels: Sequence[str]) -> None:
        """Raise :class:`ConfigError` when tools name intents the model does not know (typos, old labels)."""
        unknown = sorted(self.intents - set(labels))
        if unknown:
            users = [t.name for t in self.tools if set(t.intents) & set(unknown)]
            raise ConfigError(
                f"tools serve unknown intent(s) {unknown[:10]} (tools {users[:5]}): fix their 'intents' or retrain with those labels",
                field="tools.intents",
            )

    # -- selection ------------------------------------------------------------------------
    def select(
        self,
        labels: Sequence[str],
        text: str | None = None,
        max_tools: int | None = None,
        rerank: Reranker | None = None,
        *,
        include_general: bool = True,
    ) -> list[Tool]:
        """The tools relevant to ``labels``: specific ones first, then general (``'*'``) ones, capped.

        Without ``rerank`` the specific tools are interleaved label by label (first label first),
        so under a cap every decided intent keeps its best-listed tools. With ``rerank`` (needs
        ``text``) both groups are ordered by its scores, highest first; specific tools still come
        before general ones. Labels no tool serves contribute nothing.
        """
        if max_tools is not None and max_tools < 1:
            raise ConfigError(f"must be ≥ 1 or None (no cap), got {max_tools}", field="max_tools")
        if rerank is not None and text is None:
            raise ConfigError("re-ranking scores tools against the message: pass text=", field="text")
        seen: set[str] = set()
        specific: list[Tool] = []
        queues = [self._by_intent.get(label, []) for label in dict.fromkeys(labels) if label != ANY_INTENT]
        for depth in range(max((len(q) for q in queues), default=0)):
            for q in queues:
                if depth < len(q) and q[depth].name not in seen:
                    seen.add(q[depth].name)
                    specific.append(q[depth])
        general = [t for t in self._by_intent.get(ANY_INTENT, []) if t.name not in seen] if include_general else []
        if rerank is not None and text is not None:
            specific, general = _ranked(rerank, text, specific), _ranked(rerank, text, general)
        chosen = specific + general
        return chosen[:max_tools] if max_tools is not None else chosen

    def schemas(self, tools: Iterable[Tool] | None = None) -> list[dict[str, Any]]:
        """OpenAI-style ``tools`` entries for ``tools`` (default: the whole catalogue)."""
        return [t.schema() for t in (self.tools if tools is None else tools)]

    def lexical_reranker(self) -> LexicalReranker:
        """A TF-IDF reranker fitted once on this catalogue's tool texts (faster than per call)."""
        return LexicalReranker(self.tools)


def _ranked(rerank: Reranker, text: str, tools: list[Tool]) -> list[Tool]:
    if len(tools) < 2:
        return tools
    scores = list(rerank(text, tools))
    if len(scores) != len(tools):
        raise ConfigError(f"the reranker returned {len(scores)} scores for {len(tools)} tools: return one per tool", field="rerank")
    order = sorted(range(len(tools)), key=lambda i: (-float(scores[i]), i))  # stable: ties keep catalogue order
    return [tools[i] for i in order]


# -- lexical re-ranking ---------------------------------------------------------------------
def tool_text(tool: Tool) -> str:
    """The words a tool is matched on: name, description, intents, parameter names and descriptions."""
    parts = [tool.name.replace("_", " ").replace("-", " "), tool.description]
    parts += [i.replace("_", " ") for i in tool.intents if i != ANY_INTENT]
    for pname, spec in (tool.parameters.get("properties") or {}).items():
        parts.append(pname.replace("_", " "))
        if isinstance(spec, Mapping) and isinstance(spec.get("description"), str):
            parts.append(spec["description"])
    return " ".join(parts)


def _vectorizer():  # noqa: ANN202 - sklearn type
    from sklearn.feature_extraction.text import TfidfVectorizer

    # char n-grams within words: robust to inflections ("refund"/"refunded") and snake_case names
    return TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), lowercase=True, sublinear_tf=True)


def lexical_reranker(text: str, tools: list[Tool]) -> list[float]:
    """Cosine similarity between the message and each tool's text, TF-IDF fitted on these tools.

    Stateless (fits per call, ~1 ms for a few dozen tools); for repeated calls on one catalogue
    use :meth:`ToolCatalog.lexical_reranker`, which fits once.
    """
    if not tools:
        return []
    vec = _vectorizer()
    try:
        m = vec.fit_transform([tool_text(t) for t in tools])
    except ValueError:  # empty vocabulary
        return [0.0] * len(tools)
    q = vec.transform([text])
    return [float(x) for x in (m @ q.T).toarray().ravel()]


class LexicalReranker:
    """A TF-IDF/cosine reranker fitted once on a catalogue; callable as ``rerank(text, tools)``."""

    def __init__(self, tools: Sequence[Tool]) -> None:
        self._vec = _vectorizer()
        self._names = {t.name: i for i, t in enumerate(tools)}
        self._matrix = self._vec.fit_transform([tool_text(t) for t in tools])

    def __call__(self, text: str, tools: list[Tool]) -> list[float]:
        if not tools:
            return []
        q = self._vec.transform([text])
        rows = [self._names.get(t.name) for t in tools]
        known = [r for r in rows if r is not None]
        scores = dict(zip(known, (self._matrix[known] @ q.T).toarray().ravel(), strict=True)) if known else {}
        out = []
        for tool, row in zip(tools, rows, strict=True):
            if row is not None:
                out.append(float(scores[row]))
            else:  # a tool outside the fitted catalogue: same vocabulary, vectorised on the fly
                out.append(float((self._vec.transform([tool_text(tool)]) @ q.T).toarray()[0, 0]))
        return out


# -- token accounting -----------------------------------------------------------------------
_TOKEN_RE = re.compile(r" ?[A-Za-z]+| ?\d{1,3}| ?[^\sA-Za-z\d]{1,3}|\s+")
_WORD_CHARS = 7
"""Letters per token inside a long word; with it the synthetic catalogue's JSON averages ~3.9 chars/token."""


def count_tokens(text: str) -> int:
    """Approximate BPE token count of ``text`` (cl100k/o200k-like; see :func:`schema_tokens`)."""
    n = 0
    for m in _TOKEN_RE.finditer(text):
        piece = m.group()
        letters = piece.lstrip()
        if letters[:1].isalpha():
            n += max(1, math.ceil(len(letters) / _WORD_CHARS))
        else:
            n += 1
    return n


def schema_tokens(tools: Iterable[Tool]) -> int:
    """Approximate prompt tokens the tools' JSON schemas cost in one OpenAI-style request.

    tiktoken's encodings are downloaded at run time, so this is an offline approximation: the
    compact JSON of the ``tools`` array is split like a BPE pre-tokeniser (an optional leading space
    plus a letter run, digit groups of ≤ 3, runs of ≤ 3 punctuation characters such as ``":"``),
    and a letter run counts one token per 7 letters. That averages ~3.9 characters per token on the
    synthetic catalogue's JSON (~4.6 on plain English prose), in line with the usual "~4 characters
    per token" rule of thumb for cl100k/o200k; it was not checked against a real BPE vocabulary
    (none is available offline). Treat absolute counts as ±25 %; ratios between two tool sets
    (what the narrowing benchmark reports) are far more robust. Providers may render schemas
    differently internally (e.g. a TypeScript-like form).
    """
    schemas = [t.schema() for t in tools]
    if not schemas:
        return 0
    return count_tokens(json.dumps(schemas, separators=(",", ":"), ensure_ascii=False))


# -- synthetic catalogue --------------------------------------------------------------------
_VERBS = [
    ("get", "Get", "Returns"), ("check", "Check", "Checks"), ("list", "List", "Lists"), ("update", "Update", "Updates"),
    ("create", "Create", "Creates"), ("cancel", "Cancel", "Cancels"), ("verify", "Verify", "Verifies"),
    ("submit", "Submit", "Submits"), ("track", "Track", "Tracks"), ("explain", "Explain", "Explains"),
    ("reset", "Reset", "Resets"), ("lookup", "Look up", "Looks up"), ("escalate", "Escalate", "Escalates"),
    ("request", "Request", "Requests"), ("calculate", "Calculate", "Calculates"),
]
_SUFFIXES = ["", "status", "details", "history", "options", "policy", "eligibility", "limits", "summary"]
_WHEN = [
    "Use when the customer asks about {topic}.",
    "Call this when the user's message is about {topic} and you need authoritative account data.",
    "Use it to resolve requests concerning {topic}; do not guess values the tool can return.",
    "Only call after the customer has been identified. Relevant to {topic}.",
]
_RETURNS = [
    "Returns a JSON object with the current state and a human-readable summary.",
    "Returns the matching records, newest first, with timestamps in ISO 8601.",
    "Returns whether the operation succeeded and a reference number for the customer.",
    "Returns the applicable rules, amounts and any fees in the account currency.",
]
_PARAMS: list[tuple[str, dict[str, Any]]] = [
    ("customer_id", {"type": "string", "description": "The customer's unique identifier, e.g. 'cus_8f2k1'."}),
    ("account_id", {"type": "string", "description": "Identifier of the account the request concerns."}),
    ("card_id", {"type": "string", "description": "Identifier of the payment card (last four digits are not enough)."}),
    ("transaction_id", {"type": "string", "description": "Identifier of the transaction as shown in the statement."}),
    ("amount", {"type": "number", "description": "Amount in the account currency.", "minimum": 0}),
    ("currency", {"type": "string", "description": "ISO 4217 currency code.", "enum": ["EUR", "GBP", "USD", "CHF", "PLN"]}),
    ("date_from", {"type": "string", "format": "date", "description": "Start of the period (inclusive), YYYY-MM-DD."}),
    ("date_to", {"type": "string", "format": "date", "description": "End of the period (inclusive), YYYY-MM-DD."}),
    ("reason", {"type": "string", "description": "Free-text reason given by the customer, max 500 characters."}),
    ("limit", {"type": "integer", "description": "Maximum number of results to return.", "minimum": 1, "maximum": 100}),
    ("include_pending", {"type": "boolean", "description": "Whether to include pending (not yet settled) items."}),
    ("country", {"type": "string", "description": "ISO 3166-1 alpha-2 country code, e.g. 'GB'."}),
    ("channel", {"type": "string", "enum": ["app", "web", "phone", "branch"], "description": "Where the request was made."}),
    ("locale", {"type": "string", "description": "BCP 47 language tag for the reply, e.g. 'en-GB'."}),
    ("reference", {"type": "string", "description": "Case or payment reference quoted by the customer."}),
    ("notify_customer", {"type": "boolean", "description": "Send the customer a push notification with the result."}),
]
_GENERAL = [
    ("search_knowledge_base", "Search the help-centre articles and return the best matching passages."),
    ("create_support_ticket", "Open a support ticket for a human agent with a summary of the conversation."),
    ("get_customer_profile", "Return the identified customer's profile: name, segment, products and flags."),
    ("send_secure_message", "Send a message to the customer's in-app secure inbox."),
    ("handoff_to_human", "Transfer the conversation to a human agent in the given queue."),
    ("verify_identity", "Start a step-up identity verification (one-time code or selfie check)."),
    ("get_exchange_rates", "Return current exchange rates for the given currencies."),
    ("lookup_branch_hours", "Return opening hours and address of branches near a location."),
    ("schedule_callback", "Schedule a phone callback from an agent at the customer's preferred time."),
    ("translate_text", "Translate a text into the customer's language."),
    ("get_service_status", "Return known incidents and degraded services (app, cards, transfers)."),
    ("log_feedback", "Record customer feedback or a complaint about the service."),
]


def _words(label: str) -> str:
    return " ".join(w for w in re.split(r"[_\-\s]+", label.strip().lower()) if w)


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_") or "topic"


def _params(rng: random.Random) -> dict[str, Any]:
    k = rng.randint(2, 6)
    chosen = rng.sample(_PARAMS, k)
    props = {name: dict(spec) for name, spec in chosen}
    required = [name for name, _ in chosen[: rng.randint(1, min(3, k))]]
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


def synthetic_catalog(labels: Sequence[str], n: int = 300, seed: int = 0, *, general_share: float = 0.05) -> ToolCatalog:
    """A deterministic, realistic-looking catalogue of ``n`` tools over ``labels``.

    About ``general_share`` of the tools are general (``intents=["*"]``: knowledge-base search,
    tickets, hand-off…); the rest are spread round-robin over the labels (every label gets one
    before any gets two), ~15 % also serving a second label. Each tool has an OpenAI-style name,
    a two-to-three sentence description and 2–6 parameters with types, descriptions and
    ``required``. Used by the tools-narrowing benchmark and the tests.
    """
    if n < 1:
        raise ConfigError(f"must be ≥ 1, got {n}", field="n")
    labels = list(dict.fromkeys(labels))
    rng = random.Random(seed)
    n_general = min(n, max(1, round(n * general_share))) if labels else n
    tools: list[Tool] = []
    names: set[str] = set()

    def unique(base: str) -> str:
        base = base[:60]
        name, k = base, 2
        while name in names:
            name, k = f"{base}_{k}", k + 1
        names.add(name)
        return name

    for i in range(n_general):
        base, desc = _GENERAL[i % len(_GENERAL)]
        region = "" if i < len(_GENERAL) else f" Variant for region {i // len(_GENERAL)}."
        tools.append(Tool(name=unique(base), description=desc + region, intents=[ANY_INTENT], parameters=_params(rng)))
    for j in range(n - n_general):
        label = labels[j % len(labels)]
        topic = _words(label)
        verb, verb_cap, verb_s = rng.choice(_VERBS)
        suffix = rng.choice(_SUFFIXES)
        name = unique("_".join(p for p in (verb, _slug(label), suffix) if p))
        what = f"{topic} {suffix}".strip()
        desc = (
            f"{verb_cap} the {what} for the customer's account. {verb_s} data from the core banking system. "
            + rng.choice(_WHEN).format(topic=topic) + " " + rng.choice(_RETURNS)
        )
        intents = [label]
        if len(labels) > 1 and rng.random() < 0.15:
            intents.append(rng.choice([x for x in labels if x != label]))
        tools.append(Tool(name=name, description=desc, intents=intents, parameters=_params(rng)))
    return ToolCatalog(tools)
