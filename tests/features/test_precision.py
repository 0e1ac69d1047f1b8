"""Precision: bf16 close to fp32 on every prompt, never mixed in the cache; batching invariance."""

import numpy as np
import pytest

from causal_router.features import models as models_mod
from causal_router.features.embed import embed_with_stats
from causal_router.features.encoder import TransformerEncoder, resolve_precision


@pytest.mark.parametrize("settings", [
    {"batch_size": 1},
    {"batch_size": 5, "token_budget": 300},
    {"token_budget": 100_000, "batch_size": 1000},
    {"chunk_size": 7},
    {"threads": 1},
])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_same_embeddings_whatever_the_batching(request, clone, prompts, precision, settings):
    base = request.getfixturevalue(f"{precision}_encoder")
    X = request.getfixturevalue("X32" if precision == "fp32" else "X16")
    perm = np.random.default_rng(len(str(settings))).permutation(len(prompts))
    Y = clone(base, **settings).encode([prompts[i] for i in perm])
    np.testing.assert_allclose(Y, X[perm], atol=1e-5, rtol=0)


def test_same_embeddings_whatever_the_thread_count(bf16_encoder, clone, prompts, X16):
    """A Dask worker runs one thread, a local run may run two: the vectors must not differ
    (oneDNN's bf16 kernels are the ones that could; two prompts keep it quick on busy cores)."""
    rows = [0, 30]  # short, long
    Y = clone(bf16_encoder, threads=2).encode([prompts[i] for i in rows])
    np.testing.assert_allclose(Y, X16[rows], atol=1e-5, rtol=0)


def test_precision_is_part_of_the_key_and_the_cache_never_mixes(fp32_encoder, bf16_encoder, prompts, tmp_path):
    assert fp32_encoder.key.endswith("|precision=fp32") and bf16_encoder.key.endswith("|precision=bf16")
    assert fp32_encoder.base_key == bf16_encoder.base_key
    assert fp32_encoder.key == f"{fp32_encoder.base_key}|precision=fp32"
    X32, n32 = embed_with_stats(prompts[:8], tmp_path, fp32_encoder)
    X16, n16 = embed_with_stats(prompts[:8], tmp_path, bf16_encoder)
    assert (n32, n16) == (8, 8)  # bf16 found nothing of fp32's
    np.testing.assert_array_equal(embed_with_stats(prompts[:8], tmp_path, fp32_encoder)[0], X32)
    np.testing.assert_array_equal(embed_with_stats(prompts[:8], tmp_path, bf16_encoder)[0], X16)


def test_resolve_precision():
    assert resolve_precision("auto", "cpu", lambda: "bf16") == "bf16"  # the encoder's calibration
    assert resolve_precision("auto", "cpu", lambda: "fp32") == "fp32"
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("fp32", "cpu", lambda: "bf16") == "fp32"  # explicit wins
    assert resolve_precision("auto", "cuda", lambda: "fp32") == "fp32"  # a GPU's calibration too
    with pytest.raises(ValueError, match="CUDA devices only"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(ValueError):
        resolve_precision("int8", "cpu")
    with pytest.raises(ValueError):
        TransformerEncoder(precision="fp64")


def test_bf16_without_onednn_bf16_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(models_mod, "torch_has_onednn_bf16", lambda: False)
    with pytest.raises(ValueError, match="oneDNN"):
        resolve_precision("bf16", "cpu")


def test_features_compatible_across_precisions(fp32_encoder, bf16_encoder):
    from causal_router.features.encoder import features_compatible, strip_precision

    assert strip_precision(bf16_encoder.key) == bf16_encoder.base_key == strip_precision(bf16_encoder.base_key)
    assert features_compatible(fp32_encoder.key, bf16_encoder.key)
    assert features_compatible(fp32_encoder.base_key, bf16_encoder.key)  # keys from before precision
    assert not features_compatible(fp32_encoder.key, TransformerEncoder(max_length=128, precision="fp32").key)
