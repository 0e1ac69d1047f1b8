"""The five pipeline stages (validate, embed, cross-fit, train, evaluate) as file-to-file functions.

``dvc.yaml`` runs them through the ``causal-router`` CLI; the Prefect flows call them as tasks.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

from .layout import LOG_SPLITS, ArtifactLayout

log = logging.getLogger(__name__)

__all__ = ["LOG_SPLITS", "ArtifactLayout", "crossfit_stage", "embed_stage", "encoder_key", "evaluate_stage",
           "load_embeddings", "summary_table", "train_stage", "validate_stage"]


def validate_stage(inputs: dict, out_dir, models=None, positivity_floor: float = 1e-3,
                   warn=("positivity_floor",), prices=None, eval_set=None) -> dict:
    """Data-contract checks (and their Great Expectations suite) of each log in ``inputs`` ({split: path}).

    Writes ``out_dir/<split>/{valid,quarantine}.parquet`` and ``report.json``; bad rows are
    quarantined with a ``reason``; raises DataValidationError (naming what failed) on
    frame-level failures. ``models`` null with a price sheet (``prices``, a path): a logged model
    outside the sheet is quarantined, and a sheet model without rows is a warning, since
    training costs every model of the sheet. ``eval_set`` (params.yaml's ``data.eval_set``, a
    full-feedback table; absent or None: none) is checked against the full-feedback contract and
    copied to ``out_dir/eval_set/valid.parquet``. Returns {split: valid path}.
    """
    from ..validation.stage import run_data_checks

    require_all = models is not None
    if models is None and prices:
        from ..settings.prices import load_prices

        models = sorted(load_prices(prices))
    out = {}
    for split, path in inputs.items():
        if path is None or not Path(path).exists():
            continue
        d = Path(out_dir) / split
        valid, report = run_data_checks(path, d, models=models, positivity_floor=positivity_floor, warn=tuple(warn),
                                        require_all=require_all)
        for r in report.failed("warning"):
            log.warning("%s: %s", split, r["message"])
        n_bad = report.n_rows - len(valid)
        if n_bad:
            log.warning("%s: %d row(s) quarantined to %s", split, n_bad, d / "quarantine.parquet")
        out[split] = str(d / "valid.parquet")
    valid_eval = _validate_eval_set(eval_set, Path(out_dir) / "eval_set")
    if valid_eval:
        out["eval_set"] = valid_eval
    return out


def _validate_eval_set(path, d: Path) -> str | None:
    """The evaluation set checked (DataValidationError names what is wrong) and copied to
    ``d/valid.parquet``; None, leaving no earlier copy behind, when there is none."""
    import shutil

    from ..data.loaders import write_frame
    from ..validation.loaders import load_table

    if path is None or not Path(path).exists():
        shutil.rmtree(d, ignore_errors=True)
        return None
    return str(write_frame(load_table(path), d / "valid.parquet"))


def embed_stage(inputs: dict, out_dir, cache_dir=None, encoder=None, max_length: int = 256, pooling: str = "mean",
                device: str = "auto", precision: str = "auto", shards: int = 1) -> dict:
    """Embeds the prompts of each file in ``inputs`` ({name: path}) through the cache.

    Writes ``out_dir/<name>.npy`` (n, d) float32 and ``out_dir/<name>.ids.json`` (the prompt_ids,
    one per row, in the file's order). Returns {name: npy path}. With ``shards > 1`` inside a
    Prefect flow, each file's prompts are embedded as that many tasks on the flow's task runner
    (Dask workers share the cache folder).
    """
    from ..data.loaders import read_frame
    from ..features.embed import embed_with_stats
    from ..features.encoder import TransformerEncoder
    from ..features.encoders import resolve_encoder

    enc = resolve_encoder(encoder, max_length=max_length, pooling=pooling, device=device, precision=precision,
                          cache_dir=cache_dir)  # a static encoder's model lives in the (versioned) cache
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    out, total_new = {}, 0
    for name, path in inputs.items():
        if path is None or not Path(path).exists():
            continue
        df = read_frame(path).drop_duplicates("prompt_id")
        texts = df["prompt"].astype(str).tolist()
        if shards > 1 and isinstance(enc, TransformerEncoder):  # the static encoder needs no fan-out
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


def crossfit_stage(layout: ArtifactLayout, cv: int = 5, propensity: str = "fitted", clip: float | None = None,
                   prices=None, seed: int = 0, models=None, fold_map=None) -> Path:
    """Cross-fits nuisances on the validated train logs and builds DR utilities (train and val);
    writes ``routing_data.joblib``, ``meta.json`` and ``clip_report.json`` (the overlap/clipping
    report) under ``layout.crossfit``; ``fold_map`` runs the folds (e.g. as Prefect tasks on a Dask
    cluster). The arguments are params.yaml's ``crossfit`` section (``prices``: a price sheet path;
    ``clip`` None: the default floor). A validated evaluation set (``layout.valid("eval_set")``, see
    :func:`validate_stage`) joins the outcome models (``train --eval-set``)."""
    from ..causal.nuisances import NuisanceConfig
    from ..policy.training import fit_routing_data
    from ..settings.prices import load_prices
    from ..validation.loaders import load_full_feedback, load_logs

    train, val = load_logs(layout.valid("train")), load_logs(layout.valid("val"))
    X = load_embeddings(layout.embeddings, "train", train["prompt_id"])
    X_val = load_embeddings(layout.embeddings, "val", val["prompt_id"])
    ff = load_full_feedback(layout.valid("eval_set")) if layout.valid("eval_set").exists() else None
    X_eval = None if ff is None else load_embeddings(layout.embeddings, "eval_set", ff.prompt_ids)
    data, meta = fit_routing_data(train, X, val, X_val, models=models, prices=load_prices(prices) if prices else None,
                                  nuisances=NuisanceConfig.from_params(dict(cv=cv, propensity=propensity, seed=seed,
                                  **({} if clip is None else {"clip": clip}))), fold_map=fold_map, eval_set=ff,
                                  X_eval=X_eval)
    layout.crossfit.mkdir(parents=True, exist_ok=True)
    joblib.dump(data, layout.routing_data)
    layout.clip_report.write_text(json.dumps(data.clip_report.to_records(), indent=2))
    from ..policy.routerset import TIMING_KEYS

    layout.crossfit_meta.write_text(json.dumps({k: v for k, v in meta.items() if k not in TIMING_KEYS}, indent=2))
    layout.crossfit_timings.write_text(json.dumps({k: v for k, v in meta.items() if k in TIMING_KEYS}, indent=2))
    return layout.crossfit


def train_stage(layout: ArtifactLayout, lambdas, methods=None, params=None, endpoints: dict | None = None) -> Path:
    """Trains the routers from ``layout.crossfit`` and saves the RouterSet in ``layout.routers``
    (see :func:`causal_router.policy.training.train_routerset`; ``endpoints``: the flow's
    endpoint routers fitted per lambda)."""
    from ..policy.training import train_routerset

    data = joblib.load(layout.routing_data)
    meta = json.loads(layout.crossfit_meta.read_text())
    train_routerset(data, lambdas, methods, encoder_key=encoder_key(layout.embeddings), meta=meta, params=params,
                    endpoints=endpoints, out_dir=layout.routers)
    return layout.routers


def evaluate_stage(layout: ArtifactLayout, table_path, lambdas) -> list[dict]:
    """Evaluates the RouterSet on a full-feedback table: writes ``layout.metrics`` (the records),
    ``layout.summary`` (DVC metrics) and the utility and frontier plots."""
    from ..evaluation.metrics import aiq_table, evaluate_routers
    from ..evaluation.plots import plot_frontier, plot_utility
    from ..policy.routerset import RouterSet
    from ..validation.loaders import load_full_feedback

    rs = RouterSet.load(layout.routers)
    ff = load_full_feedback(table_path).select_models(rs.models)
    X = load_embeddings(layout.embeddings, "test", ff.prompt_ids)
    records = evaluate_routers(rs.routers, ff, X, [float(x) for x in lambdas], ff.input_tokens)
    layout.root.mkdir(parents=True, exist_ok=True)
    layout.metrics.write_text(json.dumps(records, indent=2))
    # DVC metrics want a mapping: mean utility and AIQ per method, utility per lambda. Kept in git
    # (dvc.yaml), so rounded to 4 decimals: CPU kinds differ in the embeddings' last bits, and the
    # summary must not change with them (metrics.json keeps every digit)
    table = summary_table(records)
    aiq = aiq_table(records)
    summary = {m: {"mean_utility": round(float(row["mean"]), 4), "aiq": round(float(aiq[m]), 4),
                   **{f"utility@{lam:g}": round(float(row[lam]), 4) for lam in table.columns if lam != "mean"}}
               for m, row in table.iterrows()}
    layout.summary.write_text(json.dumps(summary, indent=2))
    layout.plots.mkdir(parents=True, exist_ok=True)
    # plot data for `dvc plots` (dvc.yaml): utility per method (columns) against lambda (rows)
    table.drop(columns="mean").T.rename_axis("lambda").to_csv(layout.plots / "utility.csv")
    plot_utility(records, layout.utility_plot)
    plot_frontier(records, layout.frontier_plot)
    return records


def summary_table(records: list[dict]) -> pd.DataFrame:
    """Utility per method (rows) and lambda (columns), plus the mean over lambdas."""
    df = pd.DataFrame(records).pivot_table(index="method", columns="lambda", values="utility")
    df["mean"] = df.mean(axis=1)
    return df.sort_values("mean", ascending=False)
