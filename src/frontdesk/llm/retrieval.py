"""The training examples nearest to a message, per candidate label: what the LLM's prompt shows.

A fixed handful of examples per label says little about a borderline message; the examples most
similar to *this* message show the LLM where each candidate's boundary lies. :class:`ExampleIndex`
is a small TF-IDF index (word 1-2-grams, sublinear tf, cosine similarity) over the training texts,
built by ``Router.train`` and saved with the model as JSON + ``.npy``/``.npz`` (no pickles).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from frontdesk.errors import ModelError

INDEX_DIR = "examples"
_FILES = ("index.json", "vocabulary.json", "idf.npy", "matrix.npz")
_MIN_CHARS = 12  # shorter texts ("hi", "card?") teach the LLM nothing about a label's boundary


def _vectorizer(vocabulary: Mapping[str, int] | None = None):  # -> TfidfVectorizer
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, strip_accents="unicode", lowercase=True,
                           dtype=np.float32, vocabulary=vocabulary)


class ExampleIndex:
    """Training texts with their labels, searchable by similarity within one label."""

    def __init__(self, texts: Sequence[str], labels: Sequence[Sequence[str]], vectorizer, matrix) -> None:  # noqa: ANN001
        self.texts = list(texts)
        self.labels = [tuple(x) for x in labels]
        self._vec = vectorizer
        self._matrix = matrix.tocsr()
        rows: dict[str, list[int]] = {}
        for i, labs in enumerate(self.labels):
            for label in labs:
                rows.setdefault(label, []).append(i)
        self._rows = {label: np.asarray(r, dtype=np.int64) for label, r in rows.items()}

    @classmethod
    def build(cls, examples: Iterable[tuple[str, Sequence[str]]]) -> ExampleIndex:
        """Index ``(text, labels)`` pairs (duplicates and texts under 12 characters are left out)."""
        seen: set[str] = set()
        texts, labels = [], []
        for text, labs in examples:
            key = " ".join(text.split()).casefold()
            if len(key) < _MIN_CHARS or key in seen or not labs:
                continue
            seen.add(key)
            texts.append(text.strip())
            labels.append(tuple(labs))
        from scipy import sparse

        vec = _vectorizer()
        matrix = vec.fit_transform(texts) if texts else sparse.csr_matrix((0, 0), dtype=np.float32)
        return cls(texts, labels, vec, matrix)

    def __len__(self) -> int:
        return len(self.texts)

    def nearest(self, text: str, candidates: Sequence[str], n: int) -> dict[str, list[str]]:
        """Up to ``n`` training texts of each candidate label, most similar to ``text`` first.

        Ties (e.g. no shared word at all) are broken by shorter text, so the answer is deterministic.
        """
        if n <= 0 or not self.texts:
            return {}
        q = self._vec.transform([text])
        out: dict[str, list[str]] = {}
        for label in candidates:
            rows = self._rows.get(label)
            if rows is None or not len(rows):
                continue
            sims = np.asarray((self._matrix[rows] @ q.T).todense()).ravel()
            order = sorted(range(len(rows)), key=lambda j: (-round(float(sims[j]), 6), len(self.texts[rows[j]]), self.texts[rows[j]]))
            out[label] = [self.texts[rows[j]] for j in order[:n]]
        return out

    # -- persistence --------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write the index into directory ``path`` (created)."""
        from scipy import sparse

        path.mkdir(parents=True, exist_ok=True)
        terms = [""] * len(self._vec.vocabulary_)
        for term, j in self._vec.vocabulary_.items():
            terms[j] = term
        (path / "index.json").write_text(json.dumps({"texts": self.texts, "labels": [list(x) for x in self.labels]},
                                                    ensure_ascii=False), encoding="utf-8")
        (path / "vocabulary.json").write_text(json.dumps(terms, ensure_ascii=False), encoding="utf-8")
        np.save(path / "idf.npy", self._vec.idf_.astype(np.float32))
        sparse.save_npz(path / "matrix.npz", self._matrix.astype(np.float32), compressed=True)

    @classmethod
    def load(cls, path: Path) -> ExampleIndex:
        """Read an index written by :meth:`save`; a damaged one is a :class:`ModelError`."""
        from scipy import sparse

        try:
            meta = json.loads((path / "index.json").read_text(encoding="utf-8"))
            terms = json.loads((path / "vocabulary.json").read_text(encoding="utf-8"))
            vec = _vectorizer({t: j for j, t in enumerate(terms)})
            vec.idf_ = np.load(path / "idf.npy", allow_pickle=False)
            matrix = sparse.load_npz(path / "matrix.npz")
            index = cls(meta["texts"], meta["labels"], vec, matrix)
        except FileNotFoundError as exc:
            raise ModelError(f"example index file missing ({Path(exc.filename or '').name}): retrain the model, or delete "
                             f"{INDEX_DIR}/ to run the LLM tier with fixed examples", path=path) from exc
        except (KeyError, ValueError, json.JSONDecodeError) as exc:
            raise ModelError(f"example index is corrupt ({exc}): retrain the model", path=path) from exc
        if matrix.shape != (len(index.texts), len(terms)):
            raise ModelError(f"example index matrix has shape {matrix.shape}, expected {(len(index.texts), len(terms))}: retrain",
                             path=path)
        return index

    @staticmethod
    def exists(path: Path) -> bool:
        """True when ``path`` holds a saved index."""
        return all((path / f).is_file() for f in _FILES)
