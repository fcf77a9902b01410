"""Tier 1: TF-IDF word + character n-grams with a linear model, calibrated by temperature scaling.

Training uses scikit-learn (``TfidfVectorizer`` blocks, ``LinearSVC`` or ``LogisticRegression``).
Inference does not: sklearn's per-call validation costs far more than the arithmetic for a single
message, so the fitted vocabularies, idf weights and coefficients are exported to plain dicts and
numpy arrays, and one message is scored with a dict lookup per n-gram and one small gather-matmul
(tens of microseconds). ``tests/test_linear.py`` checks the fast path against sklearn's transform.
The saved model holds only JSON and ``.npy`` files — no pickles, so it loads across versions.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field

from ..calibration import TemperatureScaler, expected_calibration_error, softmax_t
from ..data import Dataset
from ..errors import ConfigError, DataError, ModelError
from ..types import TierResult
from .base import Progress, Tier


class TfidfBlock(BaseModel):
    """One TF-IDF feature block (the vectorizer settings that the fast path reproduces)."""

    model_config = ConfigDict(extra="forbid")

    analyzer: Literal["word", "char", "char_wb"] = "word"
    ngram_range: tuple[int, int] = (1, 2)
    min_df: int = 1
    max_features: int | None = None
    sublinear_tf: bool = True
    lowercase: bool = True
    strip_accents: Literal["unicode", "ascii"] | None = "unicode"
    weight: float = Field(1.0, gt=0)

    def vectorizer(self):  # -> TfidfVectorizer
        from sklearn.feature_extraction.text import TfidfVectorizer

        extra = {"token_pattern": r"(?u)\b\w+\b"} if self.analyzer == "word" else {}
        return TfidfVectorizer(
            analyzer=self.analyzer, ngram_range=self.ngram_range, min_df=self.min_df, max_features=self.max_features,
            sublinear_tf=self.sublinear_tf, lowercase=self.lowercase, strip_accents=self.strip_accents,
            dtype=np.float32, **extra,
        )


class LinearParams(BaseModel):
    """Hyper-parameters of the linear tier (defaults chosen on BANKING77 validation, see BENCHMARKS.md)."""

    model_config = ConfigDict(extra="forbid")

    blocks: list[TfidfBlock] = Field(
        default_factory=lambda: [
            TfidfBlock(analyzer="word", ngram_range=(1, 2)),
            TfidfBlock(analyzer="char_wb", ngram_range=(2, 5), min_df=2),
        ]
    )
    classifier: Literal["svm", "logreg"] = "svm"
    C: float = Field(0.5, gt=0)
    class_weight: Literal["balanced"] | None = None
    cost_per_call_usd: float = Field(0.0, ge=0)
    top_k: int = Field(10, ge=2, description="labels kept in each result (the gate and the LLM's candidates)")


class _FastBlock:
    """A fitted block as plain Python: analyzer callable, vocabulary dict, idf array, offset."""

    __slots__ = ("analyze", "vocab", "idf", "offset", "weight", "sublinear")

    def __init__(self, spec: TfidfBlock, vocab: dict[str, int], idf: np.ndarray, offset: int) -> None:
        self.analyze: Callable[[str], list[str]] = spec.vectorizer().build_analyzer()
        self.vocab = vocab
        self.idf = idf.astype(np.float64)
        self.offset = offset
        self.weight = spec.weight
        self.sublinear = spec.sublinear_tf

    def features(self, text: str) -> tuple[np.ndarray, np.ndarray] | None:
        counts = Counter(map(self.vocab.get, self.analyze(text)))
        counts.pop(None, None)
        if not counts:
            return None
        idx = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        if self.sublinear:
            tf = np.log(tf) + 1.0
        v = tf * self.idf[idx]
        v *= self.weight / math.sqrt(float(v @ v))
        return idx + self.offset, v


class LinearTier(Tier):
    """TF-IDF + linear model; ``predict_proba`` is temperature-calibrated on the validation split."""

    kind = "linear"
    calibrated = True

    def __init__(self, name: str | None = None, params: LinearParams | dict[str, Any] | None = None) -> None:
        super().__init__(name)
        self.params = params if isinstance(params, LinearParams) else LinearParams(**(params or {}))
        self.temperature_ = 1.0
        self._blocks: list[_FastBlock] = []
        self._W = np.zeros((0, 0), dtype=np.float32)  # (n_features, n_labels)
        self._b = np.zeros(0, dtype=np.float64)
        self._info: dict[str, Any] = {}
        self._vectorizers: list[Any] = []  # fitted sklearn vectorizers, kept in memory after fit only

    # -- training -------------------------------------------------------------------------
    def fit(self, data: Dataset, progress: Progress | None = None) -> LinearTier:
        if data.multi_label:
            raise ConfigError(
                "the linear tier is single-label; this dataset has multi-label examples", field="tiers.linear"
            )
        if not data.train:
            raise DataError("the training split is empty")
        t0 = time.perf_counter()
        step = progress or (lambda _msg, _frac: None)
        present = {ex.labels[0] for ex in data.train}
        self.labels_ = tuple(label for label in data.labels if label in present)
        if len(self.labels_) < 2:
            raise DataError(f"need at least 2 labels in the training split, found {list(self.labels_)}")
        index = {label: i for i, label in enumerate(self.labels_)}
        texts = [ex.text for ex in data.train]
        y = np.array([index[ex.labels[0]] for ex in data.train])

        step("vectorising", 0.05)
        self._vectorizers = [blk.vectorizer() for blk in self.params.blocks]
        mats = [v.fit_transform(texts) * blk.weight for v, blk in zip(self._vectorizers, self.params.blocks)]
        X = sp.hstack(mats, format="csr")
        step(f"fitting {self.params.classifier} on {X.shape[0]} × {X.shape[1]}", 0.3)
        clf = self._classifier().fit(X, y)
        coef = np.asarray(clf.coef_, dtype=np.float64)
        intercept = np.asarray(clf.intercept_, dtype=np.float64)
        if coef.shape[0] == 1:  # binary: one decision value → two symmetric logits
            coef = np.vstack([-coef[0] / 2, coef[0] / 2])
            intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
        self._W = np.ascontiguousarray(coef.T, dtype=np.float32)
        self._b = intercept
        offset = 0
        self._blocks = []
        for spec, vec in zip(self.params.blocks, self._vectorizers):
            vocab = {term: int(i) for term, i in vec.vocabulary_.items()}
            self._blocks.append(_FastBlock(spec, vocab, vec.idf_, offset))
            offset += len(vocab)

        step("calibrating on validation", 0.85)
        self._info = {"n_features": int(X.shape[1]), "n_train": len(texts), "labels": len(self.labels_)}
        self.temperature_ = 1.0
        val = [ex for ex in data.validation if ex.labels[0] in index]
        if val:
            logits = self.decision_function([ex.text for ex in val])
            yv = np.array([index[ex.labels[0]] for ex in val])
            self.temperature_ = TemperatureScaler.fit(logits, yv).temperature_
            before, after = softmax_t(logits, 1.0), softmax_t(logits, self.temperature_)
            correct = before.argmax(1) == yv
            self._info.update(
                validation_accuracy=float(correct.mean()),
                ece_before=expected_calibration_error(before.max(1), correct),
                ece_after=expected_calibration_error(after.max(1), correct),
            )
        self._info.update(temperature=self.temperature_, train_seconds=round(time.perf_counter() - t0, 3))
        step("done", 1.0)
        return self

    def _classifier(self):
        if self.params.classifier == "svm":
            from sklearn.svm import LinearSVC

            return LinearSVC(C=self.params.C, class_weight=self.params.class_weight)
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=self.params.C, class_weight=self.params.class_weight, max_iter=2000)

    # -- inference ------------------------------------------------------------------------
    def _features(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        parts = [f for blk in self._blocks if (f := blk.features(text)) is not None]
        if not parts:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        if len(parts) == 1:
            return parts[0]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _logits_one(self, text: str) -> np.ndarray:
        idx, vals = self._features(text)
        return vals @ self._W[idx] + self._b if len(idx) else self._b.copy()

    def decision_function(self, texts: Sequence[str]) -> np.ndarray:
        """Raw linear scores (n, n_labels), before temperature scaling."""
        self._check_fitted()
        rows, cols, vals = [], [], []
        for i, text in enumerate(texts):
            idx, v = self._features(text)
            rows.append(np.full(len(idx), i)), cols.append(idx), vals.append(v)
        X = sp.csr_matrix(
            (np.concatenate(vals) if vals else [], (np.concatenate(rows) if rows else [], np.concatenate(cols) if cols else [])),
            shape=(len(texts), self._W.shape[0]),
        )
        return np.asarray(X @ self._W, dtype=np.float64) + self._b

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return softmax_t(self.decision_function(texts), self.temperature_)

    def score(self, text: str, candidates: Sequence[str] | None = None) -> TierResult:
        t0 = time.perf_counter()
        self._check_fitted()
        z = self._logits_one(text) / self.temperature_
        z -= z.max()
        p = np.exp(z)
        p /= p.sum()
        ranked = self._rank(p)
        return TierResult(ranked, cost_usd=self.params.cost_per_call_usd, latency_ms=(time.perf_counter() - t0) * 1e3)

    def score_batch(self, texts: Sequence[str], candidates: Sequence[Sequence[str] | None] | None = None) -> list[TierResult]:
        t0 = time.perf_counter()
        probs = self.predict_proba(texts)
        per = (time.perf_counter() - t0) * 1e3 / max(1, len(texts))
        return [TierResult(self._rank(p), cost_usd=self.params.cost_per_call_usd, latency_ms=per) for p in probs]

    def _rank(self, p: np.ndarray) -> list[tuple[str, float]]:
        k = self.params.top_k
        top = np.argpartition(-p, k)[:k] if len(p) > k else np.arange(len(p))
        top = top[np.argsort(-p[top], kind="stable")]
        labels = self.labels_
        return [(labels[i], float(p[i])) for i in top]

    def info(self) -> dict[str, Any]:
        return dict(self._info)

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: Path) -> None:
        self._check_fitted()
        meta = {
            "params": self.params.model_dump(mode="json"),
            "labels": list(self.labels_),
            "temperature": self.temperature_,
            "info": self._info,
        }
        (path / "linear.json").write_text(json.dumps(meta, indent=2))
        for i, blk in enumerate(self._blocks):
            terms = [""] * len(blk.vocab)
            for term, j in blk.vocab.items():
                terms[j] = term
            (path / f"vocab_{i}.json").write_text(json.dumps(terms, ensure_ascii=False))
            np.save(path / f"idf_{i}.npy", blk.idf)
        np.save(path / "coef.npy", self._W)
        np.save(path / "intercept.npy", self._b)

    @classmethod
    def load(cls, path: Path, name: str) -> LinearTier:
        try:
            meta = json.loads((path / "linear.json").read_text())
            tier = cls(name, LinearParams(**meta["params"]))
            tier.labels_ = tuple(meta["labels"])
            tier.temperature_ = float(meta["temperature"])
            tier._info = meta.get("info", {})
            offset = 0
            for i, spec in enumerate(tier.params.blocks):
                terms = json.loads((path / f"vocab_{i}.json").read_text())
                vocab = {t: j for j, t in enumerate(terms)}
                tier._blocks.append(_FastBlock(spec, vocab, np.load(path / f"idf_{i}.npy"), offset))
                offset += len(vocab)
            tier._W = np.load(path / "coef.npy")
            tier._b = np.load(path / "intercept.npy")
        except FileNotFoundError as exc:
            raise ModelError(f"linear tier file missing ({Path(exc.filename).name}): re-save or retrain the model", path=path) from exc
        except (KeyError, ValueError, json.JSONDecodeError) as exc:
            raise ModelError(f"linear tier files are corrupt ({exc}): retrain the model", path=path) from exc
        if tier._W.shape != (offset, len(tier.labels_)):
            raise ModelError(f"coefficients have shape {tier._W.shape}, expected {(offset, len(tier.labels_))}: retrain", path=path)
        return tier
