"""``precision="auto"``: measure fp32 against bf16 once per machine (and GPU) and encoder, keep the faster.

Whether bf16 beats fp32 depends on the CPU (AMX, AVX512-BF16, neither), the torch build and the
model, so it is measured rather than guessed from flags: the real encoder embeds a small fixed
batch (:data:`CALIBRATION_TEXTS`) in each available precision at 1 and at
:func:`~.hardware.physical_cores` threads (not the environment's, so that every process of a
machine measures the same), interleaved and repeated, best time kept. bf16 is chosen
only when its embeddings stay within cosine :data:`MIN_COSINE` of fp32 on every text of the batch
and it is at least :data:`BF16_MIN_GAIN` faster over the thread counts measured (fp32 is the
reference, so a near tie goes to it).

A moment's load must not become a property of the machine. More threads are never much slower than
one on an idle machine, so times that say so (:func:`contended`: the most threads over
:data:`CONTENDED_SLOWDOWN` x one thread's time, for either precision) mean other jobs shared the cores:
up to :data:`RETRY_ROUNDS` more rounds are measured (minima kept), and a result still contended is
stored with ``contended: true`` and measured again by the first use after :data:`REVALIDATE_S`
(a file of the earlier format, which did not check, is measured again once).

The result is a small JSON under ``<embedding cache>/calibration/``, named by a hash of the
machine (:func:`~.hardware.machine_identity`: CPU model, flags, cores, torch) and the encoder's
:attr:`~.encoder.TransformerEncoder.base_key`; later processes read it without importing torch.
Concurrent first uses (Dask workers) wait on a file lock, so every process of a machine agrees.
A GPU is calibrated the same way (:func:`gpu_precision`, one thread count, the GPU's model in
the identity). Explicit precisions never calibrate; threads are not calibrated (never fewer than a plain loop
would use, see :func:`~.hardware.auto_threads`), only measured for the record.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from .cache import default_cache_dir
from .hardware import machine_identity, machine_key, physical_cores

logger = logging.getLogger(__name__)

MIN_COSINE = 0.9999  # smallest cosine of a bf16 embedding to its fp32 one that counts as the same feature
BF16_MIN_GAIN = 0.05  # bf16 must save at least this fraction of fp32's time
TIME_BUDGET_S = 4.0  # after one round of measurements, further rounds only while under this
ROUNDS = 3
#: The most threads taking over this many times one thread's time means the cores were shared.
CONTENDED_SLOWDOWN = 1.25
#: Extra rounds measured while the times look contended.
RETRY_ROUNDS = 1
#: A calibration stored while contended is measured again by the first use after this many seconds.
REVALIDATE_S = 3600.0
FORMAT = 2
CALIBRATION_DIR_ENV = "CAUSAL_ROUTER_CALIBRATION_DIR"
# a fixed batch with the spread of lengths of real prompts (short questions to past the 256-token cap)
_BASE = [
    "What is the capital of Australia?",
    "Write a Python function that returns the n-th Fibonacci number using memoization.",
    "Explain the difference between a process and a thread to a first-year computer science student.",
    "Solve for x: 3x^2 - 12x + 9 = 0. Show each step and check both roots.",
    "Summarise the causes of the First World War in three bullet points, citing the main alliances.",
    "Which of these is a prime number? (A) 51 (B) 57 (C) 59 (D) 63",
    "Give me a SQL query that returns the ten customers with the highest total order value last year.",
    "Translate into French: 'The meeting has been moved to Thursday afternoon because of the strike.'",
]
CALIBRATION_TEXTS = tuple(_BASE + [" ".join(_BASE[i:] + _BASE[:i]) * (1 + i % 3) for i in range(8)])

# measure(precision, threads, texts) -> (seconds, vectors of shape (len(texts), dim))
Measure = Callable[[str, int, Sequence[str]], tuple[float, np.ndarray]]


@dataclass
class Calibration:
    """The outcome of one calibration, as stored in its JSON file.

    Attributes
    ----------
    precision : {"fp32", "bf16"}
        What ``precision="auto"`` uses on this machine for this encoder.
    reason : str
        Why, in words.
    seconds : dict of str to dict of str to float
        Best time per precision and thread count, e.g. ``{"fp32": {"1": 0.8, "2": 0.5}}``
        (empty when there was nothing to choose between).
    min_cosine : float or None
        Smallest cosine between bf16 and fp32 embeddings over the batch (None: bf16 not run).
    encoder : str
        The encoder's base key.
    machine : dict
        :func:`~.hardware.machine_identity` at calibration time.
    """

    precision: str
    reason: str
    seconds: dict = field(default_factory=dict)
    min_cosine: float | None = None
    encoder: str = ""
    machine: dict = field(default_factory=dict)
    n_texts: int = len(CALIBRATION_TEXTS)
    created: str = ""
    format: int = FORMAT
    contended: bool = False  # the times still showed shared cores after the retries (see the module)


def contended(seconds: dict) -> bool:
    """Whether ``{precision: {threads: seconds}}`` shows the most threads over :data:`CONTENDED_SLOWDOWN`
    x one thread's time for some precision: other jobs were sharing the cores."""
    for times in seconds.values():
        if "1" in times and len(times) > 1:
            most = max(times, key=int)
            if times[most] > CONTENDED_SLOWDOWN * times["1"]:
                return True
    return False


def choose(seconds: dict, min_cosine: float | None, min_cos: float = MIN_COSINE,
           min_gain: float = BF16_MIN_GAIN) -> tuple[str, str]:
    """Pick a precision from measured times.

    Parameters
    ----------
    seconds : dict
        ``{precision: {threads: seconds}}`` with ``"fp32"`` and optionally ``"bf16"``.
    min_cosine : float or None
        Smallest bf16-to-fp32 cosine over the batch.

    Returns
    -------
    (precision, reason)
    """
    bf16, fp32 = seconds.get("bf16"), seconds.get("fp32")
    if not bf16:
        return "fp32", "bf16 is not available on this device/torch build"
    if min_cosine is None or not np.isfinite(min_cosine) or min_cosine < min_cos:
        return "fp32", f"bf16 embeddings too far from fp32 (min cosine {min_cosine} < {min_cos})"
    common = sorted(set(bf16) & set(fp32 or {}))
    if not common:
        return "fp32", "no fp32 timing to compare bf16 with"
    t16, t32 = sum(bf16[k] for k in common), sum(fp32[k] for k in common)
    if t16 <= (1 - min_gain) * t32:
        return "bf16", f"bf16 {t32 / t16:.2f}x faster than fp32 (threads {', '.join(map(str, common))})"
    return "fp32", f"bf16 not faster than fp32 ({t32 / t16:.2f}x, threads {', '.join(map(str, common))})"


def calibration_dir(cache_dir: str | Path | None = None) -> Path:
    """``$CAUSAL_ROUTER_CALIBRATION_DIR``, else ``<cache_dir or the default embedding cache>/calibration``.

    Never the pipeline's versioned cache folder unless passed: the file is per machine.
    """
    if cache_dir is None and os.environ.get(CALIBRATION_DIR_ENV):
        return Path(os.environ[CALIBRATION_DIR_ENV]).expanduser()
    return Path(cache_dir if cache_dir is not None else default_cache_dir()) / "calibration"


def calibration_path(base_key: str, identity: dict | None = None, cache_dir: str | Path | None = None) -> Path:
    """The JSON file of one (machine, encoder) pair."""
    name = hashlib.sha256(f"{machine_key(identity)}\x00{base_key}".encode()).hexdigest()[:16]
    return calibration_dir(cache_dir) / f"{name}.json"


def load(path: Path, base_key: str, identity: dict) -> Calibration | None:
    """A stored calibration, or None when absent, unreadable or made for something else."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        cal = Calibration(**raw)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        logger.warning("ignoring unreadable calibration file %s (%s)", path, exc)
        return None
    if cal.format != FORMAT or cal.encoder != base_key or cal.machine != identity:
        return None  # made for another encoder, machine or file format
    if cal.precision not in ("fp32", "bf16"):
        return None
    if cal.contended and _age_s(cal.created) > REVALIDATE_S:
        return None  # measured under load: measure again
    return cal


def _age_s(created: str) -> float:
    try:
        return (datetime.now(UTC) - datetime.fromisoformat(created)).total_seconds()
    except (TypeError, ValueError):
        return float("inf")


def _save(path: Path, cal: Calibration) -> None:
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        tmp.write_text(json.dumps(asdict(cal), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def measure_all(measure: Measure, precisions: Sequence[str], thread_counts: Sequence[int],
                texts: Sequence[str] = CALIBRATION_TEXTS, rounds: int = ROUNDS,
                budget_s: float = TIME_BUDGET_S, retries: int = RETRY_ROUNDS) -> tuple[dict, float | None]:
    """Time every (precision, threads) pair, interleaved, best of up to ``rounds`` (and up to ``retries``
    more while the times look :func:`contended`).

    Returns
    -------
    seconds : dict
        ``{precision: {str(threads): best seconds}}``.
    min_cosine : float or None
        Smallest cosine between the bf16 and fp32 vectors of the same texts (None without bf16).
    """
    start = time.perf_counter()
    seconds: dict = {p: {} for p in precisions}
    vectors: dict = {}
    for r in range(rounds + retries):
        if r >= rounds and not contended(seconds):
            break
        if 0 < r < rounds and time.perf_counter() - start > budget_s:
            continue  # over the time budget: only a contended result earns more rounds
        for threads in thread_counts:
            for p in precisions:
                t, X = measure(p, threads, texts)
                key = str(threads)
                seconds[p][key] = min(t, seconds[p].get(key, float("inf")))
                vectors.setdefault(p, X)
    min_cos = None
    if "bf16" in vectors and "fp32" in vectors:
        a, b = np.asarray(vectors["bf16"], dtype=np.float64), np.asarray(vectors["fp32"], dtype=np.float64)
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        min_cos = float(np.nan_to_num(cos, nan=-1.0).min())
    return seconds, min_cos


def calibrate(base_key: str, measure: Measure | None, bf16_available: bool, thread_counts: Sequence[int] | None = None,
              identity: dict | None = None) -> Calibration:
    """Measure and choose (nothing is stored; see :func:`cpu_precision`)."""
    identity = machine_identity() if identity is None else identity
    now = datetime.now(UTC).isoformat(timespec="seconds")
    if not bf16_available:
        precision, reason = choose({"fp32": {}}, None)
        return Calibration(precision, reason, encoder=base_key, machine=identity, created=now)
    counts = sorted(set(thread_counts or (1, physical_cores())))
    seconds, min_cos = measure_all(measure, ("fp32", "bf16"), counts)
    precision, reason = choose(seconds, min_cos)
    busy = contended(seconds)
    if busy:
        reason += f"; measured while the cores were shared (measured again after {REVALIDATE_S:.0f} s)"
    return Calibration(precision, reason, seconds, min_cos, base_key, identity, created=now, contended=busy)


def cpu_precision(base_key: str, make_measure: Callable[[], Measure], bf16_available: Callable[[], bool],
                  cache_dir: str | Path | None = None, thread_counts: Sequence[int] | None = None) -> Calibration:
    """The stored calibration of this machine and encoder, measured first if there is none.

    Parameters
    ----------
    base_key : str
        The encoder's key without precision.
    make_measure : callable
        Zero-argument factory of the :data:`Measure` function, called only when a measurement
        is needed (so that no model is loaded when the file exists, or bf16 is unavailable).
    bf16_available : callable
        Zero-argument check (imports torch), called only when measuring.
    cache_dir : str or Path or None
        Embedding cache root (None: the default one).
    """
    return _stored(base_key, make_measure, bf16_available, machine_identity(), cache_dir, thread_counts)


def gpu_precision(base_key: str, make_measure: Callable[[], Measure], device: str,
                  cache_dir: str | Path | None = None) -> Calibration:
    """:func:`cpu_precision` for a CUDA ``device``: fp32 against bf16 on that GPU, stored per GPU
    model (and machine). Not assumed: a small encoder such as all-MiniLM-L6-v2 is bound by launch
    and tokenising overheads on a large GPU, where fp32 ran faster than bf16 and exactly
    (``benchmarks/results/embed_gpu/h200.md``); a large model gains from bf16."""
    import torch

    index = torch.device(device).index
    index = torch.cuda.current_device() if index is None else index
    identity = {**machine_identity(), "gpu": torch.cuda.get_device_name(index),
                "cuda": str(torch.version.cuda)}
    return _stored(base_key, make_measure, torch.cuda.is_bf16_supported, identity, cache_dir, (physical_cores(),))


def _stored(base_key: str, make_measure: Callable[[], Measure], bf16_available: Callable[[], bool],
            identity: dict, cache_dir: str | Path | None, thread_counts: Sequence[int] | None) -> Calibration:
    from filelock import FileLock, Timeout

    path = calibration_path(base_key, identity, cache_dir)
    cal = load(path, base_key, identity)
    if cal is not None:
        return cal
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path.with_suffix(".lock")), timeout=300)
        lock.acquire()
    except (OSError, Timeout) as exc:  # read-only or stuck cache folder: measure, don't store
        logger.warning("cannot lock %s (%s): calibrating without storing the result", path, exc)
        lock = None
    try:
        cal = load(path, base_key, identity) if lock is not None else None  # another process finished first
        if cal is None:
            available = bf16_available()
            cal = calibrate(base_key, make_measure() if available else None, available, thread_counts, identity)
            logger.info("calibrated CPU precision for %s: %s (%s)", base_key, cal.precision, cal.reason)
            if lock is not None:
                try:
                    _save(path, cal)
                except OSError as exc:
                    logger.warning("cannot write %s (%s)", path, exc)
    finally:
        if lock is not None:
            lock.release()
    return cal
