"""What the two in-process GGUF providers share (``local``: xllamacpp, ``llama-cpp``: llama-cpp-python).

Both run a GGUF model file in this process: the model is named (a verified file in the model cache,
:mod:`frontdesk.llm.models`) or given by path; it loads lazily under a lock, on the first call or
:meth:`LocalGGUFProvider.load`; a call first waits for that lock within its deadline; OpenMP's idle
threads are made passive before the backend is imported (on shared cores spinning threads make calls
several times slower); an answer cut off at ``max_tokens`` is a ``bad_response``. Each backend adds how it
loads the model and runs one completion.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from frontdesk.errors import ModelError
from frontdesk.llm.base import LLMRequest, LLMResponse, ProviderError
from frontdesk.llm.models import get_spec, model_path as installed_model_path


def default_threads() -> int:
    """llama.cpp threads when none are given: 2, or 1 on a 1-core machine."""
    return max(1, min(2, os.cpu_count() or 1))


def check_gguf(path: Path) -> None:
    """Raise :class:`ModelError` unless ``path`` is a readable file starting with the GGUF magic.

    llama.cpp reports every load failure alike ("Failed to init server", "failed to load model");
    checking first turns the common mistakes (wrong path, a directory, a truncated or non-GGUF file)
    into errors that say what to do.
    """
    if not path.exists():
        raise ModelError("GGUF model file not found: pass the path of a .gguf file, or a model name from "
                         "`frontdesk models list` (fetch it with `frontdesk models fetch NAME`)", path=path)
    if not path.is_file():
        raise ModelError("is not a file: pass the path of a .gguf model file", path=path)
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise ModelError(f"cannot read the model file ({exc.strerror}): check its permissions", path=path) from exc
    if magic != b"GGUF":
        raise ModelError("is not a GGUF model file (no GGUF header): pass a .gguf file, or fetch the default model "
                         "with `frontdesk models fetch`", path=path)


class LocalGGUFProvider:
    """Base of the in-process GGUF providers; subclasses set ``name`` and ``backend`` (the module imported
    to run the model) and implement :meth:`_import`, :meth:`_load_locked`, ``loaded``, ``complete``, ``close``.

    ``model`` is a name from :data:`frontdesk.llm.models.MODELS` (its verified file is looked up in the model
    cache, ``cache_dir`` or ``$FRONTDESK_MODELS``) unless ``model_path`` points at a GGUF file, in which case
    ``model`` is only the name reported in responses and cache keys. ``n_threads`` is used for prompt
    evaluation and generation (default :func:`default_threads`). ``passive_openmp``: unless
    ``OMP_WAIT_POLICY`` is already set, the first provider created before the backend is imported sets it to
    ``PASSIVE`` (set ``OMP_WAIT_POLICY=ACTIVE`` for dedicated cores).
    """

    name = "local-gguf"
    backend = ""

    def __init__(self, model: str, *, model_path: str | Path | None, n_threads: int | None, n_ctx: int, tier_name: str,
                 n_batch: int, cache_dir: str | Path | None, seed: int, passive_openmp: bool) -> None:
        if passive_openmp and self.backend not in sys.modules:
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when libgomp is loaded
        self._import()  # fail at construction: the package is missing, or cannot run here
        if model_path is None:
            get_spec(model)  # unknown names fail here, not at the first call
        self.model = model
        self.tier_name = tier_name
        self.n_threads = n_threads or default_threads()
        self.n_ctx = n_ctx
        self.n_batch = n_batch
        self.seed = seed
        self._explicit_path = Path(model_path).expanduser() if model_path is not None else None
        self._cache_dir = cache_dir
        self._lock = threading.Lock()

    def _import(self) -> Any:
        """Import the backend (ImportError of a missing package propagates: the registry says what to install)."""
        raise NotImplementedError

    def _load_locked(self) -> None:
        """Load the model unless it is loaded (the caller holds the lock); :class:`ModelError` when it cannot."""
        raise NotImplementedError

    @property
    def loaded(self) -> bool:
        raise NotImplementedError

    @property
    def path(self) -> Path:
        """The GGUF file: ``model_path``, or the verified file from the model cache (else :class:`ModelError`)."""
        if self._explicit_path is not None:
            return self._explicit_path
        return installed_model_path(self.model, self._cache_dir)

    def load(self) -> None:
        """Load the model now (otherwise the first call does). Raises :class:`ModelError`."""
        with self._lock:
            self._load_locked()

    @contextmanager
    def _loaded(self, budget: float, busy: str = "busy") -> Iterator[None]:
        """Hold the model lock with the model loaded, waiting at most ``budget`` seconds for the lock: a
        ``timeout`` when another call or the load keeps it longer, a ``client_error`` when the model cannot load."""
        if not self._lock.acquire(timeout=budget):
            raise ProviderError(self.tier_name, "timeout", f"the local model stayed {busy} for {budget:.1f} s")
        try:
            try:
                self._load_locked()
            except ModelError as exc:
                raise ProviderError(self.tier_name, "client_error", str(exc)) from exc
            yield
        finally:
            self._lock.release()

    def _answer(self, text: str, finish: Any, usage: dict[str, Any], request: LLMRequest, elapsed: float, *,
                label_probs: dict[str, float] | None = None, **raw: Any) -> LLMResponse:
        """The response of a finished completion; an answer cut off at ``max_tokens`` is a ``bad_response``."""
        if finish == "length":
            raise ProviderError(self.tier_name, "bad_response", f"answer cut off at max_tokens={request.max_tokens}: {text[:80]!r}")
        return LLMResponse(
            text=text.strip(),
            input_tokens=int(usage.get("prompt_tokens", 0)),
            output_tokens=int(usage.get("completion_tokens", 0)),
            model=self.model,
            label_probs=label_probs,
            raw={"finish_reason": finish, "elapsed_s": round(elapsed, 4), "n_threads": self.n_threads, **raw},
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, n_threads={self.n_threads}, loaded={self.loaded})"


__all__ = ["LocalGGUFProvider", "check_gguf", "default_threads"]
