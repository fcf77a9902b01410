"""Out-of-scope (OOS) detection: does a message belong to *none* of the known labels?

A tier that is unsure between known labels should escalate; a message that fits none of them should
go to the unknown label (or to human review). The gate's confidence cannot tell the two apart — a
softmax is "evenly unsure" in both — so each calibrated single-label tier also reports a few
*columns*, numbers it already computes: its top in-scope logit, the unknown class's logit where the
data has one, the cosine to the predicted label's centroid of training vectors (TF-IDF word block or
encoder embedding), the share of unknown words, the Mahalanobis distance of the embedding.
:class:`OOSDetector` orients and standardises each column on in-scope validation messages, combines
them with a small logistic regression (fitted on the validation messages of the unknown label, or on
*pseudo-OOS* messages from label folds, :func:`label_folds`) and turns the result into a score in
[0, 1]: the share of in-scope validation messages that look *more* in scope (an empirical p-value
turned around). The threshold comes from in-scope validation messages alone — a budget of in-scope
accuracy the detector may cost, or of in-scope messages it may reject — so it needs no OOS examples.

Everything saves as JSON plus ``.npy``/``.npz`` arrays (no pickles). scikit-learn is only needed to fit.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field
from scipy.special import logsumexp

from frontdesk.errors import ConfigError, ModelError

OOS_LABELS = ("oos", "out_of_scope", "unknown")
"""Label names taken as the unknown class when the data has one and none is named explicitly."""

DETECTOR_FILE = "detector.json"
REFERENCE_FILE = "reference.npy"

Columns = Mapping[str, np.ndarray]
"""Named per-message OOS columns, each an array of shape (n,)."""

#: +1 when a larger value means "more likely out of scope", -1 when it means "more likely in scope".
ORIENTATION: dict[str, float] = {
    "max_logit": -1.0,  # the top in-scope logit (raw, before temperature)
    "max_prob": -1.0,  # the top in-scope probability (MSP)
    "energy": -1.0,  # T·logsumexp(in-scope logits / T)
    "margin": -1.0,  # top-1 minus top-2 probability
    "unknown_logit": 1.0,  # the unknown class's logit, when the data has one
    "unknown_prob": 1.0,  # the unknown class's probability
    "centroid_pred": -1.0,  # cosine to the predicted label's centroid (TF-IDF word block, or embedding)
    "centroid_max": -1.0,  # cosine to the nearest in-scope centroid
    "oov_share": 1.0,  # share of the message's word n-grams the vocabulary does not know
    "mahalanobis": 1.0,  # min over in-scope labels of the Mahalanobis distance (shared covariance)
}


def orientation(name: str) -> float:
    """The orientation of a column; ``"linear.max_logit"`` (a column of tier ``linear``) is oriented like ``max_logit``."""
    base = name.rsplit(".", 1)[-1]
    if base not in ORIENTATION:
        raise ConfigError(f"no out-of-scope column called {base!r}: use one of {', '.join(sorted(ORIENTATION))}")
    return ORIENTATION[base]


class OOSOptions(BaseModel):
    """How ``Router.train`` fits the out-of-scope detectors (saved in the model's meta)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="fit an out-of-scope detector for every calibrated single-label tier")
    budget: float | None = Field(
        None, ge=0.0, lt=1.0,
        description="what the detector may cost on in-scope validation messages (see budget_on); None: 0.01 of in-scope "
                    "accuracy when validation has out-of-scope examples, else 0.03 of in-scope messages rejected")
    budget_on: Literal["auto", "correct", "all"] = Field(
        "auto", description="correct: the budget is in-scope accuracy (right answers rejected); all: any in-scope message "
                            "rejected (a rejection rate); auto: correct with out-of-scope examples, all without")
    label_folds: int = Field(
        0, ge=0, le=20,
        description="train this many extra models of the first tier, each without a group of labels, whose validation "
                    "messages then serve as out-of-scope examples (pseudo-OOS); costs that many extra fits")

    def resolve(self, has_oos: bool) -> tuple[float, Literal["correct", "all"]]:
        """The (budget, budget_on) in force for data with (``has_oos``) or without out-of-scope examples."""
        on: Literal["correct", "all"] = ("correct" if has_oos else "all") if self.budget_on == "auto" else self.budget_on
        budget = self.budget if self.budget is not None else (0.01 if on == "correct" else 0.03)
        return budget, on


# -- columns --------------------------------------------------------------------------------------
def in_scope_argmax(scores: np.ndarray, unknown: int | None = None) -> np.ndarray:
    """The best in-scope label per row of (n, L) scores (the unknown class, if any, never wins)."""
    z = np.asarray(scores, dtype=np.float64)
    if unknown is None:
        return z.argmax(axis=1)
    z = z.copy()
    z[:, unknown] = -np.inf
    return z.argmax(axis=1)


def logit_columns(logits: np.ndarray, unknown: int | None = None) -> dict[str, np.ndarray]:
    """``max_logit`` (top in-scope raw logit) and, with an unknown class, ``unknown_logit`` — from (n, L) raw logits."""
    z = np.asarray(logits, dtype=np.float64)
    if unknown is None:
        return {"max_logit": z.max(axis=1)}
    zin = np.delete(z, unknown, axis=1)
    return {"max_logit": zin.max(axis=1), "unknown_logit": z[:, unknown].copy()}


def extra_logit_columns(logits: np.ndarray, temperature: float, unknown: int | None = None) -> dict[str, np.ndarray]:
    """The other logit columns (max_prob, energy, margin, unknown_prob) — for experiments and reports."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    lse = logsumexp(z, axis=1)
    zin = np.delete(z, unknown, axis=1) if unknown is not None else z
    top2 = -np.partition(-zin, 1, axis=1)[:, :2] if zin.shape[1] > 1 else np.c_[zin, np.full(len(zin), -np.inf)]
    p1, p2 = np.exp(top2[:, 0] - lse), np.exp(top2[:, 1] - lse)
    out = {"max_prob": p1, "energy": temperature * logsumexp(zin, axis=1), "margin": p1 - p2}
    if unknown is not None:
        out["unknown_prob"] = np.exp(z[:, unknown] - lse)
    return out


def probability_columns(probs: np.ndarray) -> dict[str, np.ndarray]:
    """``max_prob`` and ``margin`` from calibrated probabilities (n, L): the columns any calibrated tier has."""
    p = np.asarray(probs, dtype=np.float64)
    top2 = -np.partition(-p, 1, axis=1)[:, :2] if p.shape[1] > 1 else np.c_[p, np.zeros(len(p))]
    return {"max_prob": top2[:, 0], "margin": top2[:, 0] - top2[:, 1]}


def ranked_columns(ranked: Sequence[tuple[str, float]]) -> dict[str, float]:
    """:func:`probability_columns` of one message from its ranked (label, probability) pairs, best first."""
    p1 = ranked[0][1] if ranked else 0.0
    p2 = ranked[1][1] if len(ranked) > 1 else 0.0
    return {"max_prob": float(p1), "margin": float(p1 - p2)}


def oov_shares(ids: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Per document, the share of its n-grams not in the vocabulary (``ids`` < 0), from a block's
    concatenated column ids and per-document counts; 1.0 for a document without any n-gram."""
    n = len(lens)
    rows = np.repeat(np.arange(n, dtype=np.int64), lens)
    missing = np.bincount(rows[ids < 0], minlength=n).astype(np.float64)
    out = np.ones(n)
    np.divide(missing, lens, out=out, where=lens > 0)
    return out


@dataclass
class CentroidBank:
    """Unit-length per-label centroids of training vectors; the cosine of a message to its predicted label's one.

    ``centroids`` is (dim, n_labels) like a linear tier's weights: dense for embeddings, a CSC sparse
    matrix for TF-IDF rows (~95 % zeros), where one message costs a lookup of its few non-zero
    columns. Labels without training vectors (the unknown class) get a zero column and are never
    the nearest.
    """

    centroids: np.ndarray | sp.csc_matrix  # (dim, n_labels) float32
    in_scope: np.ndarray  # (n_labels,) bool

    @classmethod
    def fit(cls, vectors: np.ndarray | sp.spmatrix, y: np.ndarray, n_labels: int, unknown: int | None = None,
            weights: np.ndarray | None = None) -> CentroidBank:
        """Centroids of the rows of ``vectors`` grouped by label index ``y`` (rows of ``unknown`` are left out;
        ``weights`` weigh rows, e.g. distilled soft labels). Sparse rows are taken as unit length (TF-IDF
        blocks are); dense rows are normalised first."""
        y = np.asarray(y)
        keep = y != unknown if unknown is not None else np.ones(len(y), dtype=bool)
        n = int(keep.sum())
        sparse = sp.issparse(vectors)
        X = sp.csr_matrix(vectors)[keep] if sparse else _unit(np.asarray(vectors, dtype=np.float64))[keep]
        w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)[keep]
        onehot = sp.csr_matrix((w, (y[keep], np.arange(n))), shape=(n_labels, n))
        c = onehot @ X  # (L, dim)
        norms = np.sqrt(np.asarray(c.multiply(c).sum(axis=1)).ravel()) if sparse else np.linalg.norm(c, axis=1)
        scale = 1.0 / np.maximum(norms, 1e-12)
        in_scope = np.zeros(n_labels, dtype=bool)
        in_scope[np.unique(y[keep])] = True
        if sparse:
            cs = sp.csc_matrix((sp.diags(scale) @ c).T, dtype=np.float32)
            cs.sort_indices()  # cosine_one binary-searches each label's rows
            return cls(cs, in_scope)
        return cls(np.ascontiguousarray((c * scale[:, None]).T, dtype=np.float32), in_scope)

    @property
    def dim(self) -> int:
        return int(self.centroids.shape[0])

    def cosine_pred(self, vectors: np.ndarray | sp.spmatrix, predicted: np.ndarray) -> np.ndarray:
        """Per row, the cosine to the centroid of its ``predicted`` label (sparse rows: unit length assumed)."""
        predicted = np.asarray(predicted)
        if sp.issparse(vectors):
            X = sp.csr_matrix(vectors)
            C = self.centroids if sp.issparse(self.centroids) else sp.csc_matrix(self.centroids)
            prod = (X @ C).tocsr()  # (n, L), sparse
            return np.asarray(prod[np.arange(X.shape[0]), predicted], dtype=np.float64).ravel()
        V = _unit(np.asarray(vectors, dtype=np.float64))
        C = self.centroids.toarray() if sp.issparse(self.centroids) else self.centroids
        return np.einsum("nd,dn->n", V, C[:, predicted].astype(np.float64))

    def cosine_one(self, idx: np.ndarray, vals: np.ndarray, label: int) -> float:
        """The cosine of one sparse unit-length row (column indices ``idx``, values ``vals``) to ``label``'s centroid."""
        C = self.centroids
        if not sp.issparse(C):
            return float(vals @ C[idx, label]) if len(idx) else 0.0
        lo, hi = C.indptr[label], C.indptr[label + 1]
        rows, data = C.indices[lo:hi], C.data[lo:hi]
        if not len(rows) or not len(idx):
            return 0.0
        pos = np.searchsorted(rows, idx)
        pos[pos >= len(rows)] = 0
        hit = rows[pos] == idx
        return float(vals[hit] @ data[pos[hit]].astype(np.float64))

    def save(self, path: Path, prefix: str) -> None:
        if sp.issparse(self.centroids):
            sp.save_npz(path / f"{prefix}_centroids.npz", sp.csc_matrix(self.centroids))
        else:
            np.save(path / f"{prefix}_centroids.npy", self.centroids)
        np.save(path / f"{prefix}_in_scope.npy", self.in_scope)

    @classmethod
    def load(cls, path: Path, prefix: str) -> CentroidBank:
        sparse = path / f"{prefix}_centroids.npz"
        c = sp.csc_matrix(sp.load_npz(sparse), dtype=np.float32) if sparse.is_file() else np.load(path / f"{prefix}_centroids.npy")
        if sp.issparse(c):
            c.sort_indices()
        return cls(c, np.load(path / f"{prefix}_in_scope.npy"))


@dataclass
class Mahalanobis:
    """Class means with a shared covariance (Lee et al., 2018) on embeddings; stored whitened so a
    message costs one (d × d) product and distances to the L means."""

    whiten: np.ndarray  # (d, d): Cholesky factor of the precision matrix
    means: np.ndarray  # (L_in, d): whitened class means of the in-scope labels

    @classmethod
    def fit(cls, emb: np.ndarray, y: np.ndarray, unknown: int | None = None, shrinkage: float = 1e-3) -> Mahalanobis:
        """Fit on training embeddings ``emb`` (n, d) and label indices ``y`` (unknown-class rows left out)."""
        y = np.asarray(y)
        keep = y != unknown if unknown is not None else np.ones(len(y), dtype=bool)
        e, yy = np.asarray(emb, dtype=np.float64)[keep], y[keep]
        labels = np.unique(yy)
        mu = np.stack([e[yy == j].mean(axis=0) for j in labels])
        centred = e - mu[np.searchsorted(labels, yy)]
        cov = centred.T @ centred / len(e)
        cov += shrinkage * np.trace(cov) / len(cov) * np.eye(len(cov))
        chol = np.linalg.cholesky(np.linalg.inv(cov))
        return cls(chol.astype(np.float32), (mu @ chol).astype(np.float32))

    def distance(self, emb: np.ndarray) -> np.ndarray:
        """Min over in-scope labels of the squared Mahalanobis distance, per row."""
        a = np.asarray(emb, dtype=np.float32) @ self.whiten
        d = (a * a).sum(axis=1)[:, None] - 2.0 * a @ self.means.T + (self.means * self.means).sum(axis=1)[None, :]
        return d.min(axis=1).astype(np.float64)

    def save(self, path: Path, prefix: str) -> None:
        np.save(path / f"{prefix}_whiten.npy", self.whiten)
        np.save(path / f"{prefix}_means.npy", self.means)

    @classmethod
    def load(cls, path: Path, prefix: str) -> Mahalanobis:
        return cls(np.load(path / f"{prefix}_whiten.npy"), np.load(path / f"{prefix}_means.npy"))


def label_folds(labels: Sequence[str], k: int = 5, seed: int = 13, unknown: str | None = None) -> list[set[str]]:
    """``k`` disjoint groups of in-scope labels for pseudo-OOS: a fold model is trained without one group,
    and the validation messages of that group are out of scope *for it*."""
    names = [label for label in labels if label != unknown]
    if k < 2 or len(names) < 2 * k:
        raise ConfigError(f"{len(names)} labels are too few for {k} label folds: use 2 ≤ folds ≤ {len(names) // 2}",
                          field="oos.label_folds")
    order = np.random.default_rng(seed).permutation(len(names))
    return [{names[i] for i in order[j::k]} for j in range(k)]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


# -- the detector ----------------------------------------------------------------------------------
@dataclass
class RowGroup:
    """Rows that only train the combiner (pseudo-OOS rows of one label-fold model).

    Each group is standardised on its own in-scope rows: fold models are trained on less data, and
    their columns sit on a slightly different scale than the full model's.
    """

    columns: Columns
    oos: np.ndarray  # (n,) bool


@dataclass
class OOSDetector:
    """Combines a tier's OOS columns into one out-of-scope score in [0, 1], with a fitted threshold."""

    columns: tuple[str, ...]
    mean_: np.ndarray  # per column, over in-scope validation rows (after orientation)
    scale_: np.ndarray
    coef_: np.ndarray  # combiner weights on the standardised columns (larger = more out of scope)
    intercept_: float
    reference_: np.ndarray = field(repr=False)  # sorted combined scores of the in-scope validation rows ([0, 1] scale)
    threshold_: float  # score ≥ threshold → out of scope
    info_: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # one message: raw = Σ w_j x_j + w0 on the columns as they come (orientation and scaling folded in)
        sign = np.array([orientation(c) for c in self.columns])
        self._w = [float(x) for x in self.coef_ * sign / self.scale_]
        self._w0 = float(self.intercept_ - (self.mean_ / self.scale_) @ self.coef_)
        self._ref = self.reference_.tolist()

    # -- fitting ------------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        columns: Columns,
        oos: np.ndarray,
        *,
        cost: np.ndarray | None = None,
        groups: Sequence[RowGroup] = (),
        use: Sequence[str] | None = None,
        budget: float = 0.01,
        budget_on: str = "correct",
        C: float = 1.0,
    ) -> OOSDetector:
        """Fit on validation ``columns`` (each (n,)); ``oos`` marks the known out-of-scope rows (all False without any).

        ``use`` picks and orders the columns (the first is used alone when there is no OOS row to fit a
        combination on). ``groups`` add rows for the combiner only. The threshold keeps the share of
        in-scope rows that are rejected *and* marked in ``cost`` within ``budget`` (``cost``: in-scope
        rows answered right → an accuracy budget; None → every in-scope row → a rejection rate).
        ``budget_on`` only labels the budget in ``info_``.
        """
        names = tuple(use or [c for c in columns if c.rsplit(".", 1)[-1] in ORIENTATION])
        if not names:
            raise ConfigError("no out-of-scope columns to fit a detector on")
        for c in names:
            orientation(c)
        oos = np.asarray(oos, dtype=bool)
        X = _matrix(columns, names)
        if len(X) != len(oos):
            raise ConfigError(f"{len(X)} rows of columns but {len(oos)} out-of-scope flags")
        ins = ~oos
        if ins.sum() < 20:
            raise ConfigError(f"an out-of-scope detector needs at least 20 in-scope validation messages, got {int(ins.sum())}: "
                              "add validation data or train with detection off (--no-oos)")
        mean, scale = X[ins].mean(axis=0), X[ins].std(axis=0)
        scale = np.where(scale > 1e-12, scale, 1.0)
        Xs, ys = [(X - mean) / scale], [oos]
        for g in groups:
            Xg, og = _matrix(g.columns, names), np.asarray(g.oos, dtype=bool)
            m, s = Xg[~og].mean(axis=0), Xg[~og].std(axis=0)
            Xs.append((Xg - m) / np.where(s > 1e-12, s, 1.0))
            ys.append(og)
        Xall, yall = np.vstack(Xs), np.concatenate(ys)
        info: dict[str, Any] = {"rows": int(len(yall)), "oos_rows": int(yall.sum()), "validation_oos": int(oos.sum()),
                                "pseudo_oos_rows": int(sum(int(np.sum(g.oos)) for g in groups))}
        if yall.any() and (~yall).any() and len(names) > 1:
            from sklearn.linear_model import LogisticRegression

            lr = LogisticRegression(C=C, class_weight="balanced", max_iter=5000).fit(Xall, yall)
            coef, intercept = lr.coef_[0].astype(np.float64), float(lr.intercept_[0])
            info["combiner"] = "logistic regression"
        else:
            coef, intercept = np.eye(len(names))[0], 0.0
            why = "one column" if len(names) == 1 else "no out-of-scope examples to fit a combination on"
            info["combiner"] = f"first column alone ({names[0]}): {why}"
        det = cls(names, mean, scale, coef, intercept, np.zeros(0), 1.0, info)
        raw = det.raw(columns)
        det._set_reference(np.sort(raw[ins]))
        score = det._ecdf(raw)
        det.threshold_ = det._fit_threshold(score, oos, cost, budget, budget_on)
        return det

    def _fit_threshold(self, s: np.ndarray, oos: np.ndarray, cost: np.ndarray | None, budget: float, budget_on: str) -> float:
        if not 0.0 <= budget < 1.0:
            raise ConfigError(f"out-of-scope budget {budget} must be in [0, 1)", field="oos.budget")
        ins = ~oos
        c = np.ones(int(ins.sum()), dtype=bool) if cost is None else np.asarray(cost, dtype=bool)[ins]
        si = s[ins]
        order = np.argsort(-si, kind="stable")
        spent = np.cumsum(c[order]) / len(si)
        ok = np.flatnonzero(spent <= budget + 1e-12)
        # reject every row scoring ≥ t: the lowest t among the affordable top rows, never so low that it
        # also takes in the next (unaffordable) row's score
        t = 1.0 + 1e-9 if not len(ok) else float(si[order][ok[-1]])
        if len(ok) and ok[-1] + 1 < len(si) and si[order][ok[-1] + 1] >= t:
            t = float(np.nextafter(si[order][ok[-1] + 1], np.inf))
        t = min(t, 1.0 + 1e-9)
        flagged = s >= t
        self.info_.update(
            budget=budget, budget_on=budget_on,
            validation_in_scope_rejected=float(flagged[ins].mean()),
            validation_in_scope_cost=float((flagged[ins] & c).mean()),
        )
        if oos.any():
            self.info_["validation_oos_recall"] = float(flagged[oos].mean())
        return t

    # -- inference ------------------------------------------------------------------------------
    def _set_reference(self, reference: np.ndarray) -> None:
        self.reference_ = reference
        self._ref = reference.tolist()

    def raw(self, columns: Columns) -> np.ndarray:
        """The combiner's output (log-odds scale) per row — the same arithmetic, in the same order, as :meth:`score_one`."""
        acc: np.ndarray | float = 0.0
        try:
            for w, c in zip(self._w, self.columns):
                acc = acc + w * np.asarray(columns[c], dtype=np.float64)
        except KeyError as exc:
            raise ConfigError(f"out-of-scope column {exc.args[0]!r} is missing; the detector uses {list(self.columns)}") from exc
        return self._w0 + np.asarray(acc, dtype=np.float64)

    def score(self, columns: Columns) -> np.ndarray:
        """Out-of-scope score in [0, 1] per row: the share of in-scope validation messages scoring lower."""
        return self._ecdf(self.raw(columns))

    def score_one(self, values: Mapping[str, float]) -> float:
        """:meth:`score` of one message from its column values (a few microseconds)."""
        try:
            acc = 0.0
            for w, c in zip(self._w, self.columns):
                acc = acc + w * values[c]
            raw = self._w0 + acc
        except KeyError as exc:
            raise ModelError(f"out-of-scope column {exc.args[0]!r} is missing: the detector was fitted on "
                             f"{list(self.columns)}; retrain the model") from exc
        return bisect.bisect_left(self._ref, raw) / max(1, len(self._ref))

    def is_oos(self, columns: Columns, threshold: float | None = None) -> np.ndarray:
        """True where the score reaches the threshold (the fitted one unless given)."""
        return self.score(columns) >= (self.threshold_ if threshold is None else threshold)

    def _ecdf(self, raw: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.reference_, raw, side="left") / max(1, len(self.reference_))

    def describe(self) -> str:
        """One line: the combined columns with their weights, and the threshold."""
        terms = " ".join(f"{w:+.2f}·{c}" for w, c in zip(self.coef_ * [orientation(c) for c in self.columns], self.columns))
        return f"out of scope when score ≥ {self.threshold_:.4f}; raw = {terms} (standardised)"

    # -- persistence ----------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write ``detector.json`` and ``reference.npy`` into directory ``path`` (created)."""
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        meta = {"columns": list(self.columns), "mean": self.mean_.tolist(), "scale": self.scale_.tolist(),
                "coef": self.coef_.tolist(), "intercept": self.intercept_, "threshold": self.threshold_, "info": self.info_}
        (root / DETECTOR_FILE).write_text(json.dumps(meta, indent=2, default=float))
        np.save(root / REFERENCE_FILE, self.reference_)

    @classmethod
    def load(cls, path: str | Path) -> OOSDetector:
        """Read a detector written by :meth:`save`."""
        root = Path(path)
        try:
            meta = json.loads((root / DETECTOR_FILE).read_text())
            det = cls(tuple(meta["columns"]), np.array(meta["mean"], dtype=np.float64), np.array(meta["scale"], dtype=np.float64),
                      np.array(meta["coef"], dtype=np.float64), float(meta["intercept"]),
                      np.load(root / REFERENCE_FILE), float(meta["threshold"]), meta.get("info", {}))
        except FileNotFoundError as exc:
            raise ModelError(f"out-of-scope detector file missing ({Path(exc.filename or DETECTOR_FILE).name}): copy the whole "
                             "model directory, or retrain", path=root) from exc
        except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
            raise ModelError(f"out-of-scope detector files are corrupt ({exc}): retrain the model", path=root) from exc
        if not (len(det.columns) == len(det.mean_) == len(det.scale_) == len(det.coef_)):
            raise ModelError("out-of-scope detector arrays disagree in length: retrain the model", path=root)
        return det


def _matrix(columns: Columns, names: Sequence[str]) -> np.ndarray:
    """The oriented (n, k) matrix of the named columns."""
    try:
        return np.column_stack([orientation(c) * np.asarray(columns[c], dtype=np.float64) for c in names])
    except KeyError as exc:
        raise ConfigError(f"out-of-scope column {exc.args[0]!r} is missing; the detector uses {list(names)}") from exc


def budget_curve(scores: np.ndarray, oos: np.ndarray, correct: np.ndarray,
                 thresholds: Sequence[float]) -> list[dict[str, float]]:
    """(threshold, in-scope accuracy, OOS recall, in-scope rejected) for a trade-off curve: ``scores`` are the
    detector's scores, ``correct`` marks messages answered right when not rejected."""
    s, oos, correct = np.asarray(scores), np.asarray(oos, dtype=bool), np.asarray(correct, dtype=bool)
    out = []
    for t in thresholds:
        flag = s >= t
        out.append({"threshold": float(t),
                    "in_scope_accuracy": float((correct & ~flag)[~oos].mean()) if (~oos).any() else math.nan,
                    "oos_recall": float(flag[oos].mean()) if oos.any() else math.nan,
                    "in_scope_rejected": float(flag[~oos].mean()) if (~oos).any() else math.nan})
    return out


# -- the verdict --------------------------------------------------------------------------------------
def possibly_oos_reason(score: float, threshold: float, next_tier: str) -> str:
    """The reason of a non-final tier that passes a possibly out-of-scope message on."""
    return f"possibly out of scope: out-of-scope score {score:.3f} ≥ {threshold:.3f} → asking '{next_tier}'"


def oos_reason(score: float, threshold: float) -> str:
    """The reason of the final out-of-scope verdict (the decision's reason adds where the message went)."""
    return f"out of scope: out-of-scope score {score:.3f} ≥ {threshold:.3f}, none of the known labels fits"
