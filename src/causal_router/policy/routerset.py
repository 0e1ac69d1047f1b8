"""A trained set of routers on disk: ``manifest.json`` plus ``routers.joblib`` in one directory.

``routers.joblib`` is a pickle: loading it runs whatever code it names. :meth:`RouterSet.save` records
its sha256 in the manifest (``payload_sha256``), and :meth:`RouterSet.load` checks it before unpickling:
a payload that does not match is refused (:class:`UntrustedArtifactError`), and so is a folder without
a recorded hash when the caller asks for ``trust=False`` (``causal-router route`` / ``evaluate`` on a
folder, unless ``--trust``). The hash guards against a swapped or damaged payload, not against whoever
can rewrite the manifest too: load router folders only from places you control (docs/reliability.md).
"""

from __future__ import annotations

import json
import math
import pickle
import sys
from dataclasses import dataclass, field
from pathlib import Path

import joblib

from ..hashing import file_sha256

MANIFEST = "manifest.json"
PAYLOAD = "routers.joblib"
#: Written with :class:`_CanonicalPickler` (a plain pickle, which ``joblib.load`` reads as well as the
#: joblib files of earlier versions).
#: Wall times differ run to run: kept beside the manifest, which then depends only on what was
#: trained (so DVC's hash of a set is reproducible; .dvcignore leaves this file out).
TIMINGS = "timings.json"
TIMING_KEYS = ("train_seconds", "seconds", "total_seconds")
#: How far past the largest trained lambda a request may go: the interval router clamps beyond its
#: grid, so a lambda many times the grid's top is almost surely a unit mistake.
LAMBDA_SLACK = 10.0


def _tensor(array, dtype: str, parameter: bool, requires_grad: bool):
    """A torch tensor (or Parameter) from the array :class:`_CanonicalPickler` wrote."""
    import torch

    t = torch.from_numpy(array.copy()).to(getattr(torch, dtype.removeprefix("torch.")))
    return torch.nn.Parameter(t, requires_grad) if parameter else t.requires_grad_(requires_grad)


class UntrustedArtifactError(ValueError):
    """A router payload whose recorded sha256 does not match, or that has none and was not trusted."""


class _CanonicalPickler(pickle.Pickler):
    """A pickler whose bytes depend only on the values pickled, so that DVC's hash of a trained set is
    the same from one run (and one clean clone) to the next.

    Torch's own reduction of a tensor records its storage's memory address, and the memo makes the
    bytes depend on which equal strings happen to be one object (an estimator built, cloned or
    unpickled from a task result). Here tensors go as numpy arrays and the memo is off (``fast``:
    shared objects are written once per reference; router sets hold no cycles).
    """

    def __init__(self, file, protocol=None):
        super().__init__(file, protocol)
        self.fast = True

    def reducer_override(self, obj):
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(obj, torch.Tensor):
            t = obj.detach().cpu()
            array = (t.float() if t.dtype == torch.bfloat16 else t).numpy()
            return _tensor, (array, str(obj.dtype), isinstance(obj, torch.nn.Parameter), obj.requires_grad)
        return NotImplemented


@dataclass
class RouterSet:
    """Fitted routers sharing a model list, a lambda grid and an encoder.

    Attributes
    ----------
    models : list of str (K,)
    lambdas : list of float
    routers : dict name -> fitted router
    encoder_key : str    identifies the features the routers expect
    meta : dict          training parameters, timings, clipping report
    """

    models: list
    lambdas: list
    routers: dict
    encoder_key: str = ""
    meta: dict = field(default_factory=dict)

    def save(self, directory) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        with open(d / PAYLOAD, "wb") as f:
            _CanonicalPickler(f, protocol=5).dump(self.routers)
        meta = {k: v for k, v in self.meta.items() if k not in TIMING_KEYS}
        manifest = {"models": self.models, "lambdas": self.lambdas, "methods": list(self.routers),
                    "encoder_key": self.encoder_key, "meta": meta, "payload_sha256": file_sha256(d / PAYLOAD)}
        (d / MANIFEST).write_text(json.dumps(manifest, indent=2, default=float))
        timings = {k: v for k, v in self.meta.items() if k in TIMING_KEYS}
        (d / TIMINGS).write_text(json.dumps(timings, indent=2, default=float))
        return d

    @classmethod
    def load(cls, directory, trust: bool | None = None) -> RouterSet:
        """Load a set; the payload's recorded sha256 is checked before unpickling.

        ``trust``: None (the pipeline's and the registry's own folders) loads a set without a recorded
        hash; False refuses it; True also loads a payload whose hash does not match (with a warning)."""
        d = Path(directory)
        if not (d / MANIFEST).exists() or not (d / PAYLOAD).exists():
            raise FileNotFoundError(f"{d} is not a trained router set (expected {MANIFEST} and {PAYLOAD})")
        manifest = json.loads((d / MANIFEST).read_text())
        recorded = manifest.get("payload_sha256")
        if recorded is None and trust is False:
            raise UntrustedArtifactError(
                f"{d / PAYLOAD} has no recorded sha256 in {MANIFEST}: it is a pickle, and loading it runs whatever "
                "code it holds; load router sets from the registry (models:/...) or pass --trust for a folder "
                "you made yourself")
        if recorded is not None and file_sha256(d / PAYLOAD) != recorded:
            if not trust:
                raise UntrustedArtifactError(
                    f"{d / PAYLOAD} does not match the sha256 recorded in {MANIFEST}: it was changed after it was "
                    "saved; not loaded (a pickle runs whatever code it holds; --trust loads it anyway)")
            import logging

            logging.getLogger(__name__).warning("%s does not match its recorded sha256: loaded (trusted)", d / PAYLOAD)
        meta = manifest.get("meta", {})
        if (d / TIMINGS).exists():
            meta.update(json.loads((d / TIMINGS).read_text()))
        return cls(manifest["models"], manifest["lambdas"], joblib.load(d / PAYLOAD),
                   manifest.get("encoder_key", ""), meta)

    def lambda_range(self, method: str | None = None) -> tuple[float, float]:
        """The lambdas ``method`` answers: the grid's interval for the interval router (it clamps
        beyond it), else ``[0, LAMBDA_SLACK * max(grid)]`` (no upper bound for a grid of 0)."""
        from .regret import RMIntervalRouter

        grid = sorted(float(x) for x in self.lambdas) or [0.0]
        if isinstance(self.routers.get(method), RMIntervalRouter):
            return grid[0], grid[-1]
        return 0.0, (LAMBDA_SLACK * grid[-1] if grid[-1] > 0 else math.inf)

    def check_lambda(self, lam, method: str | None = None) -> float:
        """``lam`` as a float if it lies in :meth:`lambda_range`; else InvalidParameterError naming the range.

        The one place lambda is range-checked: ``route``, ``evaluate`` and the pyfunc call it."""
        from ..errors import InvalidParameterError

        low, high = self.lambda_range(method)
        try:
            value = float(lam)
        except (TypeError, ValueError):
            value = math.nan
        if not (math.isfinite(value) and low <= value <= high):
            grid = ", ".join(format(float(x), "g") for x in self.lambdas)
            raise InvalidParameterError(
                f"lam must lie in the allowed range [{low:g}, {high:g}] (trained grid: {grid}), got {lam!r}: pass a "
                "finite, non-negative cost preference")
        return value

    def get(self, method: str):
        if method not in self.routers:
            raise KeyError(f"no router {method!r} in this set; it has: {', '.join(self.routers)}")
        return self.routers[method]
