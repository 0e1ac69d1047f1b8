"""Cross-fitting folds fanned out as Prefect tasks over a real two-worker Dask cluster."""

import numpy as np
from prefect import flow, task

from causal_router.causal.crossfit import CrossFitter
from causal_router.data.synthetic import make_synthetic
from causal_router.pipeline.runners import make_task_runner
from flows.train import _fold_tasks


def _args(s):
    return (s.X, s.treatment, s.logs["score"].to_numpy(), s.logs["cost"].to_numpy(),
            s.logs["input_tokens"].to_numpy(float))


@task
def fit_in_task(s):
    return CrossFitter(n_arms=3, cv=4, random_state=0).fit(*_args(s), fold_map=_fold_tasks).nuisances_


@flow(name="crossfit-fanout-test")
def crossfit_flow(s):
    return fit_in_task(s)


def test_folds_on_a_dask_cluster_equal_the_serial_fit(prefect_harness):
    from distributed import LocalCluster

    s = make_synthetic(n=800, seed=1)
    serial = CrossFitter(n_arms=3, cv=4, random_state=0).fit(*_args(s)).nuisances_
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        fanned = crossfit_flow.with_options(task_runner=make_task_runner(cluster.scheduler_address))(s)
    for name in ("propensity", "quality", "cost"):
        np.testing.assert_allclose(getattr(fanned, name), getattr(serial, name), rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(fanned.folds, serial.folds)
