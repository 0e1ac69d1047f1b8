"""Machine probing: CPU identity and flags, devices, thread counts."""

import os

import numpy as np
import pytest

from causal_router.features import hardware
from causal_router.features.encoder import TransformerEncoder
from causal_router.features.hardware import (
    RELEVANT_FLAGS,
    auto_threads,
    idle_threads,
    machine_identity,
    machine_key,
    resolve_device,
    torch_threads,
)


def test_machine_identity_names_the_cpu_and_its_flags(monkeypatch):
    ident = machine_identity()
    assert ident["cpu_model"] and ident["cores"] >= 1 and ident["physical_cores"] >= 1
    # a Dask worker's nanny sets OMP_NUM_THREADS=1: its calibration must be its client's
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MKL_NUM_THREADS", "1")
    assert machine_identity() == ident
    assert set(ident["cpu_flags"]) == set(RELEVANT_FLAGS)
    assert machine_key(ident) == machine_key(dict(ident))
    assert machine_key({**ident, "cpu_model": "other"}) != machine_key(ident)


def test_threads_never_follow_the_load_average(monkeypatch):
    monkeypatch.delenv("CAUSAL_ROUTER_TORCH_THREADS", raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (50.0, 50.0, 50.0))
    assert auto_threads() == idle_threads()  # a busy-looking machine is not a reason for fewer threads
    assert 1 <= idle_threads() <= (os.cpu_count() or 1)


def test_idle_threads_are_what_torch_starts_with():
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], env=env,
                         capture_output=True, text=True, check=True).stdout
    if not ({"OMP_NUM_THREADS", "MKL_NUM_THREADS"} & set(os.environ)):
        assert idle_threads() == int(out)


def test_asked_threads_are_honoured(monkeypatch):
    monkeypatch.setenv("CAUSAL_ROUTER_TORCH_THREADS", "3")
    assert auto_threads() == 3
    monkeypatch.setenv("CAUSAL_ROUTER_TORCH_THREADS", "many")
    with pytest.raises(ValueError, match="CAUSAL_ROUTER_TORCH_THREADS"):
        auto_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    monkeypatch.delenv("CAUSAL_ROUTER_TORCH_THREADS")
    assert idle_threads() == 5  # as torch would start


def test_cpu_lists():
    assert hardware._cpu_list("0-3,8\n") == [0, 1, 2, 3, 8]
    assert hardware._cpu_list("0") == [0]


def test_encoder_threads(monkeypatch, fp32_encoder, clone, prompts):
    monkeypatch.setattr(hardware, "idle_threads", lambda: 2)
    monkeypatch.delenv("CAUSAL_ROUTER_TORCH_THREADS", raising=False)
    enc = clone(fp32_encoder)
    enc.encode(prompts[:1])
    assert enc._threads == 2  # auto: what a plain loop gets
    enc = clone(fp32_encoder, threads=1)
    enc.encode(prompts[:1])
    assert enc._threads == 1  # asked for


def test_torch_threads_restores():
    import torch

    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_device_resolution():
    import torch

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError):
        TransformerEncoder(device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA"):
            _ = TransformerEncoder(device="cuda").key  # a clear error, not a silent CPU run



def test_one_blas_thread_gives_the_one_thread_result_in_concurrent_threads():
    """What the pipeline relies on: with the block held by the main thread (the entry points), fits
    give the one-thread bits, also in worker threads (the flow's tasks) that enter and leave it at
    different times."""
    import threading

    from sklearn.linear_model import Ridge
    from threadpoolctl import threadpool_limits

    from causal_router.features.hardware import one_blas_thread

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(3000, 384)).astype(np.float32), rng.normal(size=3000).astype(np.float32)
    with threadpool_limits(limits=1, user_api="blas"):
        expected = Ridge(alpha=10.0).fit(X, y).coef_
    out, first_left = {}, threading.Event()

    def fit(name, wait_for=None):
        with one_blas_thread():
            if wait_for is not None:
                wait_for.wait(30)  # the other thread has left its block meanwhile
            out[name] = Ridge(alpha=10.0).fit(X, y).coef_
        if wait_for is None:
            first_left.set()

    with one_blas_thread():
        threads = [threading.Thread(target=fit, args=("late", first_left)),
                   threading.Thread(target=fit, args=("early",))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        out["main"] = Ridge(alpha=10.0).fit(X, y).coef_
    for name, coef in out.items():
        np.testing.assert_array_equal(coef, expected, err_msg=name)
