"""Cross-fitting folds and embedding shards fanned out as Prefect tasks over a real two-worker Dask cluster."""

import numpy as np
import pytest
from prefect import flow, task

from causal_router.causal.crossfit import CrossFitter
from causal_router.data.synthetic import make_synthetic
from causal_router.pipeline.runners import make_task_runner
from causal_router.pipeline.tasks import fold_tasks

pytestmark = pytest.mark.slow  # real Dask clusters


def _args(s):
    return (s.X, s.treatment, s.logs["score"].to_numpy(), s.logs["cost"].to_numpy(),
            s.logs["input_tokens"].to_numpy(float))


@task
def fit_in_task(s):
    return CrossFitter(cv=4, random_state=0).fit(*_args(s), fold_map=fold_tasks).nuisances_


@flow(name="crossfit-fanout-test")
def crossfit_flow(s):
    return fit_in_task(s)


def test_folds_on_a_dask_cluster_equal_the_serial_fit(prefect_harness):
    from distributed import LocalCluster

    s = make_synthetic(n=800, seed=1)
    serial = CrossFitter(cv=4, random_state=0).fit(*_args(s)).nuisances_
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        fanned = crossfit_flow.with_options(task_runner=make_task_runner(cluster.scheduler_address))(s)
    for name in ("propensity", "quality", "cost"):
        np.testing.assert_allclose(getattr(fanned, name), getattr(serial, name), rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(fanned.folds, serial.folds)


@flow(name="embed-stage-shards-test")
def embed_stage_flow(inputs, out_dir, cache_dir):
    from causal_router.pipeline.stages import embed_stage

    return embed_stage(inputs, out_dir, cache_dir=cache_dir, precision="fp32", shards=2)


def test_embed_stage_fans_out_shards_on_dask(prefect_harness, tmp_path):
    import pandas as pd
    from distributed import LocalCluster

    from causal_router.pipeline.stages import embed_stage, load_embeddings

    logs = pd.DataFrame({"prompt_id": [f"p{i}" for i in range(6)],
                         "prompt": [f"question number {i} about routing" for i in range(6)]})
    logs.to_parquet(tmp_path / "logs.parquet")
    inputs = {"train": str(tmp_path / "logs.parquet")}
    embed_stage(inputs, tmp_path / "serial", cache_dir=tmp_path / "serial-cache", precision="fp32")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        embed_stage_flow.with_options(task_runner=make_task_runner(cluster.scheduler_address))(
            inputs, str(tmp_path / "fanned"), str(tmp_path / "cache"))
    ids = logs["prompt_id"]
    np.testing.assert_allclose(load_embeddings(tmp_path / "fanned", "train", ids),
                               load_embeddings(tmp_path / "serial", "train", ids), atol=1e-5, rtol=0)
