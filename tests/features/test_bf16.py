"""bf16 on CPU through oneDNN matmuls: close to fp32 on every prompt (skipped where torch's oneDNN
has no bf16 on this CPU)."""

import numpy as np


def test_bf16_cosine_to_fp32_on_every_prompt(bf16_encoder, X32, X16):
    assert bf16_encoder._fast_bf16 and bf16_encoder._fast_bf16["linear"] > 0  # the oneDNN path ran
    np.testing.assert_allclose(np.linalg.norm(X16, axis=1), 1.0, atol=1e-5)
    cosine = (X32 * X16).sum(1)
    assert cosine.min() >= 0.9999, f"worst prompt #{cosine.argmin()}: cosine {cosine.min():.6f}"
    assert not np.array_equal(X32, X16)  # really a different computation


def test_every_linear_layer_is_rewritten(bf16_encoder):
    import torch

    from causal_router.features.bf16 import prepare_cpu_bf16

    counts = bf16_encoder._fast_bf16
    assert counts["fused_gelu"] == 6 and counts["linear"] >= 6 * 5  # per layer: q, k, v, out, ffn out
    assert not any(isinstance(m, torch.nn.Linear) for m in bf16_encoder._model.modules())
    assert prepare_cpu_bf16(bf16_encoder._model) == {"linear": 0, "fused_gelu": 0, "bf16_qkv": 0}  # idempotent
