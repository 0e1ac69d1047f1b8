"""CPU precision calibration: the faster correct precision is chosen, stored and reused.

Timings are injected (never measured against a clock in a test)."""

import json

import numpy as np
import pytest

from causal_router.features import calibration as cal_mod
from causal_router.features.calibration import (
    CALIBRATION_TEXTS,
    MIN_COSINE,
    calibrate,
    calibration_path,
    choose,
    cpu_precision,
    gpu_precision,
    measure_all,
)
from causal_router.features.encoder import TransformerEncoder
from causal_router.features.hardware import machine_identity

BASE = "model@abc|max_length=256|pooling=mean"


def unit_rows(n, d=8, seed=0):
    X = np.random.default_rng(seed).normal(size=(n, d))
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def fake_measure(seconds, bf16_noise=0.0, calls=None):
    """measure(precision, threads, texts) returning injected times; bf16 vectors are fp32's
    plus ``bf16_noise``."""
    def measure(precision, threads, texts):
        if calls is not None:
            calls.append((precision, threads))
        X = unit_rows(len(texts))
        if precision == "bf16" and bf16_noise:
            X = X + bf16_noise * unit_rows(len(texts), seed=1)
        return seconds[precision][threads], X

    return measure


@pytest.mark.parametrize("t32,t16,expected", [
    ({"1": 1.0, "2": 0.6}, {"1": 0.5, "2": 0.3}, "bf16"),  # bf16 twice as fast
    ({"1": 1.0, "2": 0.6}, {"1": 1.5, "2": 0.9}, "fp32"),  # bf16 slower (emulated)
    ({"1": 1.0, "2": 0.6}, {"1": 0.99, "2": 0.59}, "fp32"),  # a near tie goes to the reference
])
def test_choose_picks_the_faster_precision(t32, t16, expected):
    precision, reason = choose({"fp32": t32, "bf16": t16}, min_cosine=0.99999)
    assert precision == expected, reason


def test_choose_rejects_bf16_far_from_fp32():
    fast = {"fp32": {"1": 1.0}, "bf16": {"1": 0.1}}
    assert choose(fast, 0.99999)[0] == "bf16"
    precision, reason = choose(fast, MIN_COSINE - 1e-4)
    assert precision == "fp32" and "cosine" in reason
    assert choose(fast, float("nan"))[0] == "fp32"
    assert choose(fast, None)[0] == "fp32"
    assert choose({"fp32": {"1": 1.0}}, None)[0] == "fp32"  # no bf16 on this machine


def test_measure_all_interleaves_and_keeps_the_best_time():
    times = iter([3.0, 2.0, 1.0, 4.0] * 3)
    X = unit_rows(4)

    def measure(precision, threads, texts):
        return next(times), X

    seconds, min_cos = measure_all(measure, ("fp32", "bf16"), (1, 2), texts=["a"] * 4, rounds=3, budget_s=1e9,
                                   retries=0)
    assert seconds == {"fp32": {"1": 3.0, "2": 1.0}, "bf16": {"1": 2.0, "2": 4.0}}
    assert min_cos == pytest.approx(1.0)


def test_the_cosine_guard_rejects_a_bad_bf16():
    speeds = {"fp32": {1: 1.0, 2: 0.6}, "bf16": {1: 0.3, 2: 0.2}}
    good = calibrate(BASE, fake_measure(speeds, bf16_noise=1e-4), True, (1, 2))
    bad = calibrate(BASE, fake_measure(speeds, bf16_noise=0.1), True, (1, 2))
    assert good.precision == "bf16" and good.min_cosine >= MIN_COSINE
    assert bad.precision == "fp32" and bad.min_cosine < MIN_COSINE
    assert "cosine" in bad.reason


def test_no_bf16_means_fp32_without_measuring():
    cal = calibrate(BASE, None, bf16_available=False)
    assert cal.precision == "fp32" and cal.seconds == {}


def test_stored_per_machine_and_encoder_and_reused(tmp_path):
    calls = []
    speeds = {"fp32": {1: 1.0, 2: 0.6}, "bf16": {1: 0.5, 2: 0.3}}
    first = cpu_precision(BASE, lambda: fake_measure(speeds, calls=calls), lambda: True, tmp_path, (1, 2))
    assert first.precision == "bf16"
    assert sorted(set(calls)) == [("bf16", 1), ("bf16", 2), ("fp32", 1), ("fp32", 2)]
    path = calibration_path(BASE, machine_identity(), tmp_path)
    stored = json.loads(path.read_text())
    assert stored["precision"] == "bf16" and stored["encoder"] == BASE
    assert stored["machine"]["cpu_model"] and "avx2" in stored["machine"]["cpu_flags"]

    def boom():
        raise AssertionError("measured again")

    again = cpu_precision(BASE, boom, boom, tmp_path)  # read from the file: nothing measured
    assert again.precision == "bf16" and again.seconds == first.seconds
    other = cpu_precision(BASE + "x", lambda: fake_measure(speeds), lambda: False, tmp_path)
    assert other.precision == "fp32"  # another encoder: its own file
    assert len(list(path.parent.glob("*.json"))) == 2


def test_a_gpu_is_calibrated_per_gpu_model_apart_from_the_cpu(tmp_path, monkeypatch):
    import torch

    gpu = {"name": "Some GPU", "bf16": True}
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: gpu["name"])
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: gpu["bf16"])
    calls = []
    faster32 = {"fp32": {n: 1.0 for n in range(1, 65)}, "bf16": {n: 1.2 for n in range(1, 65)}}
    cal = gpu_precision(BASE, lambda: fake_measure(faster32, calls=calls), "cuda", tmp_path)
    assert cal.precision == "fp32" and cal.machine["gpu"] == "Some GPU"
    assert {p for p, _ in calls} == {"fp32", "bf16"} and len({t for _, t in calls}) == 1  # one thread count
    calls.clear()
    assert gpu_precision(BASE, lambda: fake_measure(faster32, calls=calls), "cuda:0", tmp_path).precision == "fp32"
    assert not calls  # stored
    cpu = cpu_precision(BASE, lambda: fake_measure({"fp32": {1: 1.0}, "bf16": {1: 0.5}}), lambda: True, tmp_path, (1,))
    assert cpu.precision == "bf16"  # the CPU's own file
    gpu.update(name="Another GPU", bf16=False)
    assert gpu_precision(BASE, lambda: fake_measure(faster32, calls=calls), "cuda", tmp_path).precision == "fp32"
    assert not calls  # no bf16 on that GPU: nothing to measure
    assert len(list(tmp_path.glob("calibration/*.json"))) == 3


def test_another_machine_or_a_damaged_file_is_measured_again(tmp_path, monkeypatch):
    speeds = {"fp32": {1: 1.0}, "bf16": {1: 2.0}}
    cpu_precision(BASE, lambda: fake_measure(speeds), lambda: True, tmp_path, (1,))
    path = calibration_path(BASE, machine_identity(), tmp_path)
    path.write_text("{not json")
    calls = []
    again = cpu_precision(BASE, lambda: fake_measure(speeds, calls=calls), lambda: True, tmp_path, (1,))
    assert again.precision == "fp32"
    assert calls and json.loads(path.read_text())["precision"] == "fp32"
    other = {**machine_identity(), "cpu_model": "Some Other CPU"}
    monkeypatch.setattr(cal_mod, "machine_identity", lambda: other)
    calls.clear()
    cpu_precision(BASE, lambda: fake_measure(speeds, calls=calls), lambda: True, tmp_path, (1,))
    assert calls  # not this machine's file


def test_the_calibration_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("CAUSAL_ROUTER_CALIBRATION_DIR", str(tmp_path / "cal"))
    assert calibration_path(BASE).parent == tmp_path / "cal"
    monkeypatch.delenv("CAUSAL_ROUTER_CALIBRATION_DIR")
    monkeypatch.setenv("CAUSAL_ROUTER_CACHE_DIR", str(tmp_path / "emb"))
    assert calibration_path(BASE).parent == tmp_path / "emb" / "calibration"


# -- the encoder ---------------------------------------------------------------------------------
def fixed_calibration(precision, calls):
    def fake(base_key, make_measure, bf16_available, *args, **kwargs):
        calls.append(base_key)
        return cal_mod.Calibration(precision, "injected", encoder=base_key)

    return fake


def test_auto_precision_on_cpu_comes_from_the_calibration(monkeypatch):
    calls = []
    monkeypatch.setattr(cal_mod, "cpu_precision", fixed_calibration("bf16", calls))
    enc = TransformerEncoder(device="cpu")
    assert enc.key.endswith("|precision=bf16") and enc.calibration.precision == "bf16"
    monkeypatch.setattr(cal_mod, "cpu_precision", fixed_calibration("fp32", calls))
    assert TransformerEncoder(device="cpu").key.endswith("|precision=fp32")
    assert len(calls) == 2


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_an_explicit_precision_is_never_calibrated(monkeypatch, precision):
    monkeypatch.setattr(cal_mod, "cpu_precision", fixed_calibration("fp32", calls := []))
    monkeypatch.setattr("causal_router.features.models.torch_has_onednn_bf16", lambda: True)
    enc = TransformerEncoder(device="cpu", precision=precision)
    assert enc.key.endswith(f"|precision={precision}")
    assert calls == [] and enc.calibration is None


def test_real_calibration_of_the_default_encoder(fp32_encoder, tmp_path):
    """The real measure function on this machine: a valid choice, stored, models reused."""
    enc = TransformerEncoder(device="cpu")
    from causal_router.features.hardware import torch_has_onednn_bf16

    cal = cpu_precision(enc.base_key, enc._calibration_measure, torch_has_onednn_bf16, tmp_path, (1,))
    assert cal.precision in ("fp32", "bf16")
    if torch_has_onednn_bf16():
        assert set(cal.seconds) == {"fp32", "bf16"} and cal.min_cosine >= 0.999
        assert set(enc._siblings) == {"fp32", "bf16"}
    else:
        assert cal.seconds == {} and "not available" in cal.reason
    assert cal.n_texts == len(CALIBRATION_TEXTS)
    assert calibration_path(enc.base_key, machine_identity(), tmp_path).is_file()


def test_the_measure_function_encodes_and_its_model_is_reused(fp32_encoder):
    enc = TransformerEncoder(device="cpu")
    measure = enc._calibration_measure()
    seconds, X = measure("fp32", 1, CALIBRATION_TEXTS[:3])
    assert seconds > 0 and X.shape == (3, 384)
    np.testing.assert_allclose(X, fp32_encoder.encode(list(CALIBRATION_TEXTS[:3])), atol=1e-5)
    loaded = enc._siblings["fp32"]._model
    enc._precision = "fp32"  # as if the calibration had chosen fp32
    assert enc._load()[1] is loaded and enc._siblings == {}  # not loaded a second time


def test_a_moments_load_is_measured_again_not_stored_as_the_machine():
    # the record: fp32 5.0 s at 2 threads against 0.67 s at 1, while other jobs ran
    loaded = {"fp32": {1: 0.67, 2: 5.0}, "bf16": {1: 0.8, 2: 5.5}}
    idle = {"fp32": {1: 0.67, 2: 0.40}, "bf16": {1: 0.8, 2: 0.45}}
    rounds = iter([loaded] * 3 + [idle] * 10)  # the load passes before the retry
    current = {}

    def measure(precision, threads, texts):
        if (precision, threads) == ("fp32", 1):
            current["s"] = next(rounds)
        return current["s"][precision][threads], unit_rows(len(texts))

    seconds, _ = measure_all(measure, ("fp32", "bf16"), (1, 2), texts=["a"] * 4, rounds=3, budget_s=1e9)
    assert seconds["fp32"] == {"1": 0.67, "2": 0.40} and not cal_mod.contended(seconds)
    assert cal_mod.contended({"fp32": {"1": 0.67, "2": 5.0}})


def test_a_calibration_still_contended_is_stored_so_and_revalidated_later(tmp_path, monkeypatch):
    loaded = {"fp32": {1: 0.67, 2: 5.0}, "bf16": {1: 0.8, 2: 5.5}}
    calls = []
    first = cpu_precision(BASE, lambda: fake_measure(loaded, calls=calls), lambda: True, tmp_path, (1, 2))
    assert first.contended and "shared" in first.reason
    assert len(calls) == 4 * (cal_mod.ROUNDS + cal_mod.RETRY_ROUNDS)  # every retry spent
    path = calibration_path(BASE, machine_identity(), tmp_path)
    assert json.loads(path.read_text())["contended"] is True

    def boom():
        raise AssertionError("measured again")

    assert cpu_precision(BASE, boom, boom, tmp_path).contended  # within the hour: reused
    monkeypatch.setattr(cal_mod, "REVALIDATE_S", -1.0)  # an hour later
    idle = {"fp32": {1: 0.67, 2: 0.40}, "bf16": {1: 0.8, 2: 0.45}}
    again = cpu_precision(BASE, lambda: fake_measure(idle), lambda: True, tmp_path, (1, 2))
    assert not again.contended and again.seconds["fp32"]["2"] == 0.40
    assert json.loads(path.read_text())["contended"] is False


def test_a_file_of_the_format_before_the_check_is_measured_again(tmp_path):
    speeds = {"fp32": {1: 1.0, 2: 0.6}, "bf16": {1: 0.5, 2: 0.3}}
    cpu_precision(BASE, lambda: fake_measure(speeds), lambda: True, tmp_path, (1, 2))
    path = calibration_path(BASE, machine_identity(), tmp_path)
    old = json.loads(path.read_text())
    old["format"] = 1
    del old["contended"]
    path.write_text(json.dumps(old))
    calls = []
    cpu_precision(BASE, lambda: fake_measure(speeds, calls=calls), lambda: True, tmp_path, (1, 2))
    assert calls  # measured again
