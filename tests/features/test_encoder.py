import numpy as np
import pytest

from causal_router.features.encoder import TransformerEncoder
from causal_router.features.hardware import attention_kernels

TEXTS = [
    "a cat sits on the mat",
    "a kitten is sitting on a rug",
    "stock market prices fell",
    "Solve for x: 2x + 3 = 11.",
    "Write a haiku about autumn leaves drifting in the wind over a quiet pond.",
    "",
    "def f(x): return x ** 2",
    "The mitochondria is the powerhouse of the cell, converting nutrients into ATP.",
    "Translate 'good morning' into French.",
]


@pytest.fixture(scope="module")
def encoder():
    return TransformerEncoder()


@pytest.fixture(scope="module")
def X(encoder):
    return encoder.encode(TEXTS)


def test_shape_dtype_and_unit_norm(encoder, X):
    assert X.shape == (len(TEXTS), 384) and X.dtype == np.float32
    assert encoder.dim == 384
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_batch_size_invariance(encoder, X, batch_size):
    enc = TransformerEncoder(batch_size=batch_size)
    enc._tokenizer, enc._model, enc._dim = encoder._tokenizer, encoder._model, encoder._dim
    np.testing.assert_allclose(enc.encode(TEXTS), X, atol=1e-5)


def test_input_order_preserved(encoder, X):
    perm = np.random.default_rng(0).permutation(len(TEXTS))
    np.testing.assert_allclose(encoder.encode([TEXTS[i] for i in perm]), X[perm], atol=1e-5)
    np.testing.assert_allclose(encoder.encode([TEXTS[3]]), X[3:4], atol=1e-5)


def test_truncation_at_max_length(encoder):
    words = np.random.default_rng(1).choice(["alpha", "beta", "gamma", "delta", "river"], 2000)
    long = " ".join(words)
    a, b = encoder.encode([long, long + " and then many more words appended at the very end"])
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_semantic_sanity(X):
    cat, kitten, stocks = X[0], X[1], X[2]
    assert cat @ kitten > cat @ stocks + 0.2


def test_empty_input(encoder):
    assert encoder.encode([]).shape == (0, 384)


def test_key_is_stable_and_distinguishes_settings(encoder):
    assert encoder.key == TransformerEncoder().key
    assert encoder.key.startswith("all-MiniLM-L6-v2@")
    assert "max_length=256" in encoder.key and "pooling=mean" in encoder.key
    assert TransformerEncoder(batch_size=3).key == encoder.key
    assert TransformerEncoder(max_length=128).key != encoder.key
    assert TransformerEncoder(pooling="cls").key != encoder.key


def test_key_differs_between_model_folders(encoder, tmp_path):
    import shutil

    other = tmp_path / "model"
    shutil.copytree(encoder.path, other)
    (other / "config.json").write_text((other / "config.json").read_text().replace("0.1", "0.2"))
    assert TransformerEncoder(str(other)).key != encoder.key


def test_missing_model_path_is_a_clear_error(tmp_path):
    enc = TransformerEncoder(str(tmp_path / "nope"))  # lazy: no error yet
    with pytest.raises(FileNotFoundError, match="never uses the network"):
        enc.encode(["hello"])
    with pytest.raises(FileNotFoundError, match="must already be on disk"):
        enc.key


def test_bad_arguments():
    with pytest.raises(ValueError):
        TransformerEncoder(pooling="max")
    with pytest.raises(ValueError):
        TransformerEncoder(batch_size=0)
    with pytest.raises(TypeError):
        TransformerEncoder().encode("a single string")


def test_batch_size_and_attention_follow_the_device():
    cpu = TransformerEncoder(device="cpu")
    assert cpu.resolved_batch_size == 64 and TransformerEncoder(device="cpu", batch_size=7).resolved_batch_size == 7
    gpu = TransformerEncoder(device="cuda")
    gpu._device = "cuda"  # as resolved on a machine with a GPU (none needed to check the settings)
    assert gpu.resolved_batch_size == 1024
    import torch

    before = torch.backends.cuda.cudnn_sdp_enabled()
    with attention_kernels(cpu.resolved_device):  # CPU attention is left as torch picks it
        assert torch.backends.cuda.cudnn_sdp_enabled() == before
    # CUDA attention never goes through cuDNN (it plans every batch shape anew)
    with attention_kernels(gpu.resolved_device):
        assert not torch.backends.cuda.cudnn_sdp_enabled()
        assert torch.backends.cuda.flash_sdp_enabled() and torch.backends.cuda.mem_efficient_sdp_enabled()
    assert torch.backends.cuda.cudnn_sdp_enabled() == before
