"""Configuration files: price sheets (USD per million input and output tokens per model)."""

from __future__ import annotations

from pathlib import Path

import yaml


def load_prices(path) -> dict[str, tuple[float, float]]:
    """Read a price sheet ``{model: {input: usd_per_m, output: usd_per_m}}`` (YAML or JSON).

    Returns ``{model: (input, output)}``; a malformed entry raises ValueError naming the model.
    """
    raw = yaml.safe_load(Path(path).read_text())
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a price sheet maps model names to {{input, output}} prices")
    raw = raw.get("prices", raw)
    out = {}
    for model, p in raw.items():
        try:
            out[str(model)] = (float(p["input"]), float(p.get("output", 0.0)))
        except (TypeError, KeyError, ValueError) as exc:
            raise ValueError(f"{path}: bad price entry for model {model!r}: {p!r}") from exc
        if min(out[str(model)]) < 0:
            raise ValueError(f"{path}: negative price for model {model!r}")
    return out
