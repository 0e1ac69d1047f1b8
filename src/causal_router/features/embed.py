"""Embed texts through the on-disk cache, encoding only what it lacks."""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .cache import EmbeddingCache, default_cache_dir
from .encoder import TransformerEncoder

logger = logging.getLogger(__name__)


@functools.cache
def default_encoder() -> TransformerEncoder:
    """The shared default encoder (all-MiniLM-L6-v2, loaded once per process on first use).

    Device and precision are chosen automatically (see :class:`TransformerEncoder`).
    """
    return TransformerEncoder()


def embed_with_stats(
    texts: Sequence[str],
    cache_dir: str | Path | None = None,
    encoder: TransformerEncoder | None = None,
    use_cache: bool = True,
) -> tuple[np.ndarray, int]:
    """Embed texts, reading and filling the cache.

    Parameters
    ----------
    texts : sequence of str, length n
    cache_dir : str or Path or None
        None means :func:`default_cache_dir`.
    encoder : TransformerEncoder or None
        None means :func:`default_encoder`. Any object with ``encode``, ``key`` and ``dim``
        works; one with ``iter_encode`` (as :class:`TransformerEncoder`) is streamed: texts are
        encoded chunk by chunk and each chunk is written to the cache as its own shard, so an
        interrupted run keeps what it finished and memory holds little beyond the result.
    use_cache : bool
        False encodes everything and touches no files.

    Returns
    -------
    X : ndarray of float32, shape (n, dim)
        Rows aligned with ``texts``.
    n_embedded : int
        Number of distinct texts that were encoded (cache misses).
    """
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not a single string")
    texts = list(texts)
    if not all(isinstance(t, str) for t in texts):
        raise TypeError("every text must be a str")
    encoder = encoder or default_encoder()
    unique = list(dict.fromkeys(texts))
    cache = None
    if use_cache:
        cache = EmbeddingCache(cache_dir if cache_dir is not None else default_cache_dir())
    key = encoder.key
    U = np.empty((len(unique), encoder.dim), dtype=np.float32)
    found = cache.fill(key, unique, U) if cache is not None else np.zeros(len(unique), dtype=bool)
    missing = np.flatnonzero(~found)
    if len(missing):
        new_texts = [unique[i] for i in missing]
        iter_encode = getattr(encoder, "iter_encode", None)
        if iter_encode is not None:  # chunk by chunk: one cache shard per chunk
            chunks = iter_encode(new_texts)
        else:  # any object with .encode, .key and .dim
            chunks = [(np.arange(len(new_texts)), encoder.encode(new_texts))]
        for positions, vectors in chunks:
            U[missing[positions]] = vectors
            if cache is not None:
                cache.put(key, [new_texts[p] for p in positions], vectors)
    logger.info(
        "embedded %d of %d distinct texts (%d from cache)",
        len(missing), len(unique), len(unique) - len(missing),
    )
    if len(unique) == len(texts):  # no duplicates: rows are already in the input order
        return U, int(len(missing))
    index = {t: i for i, t in enumerate(unique)}
    return U[[index[t] for t in texts]], int(len(missing))


def embed_texts(
    texts: Sequence[str],
    cache_dir: str | Path | None = None,
    encoder: TransformerEncoder | None = None,
    use_cache: bool = True,
) -> np.ndarray:
    """Embed texts through the cache; see :func:`embed_with_stats`.

    Returns
    -------
    ndarray of float32, shape (n, dim)
    """
    return embed_with_stats(texts, cache_dir, encoder, use_cache)[0]
