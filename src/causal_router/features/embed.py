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
    """The shared default encoder (all-MiniLM-L6-v2, loaded once per process on first use)."""
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
        None means :func:`default_encoder`.
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
    found = cache.lookup(encoder.key, unique) if cache is not None else {}
    U = np.empty((len(unique), encoder.dim), dtype=np.float32)
    for i, v in found.items():
        U[i] = v
    missing = [i for i in range(len(unique)) if i not in found]
    if missing:
        new_texts = [unique[i] for i in missing]
        U[missing] = encoder.encode(new_texts)
        if cache is not None:
            cache.put(encoder.key, new_texts, U[missing])
    logger.info(
        "embedded %d of %d distinct texts (%d from cache)", len(missing), len(unique), len(found)
    )
    index = {t: i for i, t in enumerate(unique)}
    return U[[index[t] for t in texts]], len(missing)


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
