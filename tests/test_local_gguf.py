"""What both in-process GGUF providers share (frontdesk.llm.providers.local_gguf), on a backend that needs no
llama.cpp: model checks, the lock with the call's deadline, the cut-off answer, the OpenMP setting."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from frontdesk.errors import ModelError
from frontdesk.llm.base import LLMRequest, LLMResponse, ProviderError
from frontdesk.llm.providers.llama_cpp import LlamaCppProvider
from frontdesk.llm.providers.local_gguf import LocalGGUFProvider, check_gguf
from frontdesk.llm.providers.xllamacpp import XllamacppProvider


class EchoGGUF(LocalGGUFProvider):
    """A "backend" that reads the GGUF file and answers what it is told to."""

    name = "echo-gguf"
    backend = "frontdesk_test_backend_never_imported"

    def __init__(self, model: str = "echo", **kw: object) -> None:
        options = {"model_path": None, "n_threads": None, "n_ctx": 512, "tier_name": "llm", "n_batch": 64, "cache_dir": None,
                   "seed": 0, "passive_openmp": True, **kw}
        super().__init__(model, **options)  # type: ignore[arg-type]
        self._bytes: bytes | None = None
        self.reply = ('  {"labels": ["a"]} ', "stop")

    def _import(self) -> None:
        return None

    @property
    def loaded(self) -> bool:
        return self._bytes is not None

    def _load_locked(self) -> None:
        if self._bytes is None:
            check_gguf(self.path)
            self._bytes = self.path.read_bytes()

    def complete(self, request: LLMRequest) -> LLMResponse:
        started = time.monotonic()
        with self._loaded(request.remaining_s()):
            text, finish = self.reply
        return self._answer(text, finish, {"prompt_tokens": 7, "completion_tokens": 3}, request, time.monotonic() - started)


def request(timeout_s: float = 5.0) -> LLMRequest:
    return LLMRequest(system="s", user="u", schema={"type": "object"}, allowed=("a", "b"), max_tokens=16, timeout_s=timeout_s)


@pytest.fixture()
def gguf(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"GGUF" + bytes(16))
    return path


def test_both_local_providers_share_the_base() -> None:
    assert issubclass(XllamacppProvider, LocalGGUFProvider) and issubclass(LlamaCppProvider, LocalGGUFProvider)
    assert XllamacppProvider.backend == "xllamacpp" and LlamaCppProvider.backend == "llama_cpp"


def test_an_answer_loads_the_model_once_and_reports_usage(gguf: Path) -> None:
    p = EchoGGUF(model_path=gguf, n_threads=3)
    assert not p.loaded and repr(p) == "EchoGGUF(model='echo', n_threads=3, loaded=False)"
    r = p.complete(request())
    assert json.loads(r.text) == {"labels": ["a"]} and r.text == r.text.strip()
    assert (r.input_tokens, r.output_tokens, r.model) == (7, 3, "echo")
    assert r.raw["finish_reason"] == "stop" and r.raw["n_threads"] == 3 and p.loaded


def test_an_answer_cut_off_at_max_tokens_is_a_bad_response(gguf: Path) -> None:
    p = EchoGGUF(model_path=gguf)
    p.reply = ('{"labels": ["a"], "rationale": "and then', "length")
    with pytest.raises(ProviderError, match="cut off at max_tokens=16") as info:
        p.complete(request())
    assert info.value.kind == "bad_response"


def test_a_file_that_is_not_a_model_is_a_client_error_that_says_what_to_do(tmp_path: Path) -> None:
    text = tmp_path / "notes.gguf"
    text.write_text("hello")
    with pytest.raises(ProviderError, match="is not a GGUF model file.*frontdesk models fetch") as info:
        EchoGGUF(model_path=text).complete(request())
    assert info.value.kind == "client_error"
    with pytest.raises(ProviderError, match="GGUF model file not found"):
        EchoGGUF(model_path=tmp_path / "missing.gguf").complete(request())
    with pytest.raises(ModelError, match="unknown local model"):
        EchoGGUF("no-such-model")  # a name (no path) must be a known model


def test_a_call_waits_for_the_model_lock_only_within_its_deadline(gguf: Path) -> None:
    p = EchoGGUF(model_path=gguf)
    with p._lock:  # another call holds the model
        with pytest.raises(ProviderError, match="the local model stayed busy for 0.0") as info:
            p.complete(request(timeout_s=0.01))
    assert info.value.kind == "timeout"
    assert p.complete(request()).text  # free again


def test_openmp_threads_are_made_passive_unless_set(gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    EchoGGUF(model_path=gguf, passive_openmp=False)
    assert "OMP_WAIT_POLICY" not in os.environ
    EchoGGUF(model_path=gguf)
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    EchoGGUF(model_path=gguf)
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
