"""The one place an encoder is chosen and checked: ``resolve_encoder`` builds it from a spec, and
``check_features`` refuses one whose features a router was not trained on."""

from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import CausalRouterError
from .embed import default_encoder
from .encoder import TransformerEncoder, features_compatible

__all__ = ["STATIC_SPEC", "EncoderMismatchError", "check_features", "encoder_for", "load_callable",
           "resolve_encoder"]

STATIC_SPEC = "static"  # params.yaml ``embed.encoder: static``: the fast encoder (:mod:`.static`)


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
                    device: str = "auto", precision: str = "auto", threads: int | None = None,
                    cache_dir: str | Path | None = None):
    """The encoder named by ``spec``: None (the shared default, all-MiniLM-L6-v2), ``"static"`` or
    ``"static:DIMS"`` (the static encoder distilled from it, :class:`~.static.StaticEncoder`, one per
    process and dimension; write ``./static`` for a folder of that name), a local Hugging Face
    folder, or ``module:callable``. Options other than the defaults build a new
    :class:`TransformerEncoder`; the default one is loaded once per process. ``cache_dir``: the
    embedding cache whose ``static/`` folder holds the static model (default: the embedding cache's)."""
    if spec == STATIC_SPEC or (spec and spec.startswith(STATIC_SPEC + ":")):
        return _static(spec, max_length, pooling, device, precision, cache_dir)
    if spec and ":" in spec and not _is_path(spec):
        return load_callable(spec)
    if spec is None and (max_length, pooling, device, precision, threads) == (256, "mean", "auto", "auto", None):
        return default_encoder()
    return TransformerEncoder(spec, max_length, device=device, pooling=pooling, precision=precision,
                              threads=threads)


def _static(spec: str, max_length: int, pooling: str, device: str, precision: str, cache_dir=None):
    """The shared static encoder of ``static[:DIMS]``; the transformer's options do not apply to it
    (it runs on the CPU in fp32 arithmetic, threads are the tokenizer's own), so only their
    defaults (or the values it has anyway) are accepted."""
    from .static import DEFAULT_PCA_DIMS, static_encoder

    _, sep, dims = spec.partition(":")
    if sep and not (dims.isdigit() and int(dims) > 0):
        raise ValueError(f"encoder {spec!r}: expected 'static' or 'static:DIMS' with DIMS a positive integer")
    if (max_length, pooling) != (256, "mean") or device not in ("auto", "cpu") or precision not in ("auto", "fp32"):
        raise ValueError(f"encoder {spec!r} takes no max_length, pooling, device or precision "
                         f"(got max_length={max_length}, pooling={pooling!r}, device={device!r}, "
                         f"precision={precision!r})")
    return static_encoder(int(dims) if dims else DEFAULT_PCA_DIMS, cache_dir)


def encoder_for(trained_key: str | None, path: str | None = None, cache_dir: str | Path | None = None):
    """The encoder a router trained on features ``trained_key`` routes with, as the router recorded it:
    its encoder folder when one was recorded, the static encoder its key names (rebuilt the same way on
    any machine: the key's hash checks it), else the default encoder."""
    if path:
        return resolve_encoder(path)
    dims = dims_of_key(trained_key or "")
    if dims is not None:
        return resolve_encoder(f"{STATIC_SPEC}:{dims}", cache_dir=cache_dir)
    return default_encoder()


def dims_of_key(key: str) -> int | None:
    """The dimensions a static encoder's key names (``static:<source>:pca<dims>...``), else None."""
    parts = key.split(":")
    if len(parts) >= 4 and parts[0] == STATIC_SPEC and parts[2].startswith("pca") and parts[2][3:].isdigit():
        return int(parts[2][3:])
    return None


def _is_path(spec: str) -> bool:
    # a folder whose name holds a colon is a path, not module:callable
    return Path(spec).exists()


def check_features(trained_key: str | None, encoder, what: str, hint: str = "pass --encoder") -> None:
    """Raise :class:`EncoderMismatchError` when ``what`` (a router set, a registered version) was trained
    on features of another encoder than ``encoder`` (keys equal up to precision are compatible)."""
    if trained_key and not features_compatible(trained_key, encoder.key):
        raise EncoderMismatchError(f"{what} was trained on features of encoder {trained_key!r}, "
                                   f"not {encoder.key!r}: {hint}")
