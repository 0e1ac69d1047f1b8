"""The five pipeline stages (validate, embed, cross-fit, train, evaluate) as file-to-file functions.

``dvc.yaml`` runs them through the ``causal-router`` CLI; the Prefect flows call them as tasks.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

LOG_SPLITS = ("train", "val", "holdout")


def validate_stage(inputs: dict, out_dir, models=None, positivity_floor: float = 1e-3,
                   warn=("positivity_floor",)) -> dict:
    """Great Expectations checks of each log in ``inputs`` ({split: path}).

    Writes ``out_dir/<split>/{valid,quarantine}.parquet`` and ``report.json``; raises
    DataQualityError (naming what failed) on frame-level failures. Returns {split: valid path}.
    """
    from ..validation.gx_suite import run_data_checks

    out = {}
    for split, path in inputs.items():
        if path is None or not Path(path).exists():
            continue
        d = Path(out_dir) / split
        valid, report = run_data_checks(path, d, models=models, positivity_floor=positivity_floor, warn=tuple(warn))
        n_bad = report.n_rows - len(valid)
        if n_bad:
            log.warning("%s: %d row(s) quarantined to %s", split, n_bad, d / "quarantine.parquet")
        out[split] = str(d / "valid.parquet")
    return out


def embed_stage(inputs: dict, out_dir, cache_dir=None, encoder=None, max_length: int = 256, pooling: str = "mean",
                device: str = "auto", precision: str = "auto", shards: int = 1) -> dict:
    """Embeds the prompts of each file in ``inputs`` ({name: path}) through the cache.

    Writes ``out_dir/<name>.npy`` (n, d) float32 and ``out_dir/<name>.ids.json`` (the prompt_ids,
    one per row, in the file's order). Returns {name: npy path}. With ``shards > 1`` inside a
    Prefect flow, each file's prompts are embedded as that many tasks on the flow's task runner
    (Dask workers share the cache folder).
    """
    from ..data.loaders import read_frame
    from ..features.embed import default_encoder, embed_with_stats
    from ..features.encoder import TransformerEncoder

    defaults = (encoder, max_length, pooling, device, precision) == (None, 256, "mean", "auto", "auto")
    enc = default_encoder() if defaults else TransformerEncoder(encoder, max_length, device=device, pooling=pooling,
                                                                precision=precision)
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    out, total_new = {}, 0
    for name, path in inputs.items():
        if path is None or not Path(path).exists():
            continue
        df = read_frame(path).drop_duplicates("prompt_id")
        texts = df["prompt"].astype(str).tolist()
        if shards > 1:
            from .runners import embed_shards

            X = embed_shards(texts, shards, cache_dir=cache_dir, encoder=enc)
        else:
            X, n_new = embed_with_stats(texts, cache_dir=cache_dir, encoder=enc)
            total_new += n_new
        np.save(d / f"{name}.npy", X)
        (d / f"{name}.ids.json").write_text(json.dumps(df["prompt_id"].astype(str).tolist()))
        out[name] = str(d / f"{name}.npy")
    (d / "encoder.json").write_text(json.dumps({"encoder_key": enc.key, "dim": enc.dim}))
    log.info("embedded %d new prompt(s)", total_new)
    return out


def load_embeddings(emb_dir, name: str, prompt_ids) -> np.ndarray:
    """Rows of ``<name>.npy`` for ``prompt_ids`` (m,), shape (m, d); unknown ids raise."""
    d = Path(emb_dir)
    ids = json.loads((d / f"{name}.ids.json").read_text())
    pos = {p: i for i, p in enumerate(ids)}
    missing = [p for p in prompt_ids if str(p) not in pos]
    if missing:
        raise KeyError(f"{d}/{name}: no embedding for {len(missing)} prompt(s), e.g. {missing[:3]}: rerun embed")
    return np.load(d / f"{name}.npy")[[pos[str(p)] for p in prompt_ids]]


def encoder_key(emb_dir) -> str:
    return json.loads((Path(emb_dir) / "encoder.json").read_text())["encoder_key"]


def crossfit_stage(train_path, val_path, emb_dir, out_dir, cv: int = 5, propensity: str = "fitted",
                   clip: float = 0.1, prices=None, seed: int = 0, models=None, fold_map=None) -> Path:
    """Cross-fits nuisances and builds DR utilities; writes ``routing_data.joblib`` and
    ``clip_report.json`` (the overlap/clipping report) under ``out_dir``; ``fold_map`` runs the
    folds (e.g. as Prefect tasks on a Dask cluster)."""
    from ..config import load_prices
    from ..data.loaders import load_logs
    from ..data.schema import tokens_per_char
    from ..policy.fit import build_routing_data

    train, val = load_logs(train_path), load_logs(val_path)
    price_sheet = load_prices(prices) if prices else None
    # the served models: configured, else the price sheet's, else those in the logs
    models = list(models or price_sheet or sorted(set(train["model"]) | set(val["model"])))
    X = load_embeddings(emb_dir, "train", train["prompt_id"])
    X_val = load_embeddings(emb_dir, "val", val["prompt_id"])
    start = time.perf_counter()
    data = build_routing_data(train, X, val, X_val, models, cv=cv, propensity=propensity, clip=clip,
                              prices=price_sheet, random_state=seed, fold_map=fold_map)
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    joblib.dump(data, d / "routing_data.joblib")
    meta = {"n_train": len(train), "n_val": len(val), "models": models, "cv": cv, "propensity": propensity,
            "clip": clip, "seed": seed, "seconds": time.perf_counter() - start,
            "tokens_per_char": tokens_per_char(train)}
    (d / "clip_report.json").write_text(json.dumps(data.clip_report.to_records(), indent=2))
    (d / "meta.json").write_text(json.dumps(meta, indent=2))
    return d


def train_stage(crossfit_dir, out_dir, lambdas, methods=None, emb_dir=None, params=None) -> Path:
    """Trains the routers from a cross-fit directory and saves a RouterSet in ``out_dir``."""
    from ..policy.fit import DEFAULT_METHODS, fit_routers
    from ..policy.routerset import RouterSet

    d = Path(crossfit_dir)
    data = joblib.load(d / "routing_data.joblib")
    meta = json.loads((d / "meta.json").read_text())
    start = time.perf_counter()
    routers, seconds = fit_routers(data, lambdas, methods or DEFAULT_METHODS, params)
    meta.update(train_seconds=seconds, total_seconds=time.perf_counter() - start,
                clip_report=data.clip_report.to_records())
    key = encoder_key(emb_dir) if emb_dir else ""
    return RouterSet(list(data.models), [float(x) for x in lambdas], routers, key, meta).save(out_dir)


def evaluate_stage(routers_dir, table_path, emb_dir, out_path, lambdas, plot_path=None) -> list[dict]:
    """Evaluates a RouterSet on a full-feedback table: writes the records JSON (and a PNG)."""
    from ..data.loaders import load_full_feedback
    from ..evaluation.metrics import evaluate_routers
    from ..evaluation.plots import plot_utility
    from ..policy.routerset import RouterSet

    rs = RouterSet.load(routers_dir)
    ff = load_full_feedback(table_path).select_models(rs.models)
    X = load_embeddings(emb_dir, "test", ff.prompt_ids)
    records = evaluate_routers(rs.routers, ff, X, lambdas, ff.input_tokens)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(records, indent=2))
    from ..evaluation.metrics import aiq_table

    # DVC metrics want a mapping: mean utility and AIQ per method, utility per lambda
    table = summary_table(records)
    aiq = aiq_table(records)
    summary = {m: {"mean_utility": float(row["mean"]), "aiq": aiq[m],
                   **{f"utility@{lam:g}": float(row[lam]) for lam in table.columns if lam != "mean"}}
               for m, row in table.iterrows()}
    (out.parent / "summary.json").write_text(json.dumps(summary, indent=2))
    if plot_path:
        from ..evaluation.plots import plot_frontier

        Path(plot_path).parent.mkdir(parents=True, exist_ok=True)
        plot_utility(records, plot_path)
        plot_frontier(records, Path(plot_path).with_name("frontier.png"))
    return records


def summary_table(records: list[dict]) -> pd.DataFrame:
    """Utility per method (rows) and lambda (columns), plus the mean over lambdas."""
    df = pd.DataFrame(records).pivot_table(index="method", columns="lambda", values="utility")
    df["mean"] = df.mean(axis=1)
    return df.sort_values("mean", ascending=False)
