"""What the machine offers the encoder: CPU model and flags, GPUs, devices and torch threads.

Nothing here imports torch unless it has to: a warm-cache run needs the encoder's key, not the
model, and importing torch takes 1-2 s.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import sys
import threading
from importlib import metadata
from pathlib import Path

from ..errors import DeviceUnavailableError

THREADS_ENV = "CAUSAL_ROUTER_TORCH_THREADS"
# flags that decide how fast bf16 and fp32 matmuls can be (recorded by the benchmark and part of
# the machine's identity for the calibration cache)
RELEVANT_FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2")


def _cpuinfo_field(name: str) -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.split(":", 1)[0].strip() == name:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_flags() -> set[str]:
    """CPU feature flags from ``/proc/cpuinfo`` (empty set where it cannot be read)."""
    flags = _cpuinfo_field("flags")
    return set(flags.split()) if flags else set()


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` reports."""
    return _cpuinfo_field("model name") or platform.processor() or platform.machine() or "unknown"


def relevant_cpu_flags() -> dict[str, bool]:
    """Which of :data:`RELEVANT_FLAGS` the CPU has."""
    flags = cpu_flags()
    return {f: f in flags for f in RELEVANT_FLAGS}


def usable_cores() -> int:
    """CPUs this process may run on (its affinity set where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "none"


def machine_identity() -> dict:
    """What makes a speed measurement valid on this machine only: CPU model, all of its flags
    (hashed), usable and physical cores, and the torch build. Nothing from the environment: a
    Dask worker (whose nanny sets ``OMP_NUM_THREADS=1``) and its client share one identity."""
    flags = " ".join(sorted(cpu_flags()))
    return {
        "cpu_model": cpu_model(),
        "cpu_flags_sha": hashlib.sha256(flags.encode()).hexdigest()[:16],
        "cpu_flags": relevant_cpu_flags(),
        "arch": platform.machine(),
        "cores": usable_cores(),
        "physical_cores": physical_cores(),
        "torch": _package_version("torch"),
    }


def machine_key(identity: dict | None = None) -> str:
    """Short stable hash of :func:`machine_identity`."""
    identity = machine_identity() if identity is None else identity
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def torch_has_onednn_bf16() -> bool:
    """Whether torch's oneDNN can run bf16 matmuls on this CPU (imports torch)."""
    import torch

    if not torch.backends.mkldnn.is_available():
        return False
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check()) if check is not None else True


def gpu_visible() -> bool:
    """False when no GPU device node exists (then torch cannot see one either)."""
    dev = Path("/dev")
    if not dev.is_dir():
        return True  # not Linux: ask torch
    return any(dev.glob("nvidia[0-9]*")) or (dev / "kfd").exists() or (dev / "dxg").exists()


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` -> ``"cuda"`` when torch sees a GPU, else ``"cpu"``; other values are checked.

    Raises
    ------
    ValueError
        Unknown device string.
    DeviceUnavailableError (a RuntimeError)
        A CUDA device was asked for and torch sees none.
    """
    if device == "auto" and "torch" not in sys.modules and not gpu_visible():
        return "cpu"  # without importing torch
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    kind = torch.device(device).type  # raises RuntimeError on nonsense strings
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda[:N], got {device!r}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailableError(f"device {device!r} asked for, but torch sees no CUDA GPU (use 'auto' or 'cpu')")
    return device


def _cpu_list(text: str) -> list[int]:
    """``"0-3,8"`` -> [0, 1, 2, 3, 8]."""
    out: list[int] = []
    for part in text.strip().split(","):
        if part:
            lo, _, hi = part.partition("-")
            out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def physical_cores() -> int:
    """Physical cores of the machine (cpuinfo's count, which ignores this process's affinity and
    its environment), else the logical CPUs. Reads ``/sys`` only, so torch need not be imported."""
    try:
        cpus = _cpu_list(Path("/sys/devices/system/cpu/online").read_text())
        cores = set()
        for cpu in cpus:
            topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
            cores.add(((topo / "physical_package_id").read_text().strip(), (topo / "core_id").read_text().strip()))
        if cores:
            return len(cores)
    except (OSError, ValueError):
        pass
    return os.cpu_count() or 1


def idle_threads() -> int:
    """The intra-op threads torch starts with, as a plain loop gets them on an idle machine.

    Mirrors torch's default: ``$OMP_NUM_THREADS``, then ``$MKL_NUM_THREADS``, else
    :func:`physical_cores`.
    """
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        raw = os.environ.get(var, "").strip()
        if raw.isdigit() and int(raw) > 0:
            return int(raw)
    return physical_cores()


def explicit_threads() -> int | None:
    """Threads asked for through ``$CAUSAL_ROUTER_TORCH_THREADS``, else None.

    Raises
    ------
    ValueError
        The variable is set to something other than a positive integer.
    """
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return None
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"${THREADS_ENV} must be a positive integer, got {raw!r}")
    return n


def in_dask_worker() -> bool:
    if "distributed" not in sys.modules:
        return False
    try:
        from distributed import get_worker

        get_worker()
        return True
    except (ValueError, ImportError):
        return False


def auto_threads() -> int:
    """Torch intra-op threads for CPU inference when none were asked for.

    ``$CAUSAL_ROUTER_TORCH_THREADS`` when set; one thread inside a Dask worker (parallelism
    comes from the workers there); otherwise :func:`idle_threads`, never fewer. The load average
    is deliberately ignored: right after another run it is high although the cores are free, and
    a plain loop would not be slowed down that way.
    """
    asked = explicit_threads()
    if asked is not None:
        return asked
    if in_dask_worker():
        return 1
    return idle_threads()


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Set torch's intra-op thread count inside the block (None: leave it), then restore it."""
    import torch

    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)




_BLAS_LOCK = threading.Lock()
_BLAS_STATE = {"depth": 0, "limiter": None}


@contextlib.contextmanager
def one_blas_thread():
    """BLAS (OpenBLAS, MKL) on one thread inside the block, then as before.

    Why: a BLAS call's result depends on its thread count (a ridge fit on float32 features differs
    by ~1e-8 between 1 and 2 threads), and the count varies with the machine, so fits whose outputs
    DVC versions run on one thread everywhere. OpenBLAS's limit is process-wide when set from the main
    thread but not reliably when set or restored from another, so blocks are counted: the first sets
    the limit, nested and concurrent ones keep it, and the last one out restores it. Entry points
    (the CLI, the flows) enter it in the main thread around the whole run, before any task thread
    starts (tests/features/test_hardware.py).
    """
    from threadpoolctl import threadpool_limits

    with _BLAS_LOCK:
        if _BLAS_STATE["depth"] == 0:
            _BLAS_STATE["limiter"] = threadpool_limits(limits=1, user_api="blas")
        _BLAS_STATE["depth"] += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_STATE["depth"] -= 1
            if _BLAS_STATE["depth"] == 0:
                _BLAS_STATE.pop("limiter").restore_original_limits()
                _BLAS_STATE["limiter"] = None


def attention_kernels(device: str):
    """On CUDA, attention off cuDNN's SDPA backend: it builds a plan for every new batch shape
    (first pass over 20,000 texts 3.9x slower in bf16 on an H200) and its results moved with
    the batch (6e-4); flash, memory-efficient and math kernels remain. Elsewhere: as torch picks."""
    import torch

    if torch.device(device).type != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


def autocast(device: str, precision: str, fast_bf16) -> contextlib.AbstractContextManager:
    """Half precision on CUDA, CPU bf16 through torch.autocast when the fast rewrite is off
    (``fast_bf16`` None), else nothing (fp32, or CPU bf16 through prepare_cpu_bf16)."""
    import torch

    if torch.device(device).type == "cuda" and precision in ("bf16", "fp16"):
        return torch.autocast("cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
    if precision == "bf16" and fast_bf16 is None:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()
