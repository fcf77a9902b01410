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
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from scipy.special import expit
from pydantic import BaseModel, ConfigDict, Field

from frontdesk.gating.calibration import calibrate_temperature, expected_calibration_error, softmax_t
from frontdesk.gating.oos import CentroidBank, in_scope_argmax, logit_columns, oov_shares
from frontdesk.data.dataset import Dataset
from frontdesk.errors import DataError, ModelError
from frontdesk.types import TierResult
from frontdesk.tiers.base import Progress, Tier, parse_params


class TfidfBlock(BaseModel):
    """One TF-IDF feature block (the vectorizer settings that the fast path reproduces)."""

    model_config = ConfigDict(extra="forbid")

    analyzer: Literal["word", "char", "char_wb"] = Field("word", description="word n-grams, character n-grams, or character "
                                                         "n-grams inside word boundaries")
    ngram_range: tuple[int, int] = Field((1, 2), description="smallest and largest n-gram length")
    min_df: int = Field(1, description="drop terms seen in fewer training texts")
    max_features: int | None = Field(None, description="keep only the most frequent terms; None = all")
    sublinear_tf: bool = Field(True, description="1 + log(term frequency) instead of the raw count")
    lowercase: bool = Field(True, description="lower-case before tokenising")
    strip_accents: Literal["unicode", "ascii"] | None = Field("unicode", description="remove accents before tokenising; "
                                                               "None keeps them")
    token_pattern: str = Field(r"(?u)\b\w\w+\b", description="word analyzer only (scikit-learn's default)")
    weight: float = Field(1.0, gt=0, description="scale of this block's features relative to the others")

    def vectorizer(self):  # -> TfidfVectorizer
        from sklearn.feature_extraction.text import TfidfVectorizer

        extra = {"token_pattern": self.token_pattern} if self.analyzer == "word" else {}
        return TfidfVectorizer(
            analyzer=self.analyzer, ngram_range=self.ngram_range, min_df=self.min_df, max_features=self.max_features,
            sublinear_tf=self.sublinear_tf, lowercase=self.lowercase, strip_accents=self.strip_accents,
            dtype=np.float32, **extra,
        )


class LinearParams(BaseModel):
    """Hyper-parameters of the linear tier.

    Defaults were chosen on BANKING77 validation and 5-fold CV on train (never test): word 1–2-grams
    plus char_wb 1–4-grams, multinomial logistic regression with C=30. LinearSVC is 4× faster to
    train and as accurate, but its confidences rank worse (accuracy on the most confident 80 %:
    97.5 % vs 97.6 % out-of-fold), which is what the gate lives on. See BENCHMARKS.md.
    """

    model_config = ConfigDict(extra="forbid")

    blocks: list[TfidfBlock] = Field(
        default_factory=lambda: [
            TfidfBlock(analyzer="word", ngram_range=(1, 2)),
            TfidfBlock(analyzer="char_wb", ngram_range=(1, 4)),
        ],
        description="TF-IDF feature blocks, concatenated (default: word 1–2-grams + char_wb 1–4-grams)",
    )
    classifier: Literal["svm", "logreg"] = Field("logreg", description="logreg: multinomial logistic regression; svm: "
                                                 "LinearSVC (faster to train, confidences rank worse)")
    C: float = Field(30.0, gt=0, description="inverse regularisation strength")
    class_weight: Literal["balanced"] | None = Field(None, description="balanced: weight labels inversely to their "
                                                     "frequency; None: every example counts once")
    cost_per_call_usd: float = Field(0.0, ge=0, description="cost reported per message this tier scores (for cost accounting)")
    top_k: int = Field(10, ge=2, description="labels kept in each result (the gate and the LLM's candidates)")


_WHITE_SPACES = re.compile(r"\s\s+")
"""What char_wb collapses before splitting into words (scikit-learn's ``_VectorizerMixin._white_spaces``)."""
_WORD_CACHE = 1 << 16
"""Distinct words whose char_wb columns a block keeps (then it starts afresh: bounded memory; Zipf keeps hits high)."""


class _Vocab(dict):
    """A vocabulary whose missing terms map to column -1 (so lookups run in C through ``map``)."""

    __slots__ = ()

    def __missing__(self, key: str) -> int:
        return -1


class _FastBlock:
    """A fitted block as plain Python: analyzer callable, vocabulary dict, idf array, offset.

    Two inference paths give the same numbers (``tests/test_linear.py`` checks both against sklearn's
    transform): :meth:`features` for one message (lowest latency) and :meth:`matrix` for many, which
    preprocesses each text once, finds char_wb n-grams per *word* (a word's n-grams never depend on its
    neighbours) from a bounded word table, and counts, weighs and normalises with array operations.
    """

    __slots__ = ("analyze", "vocab", "idf", "offset", "weight", "sublinear", "prep", "prep_key", "raw_analyze", "kind",
                 "tokenize", "ngrams", "_words", "_flat", "_start", "_len", "_lock")

    def __init__(self, spec: TfidfBlock, vocab: dict[str, int], idf: np.ndarray, offset: int) -> None:
        self.analyze: Callable[[str], list[str]] = spec.vectorizer().build_analyzer()
        self.vocab = _Vocab(vocab)
        self.idf = idf.astype(np.float64)
        self.offset = offset
        self.weight = spec.weight
        self.sublinear = spec.sublinear_tf
        # the batch path: preprocess once (shared by blocks with the same settings), then analyze without it
        self.prep: Callable[[str], str] = spec.vectorizer().build_preprocessor()
        self.prep_key = (spec.lowercase, spec.strip_accents)
        raw = spec.model_copy(update={"lowercase": False, "strip_accents": None}).vectorizer()
        self.raw_analyze: Callable[[str], list[str]] = raw.build_analyzer()
        self.kind = spec.analyzer
        self.tokenize: Callable[[str], list[str]] = raw.build_tokenizer()
        self.ngrams = spec.ngram_range
        self._words: dict[str, int] = {}  # char_wb: word → row of the word table (_start/_len into _flat)
        self._flat = self._start = self._len = np.zeros(0, dtype=np.int64)
        self._lock = threading.Lock()

    def features(self, text: str) -> tuple[np.ndarray, np.ndarray] | None:
        counts = Counter(map(self.vocab.get, self.analyze(text)))
        counts.pop(None, None)
        return self._weighed(counts)

    def features_oov(self, text: str) -> tuple[tuple[np.ndarray, np.ndarray] | None, float]:
        """:meth:`features` plus the share of the text's n-grams the vocabulary does not know (1.0 for none)."""
        grams = self.analyze(text)
        counts = Counter(map(self.vocab.get, grams))
        missing = counts.pop(None, 0)
        return self._weighed(counts), (missing / len(grams) if grams else 1.0)

    def _weighed(self, counts: Counter[int]) -> tuple[np.ndarray, np.ndarray] | None:
        """Known terms' counts → (columns, tf-idf weights scaled to the block's weight); None for no known term."""
        if not counts:
            return None
        idx = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        if self.sublinear:
            tf = np.log(tf) + 1.0
        v = tf * self.idf[idx]
        v *= self.weight / math.sqrt(float(v @ v))
        return idx + self.offset, v

    def columns(self, docs: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Vocabulary columns of every n-gram of each preprocessed doc (-1: not in the vocabulary), and each doc's count."""
        if self.kind == "char_wb":
            with self._lock:
                return self._char_wb_columns(docs)
        ids: list[int] = []
        lens: list[int] = []
        extend, look = ids.extend, self.vocab.__getitem__
        if self.kind == "word" and self.ngrams in ((1, 1), (1, 2)):  # the default blocks, without sklearn's per-call overhead
            tokenize, bigrams, join = self.tokenize, self.ngrams[1] == 2, " ".join
            for doc in docs:
                tokens = tokenize(doc)
                extend(map(look, tokens))
                n = len(tokens)
                if bigrams and n > 1:
                    extend(map(look, map(join, zip(tokens, tokens[1:]))))
                    n += n - 1
                lens.append(n)
        else:
            for doc in docs:
                grams = self.raw_analyze(doc)
                extend(map(look, grams))
                lens.append(len(grams))
        return np.fromiter(ids, dtype=np.int64, count=len(ids)), np.fromiter(lens, dtype=np.int64, count=len(lens))

    def _char_wb_columns(self, docs: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        if len(self._words) > _WORD_CACHE:
            self._words, self._flat, self._start, self._len = {}, *(np.zeros(0, dtype=np.int64),) * 3
        words, vocab, analyze = self._words, self.vocab, self.raw_analyze
        new_flat: list[int] = []
        new_len: list[int] = []
        seq: list[int] = []  # word-table rows of each doc's words, docs one after another
        per_doc: list[int] = []
        extend = seq.extend
        for doc in docs:
            split = _WHITE_SPACES.sub(" ", doc).split()
            for word in split:
                if word not in words:
                    cols = [vocab[g] for g in analyze(word) if g in vocab]
                    words[word] = len(self._len) + len(new_len)
                    new_len.append(len(cols))
                    new_flat.extend(cols)
            extend(map(words.__getitem__, split))
            per_doc.append(len(split))
        if new_len:
            added = np.array(new_len, dtype=np.int64)
            self._start = np.concatenate([self._start, len(self._flat) + np.cumsum(added) - added])
            self._len = np.concatenate([self._len, added])
            self._flat = np.concatenate([self._flat, np.array(new_flat, dtype=np.int64)])
        w = np.fromiter(seq, dtype=np.int64, count=len(seq))
        wl = self._len[w]
        ends = np.cumsum(wl)
        # the columns of word k sit at _flat[_start[w_k] : _start[w_k] + wl_k]: one ragged gather
        pos = np.repeat(self._start[w] - (ends - wl), wl) + np.arange(int(ends[-1]) if len(ends) else 0)
        doc_end = np.cumsum(np.fromiter(per_doc, dtype=np.int64, count=len(per_doc)))
        cum = np.concatenate([[0], ends])
        lens = cum[doc_end] - cum[doc_end - np.fromiter(per_doc, dtype=np.int64, count=len(per_doc))]
        return self._flat[pos], lens

    def matrix(self, docs: Sequence[str]) -> sp.csr_matrix:
        """TF-IDF rows (n, block features) of preprocessed docs: counts by one sort, sublinear tf, idf, L2, weight."""
        return self._matrix(len(docs), *self.columns(docs))

    def matrix_oov(self, docs: Sequence[str]) -> tuple[sp.csr_matrix, np.ndarray]:
        """:meth:`matrix` and each doc's share of n-grams the vocabulary does not know (the ``oov_share`` column)."""
        ids, lens = self.columns(docs)
        return self._matrix(len(docs), ids, lens), oov_shares(ids, lens)

    def _matrix(self, n: int, ids: np.ndarray, lens: np.ndarray) -> sp.csr_matrix:
        width = len(self.vocab)
        rows = np.repeat(np.arange(n, dtype=np.int64), lens)
        keep = ids >= 0
        key = rows[keep] * width + ids[keep]
        if not len(key):
            return sp.csr_matrix((n, width), dtype=np.float64)
        key.sort()
        first = np.empty(len(key), dtype=bool)
        first[0] = True
        np.not_equal(key[1:], key[:-1], out=first[1:])
        starts = np.flatnonzero(first)
        counts = np.diff(np.append(starts, len(key))).astype(np.float64)
        r, c = np.divmod(key[starts], width)
        v = (np.log(counts) + 1.0 if self.sublinear else counts) * self.idf[c]
        sq = np.bincount(r, weights=v * v, minlength=n)
        scale = np.zeros(n)
        np.divide(self.weight, np.sqrt(sq), out=scale, where=sq > 0)
        v *= scale[r]
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(r, minlength=n), out=indptr[1:])
        return sp.csr_matrix((v, c, indptr), shape=(n, width))


class LinearTier(Tier):
    """TF-IDF + linear model, calibrated on the validation split.

    Single-label data: softmax over labels with a fitted temperature. Multi-label data (any example
    with several labels): one-vs-rest per label, sigmoid probabilities with shared Platt scaling.
    """

    kind = "linear"
    calibrated = True
    score_is_proba = True

    def __init__(self, name: str | None = None, params: LinearParams | dict[str, Any] | None = None) -> None:
        super().__init__(name)
        self.params = parse_params(LinearParams, params, self.name)
        self.temperature_ = 1.0
        self.multi_label_ = False
        self.platt_ = (1.0, 0.0)
        self._blocks: list[_FastBlock] = []
        self._W = np.zeros((0, 0), dtype=np.float32)  # (n_features, n_labels)
        self._b = np.zeros(0, dtype=np.float64)
        self._info: dict[str, Any] = {}
        self._vectorizers: list[Any] = []  # fitted sklearn vectorizers, kept in memory after fit only
        # out-of-scope support (fit_oos): centroids of the training rows' word block, the unknown class
        self._oos_bank: CentroidBank | None = None
        self._oos_block = 0
        self.oos_unknown_: str | None = None
        self._oos_unknown_index: int | None = None

    # -- training -------------------------------------------------------------------------
    def fit(self, data: Dataset, progress: Progress | None = None) -> LinearTier:
        if not data.train:
            raise DataError("the training split is empty")
        t0 = time.perf_counter()
        step = progress or (lambda _msg, _frac: None)
        self.multi_label_ = data.multi_label
        present = {label for ex in data.train for label in (ex.labels if self.multi_label_ else ex.labels[:1])}
        self.labels_ = tuple(label for label in data.labels if label in present)
        if len(self.labels_) < 2:
            raise DataError(f"need at least 2 labels in the training split, found {list(self.labels_)}")
        index = {label: i for i, label in enumerate(self.labels_)}
        texts = [ex.text for ex in data.train]
        y = self._targets(data.train, index, matrix=self.multi_label_)
        weights = self._sample_weights(data.train)

        self._oos_bank, self.oos_unknown_, self._oos_unknown_index = None, None, None
        step("vectorising", 0.05)
        self._vectorizers = [blk.vectorizer() for blk in self.params.blocks]
        mats = [v.fit_transform(texts) * blk.weight for v, blk in zip(self._vectorizers, self.params.blocks)]
        X = sp.hstack(mats, format="csr")
        step(f"fitting {self.params.classifier} on {X.shape[0]} × {X.shape[1]}", 0.3)
        coef, intercept = self._fit_linear(X, y, weights)
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
        self._info = {"n_features": int(X.shape[1]), "n_train": len(texts), "labels": len(self.labels_), "multi_label": self.multi_label_}
        if weights is not None:
            self._info["sample_weight_sum"] = round(float(weights.sum()), 3)
        self.temperature_ = 1.0
        self.platt_ = (1.0, 0.0)
        if self.multi_label_:
            if data.validation:
                self._calibrate_multi(data, index)
        elif val := [ex for ex in data.validation if ex.labels[0] in index]:
            yv = np.array([index[ex.labels[0]] for ex in val])
            self.temperature_, facts = calibrate_temperature(self.decision_function([ex.text for ex in val]), yv)
            self._info.update(facts)
        self._info.update(temperature=self.temperature_, train_seconds=round(time.perf_counter() - t0, 3))
        step("done", 1.0)
        return self

    @staticmethod
    def _targets(examples: Sequence, index: dict[str, int], *, matrix: bool) -> np.ndarray:
        """Class indices of the first label, or (``matrix``) a 0/1 matrix over all labels."""
        if not matrix:
            return np.array([index[ex.labels[0]] for ex in examples])
        Y = np.zeros((len(examples), len(index)), dtype=np.int8)
        for i, ex in enumerate(examples):
            for label in ex.labels:
                if label in index:
                    Y[i, index[label]] = 1
        return Y

    @staticmethod
    def _sample_weights(examples: Sequence) -> np.ndarray | None:
        """The rows' sample weights, or None when all are 1 (the classifier is then fitted exactly as before).

        Weights ≠ 1 come from distillation: soft labels are one row per likely label weighted by the
        teacher's probability, which for logistic regression is cross-entropy on the soft targets.
        """
        w = np.array([ex.weight for ex in examples], dtype=np.float64)
        if np.all(w == 1.0):
            return None
        if not np.all(np.isfinite(w)) or w.min() < 0:
            raise DataError("sample weights must be finite and ≥ 0: fix the 'weight' values of the training rows")
        if w.sum() <= 0:
            raise DataError("every training row has weight 0: give some rows a positive weight")
        return w

    def _fit_linear(self, X: sp.csr_matrix, y: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(coef (L, F), intercept (L,)): multinomial/one-vs-rest for one label, one-vs-rest per label for many."""
        fit_kw = {} if weights is None else {"sample_weight": weights}
        if not self.multi_label_:
            clf = self._classifier().fit(X, y, **fit_kw)
            return np.asarray(clf.coef_, dtype=np.float64), np.asarray(clf.intercept_, dtype=np.float64)
        Y = y
        coefs, intercepts = [], []
        for j in range(Y.shape[1]):
            col = Y[:, j]
            if col.min() == col.max():  # a label on every (or no) example: a constant score
                coefs.append(np.zeros(X.shape[1])), intercepts.append(5.0 if col[0] else -5.0)
                continue
            clf = self._classifier().fit(X, col, **fit_kw)
            coefs.append(np.asarray(clf.coef_, dtype=np.float64)[0]), intercepts.append(float(np.ravel(clf.intercept_)[0]))
        return np.vstack(coefs), np.array(intercepts)

    def _calibrate_multi(self, data: Dataset, index: dict[str, int]) -> None:
        """Platt scaling shared by all labels: p = sigmoid(a·s + b), fitted on validation."""
        from sklearn.linear_model import LogisticRegression

        s = self.decision_function([ex.text for ex in data.validation])
        Y = self._targets(data.validation, index, matrix=True)
        lr = LogisticRegression(C=1e4).fit(s.reshape(-1, 1), Y.ravel())
        self.platt_ = (float(lr.coef_[0, 0]), float(lr.intercept_[0]))
        raw, cal = expit(s), self._sigmoid(s)
        truth = Y.astype(bool)
        self._info.update(
            validation_exact_match=float(((cal >= 0.5) == truth).all(axis=1).mean()),
            ece_before=expected_calibration_error(np.where(raw >= 0.5, raw, 1 - raw).ravel(), ((raw >= 0.5) == truth).ravel()),
            ece_after=expected_calibration_error(np.where(cal >= 0.5, cal, 1 - cal).ravel(), ((cal >= 0.5) == truth).ravel()),
            platt=list(self.platt_),
        )

    def _sigmoid(self, s: np.ndarray) -> np.ndarray:
        a, b = self.platt_
        return expit(a * s + b)

    def _classifier(self):
        if self.params.classifier == "svm":
            from sklearn.svm import LinearSVC

            return LinearSVC(C=self.params.C, class_weight=self.params.class_weight)
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=self.params.C, class_weight=self.params.class_weight, max_iter=1000)

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
        """Raw linear scores (n, n_labels), before temperature scaling; one sparse matrix product per block."""
        self._check_fitted()
        texts = texts if isinstance(texts, list) else list(texts)
        z = np.tile(self._b.astype(np.float64), (len(texts), 1))
        if not texts:
            return z
        docs: dict[tuple, list[str]] = {}
        for blk in self._blocks:
            if blk.prep_key not in docs:
                docs[blk.prep_key] = [blk.prep(t) for t in texts]
            z += blk.matrix(docs[blk.prep_key]) @ self._W[blk.offset : blk.offset + len(blk.vocab)]
        return z

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Softmax over labels (single-label) or one calibrated sigmoid per label (multi-label)."""
        z = self.decision_function(texts)
        return self._sigmoid(z) if self.multi_label_ else softmax_t(z, self.temperature_)

    def score(self, text: str, candidates: Sequence[str] | None = None) -> TierResult:
        t0 = time.perf_counter()
        self._check_fitted()
        oos = None
        if self.multi_label_:
            a, b = self.platt_
            p = 1.0 / (1.0 + np.exp(-(a * self._logits_one(text) + b)))
        else:
            if self._oos_bank is not None:
                raw, oos = self._logits_oos_one(text)
            else:
                raw = self._logits_one(text)
            z = raw / self.temperature_
            z -= z.max()
            p = np.exp(z)
            p /= p.sum()
        ranked = self._rank(p)
        return TierResult(ranked, cost_usd=self.params.cost_per_call_usd, latency_ms=(time.perf_counter() - t0) * 1e3, oos=oos)

    def _logits_oos_one(self, text: str) -> tuple[np.ndarray, dict[str, float]]:
        """Raw logits of one message and its out-of-scope columns, from one pass over its n-grams (≈ 10 µs extra)."""
        parts, word, oov = [], None, 1.0
        for k, blk in enumerate(self._blocks):
            if k == self._oos_block:
                f, oov = blk.features_oov(text)
                word = f
            else:
                f = blk.features(text)
            if f is not None:
                parts.append(f)
        if parts:
            idx = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
            vals = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
            z = vals @ self._W[idx] + self._b
        else:
            z = self._b.astype(np.float64)
        unk = self._oos_unknown_index
        if unk is None:
            pred = int(z.argmax())
            cols = {"max_logit": float(z[pred])}
        else:
            zi = z.copy()
            zi[unk] = -np.inf
            pred = int(zi.argmax())
            cols = {"max_logit": float(z[pred]), "unknown_logit": float(z[unk])}
        blk = self._blocks[self._oos_block]
        assert self._oos_bank is not None
        cols["centroid_pred"] = (self._oos_bank.cosine_one(word[0] - blk.offset, word[1] / blk.weight, pred)
                                 if word is not None else 0.0)
        cols["oov_share"] = oov
        return z, cols

    def predict_with_oos(self, texts: Sequence[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Calibrated probabilities and the out-of-scope columns (max_logit, unknown_logit with an unknown class,
        centroid_pred, oov_share) in one pass; without :meth:`fit_oos` the columns of any calibrated tier."""
        if self._oos_bank is None or self.multi_label_:
            return super().predict_with_oos(texts)
        z, cols = self._decision_oos(texts)
        return softmax_t(z, self.temperature_), cols

    def _decision_oos(self, texts: Sequence[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        self._check_fitted()
        texts = texts if isinstance(texts, list) else list(texts)
        z = np.tile(self._b.astype(np.float64), (len(texts), 1))
        docs: dict[tuple, list[str]] = {}
        word = oov = None
        for k, blk in enumerate(self._blocks):
            if blk.prep_key not in docs:
                docs[blk.prep_key] = [blk.prep(t) for t in texts]
            if k == self._oos_block:
                X, oov = blk.matrix_oov(docs[blk.prep_key])
                word = X
            else:
                X = blk.matrix(docs[blk.prep_key])
            z += X @ self._W[blk.offset : blk.offset + len(blk.vocab)]
        assert self._oos_bank is not None and word is not None and oov is not None
        unk = self._oos_unknown_index
        cols = logit_columns(z, unk)
        w = self._blocks[self._oos_block].weight
        cols["centroid_pred"] = self._oos_bank.cosine_pred(word / w if w != 1.0 else word, in_scope_argmax(z, unk))
        cols["oov_share"] = oov
        return z, cols

    def oos_column_names(self) -> tuple[str, ...]:
        if self._oos_bank is None or self.multi_label_:
            return super().oos_column_names()
        if self._oos_unknown_index is not None:
            return ("max_logit", "unknown_logit", "centroid_pred", "oov_share")
        return ("max_logit", "centroid_pred", "oov_share")

    def fit_oos(self, data: Dataset, unknown_label: str | None, progress: Progress | None = None) -> None:
        """Per-label centroids of the training rows' word block (TF-IDF, unit length) for the ``centroid_pred``
        column; the first word block (else the first block) is used. Single-label tiers only."""
        self._check_fitted()
        if self.multi_label_:
            return
        index = {label: i for i, label in enumerate(self.labels_)}
        rows = [ex for ex in data.train if ex.labels[0] in index]
        self._oos_block = next((k for k, spec in enumerate(self.params.blocks) if spec.analyzer == "word"), 0)
        blk = self._blocks[self._oos_block]
        X = blk.matrix([blk.prep(ex.text) for ex in rows])
        if blk.weight != 1.0:
            X = X / blk.weight
        y = np.array([index[ex.labels[0]] for ex in rows])
        weights = self._sample_weights(rows)
        self.oos_unknown_ = unknown_label if unknown_label in index else None
        self._oos_unknown_index = index[unknown_label] if self.oos_unknown_ is not None else None
        self._oos_bank = CentroidBank.fit(X, y, len(self.labels_), self._oos_unknown_index, weights=weights)

    def score_batch(self, texts: Sequence[str], candidates: Sequence[Sequence[str] | None] | None = None) -> list[TierResult]:
        t0 = time.perf_counter()
        oos = None
        if self._oos_bank is not None and not self.multi_label_:
            probs, cols = self.predict_with_oos(texts)
            names = list(cols)
            oos = [dict(zip(names, row)) for row in zip(*(cols[c].tolist() for c in names))]
        else:
            probs = self.predict_proba(texts)
        k = min(self.params.top_k, probs.shape[1])
        top = np.argpartition(-probs, k - 1, axis=1)[:, :k] if probs.shape[1] > k else np.tile(np.arange(k), (len(probs), 1))
        top_p = np.take_along_axis(probs, top, axis=1)
        order = np.argsort(-top_p, axis=1, kind="stable")
        top, top_p = np.take_along_axis(top, order, axis=1).tolist(), np.take_along_axis(top_p, order, axis=1).tolist()
        per = (time.perf_counter() - t0) * 1e3 / max(1, len(texts))
        labels, cost = self.labels_, self.params.cost_per_call_usd
        return [TierResult([(labels[i], p) for i, p in zip(ti, tp)], cost_usd=cost, latency_ms=per, oos=oos[j] if oos else None)
                for j, (ti, tp) in enumerate(zip(top, top_p))]

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
            "multi_label": self.multi_label_,
            "platt": list(self.platt_),
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
        if self._oos_bank is not None:
            (path / "oos_support.json").write_text(json.dumps({"unknown_label": self.oos_unknown_, "block": self._oos_block}))
            self._oos_bank.save(path, "oos")

    @classmethod
    def load(cls, path: Path, name: str) -> LinearTier:
        try:
            meta = json.loads((path / "linear.json").read_text())
            tier = cls(name, LinearParams(**meta["params"]))
            tier.labels_ = tuple(meta["labels"])
            tier.temperature_ = float(meta["temperature"])
            tier.multi_label_ = bool(meta.get("multi_label", False))
            tier.platt_ = tuple(meta.get("platt", (1.0, 0.0)))
            tier._info = meta.get("info", {})
            offset = 0
            for i, spec in enumerate(tier.params.blocks):
                terms = json.loads((path / f"vocab_{i}.json").read_text())
                vocab = {t: j for j, t in enumerate(terms)}
                tier._blocks.append(_FastBlock(spec, vocab, np.load(path / f"idf_{i}.npy"), offset))
                offset += len(vocab)
            tier._W = np.load(path / "coef.npy")
            tier._b = np.load(path / "intercept.npy")
            if (path / "oos_support.json").is_file():
                support = json.loads((path / "oos_support.json").read_text())
                tier._oos_block = int(support["block"])
                tier.oos_unknown_ = support.get("unknown_label")
                tier._oos_unknown_index = tier.labels_.index(tier.oos_unknown_) if tier.oos_unknown_ is not None else None
                tier._oos_bank = CentroidBank.load(path, "oos")
        except FileNotFoundError as exc:
            raise ModelError(f"linear tier file missing ({Path(exc.filename).name}): re-save or retrain the model", path=path) from exc
        except (KeyError, ValueError, json.JSONDecodeError) as exc:
            raise ModelError(f"linear tier files are corrupt ({exc}): retrain the model", path=path) from exc
        if tier._W.shape != (offset, len(tier.labels_)):
            raise ModelError(f"coefficients have shape {tier._W.shape}, expected {(offset, len(tier.labels_))}: retrain", path=path)
        return tier
