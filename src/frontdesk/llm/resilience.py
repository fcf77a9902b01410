"""Fault handling of the LLM tier: retries with backoff, a circuit breaker, an answer cache, and
record/replay of real answers (so a benchmark can be re-run on recorded LLM output)."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from frontdesk.llm.base import LLMResponse, ProviderError


class CircuitBreaker:
    """Opens after ``failures`` consecutive failed calls; while open, calls fail fast for
    ``cooldown_s``; then one trial call is let through (half-open) and closes it on success."""

    def __init__(self, failures: int = 5, cooldown_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures, self.cooldown_s, self.clock = failures, cooldown_s, clock
        self._count = 0
        self._opened_at: float | None = None
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        with self._lock:
            if self._opened_at is None:
                return "closed"
            return "half-open" if self.clock() - self._opened_at >= self.cooldown_s else "open"

    def allow(self) -> bool:
        """May a call go through now?"""
        return self.state != "open"

    def success(self) -> None:
        with self._lock:
            self._count, self._opened_at = 0, None

    def failure(self) -> None:
        with self._lock:
            self._count += 1
            if self._count >= self.failures:
                self._opened_at = self.clock()

    def remaining_s(self) -> float:
        with self._lock:
            return 0.0 if self._opened_at is None else max(0.0, self.cooldown_s - (self.clock() - self._opened_at))


def call_with_retries(
    call: Callable[[], LLMResponse], *, retries: int, backoff_s: float, max_backoff_s: float,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[LLMResponse, int]:
    """Run ``call``; retry retryable ProviderErrors (timeouts, 429, 5xx, connection) with
    exponential backoff, honouring Retry-After up to ``max_backoff_s``. Returns (response, attempts)."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return call(), attempt
        except ProviderError as exc:
            if not exc.retryable or attempt > retries:
                exc.attempts = attempt  # type: ignore[attr-defined]
                raise
            wait = backoff_s * 2 ** (attempt - 1)
            if exc.retry_after is not None:
                wait = max(wait, exc.retry_after)
            sleep(min(wait, max_backoff_s))


def cache_key(text: str, candidates: tuple[str, ...], model: str) -> str:
    """Normalised text + candidate set + model → a stable key."""
    norm = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    raw = json.dumps([norm, sorted(candidates), model], ensure_ascii=False)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


class TTLCache:
    """A bounded, thread-safe exact-match cache with a time-to-live."""

    def __init__(self, ttl_s: float = 3600.0, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s, self.max_entries, self.clock = ttl_s, max_entries, clock
        self._data: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Any | None:
        if self.ttl_s <= 0:
            return None
        with self._lock:
            hit = self._data.get(key)
            if hit is None:
                return None
            if self.clock() - hit[0] > self.ttl_s:
                del self._data[key]
                return None
            return hit[1]

    def put(self, key: str, value: Any) -> None:
        if self.ttl_s <= 0:
            return
        with self._lock:
            self._data[key] = (self.clock(), value)
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)


class Recording:
    """Record/replay of provider answers as JSONL: ``{"key", "text", "input_tokens", "output_tokens", "model"}``.

    mode ``record`` appends every real answer; ``replay`` answers from the file only (a key that
    was never recorded is a ``not_recorded`` failure, so a replayed benchmark never calls out);
    ``through`` answers from the file what is there and records the rest (a refit replays).
    """

    def __init__(self, path: str | Path, mode: str) -> None:
        if mode not in ("record", "replay", "through"):
            raise ValueError("mode must be 'record', 'replay' or 'through'")
        self.path, self.mode = Path(path), mode
        self._lock = threading.Lock()
        self._answers: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    row = json.loads(line)
                    self._answers[row["key"]] = row

    def __len__(self) -> int:
        return len(self._answers)

    def has(self, key: str) -> bool:
        """True when an answer for ``key`` is recorded."""
        return key in self._answers

    def lookup(self, key: str, tier: str) -> LLMResponse:
        row = self._answers.get(key)
        if row is None:
            raise ProviderError(tier, "not_recorded", f"no recorded answer for this message in {self.path}")
        return LLMResponse(row["text"], row.get("input_tokens", 0), row.get("output_tokens", 0), row.get("model", ""),
                           label_probs=row.get("label_probs"))

    def record(self, key: str, response: LLMResponse) -> None:
        row = {"key": key, "text": response.text, "input_tokens": response.input_tokens,
               "output_tokens": response.output_tokens, "model": response.model, "label_probs": response.label_probs}
        with self._lock:
            self._answers[key] = row
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
