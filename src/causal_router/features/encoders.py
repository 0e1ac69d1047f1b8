"""The one place an encoder is chosen and checked: ``resolve_encoder`` builds it from a spec, and
``check_features`` refuses one whose features a router was not trained on."""

from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import CausalRouterError
from .embed import default_encoder
from .encoder import TransformerEncoder, features_compatible

__all__ = ["EncoderMismatchError", "check_features", "load_callable", "resolve_encoder"]


class EncoderMismatchError(CausalRouterError, ValueError):
    """A router asked to route on features of another encoder than the one it was trained on."""


def load_callable(spec: str):
    """The encoder built by ``module:callable`` (an object with ``encode(texts) -> (n, d)`` and ``key``)."""
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise ValueError(f"encoder must be module:callable, got {spec!r}")
    try:
        return getattr(importlib.import_module(module), attr)()
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot load encoder {spec!r}: {err}") from None


def resolve_encoder(spec: str | None = None, *, max_length: int = 256, pooling: str = "mean",
                    device: str = "auto", precision: str = "auto", threads: int | None = None):
    """The encoder named by ``spec``: None (the shared default, all-MiniLM-L6-v2), a local Hugging Face
    folder, or ``module:callable``. Options other than the defaults build a new
    :class:`TransformerEncoder`; the default one is loaded once per process."""
    if spec and ":" in spec and not _is_path(spec):
        return load_callable(spec)
    if spec is None and (max_length, pooling, device, precision, threads) == (256, "mean", "auto", "auto", None):
        return default_encoder()
    return TransformerEncoder(spec, max_length, device=device, pooling=pooling, precision=precision,
                              threads=threads)


def _is_path(spec: str) -> bool:
    # a folder whose name holds a colon is a path, not module:callable
    return Path(spec).exists()


def check_features(trained_key: str | None, encoder, what: str, hint: str = "pass --encoder") -> None:
    """Raise :class:`EncoderMismatchError` when ``what`` (a router set, a registered version) was trained
    on features of another encoder than ``encoder`` (keys equal up to precision are compatible)."""
    if trained_key and not features_compatible(trained_key, encoder.key):
        raise EncoderMismatchError(f"{what} was trained on features of encoder {trained_key!r}, "
                                   f"not {encoder.key!r}: {hint}")
