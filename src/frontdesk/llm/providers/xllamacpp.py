"""The offline LLM provider (``local``) on ``xllamacpp``: a GGUF model run in process by a prebuilt llama.cpp.

``xllamacpp`` ships llama.cpp as one binary wheel (no compiler, unlike ``llama-cpp-python``), and
exposes llama.cpp's own server engine: :class:`xllamacpp.Server` loads the model and runs a task
loop on a native thread. This provider talks to that engine, in the same process, over HTTP on a
**Unix socket** in a private temporary directory (mode 0700) with a random API key:

* **Real wall-clock timeouts.** The in-process ``Server.handle_chat_completions`` cannot be
  interrupted before the first token (prompt evaluation, ~7 s for a 600-token prompt on one core).
  Over HTTP the socket read is bounded by the call's deadline (``request.deadline``, else
  ``request.timeout_s``); at the deadline the client closes
  the connection, the call raises ``ProviderError(kind="timeout")`` at once, and llama.cpp cancels
  the task itself (it polls the connection every second and cancels between ``n_batch`` chunks of
  prompt, or between tokens). Waiting behind another call counts against the same deadline.
* **Thread safe.** The engine queues concurrent requests (``n_parallel`` slots, default 1);
  each call uses its own connection. The model is loaded once, lazily, under a lock.
* **Schema-constrained answers.** ``json_schema`` is compiled by llguidance (in native code) and
  sampling can only produce text the schema accepts: enum labels, ``minimum``/``maximum`` of
  numbers, ``maxLength`` of strings, no raw control characters. Whitespace is fixed to the compact
  ``{"k": v, ...}`` form (``x-guidance``), which saves tokens and rules out whitespace loops.
  A schema it cannot compile is a ``client_error``.
* **Prompt reuse.** llama.cpp keeps the slot's KV cache (only the differing suffix is evaluated)
  and a host-memory prompt cache (``prompt_cache_mb``) that restores a label catalogue seen before.
* **Label probabilities** from the token log-probabilities (``top_logprobs``), renormalised over
  the alternatives the schema allows (:func:`constrained_label_probs`).

The process's signal handlers are not touched (checked for this release), and ``close()`` stops
the engine's threads and removes the socket directory.
"""

from __future__ import annotations

import http.client
import json
import os
import platform
import secrets
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from frontdesk.errors import ConfigError, ModelError
from frontdesk.llm.base import LLMRequest, LLMResponse, ProviderError
from frontdesk.llm.models import DEFAULT_MODEL
from frontdesk.llm.providers.local_gguf import LocalGGUFProvider, check_gguf, default_threads
from frontdesk.llm.logprobs import constrained_label_probs

#: the pip requirement of this provider (one abi3 wheel per platform; CPU build on PyPI)
REQUIREMENT = "xllamacpp>=2026.10.11549,<2027"

#: llguidance options: one space after ``:`` and ``,``, no other whitespace
_COMPACT_JSON = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


#: instruction sets the prebuilt x86-64 wheel is compiled for (x86-64-v3: Haswell, Zen 1 and later); on a CPU
#: without them ``import xllamacpp`` kills the process with SIGILL, so it is checked before the import
X86_FLAGS = frozenset({"avx", "avx2", "fma", "f16c", "bmi2"})


def missing_cpu_features(cpuinfo: str | None = None) -> set[str]:
    """The :data:`X86_FLAGS` this x86-64 Linux CPU lacks (empty elsewhere, or when ``/proc/cpuinfo`` is unreadable)."""
    if cpuinfo is None:
        if platform.system() != "Linux" or platform.machine().lower() not in {"x86_64", "amd64"}:
            return set()
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return set(X86_FLAGS - set(line.partition(":")[2].split()))
    return set()


def import_xllamacpp() -> Any:
    """``import xllamacpp``, after checking the CPU; a :class:`ConfigError` says what to do when it cannot work.

    An ``ImportError`` of a missing package propagates unchanged (the tier turns it into "pip install
    'frontdesk[llm-local]'"); a missing system library or an unsupported CPU is a :class:`ConfigError`.
    """
    if "xllamacpp" not in sys.modules:
        missing = missing_cpu_features()
        if missing:
            raise ConfigError(f"this CPU lacks {', '.join(sorted(missing))}, which the prebuilt xllamacpp wheel needs "
                              f"(x86-64-v3); use the 'llama-cpp' provider (llama-cpp-python, compiled for this CPU) "
                              f"or an API provider", field="llm.provider")
    try:
        import xllamacpp
    except ImportError as exc:
        if "libgomp" in str(exc):
            raise ConfigError(f"xllamacpp needs the OpenMP runtime libgomp.so.1 ({exc}): install it with "
                              f"`apt-get install libgomp1` (Debian/Ubuntu) or `dnf install libgomp` (Fedora/RHEL)",
                              field="llm.provider") from exc
        raise
    return xllamacpp


# -- HTTP over a Unix socket ----------------------------------------------------------------------

def _connection(address: str, timeout: float) -> http.client.HTTPConnection:
    """A connection to the engine: ``address`` is a Unix socket path, or ``http://127.0.0.1:PORT``."""
    if address.startswith("http://"):
        host, _, port = address.removeprefix("http://").rpartition(":")
        return http.client.HTTPConnection(host, int(port), timeout=timeout)
    return _UnixConnection(address, timeout)


class _UnixConnection(http.client.HTTPConnection):
    """``http.client`` to a Unix socket (the ``Host`` header says ``localhost``)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


# -- the provider ---------------------------------------------------------------------------------

class XllamacppProvider(LocalGGUFProvider):
    """An in-process llama.cpp engine (``xllamacpp``) implementing the :class:`~frontdesk.llm.base.Provider` protocol.

    Model, path, threads and OpenMP settings as in :class:`~frontdesk.llm.providers.local_gguf.LocalGGUFProvider`.
    ``n_batch`` is also the granularity at which a timed-out prompt evaluation stops (128 tokens:
    ~1.5 s on one core). ``prompt_cache_mb`` bounds llama.cpp's host-memory prompt cache (0
    disables it). ``top_logprobs`` alternatives per token give ``label_probs`` (0: none).
    ``n_parallel`` slots decode concurrently (continuous batching); each gets ``n_ctx`` tokens.
    Per call, ``max_tokens``, ``temperature`` (0: greedy) and the deadline come from the request.
    ``verbose`` lets llama.cpp log to stderr (load diagnostics). ``transport``: ``unix`` (default
    where Python has ``AF_UNIX``) or ``tcp`` (Windows: a random loopback port, guarded only by the
    random API key, so other local users can reach the port but not use it).

    ``passive_openmp``: the CPU backend uses OpenMP, whose idle threads busy-wait by default; on
    shared cores that makes calls several times slower. Unless ``OMP_WAIT_POLICY`` is already set,
    the first provider created before ``xllamacpp`` is imported sets it to ``PASSIVE``.
    """

    name = "local"
    backend = "xllamacpp"

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        model_path: str | Path | None = None,
        n_threads: int | None = None,
        n_ctx: int = 4096,
        tier_name: str = "llm",
        n_batch: int = 128,
        prompt_cache_mb: int = 256,
        cache_dir: str | Path | None = None,
        seed: int = 0,
        top_logprobs: int = 10,
        n_parallel: int = 1,
        passive_openmp: bool = True,
        verbose: bool = False,
        transport: str | None = None,
    ) -> None:
        super().__init__(model, model_path=model_path, n_threads=n_threads, n_ctx=n_ctx, tier_name=tier_name, n_batch=n_batch,
                         cache_dir=cache_dir, seed=seed, passive_openmp=passive_openmp)
        self.prompt_cache_mb = max(0, prompt_cache_mb)
        self.top_logprobs = max(0, min(20, top_logprobs))
        self.n_parallel = max(1, n_parallel)
        self.verbose = verbose
        if transport not in (None, "unix", "tcp"):
            raise ConfigError(f"transport must be 'unix' or 'tcp', not {transport!r}", field="llm.transport")
        self.transport = transport or ("unix" if hasattr(socket, "AF_UNIX") else "tcp")
        self._server: Any = None
        self._dir: str | None = None
        self._socket = ""
        self._key = ""
        self.load_s: float | None = None
        self.stats = {"calls": 0, "loads": 0, "timeouts": 0, "prompt_tokens_evaluated": 0, "prompt_tokens_cached": 0}

    # -- loading --------------------------------------------------------------------------------

    def _import(self) -> Any:
        return import_xllamacpp()  # package missing, no libgomp, or a CPU without AVX2

    @property
    def loaded(self) -> bool:
        return self._server is not None

    def _load_locked(self) -> None:
        if self._server is not None:
            return
        xlc = import_xllamacpp()
        path = self.path
        check_gguf(path)
        started = time.monotonic()
        directory = tempfile.mkdtemp(prefix="frontdesk-llm-")  # 0700: only this user reaches the socket
        if len(os.path.join(directory, "llm.sock").encode()) > 100:  # a Unix socket path holds at most 107 bytes
            os.rmdir(directory)
            directory = tempfile.mkdtemp(prefix="frontdesk-llm-", dir="/tmp")
        key = secrets.token_urlsafe(24)
        p = xlc.CommonParams()
        p.model.path = str(path)
        p.n_ctx = self.n_ctx * self.n_parallel
        p.n_parallel = self.n_parallel
        p.n_batch = p.n_ubatch = self.n_batch
        p.cpuparams.n_threads = p.cpuparams_batch.n_threads = self.n_threads
        p.sampling.seed = self.seed
        p.sampling.temp = 0.0
        p.cache_prompt = True
        p.cache_ram_mib = self.prompt_cache_mb
        p.warmup = False
        p.fit_params = False  # keep n_ctx as given (fitting is for GPU offload)
        if not self.verbose:
            p.verbosity = 0  # llama.cpp's own log stays quiet; errors come back in responses
        p.endpoint_slots = False
        p.ui = False
        p.api_keys = [key]
        p.hostnames = [os.path.join(directory, "llm.sock")] if self.transport == "unix" else ["127.0.0.1"]
        p.port = 0  # tcp: a free port
        try:
            server = xlc.Server(p)
        except Exception as exc:  # RuntimeError("Failed to init server ...") for any load failure
            shutil.rmtree(directory, ignore_errors=True)
            raise ModelError(f"llama.cpp (xllamacpp) could not load the model ({exc}); the file may be truncated or "
                             f"of an unsupported architecture, or memory short: check it with `frontdesk models verify` "
                             f"or pass another GGUF file (verbose=True shows llama.cpp's log)", path=path) from exc
        self._server, self._dir, self._key = server, directory, key
        self._socket = p.hostnames[0] if self.transport == "unix" else server.listening_address
        self.load_s = time.monotonic() - started
        self.stats["loads"] += 1

    def close(self) -> None:
        """Stop the engine and free the model (a later call loads it again); calls in flight fail."""
        with self._lock:
            server, self._server = self._server, None
            directory, self._dir = self._dir, None
            del server  # the destructor stops llama.cpp's task loop and HTTP threads and joins them
            if directory:
                shutil.rmtree(directory, ignore_errors=True)

    # -- one call -------------------------------------------------------------------------------

    def complete(self, request: LLMRequest) -> LLMResponse:
        """One schema-constrained chat completion; raises :class:`ProviderError` on any failure."""
        started = time.monotonic()
        budget = request.remaining_s()
        deadline = started + budget
        with self._loaded(budget, "busy loading"):
            sock, key = self._socket, self._key
        schema = dict(request.schema)
        schema.setdefault("x-guidance", _COMPACT_JSON)
        body: dict[str, Any] = {
            "messages": [{"role": "system", "content": request.system}, {"role": "user", "content": request.user}],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "seed": self.seed,
            "json_schema": schema,
            "cache_prompt": True,
        }
        if self.top_logprobs:
            body.update(logprobs=True, top_logprobs=self.top_logprobs)
        status, data = self._post(sock, key, "/v1/chat/completions", body, deadline, budget)
        if status != 200:
            raise self._status_error(status, data)
        return self._response(data, request, time.monotonic() - started)

    def _post(self, sock: str, key: str, path: str, body: dict[str, Any], deadline: float, timeout_s: float) -> tuple[int, Any]:
        """POST ``body``; the socket timeout is the time left before ``deadline`` at every step."""
        def left() -> float:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            return remaining

        conn = _connection(sock, timeout=max(0.001, deadline - time.monotonic()))
        try:
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
            sock_ = conn.sock  # getresponse() may hand the socket over to the response
            sock_.settimeout(left())
            resp = conn.getresponse()
            sock_.settimeout(left())
            raw = resp.read()
            status = resp.status
        except TimeoutError as exc:  # socket.timeout is TimeoutError
            self.stats["timeouts"] += 1
            raise ProviderError(self.tier_name, "timeout", f"no answer within {timeout_s:.1f} s") from exc
        except (OSError, http.client.HTTPException) as exc:
            if self._server is None:
                raise ProviderError(self.tier_name, "connection", "the local model was closed during the call") from exc
            raise ProviderError(self.tier_name, "server_error", f"the llama.cpp engine dropped the call ({type(exc).__name__}: {exc})") from exc
        finally:
            conn.close()  # at a timeout this is what makes llama.cpp cancel the task
        try:
            return status, json.loads(raw)
        except ValueError as exc:
            raise ProviderError(self.tier_name, "bad_response", f"llama.cpp sent non-JSON (HTTP {status}): {raw[:80]!r}") from exc

    def _status_error(self, status: int, data: Any) -> ProviderError:
        err = data.get("error") if isinstance(data, dict) else None
        message = str(err.get("message", err)) if isinstance(err, dict) else str(data)[:300]
        kind = "client_error" if 400 <= status < 500 or status == 501 else "server_error"
        return ProviderError(self.tier_name, kind, f"llama.cpp: HTTP {status}: {message[:300]}", status=status)

    def _response(self, out: Any, request: LLMRequest, elapsed: float) -> LLMResponse:
        try:
            choice = out["choices"][0]
            text = choice["message"]["content"] or ""
            finish = choice.get("finish_reason")
            usage = out.get("usage") or {}
            timings = out.get("timings") or {}
        except (KeyError, IndexError, TypeError) as exc:
            raise ProviderError(self.tier_name, "bad_response", f"unexpected llama.cpp result: {exc!r}") from exc
        label_probs = None
        content = (choice.get("logprobs") or {}).get("content")
        if content and finish != "length":
            label_probs = constrained_label_probs(text, content, request.allowed)
        answer = self._answer(text, finish, usage, request, elapsed, label_probs=label_probs,
                              prompt_evaluated=timings.get("prompt_n"), prompt_cached=timings.get("cache_n"),
                              prompt_ms=timings.get("prompt_ms"), predicted_ms=timings.get("predicted_ms"))
        self.stats["calls"] += 1
        self.stats["prompt_tokens_evaluated"] += int(timings.get("prompt_n", 0))
        self.stats["prompt_tokens_cached"] += int(timings.get("cache_n", 0))
        return answer


__all__ = ["REQUIREMENT", "X86_FLAGS", "XllamacppProvider", "check_gguf", "constrained_label_probs", "default_threads",
           "import_xllamacpp", "missing_cpu_features"]
