"""Prefect task runners from one setting string, and embedding fanned out as shard tasks.

``make_task_runner(setting)``:

==============================  ==========================================================
setting                         task runner
==============================  ==========================================================
None, ``""``, ``"local"``       ``ThreadPoolTaskRunner`` (Prefect's default)
``"dask"``                      ``DaskTaskRunner`` on a new local cluster (2 worker
                                processes, 1 thread each), closed with the flow run
``"dask://HOST:PORT"``          ``DaskTaskRunner`` connected to the existing scheduler
``"tcp://HOST:PORT"`` (or       at that address
``tls://``)
==============================  ==========================================================

Use it as ``my_flow.with_options(task_runner=make_task_runner(setting))(...)``; see
``infra/dask.md`` for pointing it at a cluster.

``embed_shards(texts, n_shards)`` (inside a flow) splits the distinct texts into shards,
embeds each shard as a task (on the flow's task runner: Dask workers, say) through the
embedding cache, and returns the embeddings in input order. Each worker process loads the
model once and keeps it for later shards.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from prefect import task

#: Local Dask cluster of ``make_task_runner("dask")``.
LOCAL_DASK_CLUSTER = {"n_workers": 2, "threads_per_worker": 1, "processes": True, "dashboard_address": None}
_LOCAL = {"", "local", "thread", "threads"}
_REMOTE = ("tcp://", "tls://", "ucx://", "inproc://")


def make_task_runner(setting: str | None = None, **cluster_kwargs: Any):
    """A Prefect task runner for ``setting`` (see the module docstring).

    Parameters
    ----------
    setting : str or None
        None / "local", "dask", "dask://HOST:PORT" or a Dask scheduler address
        ("tcp://HOST:PORT").
    **cluster_kwargs
        For "dask" only: overrides of :data:`LOCAL_DASK_CLUSTER` (``n_workers``, ...).

    Returns
    -------
    prefect.task_runners.ThreadPoolTaskRunner or prefect_dask.DaskTaskRunner

    Raises
    ------
    ValueError
        An unknown setting, or cluster options for a runner that takes none.
    ImportError
        A Dask setting without ``prefect-dask`` installed.
    """
    text = "" if setting is None else str(setting).strip()
    if cluster_kwargs and text.lower() != "dask":
        raise ValueError(f"cluster options only apply to the 'dask' setting, not {setting!r}")
    if text.lower() in _LOCAL:
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner()
    if text.lower() == "dask":
        return _dask_runner(cluster_kwargs={**LOCAL_DASK_CLUSTER, **cluster_kwargs})
    if text.lower().startswith("dask://"):
        hostport = text[len("dask://"):].strip("/")
        if not hostport or ":" not in hostport:
            raise ValueError(f"expected dask://HOST:PORT, got {setting!r}")
        return _dask_runner(address=f"tcp://{hostport}")
    if text.lower().startswith(_REMOTE):
        return _dask_runner(address=text)
    raise ValueError(
        f"unknown task runner {setting!r}: use 'local', 'dask', 'dask://HOST:PORT' or 'tcp://HOST:PORT'"
    )


def _dask_runner(**kwargs):
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as err:  # pragma: no cover - prefect-dask is a dependency
        raise ImportError("the Dask task runner needs prefect-dask: pip install prefect-dask==0.3.7") from err
    return DaskTaskRunner(**kwargs)


def split_shards(items: Sequence, n_shards: int) -> list[list]:
    """Contiguous, balanced shards (sizes differ by at most one; no empty shard).

    Parameters
    ----------
    items : sequence, length n
    n_shards : int >= 1

    Returns
    -------
    list of lists, min(n_shards, n) of them, concatenating to ``items``
    """
    if n_shards < 1:
        raise ValueError(f"n_shards must be at least 1, got {n_shards}")
    items = list(items)
    n = min(n_shards, len(items))
    bounds = np.linspace(0, len(items), n + 1).round().astype(int) if n else [0]
    return [items[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


@functools.lru_cache(maxsize=4)
def _process_encoder(config: tuple):
    """One encoder (and lock) per worker process and configuration, kept between tasks."""
    from ..features.encoder import TransformerEncoder

    return TransformerEncoder(**dict(config)), threading.Lock()


def _encoder_config(encoder) -> tuple:
    from ..features.encoder import TransformerEncoder

    if encoder is None:
        encoder = TransformerEncoder()
    if isinstance(encoder, dict):
        encoder = TransformerEncoder(**encoder)
    if not isinstance(encoder, TransformerEncoder):
        raise TypeError(f"encoder must be a TransformerEncoder, its config() dict or None, not {type(encoder)}")
    return tuple(sorted(encoder.config().items()))


def embed_shard_fn(texts: list[str], encoder_config: tuple, cache_dir: str | None = None,
                   use_cache: bool = True) -> tuple[np.ndarray, int, str]:
    """Embed one shard in this process through the cache.

    Returns
    -------
    X : ndarray of float32, shape (len(texts), dim)
    n_embedded : int
        Cache misses encoded here.
    encoder_key : str
        The key the worker used (its device and precision resolved on its own hardware).
    """
    from ..features.embed import embed_with_stats

    encoder, lock = _process_encoder(encoder_config)
    with lock:  # a thread-pool runner may run several shards in one process
        X, n = embed_with_stats(texts, cache_dir=cache_dir, encoder=encoder, use_cache=use_cache)
    return X, n, encoder.key


embed_shard = task(embed_shard_fn, name="embed-shard", retries=1)
embed_shard.__doc__ = embed_shard_fn.__doc__


def embed_shards(texts: Sequence[str], n_shards: int, cache_dir: str | Path | None = None, encoder=None,
                 use_cache: bool = True) -> np.ndarray:
    """Embed texts as ``n_shards`` tasks on the current flow's task runner.

    Call it inside a Prefect flow: each shard of distinct texts becomes one ``embed-shard``
    task (on Dask workers when the flow runs with a Dask task runner), and the results are
    gathered in input order. Outside a flow it embeds in this process, shard by shard.

    Parameters
    ----------
    texts : sequence of str, length n
    n_shards : int
        Tasks to fan out (e.g. the number of Dask workers); 1 embeds in one task.
    cache_dir : str or Path or None
        Embedding cache, shared by every worker: use a folder they all see (None: each
        worker's default cache folder).
    encoder : TransformerEncoder or its ``config()`` dict or None
        Settings only travel to the workers; each loads the model itself (None: the default).
    use_cache : bool

    Returns
    -------
    ndarray of float32, shape (n, dim)

    Raises
    ------
    RuntimeError
        Shards embedded by workers whose device or precision differ (their cache keys
        differ): pin ``precision`` in the encoder.
    """
    from prefect.context import FlowRunContext

    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not a single string")
    texts = list(texts)
    config = _encoder_config(encoder)
    unique = list(dict.fromkeys(texts))
    cache = None if cache_dir is None else str(cache_dir)
    shards = split_shards(unique, n_shards)
    if FlowRunContext.get() is not None:
        futures = [embed_shard.submit(shard, config, cache, use_cache) for shard in shards]
        results = [f.result() for f in futures]
    else:
        results = [embed_shard_fn(shard, config, cache, use_cache) for shard in shards]
    keys = {key for _, _, key in results}
    if len(keys) > 1:
        raise RuntimeError(f"shards were embedded with different encoder keys {sorted(keys)}: "
                           "pin the encoder's precision (and device) so every worker agrees")
    if not results:
        from ..features.encoder import TransformerEncoder

        return np.empty((0, TransformerEncoder(**dict(config)).dim), dtype=np.float32)
    U = np.concatenate([X for X, _, _ in results])
    if len(unique) == len(texts):
        return U
    index = {t: i for i, t in enumerate(unique)}
    return U[[index[t] for t in texts]]
