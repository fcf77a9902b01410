"""The offline LLM behind an OpenAI-compatible endpoint on 127.0.0.1, for benchmarks.

llama.cpp's own server (the ``xllamacpp`` wheel: prebuilt, no compiler) loads the GGUF in this
process and answers ``/v1/chat/completions`` with JSON-schema constrained output and
log-probabilities, so the benchmark drives the LLM tier through the ordinary ``openai`` provider —
the same wire path as any hosted model — and records every answer for free re-runs.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from types import TracebackType

DEFAULT_GGUF = Path.home() / ".cache" / "frontdesk" / "models" / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"


class LlamaServer:
    """``with LlamaServer(gguf, threads=1) as url:`` → ``http://127.0.0.1:<port>/v1`` while the block runs."""

    def __init__(self, gguf: Path = DEFAULT_GGUF, *, threads: int = 1, n_ctx: int = 2048, n_batch: int = 256) -> None:
        self.gguf, self.threads, self.n_ctx, self.n_batch = gguf, threads, n_ctx, n_batch
        self._server = None
        self.load_s = 0.0

    def __enter__(self) -> str:
        try:
            import xllamacpp as xlc
        except ImportError as exc:
            raise SystemExit("the offline LLM benchmark needs xllamacpp (pip install xllamacpp), or --replay with "
                             "recorded answers") from exc
        if not self.gguf.is_file():
            raise SystemExit(f"no model at {self.gguf}: frontdesk models fetch")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        p = xlc.CommonParams()
        p.model.path = str(self.gguf)
        p.n_ctx, p.n_parallel = self.n_ctx, 1
        p.n_batch = p.n_ubatch = self.n_batch
        p.cpuparams.n_threads = p.cpuparams_batch.n_threads = self.threads
        p.sampling.temp, p.sampling.seed = 0.0, 13
        p.cache_prompt, p.cache_ram_mib = True, 256
        p.warmup, p.verbosity, p.endpoint_slots, p.ui = False, 0, False, False
        p.hostnames, p.port = ["127.0.0.1"], port
        started = time.monotonic()
        self._server = xlc.Server(p)
        self.load_s = time.monotonic() - started
        return f"http://127.0.0.1:{port}/v1"

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._server = None  # the destructor stops llama.cpp's threads
