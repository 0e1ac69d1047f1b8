"""Task runner settings, and embedding shards fanned out over a real local Dask cluster."""

import numpy as np
import pytest
from prefect.task_runners import ThreadPoolTaskRunner
from prefect_dask import DaskTaskRunner

from causal_router.features.cache import EmbeddingCache
from causal_router.features.embed import embed_with_stats
from causal_router.features.encoder import TransformerEncoder
from causal_router.pipeline.runners import embed_shards, make_task_runner, split_shards

TEXTS = [
    "What is the capital of Australia?",
    "Write a Python function that reverses a linked list.",
    "Summarise the plot of Hamlet in two sentences.",
    "Solve for x: 2x + 3 = 11.",
    "Translate 'good morning' into Japanese.",
    "Which is larger, 2^10 or 10^3?",
    "Explain what a hash table is. " * 40,  # past the 256-token cap
    "hi",
    "Solve for x: 2x + 3 = 11.",  # a duplicate
]


def test_runner_settings():
    for setting in (None, "", "local", " LOCAL "):
        assert isinstance(make_task_runner(setting), ThreadPoolTaskRunner)
    local = make_task_runner("dask")
    assert isinstance(local, DaskTaskRunner) and local.address is None
    assert (local.cluster_kwargs["n_workers"], local.cluster_kwargs["threads_per_worker"]) == (2, 1)
    assert make_task_runner("dask", n_workers=4).cluster_kwargs["n_workers"] == 4
    assert make_task_runner("dask://scheduler.internal:8786").address == "tcp://scheduler.internal:8786"
    assert make_task_runner("tcp://10.0.0.5:8786").address == "tcp://10.0.0.5:8786"
    for bad in ("spark", "dask://", "dask://nohost", "8786"):
        with pytest.raises(ValueError):
            make_task_runner(bad)
    with pytest.raises(ValueError):
        make_task_runner("local", n_workers=2)


def test_split_shards():
    assert split_shards(range(7), 3) == [[0, 1], [2, 3, 4], [5, 6]]
    assert split_shards([1, 2], 5) == [[1], [2]]
    assert split_shards([], 3) == []
    with pytest.raises(ValueError):
        split_shards([1], 0)


def test_embed_shards_outside_a_flow_runs_here(tmp_path):
    enc = TransformerEncoder(precision="fp32")
    X = embed_shards(TEXTS, 3, cache_dir=tmp_path, encoder=enc)
    np.testing.assert_allclose(X, embed_with_stats(TEXTS, encoder=enc, use_cache=False)[0], atol=1e-5)
    assert len(EmbeddingCache(tmp_path).shards(enc.key)) == 3


def test_flow_on_a_real_two_worker_dask_cluster(prefect_harness, tmp_path):
    from distributed import Client, LocalCluster
    from prefect import flow

    encoder = TransformerEncoder()  # device and precision resolved on each worker (same machine)

    @flow(name="embed-shards-test")
    def embed_flow(texts: list, n_shards: int, cache_dir: str):
        return embed_shards(texts, n_shards, cache_dir=cache_dir, encoder=encoder)

    local = embed_with_stats(TEXTS, encoder=encoder, use_cache=False)[0]
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        runner = make_task_runner(cluster.scheduler_address)
        X = embed_flow.with_options(task_runner=runner)(TEXTS, 2, str(tmp_path))
        with Client(cluster) as client:  # each worker process loaded the model for one shard
            loaded = client.run(lambda: __import__("causal_router.pipeline.runners", fromlist=["_"])
                                ._process_encoder.cache_info().currsize)
    assert sorted(loaded.values()) == [1, 1]
    np.testing.assert_allclose(X, local, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(X[3], X[8])
    # the workers filled the shared cache: one shard each, and nothing is left to embed
    assert len(EmbeddingCache(tmp_path).shards(encoder.key)) == 2
    assert embed_with_stats(TEXTS, tmp_path, encoder)[1] == 0
