"""What the benchmark scripts share: where the shared tables and the results live, loading a table
with its embeddings, and the report helpers of the paper protocol's quality goal.

The scripts run from the repository root as modules: ``python -m benchmarks.<script>``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

#: The repository root.
ROOT = Path(__file__).resolve().parents[1]
#: Environment variable naming the shared data folder.
DATA_ROOT_ENV = "CAUSAL_ROUTER_DATA_ROOT"
#: The shared full-feedback tables (``<name>/<name>.parquet``; only benchmarks read them): the
#: ``shared/data`` folder beside the checkout, unless ``CAUSAL_ROUTER_DATA_ROOT`` names another.
DATA_ROOT = Path(os.environ.get(DATA_ROOT_ENV) or ROOT.parent / "shared" / "data")
#: Committed results, one folder per study.
RESULTS = ROOT / "benchmarks" / "results"
#: The price sheets of the shared tables (``<name>.yaml``).
PRICES = ROOT / "configs" / "prices"

# lambda * (dearest model's mean cost) spans the same range on both tables: RouterBench's
# dearest (gpt-4) costs ~0.0050 USD per query, LLMRouter's (the 49-70B models) ~0.000068,
# so LLMRouter's grid is RouterBench's times 74.
GRIDS = {
    "routerbench_subset": [0, 50, 100, 200, 500, 1000],
    "llmrouter_9models": [0, 3700, 7400, 14800, 37000, 74000],
}
#: The loop studies' streams: dataset -> (lambda, rounds, batch).
LOOP_SETTINGS = {
    "routerbench_subset": (100.0, 8, 300),
    "llmrouter_9models": (7400.0, 9, 500),
}


def results_dir(study: str) -> Path:
    """The folder of one study's results (``benchmarks/results/<study>``)."""
    return RESULTS / study


def result_stem(study: str, tag: str = "") -> str:
    """A run's file stem in its study's folder: the tag, or the study's name for the untagged run."""
    return tag or study


def shown(path) -> str:
    """``path`` as a report names it: relative to the repository root when it lies inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def table_path(name: str, data_root=None) -> Path:
    """The parquet file of shared table ``name``."""
    return Path(DATA_ROOT if data_root is None else data_root) / name / f"{name}.parquet"


def load_table(name: str, data_root=None, encoder=None):
    """A shared table and its prompts' embeddings through the cache: (FullFeedback, X (n_prompts, d));
    ``encoder`` defaults to the studies' fp32 one."""
    from causal_router.features.embed import embed_texts
    from causal_router.features.encoder import TransformerEncoder
    from causal_router.validation.loaders import load_full_feedback

    ff = load_full_feedback(table_path(name, data_root))
    return ff, embed_texts(list(ff.prompts), encoder=encoder or TransformerEncoder(precision="fp32"))


def load_table_prices(name: str):
    """The price sheet of shared table ``name``."""
    from causal_router.settings.prices import load_prices

    return load_prices(PRICES / f"{name}.yaml")


def load_priced_table(name: str, data_root=None, encoder=None):
    """A shared table with its prices: (FullFeedback, X (n, d) float, prices (K, 2) per million tokens)."""
    from causal_router.policy.data import price_array

    ff, X = load_table(name, data_root, encoder)
    return ff, X.astype(float), price_array(load_table_prices(name), list(ff.models))


# --------------------------------------------------------------------------- the quality goal
#: The quality goal's baselines and the default routers it is checked for.
BASELINES = ["naive", "best-single", "dr-regress", "logging-policy"]
DEFAULTS = ["rm-softmax", "rm-interval"]
BIASED = ["cost-biased beta=3", "previous-router"]
TOLERANCE = 0.005


def policy_label(policy, strength) -> str:
    return policy if policy != "cost-biased" else f"cost-biased beta={strength:g}"


def per_seed(records: pd.DataFrame, dataset: str) -> pd.Series:
    """Mean utility by (policy label, method, lambda, seed) of one dataset's records."""
    df = records[records["dataset"] == dataset].copy()
    df["policy"] = [policy_label(p, s) for p, s in zip(df["policy"], df["requested_strength"].fillna(-1))]
    return df.groupby(["policy", "method", "lambda", "seed"])["utility"].mean()


def lambda_means(per: pd.Series) -> pd.DataFrame:
    """Mean and sem over seeds of each seed's mean over lambdas, by (policy label, method); ``per``
    as :func:`per_seed` gives it."""
    return per.groupby(["policy", "method", "seed"]).mean().groupby(["policy", "method"]).agg(["mean", "sem"])


def goal_target(lam_mean: pd.DataFrame, pol: str, m: str) -> tuple[str, float, float, float]:
    """(best baseline, its mean over lambdas, router ``m``'s uniform level, the goal's target) under logs
    ``pol``; ``lam_mean``: mean and sem over seeds of the mean over lambdas, by (policy label, method)."""
    best_name = max((b for b in BASELINES if (pol, b) in lam_mean.index), key=lambda b: lam_mean.loc[(pol, b), "mean"])
    best = float(lam_mean.loc[(pol, best_name), "mean"])
    uniform = float(lam_mean.loc[("uniform", m), "mean"]) if ("uniform", m) in lam_mean.index else float("nan")
    return best_name, best, uniform, best + (uniform - best) / 2 if pol in BIASED else best


def policy_target(lam_mean: pd.DataFrame, policy: str, m: str = "rm-softmax") -> float:
    """The goal's target for router ``m`` under logs spelt as on a command line (``cost-biased:3``)."""
    from .protocol import parse_policies

    kind, strength = parse_policies(policy)[0]
    return goal_target(lam_mean, policy_label(kind, -1 if strength is None else strength), m)[3]


def target_rows(df: pd.DataFrame, columns, lam_mean: pd.DataFrame) -> list[str]:
    """Markdown rows: per logging policy of ``df`` (spelt as on a command line), the mean of each of
    ``columns`` and the goal target (:func:`policy_target`)."""
    return [f"| {policy} | " + " | ".join(f"{g[c].mean():.4f}" for c in columns)
            + f" | {policy_target(lam_mean, policy):.4f} |" for policy, g in df.groupby("policy", sort=False)]


def worst_lambda_table(by_lam: pd.DataFrame, ref: str, columns) -> list[str]:
    """Markdown table: per policy, the smallest difference over lambdas of each of ``columns`` minus
    ``ref``; ``by_lam``: means over seeds, indexed by (policy, lambda)."""
    worst = by_lam.sub(by_lam[ref], axis=0).groupby("policy", sort=False).min()
    return (["| logs | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
            + [f"| {policy} | " + " | ".join(f"{row[c]:+.4f}" for c in columns) + " |"
               for policy, row in worst.iterrows()])


async def drive(url: str, items, concurrency: int, send) -> tuple[list[float], list, list[str], float]:
    """Load ``url`` with ``items`` from ``concurrency`` workers, each sending its next item with
    ``await send(client, item)`` -> (ok, value); returns (latencies of the ok ones in s, their values,
    the errors, wall seconds). Bounded: every item is sent once."""
    import asyncio
    import time

    import httpx

    queue: asyncio.Queue = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)
    lat, values, errors = [], [], []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        async def worker():
            while not queue.empty():
                item = queue.get_nowait()
                t0 = time.perf_counter()
                try:
                    ok, value = await send(client, item)
                except Exception as exc:  # noqa: BLE001 - counted, reported
                    ok, value = False, repr(exc)[:200]
                if ok:
                    lat.append(time.perf_counter() - t0)
                    values.append(value)
                else:
                    errors.append(str(value))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return lat, values, errors, wall
