"""A pessimistic direct method: does distrusting thin evidence help under biased logs?

``naive`` (the direct method every RM head starts from and falls back to) routes each prompt to
``argmax_t mu_t(x) - lambda * c_t(x)``, with ``mu`` the pooled quality ridge
(:class:`~causal_router.causal.outcome.PooledRidge`). Where the logs hold few rows of model ``t`` near
``x``, ``mu_t(x)`` is an extrapolation. The pessimistic direct method subtracts ``kappa`` posterior
standard deviations of that prediction (the ridge read as a Bayesian linear model: prior
``N(0, s^2 / alpha)`` on the centred design's weights, ``s^2`` the residual variance), the
lower-confidence-bound rule of offline bandits (Jin, Yang and Wang 2021; Rashidinejad et al. 2021):

    argmax_t  mu_t(x) - kappa * sd_t(x) - lambda * c_t(x)

Whether that helps depends on why the logs are thin where they are. A logger that avoided a model
because it is bad there (a previous router) makes pessimism right; a logger that avoided it because it
is expensive (cost-biased logs: the rarely logged models are the best ones) makes it wrong. This
script measures both on the study's simulated logs and test prompts, against the quality goal's
target from ``benchmarks/results/paper_protocol/paper_protocol.csv``.

Run from the repository root (embeddings from the cache, fp32)::

    python -m benchmarks.pessimistic_dm --datasets routerbench_subset,llmrouter_9models

Results: ``benchmarks/results/pessimistic_dm/pessimistic_dm.csv`` (one row per dataset, logs, seed, lambda) and
``pessimistic_dm.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import threadpoolctl

from causal_router.features.encoder import TransformerEncoder
from causal_router.features.hardware import cpu_model
from causal_router.policy.data import build_routing_data, log_arrays

from .common import DATA_ROOT, GRIDS, lambda_means, load_table, per_seed, results_dir, target_rows, worst_lambda_table
from .protocol import parse_policies, simulated_split

RESULTS = results_dir("pessimistic_dm")
KAPPAS = (0.5, 1.0, 2.0, 4.0)


def posterior_sd(model, X_fit, t_fit, y_fit, X) -> np.ndarray:
    """Posterior standard deviation (n, K) of a fitted PooledRidge's prediction for every model.

    ``model`` was fitted on ``X_fit`` (m, d), ``t_fit`` (m,), ``y_fit`` (m,); ``X`` (n, d). A design row
    for model t is non-zero only on the shared weights, t's offset and t's deviations, so each
    model's quadratic form needs only that block of the inverse (plus the centring's constant part).
    """
    D = model._design(np.asarray(X_fit, float), np.asarray(t_fit))
    mean = D.mean(0)
    Dc = D - mean
    A_inv = np.linalg.inv(Dc.T @ Dc + model.alpha * np.eye(D.shape[1]))
    s2 = float(np.mean((np.asarray(y_fit, float) - model.ridge_.predict(D)) ** 2))
    n, d = X.shape
    K = model.n_arms_
    out = np.empty((n, K))
    for k in range(K):
        S = np.concatenate([np.arange(d), [d + k], d + K + k * d + np.arange(d)])
        rest = np.setdiff1d(np.arange(D.shape[1]), S)
        Z = model._design(np.asarray(X, float), np.full(n, k))[:, S] - mean[S]
        m_r = -mean[rest]  # the centred design on the blocks this model's rows leave at zero
        q = np.einsum("ij,jk,ik->i", Z, A_inv[np.ix_(S, S)], Z)
        q += 2.0 * Z @ (A_inv[np.ix_(S, rest)] @ m_r) + float(m_r @ A_inv[np.ix_(rest, rest)] @ m_r)
        out[:, k] = np.sqrt(np.maximum(q, 0.0) * s2)
    return out


def run(name: str, ff, X, policy: str, seed: int) -> list[dict]:
    sim, tr, va, test, te = simulated_split(ff, X, *parse_policies(policy)[0], seed)
    models = list(ff.models)
    data = build_routing_data(sim.train, X[tr], sim.val, X[va], models, random_state=seed)
    cf = data.crossfitter
    arr = log_arrays(sim.train, models)
    q = cf.quality_model_.predict(X[te], test.input_tokens)
    sd = posterior_sd(cf.quality_model_, X[tr], arr["treatment"], arr["quality"], X[te])
    cost = cf.cost_model_.predict(X[te], test.input_tokens)
    rows = []
    for lam in GRIDS[name]:
        U = test.scores - lam * test.costs
        row = {"dataset": name, "policy": policy, "seed": seed, "lambda": float(lam),
               "dm": _value(U, q - lam * cost)}
        row.update({f"kappa {k:g}": _value(U, q - k * sd - lam * cost) for k in KAPPAS})
        rows.append(row)
    return rows


def _value(U, scores) -> float:
    """Mean true utility U (n, K) of routing each prompt to its best score (n, K)."""
    return float(U[np.arange(len(U)), scores.argmax(1)].mean())


def write_markdown(df: pd.DataFrame, path: Path, command: str) -> None:
    methods = ["dm"] + [f"kappa {k:g}" for k in KAPPAS]
    lines = ["# A pessimistic direct method under biased logs (issue 13)", "",
             f"Command: `{command}` (CPU: {df['cpu_model'].iloc[0]}). Mean test utility over the study's lambda "
             "grid and the seeds; `dm` is the direct method (the study's `naive`), `kappa K` subtracts K posterior "
             "standard deviations of the quality prediction before the argmax (see the script's docstring). "
             "`goal target`: the quality goal's bar from `paper_protocol.csv` (halfway from the best baseline to "
             "the uniform level under beta=3 and previous-router logs, the best baseline under beta=1).", ""]
    study = pd.read_csv(results_dir("paper_protocol") / "paper_protocol.csv")
    for name, d in df.groupby("dataset", sort=False):
        lam_mean = lambda_means(per_seed(study, name))
        seeds = ", ".join(map(str, sorted(d.seed.unique())))
        lines += [f"## {name} (seeds {seeds})", "", "| logs | " + " | ".join(methods) + " | goal target |",
                  "|---|" + "---:|" * (len(methods) + 1)]
        lines += target_rows(d, methods, lam_mean)
        by_lam = d.groupby(["policy", "lambda"], sort=False)[methods].mean()
        lines += ["", "Worst lambda, minus `dm` (means over seeds):", "",
                  *worst_lambda_table(by_lam, "dm", methods[1:]), ""]
    path.write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default="routerbench_subset,llmrouter_9models")
    ap.add_argument("--policies", default="cost-biased:1,cost-biased:3,previous-router")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--data-root", default=str(DATA_ROOT))
    args = ap.parse_args()
    threadpoolctl.threadpool_limits(1)
    encoder = TransformerEncoder(precision="fp32")
    rows = []
    start = time.perf_counter()
    for name in args.datasets.split(","):
        ff, X = load_table(name, args.data_root, encoder)
        for policy in args.policies.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                rows += run(name, ff, X, policy, seed)
                print(name, policy, seed, flush=True)
    df = pd.DataFrame(rows)
    df["cpu_model"] = cpu_model()
    RESULTS.mkdir(parents=True, exist_ok=True)
    df.to_csv(RESULTS / "pessimistic_dm.csv", index=False)
    command = (f"python -m benchmarks.pessimistic_dm --datasets {args.datasets} --policies {args.policies} "
               f"--seeds {args.seeds}")
    write_markdown(df, RESULTS / "pessimistic_dm.md", command)
    print(f"{time.perf_counter() - start:.0f} s")
    print((RESULTS / "pessimistic_dm.md").read_text())


if __name__ == "__main__":
    main()
