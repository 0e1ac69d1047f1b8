"""Content-addressed on-disk cache of text embeddings, sharded per encoder."""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

CACHE_DIR_ENV = "CAUSAL_ROUTER_CACHE_DIR"


def default_cache_dir() -> Path:
    """``$CAUSAL_ROUTER_CACHE_DIR``, else ``$XDG_CACHE_HOME/causal-router/embeddings``, else
    ``~/.cache/causal-router/embeddings``. Nothing is created."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "causal-router" / "embeddings"


def text_key(encoder_key: str, text: str) -> str:
    """sha256 hex digest (64 chars) of ``encoder_key + "\\x00" + text``."""
    return hashlib.sha256(f"{encoder_key}\x00{text}".encode("utf-8", "surrogatepass")).hexdigest()


def _checksum(keys: np.ndarray, vectors: np.ndarray) -> str:
    h = hashlib.sha256(np.ascontiguousarray(vectors).tobytes())
    h.update("".join(keys.tolist()).encode("ascii"))
    return h.hexdigest()


class EmbeddingCache:
    """Embeddings keyed by (encoder key, exact text).

    Layout: ``cache_dir/<sha256(encoder_key)[:16]>/shard-<checksum[:32]>.npz``, each shard holding
    ``keys`` (str, shape (m,), 64-char hex), ``vectors`` (float32, shape (m, dim)) and a
    ``checksum``. Shards are written atomically and never modified; a shard that fails to
    load or to verify is logged, deleted, and its texts count as misses. Directories are
    created on the first :meth:`put`.

    Parameters
    ----------
    cache_dir : str or Path
    """

    def __init__(self, cache_dir: str | Path) -> None:
        self.cache_dir = Path(cache_dir)

    def __repr__(self) -> str:
        return f"EmbeddingCache({str(self.cache_dir)!r})"

    def encoder_dir(self, encoder_key: str) -> Path:
        """Folder holding the shards of one encoder."""
        return self.cache_dir / hashlib.sha256(encoder_key.encode("utf-8")).hexdigest()[:16]

    def shards(self, encoder_key: str) -> list[Path]:
        """Shard files of one encoder, sorted by name."""
        folder = self.encoder_dir(encoder_key)
        return sorted(folder.glob("shard-*.npz")) if folder.is_dir() else []

    def _read(self, shard: Path) -> tuple[np.ndarray, np.ndarray] | None:
        try:
            with np.load(shard, allow_pickle=False) as z:
                keys, vectors, checksum = z["keys"], z["vectors"], str(z["checksum"])
            if (
                keys.ndim != 1
                or vectors.ndim != 2
                or len(keys) != len(vectors)
                or vectors.dtype != np.float32
                or checksum != _checksum(keys, vectors)
            ):
                raise ValueError("checksum or shape mismatch")
        except Exception as exc:  # any unreadable shard is dropped, never fatal
            logger.warning("Dropping corrupted embedding cache shard %s (%s)", shard, exc)
            shard.unlink(missing_ok=True)
            return None
        return keys, vectors

    def lookup(self, encoder_key: str, texts: Sequence[str]) -> dict[int, np.ndarray]:
        """Cached embeddings of texts.

        Parameters
        ----------
        encoder_key : str
        texts : sequence of str, length n

        Returns
        -------
        dict of int to ndarray of float32, shape (dim,)
            Position in ``texts`` -> embedding, for the texts found.
        """
        wanted: dict[str, list[int]] = {}
        for i, text in enumerate(texts):
            wanted.setdefault(text_key(encoder_key, text), []).append(i)
        found: dict[int, np.ndarray] = {}
        for shard in self.shards(encoder_key):
            if len(found) == len(texts):
                break
            loaded = self._read(shard)
            if loaded is None:
                continue
            keys, vectors = loaded
            for row, k in enumerate(keys.tolist()):
                for i in wanted.pop(k, ()):
                    found[i] = vectors[row]
        return found

    def fill(self, encoder_key: str, texts: Sequence[str], out: np.ndarray) -> np.ndarray:
        """Copy cached embeddings of texts into ``out``, shard by shard (no shard stays in memory).

        Parameters
        ----------
        encoder_key : str
        texts : sequence of str, length n
        out : ndarray of float32, shape (n, dim)
            Rows of the texts found are overwritten; the others are left alone.

        Returns
        -------
        ndarray of bool, shape (n,)
            True where the text was found.
        """
        wanted: dict[str, list[int]] = {}
        for i, text in enumerate(texts):
            wanted.setdefault(text_key(encoder_key, text), []).append(i)
        found = np.zeros(len(texts), dtype=bool)
        for shard in self.shards(encoder_key):
            if not wanted:
                break
            loaded = self._read(shard)
            if loaded is None:
                continue
            keys, vectors = loaded
            if vectors.shape[1] != out.shape[1]:
                logger.warning("Ignoring embedding cache shard %s of dimension %d, not %d",
                               shard, vectors.shape[1], out.shape[1])
                continue
            for row, k in enumerate(keys.tolist()):
                positions = wanted.pop(k, None)
                if positions:
                    out[positions] = vectors[row]
                    found[positions] = True
            del keys, vectors
        return found

    def put(self, encoder_key: str, texts: Sequence[str], vectors: np.ndarray) -> Path | None:
        """Store embeddings as one new shard.

        Parameters
        ----------
        encoder_key : str
        texts : sequence of str, length m
        vectors : array_like of float, shape (m, dim)

        Returns
        -------
        Path or None
            The shard written (None when ``texts`` is empty).
        """
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(texts):
            raise ValueError(f"vectors must have shape ({len(texts)}, dim), got {vectors.shape}")
        if not len(texts):
            return None
        rows = {text_key(encoder_key, t): i for i, t in enumerate(texts)}  # dedupe, last wins
        keys = np.array(list(rows), dtype="<U64")
        vectors = np.ascontiguousarray(vectors[list(rows.values())])
        folder = self.encoder_dir(encoder_key)
        folder.mkdir(parents=True, exist_ok=True)
        checksum = _checksum(keys, vectors)
        # named by content: the same embeddings make the same file, so a versioned cache folder
        # hashes the same on every machine (the pid keeps concurrent writers' temporary files apart)
        name = checksum[:32]
        final, tmp = folder / f"shard-{name}.npz", folder / f".tmp-{name}-{os.getpid()}.npz"
        try:
            with tmp.open("wb") as f:
                _write_npz(f, keys=keys, vectors=vectors, checksum=np.array(checksum))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        return final


def _write_npz(f, **arrays: np.ndarray) -> None:
    """``np.savez`` with fixed member timestamps, so equal arrays give equal bytes."""
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
        for key, arr in arrays.items():
            with z.open(zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0)), "w", force_zip64=True) as m:
                np.lib.format.write_array(m, np.asanyarray(arr), allow_pickle=False)
