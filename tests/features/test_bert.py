"""The lean BERT path (:mod:`causal_router.features.bert`) against ``transformers`` on the bundled
MiniLM: same token ids, same hidden states, and no ``transformers`` import."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from causal_router.features import bert
from causal_router.features.encoder import default_model_path


@pytest.fixture(scope="module")
def path():
    return default_model_path()


def test_minilm_is_supported(path):
    assert bert.supported(path)


def test_same_token_ids_as_transformers(path, prompts):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(path, local_files_only=True)
    lean = bert.Tokenizer(path, json.loads((path / "config.json").read_text()))
    for max_length in (256, 8):
        ours = lean(prompts, truncation=True, max_length=max_length)["input_ids"]
        theirs = hf(prompts, truncation=True, max_length=max_length)["input_ids"]
        assert ours == theirs
    assert lean.pad_token_id == hf.pad_token_id


def test_same_hidden_states_as_transformers(path, prompts):
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    batch = tok(prompts, truncation=True, max_length=64, padding=True, return_tensors="pt")
    hf = AutoModel.from_pretrained(path, local_files_only=True, dtype=torch.float32).eval()
    _, lean = bert.load(path)
    with torch.inference_mode():
        theirs = hf(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        ours = lean(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    keep = batch["attention_mask"].bool()  # padded positions are never pooled
    np.testing.assert_allclose(ours[keep].numpy(), theirs[keep].numpy(), atol=1e-4)


def test_unsupported_folders_go_to_transformers(path, tmp_path):
    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    shutil.copy(path / "config.json", incomplete / "config.json")
    assert not bert.supported(incomplete)  # no weights, no tokenizer.json

    other = tmp_path / "other"
    shutil.copytree(path, other, ignore=shutil.ignore_patterns("onnx", "openvino"))
    config = json.loads((other / "config.json").read_text())
    for change in ({"model_type": "roberta"}, {"hidden_act": "gelu_new"},
                   {"position_embedding_type": "relative_key"}, {"is_decoder": True}):
        (other / "config.json").write_text(json.dumps({**config, **change}))
        assert not bert.supported(other), change
    (other / "config.json").write_text("{not json")
    assert not bert.supported(other)


def test_weights_that_do_not_fit_are_refused(path, tmp_path):
    folder = tmp_path / "misfit"
    shutil.copytree(path, folder, ignore=shutil.ignore_patterns("onnx", "openvino"))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "num_hidden_layers": config["num_hidden_layers"] + 1}))
    with pytest.raises(ValueError, match="does not fit its config.json"):
        bert.load(folder)


def test_embed_does_not_import_transformers(tmp_path):
    code = (
        "import sys\n"
        "from causal_router.features.encoder import TransformerEncoder\n"
        "X = TransformerEncoder(device='cpu', precision='fp32').encode(['hello there', 'what is 2+2?'])\n"
        "assert X.shape[0] == 2\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'transformers'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "CAUSAL_ROUTER_CACHE_DIR": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
