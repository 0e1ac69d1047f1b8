"""Decoders from a local folder (a tiny random LLaMA-family model): last-token and mean pooling."""

import shutil

import numpy as np
import pytest

from causal_router.features.encoder import TransformerEncoder, default_model_path

TEXTS = ["hello world", "a much longer text about many different things, " * 6, "", "x", "Solve 2x + 3 = 11."]


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    """A 2-layer LlamaModel with random weights, saved with the MiniLM tokenizer's files."""
    import torch
    from transformers import AutoModel, LlamaConfig

    folder = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=30522, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         pad_token_id=0)
    AutoModel.from_config(config).save_pretrained(folder)
    for f in default_model_path().iterdir():
        if f.name.startswith(("tokenizer", "vocab", "special_tokens")):
            shutil.copy(f, folder)
    return folder


def manual_last_token(folder, text):
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    ids = tok([text], return_tensors="pt", return_token_type_ids=False)
    with torch.no_grad():
        h = model(**ids).last_hidden_state[0, -1]
    return (h / h.norm()).numpy()


def test_last_token_pooling(llama_dir):
    enc = TransformerEncoder(str(llama_dir), pooling="last", precision="fp32")
    X = enc.encode(TEXTS)
    assert X.shape == (len(TEXTS), 64) and enc.dim == 64
    assert enc.key.startswith("tiny-llama") and "pooling=last|precision=fp32" in enc.key
    # right padding in a batch of mixed lengths picks each text's own last token
    np.testing.assert_allclose(X[1], manual_last_token(llama_dir, TEXTS[1]), atol=1e-5)
    np.testing.assert_allclose(X[4], manual_last_token(llama_dir, TEXTS[4]), atol=1e-5)
    mean = TransformerEncoder(str(llama_dir), pooling="mean", precision="fp32")
    assert mean.key != enc.key and not np.allclose(mean.encode(TEXTS), X, atol=1e-3)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_decoder_batching_invariance_and_bf16(llama_dir, precision):
    import torch

    if precision == "bf16" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        pytest.skip("no oneDNN bf16 on this CPU")
    enc = TransformerEncoder(str(llama_dir), pooling="last", precision=precision)
    X = enc.encode(TEXTS)
    one = TransformerEncoder(str(llama_dir), pooling="last", precision=precision, batch_size=1).encode(TEXTS)
    np.testing.assert_allclose(one, X, atol=1e-5, rtol=0)
    if precision == "bf16":
        assert enc._fast_bf16["linear"] == 14  # q, k, v, o, gate, up, down x 2 layers
        ref = TransformerEncoder(str(llama_dir), pooling="last", precision="fp32").encode(TEXTS)
        assert (X * ref).sum(1).min() >= 0.9999
