"""bf16 inference on CPU: every linear layer as a oneDNN bf16 matmul, fp32 everywhere else.

Embeddings, the residual stream, LayerNorm and pooling stay in fp32; linear layers take bf16
inputs and accumulate in fp32 inside oneDNN (AMX where the CPU has it). That keeps every
embedding within cosine 0.9999 of the fp32 one (about 0.99998 on RouterBench prompts); whether it
is also faster than fp32 on a given CPU is measured (:mod:`.calibration`), not assumed.
"""

from __future__ import annotations

import logging
import sys

SLAB_ROWS = 1024  # rows per bf16 CPU matmul call (see BF16Linear.forward)


def _bf16_linear_module():
    import torch

    op = getattr(torch.ops.mkldnn, "_linear_pointwise", None) if torch.backends.mkldnn.is_available() else None

    class BF16Linear(torch.nn.Module):
        """``nn.Linear`` as a bf16 oneDNN matmul (optionally with exact GELU fused in).

        The input is cast to bf16, the product accumulates in fp32 inside oneDNN, and the output
        is returned as ``out_dtype``.
        """

        def __init__(self, weight, bias, act: str = "none", out_dtype=torch.float32):
            """``weight`` of shape (out_features, in_features), as in ``nn.Linear``."""
            super().__init__()
            self.register_buffer("weight", weight.detach().to(torch.bfloat16).contiguous())
            self.register_buffer("bias", None if bias is None else bias.detach().to(torch.bfloat16).contiguous())
            self.act, self.out_dtype = act, out_dtype
            self.out_features, self.in_features = self.weight.shape

        def _matmul(self, x):
            if op is not None:
                return op(x, self.weight, self.bias, self.act, [], "none" if self.act == "gelu" else "")
            y = torch.nn.functional.linear(x, self.weight, self.bias)  # pragma: no cover
            return torch.nn.functional.gelu(y) if self.act == "gelu" else y  # pragma: no cover

        def forward(self, x):
            x = x.to(torch.bfloat16)
            shape = x.shape
            x2 = x.reshape(-1, shape[-1])
            # oneDNN picks its reduction blocking from the number of rows, so the same row can
            # round differently in a batch of 300 rows and in one of 8,000. Always multiplying
            # slabs of exactly SLAB_ROWS rows (the last one zero-padded) makes every row's
            # result independent of the batch it came in.
            m = x2.shape[0]
            out = torch.empty((m, self.out_features), dtype=self.out_dtype, device=x.device)
            for start in range(0, m, SLAB_ROWS):
                part = x2[start : start + SLAB_ROWS]
                n = part.shape[0]
                if n < SLAB_ROWS:
                    part = torch.cat([part, part.new_zeros((SLAB_ROWS - n, part.shape[1]))])
                out[start : start + n] = self._matmul(part)[:n]
            return out.reshape(*shape[:-1], self.out_features)

    return BF16Linear


def _is_exact_gelu(act) -> bool:
    import torch

    if isinstance(act, torch.nn.GELU):
        return act.approximate == "none"
    GELUActivation = getattr(sys.modules.get("transformers.activations"), "GELUActivation", None)
    if GELUActivation is None:  # transformers' models import it; without it, act is not one
        return False
    return type(act) is GELUActivation and getattr(act, "act", None) is torch.nn.functional.gelu


def prepare_cpu_bf16(model) -> dict:
    """Swap a model's linear layers for bf16 oneDNN matmuls, in place; returns counts.

    Generic rule: every ``nn.Linear`` computes in bf16 and returns fp32, so everything else
    (embeddings, residual adds, LayerNorm, RoPE, pooling) stays fp32. BERT-style models with
    SDPA attention get two refinements: query/key/value return bf16, so attention runs in bf16,
    and an exact-GELU feed-forward layer (``dense`` + ``intermediate_act_fn``) becomes one fused
    matmul + GELU returning bf16 (its consumer casts to bf16 anyway).
    """
    import torch

    # GPT-2 style "linear" layers; a model that has them imported this module already
    Conv1D = getattr(sys.modules.get("transformers.pytorch_utils"), "Conv1D", ())

    BF16Linear = _bf16_linear_module()
    sdpa = getattr(model.config, "_attn_implementation", None) == "sdpa"
    counts = {"linear": 0, "fused_gelu": 0, "bf16_qkv": 0}
    for module in list(model.modules()):
        dense = getattr(module, "dense", None)
        if isinstance(dense, torch.nn.Linear) and _is_exact_gelu(getattr(module, "intermediate_act_fn", None)):
            module.dense = BF16Linear(dense.weight, dense.bias, act="gelu", out_dtype=torch.bfloat16)
            module.intermediate_act_fn = torch.nn.Identity()
            counts["fused_gelu"] += 1
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Linear):
                bf16_out = sdpa and name in ("query", "key", "value")
                out_dtype = torch.bfloat16 if bf16_out else torch.float32
                setattr(module, name, BF16Linear(child.weight, child.bias, out_dtype=out_dtype))
                counts["linear"] += 1
                counts["bf16_qkv"] += bf16_out
            elif Conv1D and isinstance(child, Conv1D):  # weight (in, out)
                setattr(module, name, BF16Linear(child.weight.t(), child.bias))
                counts["linear"] += 1
    return counts


def prepare_or_autocast(model, path, reload):
    """(model, fast_bf16): bf16 matmuls through :func:`prepare_cpu_bf16`, checked on a tiny input; a
    model it cannot handle is reloaded (``reload(path)``) and run under ``torch.autocast`` instead
    (slower, and not batch-invariant), with a warning (fast_bf16 None)."""
    import torch

    try:
        fast = prepare_cpu_bf16(model)
        with torch.inference_mode():
            ids = torch.ones((2, 4), dtype=torch.long)
            mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
            out = model(input_ids=ids, attention_mask=mask).last_hidden_state
        if not torch.isfinite(out.float()).all():
            raise FloatingPointError("non-finite hidden states")
        return model, fast
    except Exception as exc:  # noqa: BLE001 - any failure means: use the generic path
        logging.getLogger(__name__).warning("bf16 matmul rewrite failed for %s (%s): using torch.autocast instead",
                                            path, exc)
        return reload(path)[1].eval(), None
