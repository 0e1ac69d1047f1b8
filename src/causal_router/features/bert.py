"""A lean loader for plain BERT encoders (all-MiniLM-L6-v2 and its kin) that skips ``transformers``.

Importing ``transformers``' BERT model costs about 1.8 s per process on a 2-core machine (it pulls
in ``torch._dynamo`` and ``torch.distributed``): a third of ``causal-router embed``'s time on 300
prompts once bf16 makes the forward pass fast (``benchmarks/embed_speed.py``). A plain BERT
encoder is a few layers of linear maps, attention and LayerNorm, so for a model folder that is
exactly that (see :func:`supported`) this module builds it in torch alone, with the weights read
by ``safetensors`` and the tokenizer by ``tokenizers``, the libraries ``transformers`` itself uses.
Anything else (other architectures, other position embeddings or activations, no
``tokenizer.json``) goes through ``transformers`` as before. The two paths give the same token ids
and the same fp32 hidden states to float rounding (``tests/features/test_bert.py``).

The module names mirror ``transformers``' BERT (``encoder.layer.N.attention.self.query``, ...), so
the weights load by name and :func:`~.bf16.prepare_cpu_bf16` rewrites the same layers.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

_FILES = ("config.json", "tokenizer.json", "model.safetensors")


def supported(path: str | Path) -> bool:
    """True when ``path`` holds a plain BERT encoder this module builds exactly.

    That is: ``model_type`` "bert", absolute position embeddings, exact GELU, and the weights and
    fast tokenizer as ``model.safetensors`` and ``tokenizer.json``.
    """
    path = Path(path)
    if not all((path / f).is_file() for f in _FILES):
        return False
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (config.get("model_type") == "bert" and config.get("hidden_act", "gelu") == "gelu"
            and config.get("position_embedding_type", "absolute") == "absolute"
            and not config.get("is_decoder", False) and not config.get("add_cross_attention", False))


class Tokenizer:
    """``tokenizers.Tokenizer`` from ``tokenizer.json`` with the call signature the encoder uses."""

    def __init__(self, path: Path, config: dict) -> None:
        from tokenizers import Tokenizer as FastTokenizer

        self._tok = FastTokenizer.from_file(str(path / "tokenizer.json"))
        self._tok.no_padding()  # the file may carry a fixed padding; the encoder pads itself
        self._max = None
        self.pad_token_id = self._tok.token_to_id("[PAD]")
        if self.pad_token_id is None:
            self.pad_token_id = config.get("pad_token_id")
        self.eos_token_id = None

    def __call__(self, texts, truncation: bool = True, max_length: int | None = None, **_) -> dict:
        """``{"input_ids": [[int, ...], ...]}`` with special tokens, truncated at ``max_length``."""
        if truncation and max_length is not None and max_length != self._max:
            self._tok.enable_truncation(max_length=max_length)
            self._max = max_length
        return {"input_ids": [e.ids for e in self._tok.encode_batch(list(texts))]}


def _module(config: SimpleNamespace):
    import torch
    from torch import nn

    class Embeddings(nn.Module):
        def __init__(self):
            super().__init__()
            self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
            self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
            self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
            self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

        def forward(self, input_ids):
            width = input_ids.shape[1]
            x = (self.word_embeddings(input_ids) + self.token_type_embeddings.weight[0]
                 + self.position_embeddings.weight[:width])
            return self.LayerNorm(x)

    class SelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            h = config.hidden_size
            self.query, self.key, self.value = nn.Linear(h, h), nn.Linear(h, h), nn.Linear(h, h)

        def forward(self, x, mask):
            b, n, h = x.shape
            heads = config.num_attention_heads

            def split(t):
                return t.view(b, n, heads, h // heads).transpose(1, 2)

            q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
            if mask is not None:
                mask = mask.to(q.dtype)
            out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                                   scale=1.0 / math.sqrt(h // heads))
            return out.transpose(1, 2).reshape(b, n, h)

    class DenseNorm(nn.Module):  # dense, then LayerNorm of (output + residual)
        def __init__(self, n_in):
            super().__init__()
            self.dense = nn.Linear(n_in, config.hidden_size)
            self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

        def forward(self, x, residual):
            return self.LayerNorm(self.dense(x).float() + residual)

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.self = SelfAttention()
            self.output = DenseNorm(config.hidden_size)

        def forward(self, x, mask):
            return self.output(self.self(x, mask), x)

    class Intermediate(nn.Module):
        def __init__(self):
            super().__init__()
            self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
            self.intermediate_act_fn = nn.GELU()

        def forward(self, x):
            return self.intermediate_act_fn(self.dense(x))

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.attention, self.intermediate = Attention(), Intermediate()
            self.output = DenseNorm(config.intermediate_size)

        def forward(self, x, mask):
            x = self.attention(x, mask)
            return self.output(self.intermediate(x), x)

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.ModuleList(Layer() for _ in range(config.num_hidden_layers))

    class BertEncoder(nn.Module):
        """``BertModel`` without the pooler: ``model(input_ids=, attention_mask=).last_hidden_state``."""

        def __init__(self):
            super().__init__()
            self.config = config
            self.embeddings, self.encoder = Embeddings(), Encoder()

        def forward(self, input_ids, attention_mask=None):
            x = self.embeddings(input_ids)
            # additive mask over keys, as transformers' SDPA path builds it
            mask = None
            if attention_mask is not None:
                mask = torch.zeros(attention_mask.shape, dtype=x.dtype, device=x.device)
                mask = mask.masked_fill(attention_mask == 0, torch.finfo(x.dtype).min)[:, None, None, :]
            for layer in self.encoder.layer:
                x = layer(x, mask)
            return SimpleNamespace(last_hidden_state=x)

    return BertEncoder()


def load(path: str | Path):
    """``(tokenizer, model)`` for a folder where :func:`supported` holds; the model in fp32, eval mode.

    Raises
    ------
    ValueError
        The weights do not match the configuration (a missing, extra or misshapen tensor).
    """
    from safetensors.torch import load_file

    path = Path(path)
    raw = json.loads((path / "config.json").read_text(encoding="utf-8"))
    defaults = {"type_vocab_size": 2, "layer_norm_eps": 1e-12}  # transformers' BertConfig defaults
    keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
            "max_position_embeddings", "type_vocab_size", "layer_norm_eps")
    config = SimpleNamespace(**{**defaults, **{k: raw[k] for k in keys if k in raw}})
    config.model_type, config._attn_implementation = "bert", "sdpa"
    model = _module(config)
    weights = {k.removeprefix("bert."): v for k, v in load_file(str(path / "model.safetensors")).items()}
    weights = {k: v for k, v in weights.items()
               if not k.startswith(("pooler.", "cls.")) and not k.endswith("position_ids")}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path / 'model.safetensors'} does not fit its config.json: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}")
    return Tokenizer(path, raw), model.float().eval()
