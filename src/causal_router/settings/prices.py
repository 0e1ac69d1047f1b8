"""Configuration files: price sheets (USD per million input and output tokens per model)."""

from __future__ import annotations

import math
from pathlib import Path

import yaml


def read_yaml(path: Path, missing: str, unreadable: str, error=None):
    """The YAML (or JSON) file at ``path``; a missing file is a ``MissingFileError(missing)``, one that does
    not parse an ``error`` (default ``UnreadableFileError``) of ``unreadable`` with ``{first}`` = the
    parser's first line."""
    from ..errors import MissingFileError, UnreadableFileError

    if not path.is_file():
        raise MissingFileError(missing)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        first = (str(err).strip().splitlines() or ["unreadable"])[0]
        raise (error or UnreadableFileError)(unreadable.format(first=first)) from None


def load_prices(path) -> dict[str, tuple[float, float]]:
    """Read a price sheet ``{model: {input: usd_per_m, output: usd_per_m}}`` (YAML or JSON).

    Returns ``{model: (input, output)}``; a malformed entry raises ValueError naming the model.
    """
    from ..errors import UnreadableFileError

    path = Path(path)
    raw = read_yaml(path, f"{str(path)!r}: no such price sheet",
                    f"{str(path)!r} is not a readable price sheet (YAML or JSON): {{first}}")
    if not isinstance(raw, dict):
        raise UnreadableFileError(f"{path}: a price sheet maps model names to {{input, output}} prices")
    raw = raw.get("prices", raw)
    out = {}
    for model, p in raw.items():
        try:
            out[str(model)] = (float(p["input"]), float(p.get("output", 0.0)))
        except (TypeError, KeyError, ValueError) as exc:
            raise UnreadableFileError(f"{path}: bad price entry for model {model!r}: {p!r}") from exc
        if not all(math.isfinite(x) and x >= 0 for x in out[str(model)]):
            raise UnreadableFileError(f"{path}: negative or non-finite price for model {model!r}")
    return out
