"""``params.yaml``: the pipeline's parameters, one section per stage."""

from __future__ import annotations

from pathlib import Path

import yaml

DEFAULTS = {
    "data": {"dir": "data", "train": "data/train.parquet", "val": "data/val.parquet",
             "holdout": "data/holdout.parquet", "test": "data/test.parquet", "eval_set": "data/eval_set.parquet"},
    "artifacts": "artifacts",
    "validate": {"positivity_floor": 0.001, "warn": ["positivity_floor"], "models": None},
    "embed": {"encoder": None, "max_length": 256, "pooling": "mean", "device": "auto", "precision": "auto",
              "cache_dir": None, "shards": 1},
    "runner": "local",
    "crossfit": {"cv": 5, "propensity": "fitted", "clip": 0.1, "prices": None, "seed": 0},
    "train": {"lambdas": [0, 100, 500], "methods": None},
    "evaluate": {"lambdas": None},
    "promote": {"lambdas": None, "alpha": 0.05, "margin": 0.0, "overlap": 0.1, "rule": "estimate"},
}


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in (over or {}).items():
        out[k] = _merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def load_params(path="params.yaml") -> dict:
    """Parameters from ``path`` over :data:`DEFAULTS` (a missing file gives the defaults)."""
    p = Path(path)
    over = yaml.safe_load(p.read_text()) if p.exists() else {}
    params = _merge(DEFAULTS, over or {})
    for section in ("evaluate", "promote"):
        if not params[section].get("lambdas"):
            params[section]["lambdas"] = params["train"]["lambdas"]
    return params
