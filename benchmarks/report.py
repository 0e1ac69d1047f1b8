"""Render docs/results.md (tables and PNG plots) and the README's results block from the committed
paper-protocol records.

    python -m benchmarks.report
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from .common import (  # noqa: E402
    BASELINES,
    BIASED,
    DEFAULTS,
    GRIDS,
    ROOT,
    TOLERANCE,
    goal_target,
    lambda_means,
    per_seed,
    policy_label,
    results_dir,
)
from .protocol import summarize  # noqa: E402

DOCS = ROOT / "docs"
ORDER = ["oracle", "full-feedback", "rm-softmax", "rm-interval", "rm-classification", "dr-regress", "naive",
         "best-single", "logging-policy", "econml-drpolicyforest", "cheapest", "random"]


def utility_table(df: pd.DataFrame) -> str:
    """Markdown: mean (standard error over seeds) utility per method (rows) and lambda (columns), plus
    the mean over lambdas with its standard error."""
    per_seed = df.groupby(["method", "lambda", "seed"])["utility"].mean().reset_index()
    mean = per_seed.groupby(["method", "lambda"])["utility"].mean().unstack()
    se = per_seed.groupby(["method", "lambda"])["utility"].sem().unstack()
    seed_means = per_seed.groupby(["method", "seed"])["utility"].mean().groupby("method")
    methods = [m for m in ORDER if m in mean.index] + sorted(set(mean.index) - set(ORDER))
    lams = list(mean.columns)
    head = "| method | " + " | ".join(f"λ={lam:g}" for lam in lams) + " | mean |"
    lines = [head, "|---" * (len(lams) + 2) + "|"]
    for m in methods:
        cells = [f"{mean.loc[m, lam]:.3f} ({se.loc[m, lam]:.3f})" for lam in lams]
        g = seed_means.get_group(m)
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {g.mean():.3f} ({g.sem():.3f}) |")
    return "\n".join(lines)


def selection_bound_note(dataset: str) -> list[str]:
    """Lines on how far choosing among the RM head's candidates could go with hindsight
    (``benchmarks/selection_bound.py``), when its results for ``dataset`` are there."""
    path = results_dir("selection_bound") / f"{dataset}.csv"
    if not path.exists():
        return []
    means = pd.read_csv(path).groupby("policy", sort=False)["hindsight_no_single"].mean()
    return ["Choosing each lambda's best candidate of the RM head (network, direct method, logger's mode, DR "
            "regress-and-compare, best single model) with hindsight on the test prompts would reach, on average "
            "over lambdas: " + ", ".join(f"{p} {v:.3f}" for p, v in means.items()) +
            " (`python -m benchmarks.selection_bound`, `benchmarks/results/selection_bound/selection_bound.md`). Where "
            "that is "
            "below the target, no selection rule among these candidates meets the goal.", ""]


def pessimistic_dm_note(dataset: str) -> list[str]:
    """Lines on the pessimistic direct method (``benchmarks/pessimistic_dm.py``), when its results for
    ``dataset`` are there: its best and worst logs against the direct method."""
    path = results_dir("pessimistic_dm") / "pessimistic_dm.csv"
    if not path.exists():
        return []
    df = pd.read_csv(path)
    df = df[df["dataset"] == dataset]
    if df.empty:
        return []
    kappas = [c for c in df.columns if c.startswith("kappa ")]
    means = df.groupby("policy", sort=False)[["dm", *kappas]].mean()
    top = kappas[-1]
    return ["A pessimistic direct method (the quality prediction minus kappa posterior standard deviations, "
            f"{top}) reaches, on average over lambdas: "
            + ", ".join(f"{p} {r[top]:.3f} (dm {r['dm']:.3f})" for p, r in means.iterrows())
            + " (`python -m benchmarks.pessimistic_dm`, `benchmarks/results/pessimistic_dm/pessimistic_dm.md`). It "
            "helps where the "
            "logger avoided models because they are worse (previous-router) and hurts where it avoided them because "
            "they cost more (cost-biased), and the logs alone do not say which, so it is not the default.", ""]


def eval_set_note(dataset: str) -> list[str]:
    """Lines on training with an evaluation set (``benchmarks/eval_set.py``: ``eval_set.csv`` and its
    tagged side runs), when its results for ``dataset`` are there: rm-softmax's mean over lambdas by
    evaluation-set size, per logs."""
    paths = sorted(results_dir("eval_set").glob("*.csv"))
    if not paths:
        return []
    df = pd.concat([pd.read_csv(p) for p in paths]).sort_values("eval_prompts", kind="stable")
    df = df[(df["dataset"] == dataset) & (df["method"] == "rm-softmax")]
    if df.empty:
        return []
    means = df.groupby(["policy", "eval_prompts"], sort=False)["utility"].mean()
    return ["With an evaluation set (`train --eval-set`: every model's outcome on M training prompts joins the "
            "outcome models), rm-softmax reaches, on average over lambdas: "
            + "; ".join(f"{p} " + ", ".join(f"M={m} {v:.3f}" for m, v in g.droplevel(0).items())
                        for p, g in means.groupby(level=0, sort=False))
            + " (`python -m benchmarks.eval_set`, `benchmarks/results/eval_set/*.md`). Those M x K outcomes are "
            "evidence the logs do not hold, so this measures what the goal needs beyond them.", ""]


def goal_table(records: pd.DataFrame, dataset: str) -> str:
    """Markdown: the default routers against the best baseline, per logging policy.

    Under strongly biased logs (``BIASED``): at every lambda the router's mean over seeds is within
    ``TOLERANCE`` of the best of ``BASELINES`` at that lambda, and its mean over lambdas beats the
    best baseline's by half the distance to the uniform level (the same router trained on as many
    uniformly logged rows). Under uniform and beta=1 logs its mean over lambdas stays ahead of the
    best baseline's (the worst lambda is shown, with the standard error over seeds of the router's
    difference from the baseline best there)."""
    per = per_seed(records, dataset)
    mean = per.groupby(["policy", "method", "lambda"]).mean()
    lam_mean = lambda_means(per)
    lines = ["| logs | router | worst lambda: router − best baseline | mean over lambdas (SE) | best baseline "
             "(mean over lambdas) | uniform level | target | goal met |", "|---|---|---|---|---|---|---|---|"]
    policies = [c for c in ["uniform", "cost-biased beta=1", "cost-biased beta=3", "previous-router"]
                if c in set(per.index.get_level_values("policy"))]
    for pol in policies:
        for m in DEFAULTS:
            if (pol, m) not in lam_mean.index:
                continue
            by_lam = mean.loc[pol].unstack("lambda")
            base = by_lam.loc[[b for b in BASELINES if b in by_lam.index]]
            gap = (by_lam.loc[m] - base.max()).sort_values()
            worst_lam, worst = gap.index[0], float(gap.iloc[0])
            # the same difference paired over seeds: a maximum over noisy baselines favours them
            rival = base[worst_lam].idxmax()
            pair = (per.loc[(pol, m, worst_lam)] - per.loc[(pol, rival, worst_lam)]).dropna()
            pair_se = float(pair.sem()) if len(pair) > 1 else float("nan")
            value, se = lam_mean.loc[(pol, m), "mean"], lam_mean.loc[(pol, m), "sem"]
            best_name, best, uniform, target = goal_target(lam_mean, pol, m)
            met = value >= target and (worst >= -TOLERANCE or pol not in BIASED)
            lines.append(f"| {pol} | {m} | {worst:+.3f} (λ={worst_lam:g}; vs {rival}, paired SE {pair_se:.3f}) | "
                         f"{value:.3f} ({se:.3f}) | {best:.3f} "
                         f"({best_name}) | {uniform:.3f} | {target:.3f} | {'yes' if met else 'NO'} |")
    return "\n".join(lines)


def plot(df: pd.DataFrame, title: str, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    g = df.groupby(["method", "lambda"])[["utility", "cost", "quality"]].mean().reset_index()
    for i, m in enumerate(x for x in ORDER if x in set(g["method"])):
        r = g[g["method"] == m].sort_values("lambda")
        style = dict(ls="--" if m in ("oracle", "random", "logging-policy", "full-feedback") else "-",
                     marker="o", ms=3, color=plt.cm.tab20(i % 20), label=m)
        axes[0].plot(r["lambda"], r["utility"], **style)
        axes[1].plot(r["cost"] * 1e3, r["quality"], **style)
    axes[0].set(xlabel="lambda", ylabel="mean test utility", title=f"{title}: utility against lambda")
    axes[1].set(xlabel="mean cost per query (USD x 1e-3)", ylabel="mean quality", title="cost-quality frontier")
    axes[0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def gap_closed(df: pd.DataFrame) -> pd.DataFrame:
    """Share of the gap between the best single model and the oracle that each method closes."""
    g = df.groupby(["method", "lambda"])["utility"].mean().unstack()
    bs, orc = g.loc["best-single"], g.loc["oracle"]
    return ((g - bs) / (orc - bs)).mean(axis=1).sort_values(ascending=False)


def main() -> None:
    results = results_dir("paper_protocol")
    path = results / "paper_protocol.csv"
    if not path.exists():  # the study run per dataset (one process per core): join the parts
        parts = [results / f"{name}.csv" for name in GRIDS if (results / f"{name}.csv").exists()]
        pd.concat([pd.read_csv(p) for p in parts]).to_csv(path, index=False)
    records = pd.read_csv(path)
    summarize(records).to_csv(results / "paper_protocol_summary.csv", index=False)
    DOCS.mkdir(exist_ok=True)
    meta_file = results / "paper_protocol_meta.json"
    meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    out = ["# Benchmark results", "",
           "Generated by `python -m benchmarks.report` from `benchmarks/results/paper_protocol/paper_protocol.csv`,",
           "which `python -m benchmarks.paper_protocol` writes (protocol: docs/architecture.md, Data contracts; mean",
           "test utility `score - lambda * cost` per query, mean over seeds with its standard error in brackets).", ""]
    if meta:
        out += [f"Machine: {meta.get('machine', '')}. Wall time of the study: {meta.get('seconds', 0) / 60:.0f} min "
                "(embeddings cached).", "",
                "Commands: " + "; ".join(f"`{c}`" for c in meta.get("commands", [])), ""]
    for dataset in sorted(records["dataset"].unique()):
        out += [f"## {dataset}: mean test utility over lambdas and seeds", "", compact_table(records, dataset), "",
                f"### {dataset}: the default routers against the quality goal", "",
                f"Goal under strongly biased logs ({', '.join(BIASED)}): at every lambda within {TOLERANCE} of the "
                f"best of {', '.join(BASELINES)}, and on average over lambdas at least halfway from that best "
                "baseline to the uniform level (the same router trained on as many uniformly logged rows). Under "
                "uniform and beta=1 logs: ahead of the best baseline on average. Means over seeds, standard errors "
                "in brackets.", "",
                goal_table(records, dataset), "", *selection_bound_note(dataset), *pessimistic_dm_note(dataset),
                *eval_set_note(dataset)]
    groups = records.groupby(["dataset", "policy", records["requested_strength"].fillna(-1)])
    for (dataset, policy, strength), df in groups:
        label = policy_label(policy, strength)
        png = DOCS / f"results_{dataset}_{label.replace(' ', '_').replace('=', '')}.png"
        plot(df, f"{dataset}, {label}", png)
        out += [f"### {dataset}, {label}", "", utility_table(df), "",
                "Gap closed between best single model and oracle (mean over lambdas): "
                + ", ".join(f"{m} {v:.2f}" for m, v in gap_closed(df).items() if m in ORDER[:10]), "",
                f"![{dataset} {label}]({png.name})", ""]
    ablations = results_dir("ablations") / "ablations.csv"
    if ablations.exists():
        a = pd.read_csv(ablations)
        per_seed = a.groupby(["ablation", "setting", "method", "seed"])["utility"].mean()
        t = per_seed.groupby(["ablation", "setting", "method"]).agg(["mean", "std"]).reset_index()
        out += ["## Ablations (RouterBench, cost-biased beta=3, seeds 0-2)", "",
                "`python -m benchmarks.ablations`: mean test utility over lambdas 0-1000 (the interval rows: over "
                "lambdas 100, 300, 500, 700, 900, off the interval router's grid 0, 200, ..., 1000).", "",
                "| ablation | setting | method | utility (std over seeds) |", "|---|---|---|---|"]
        out += [f"| {r.ablation} | {r.setting} | {r.method} | {r['mean']:.4f} ({r['std']:.4f}) |"
                for _, r in t.iterrows()]
        out.append("")
    loggers = results_dir("loggers") / "results_section.md"
    if loggers.exists():  # issue 32's study: hand-written summary of benchmarks/results/loggers
        out += [loggers.read_text()]
    static = results_dir("paper_protocol_static") / "results_section.md"
    if static.exists():  # issue 33: hand-written summary of benchmarks/results/paper_protocol_static
        out += [static.read_text()]
    combo = results_dir("fast_combo") / "results_section.md"
    if combo.exists():  # issue 33, item 2: hand-written summary of benchmarks/results/fast_combo
        out += [combo.read_text()]
    (DOCS / "results.md").write_text("\n".join(out))
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = "<!-- results:start (written by benchmarks/report.py) -->", "<!-- results:end -->"
    if start in text and end in text:
        tables = "\n\n".join(compact_table(records, d) for d in ["routerbench_subset", "llmrouter_9models"]
                             if d in set(records["dataset"]))
        text = text[:text.index(start) + len(start)] + "\n" + tables + "\n" + text[text.index(end):]
        readme.write_text(text)



def compact_table(records: pd.DataFrame, dataset: str) -> str:
    """Markdown: mean test utility over lambdas and seeds, methods (rows) by logging policy (columns)."""
    df = records[records["dataset"] == dataset].copy()
    df["policy"] = [policy_label(p, s) for p, s in zip(df["policy"], df["requested_strength"].fillna(-1))]
    per_seed = df.groupby(["method", "policy", "seed"])["utility"].mean()
    t = per_seed.groupby(["method", "policy"]).mean().unstack()
    se = per_seed.groupby(["method", "policy"]).sem().unstack()
    cols = [c for c in ["uniform", "cost-biased beta=1", "cost-biased beta=3", "previous-router"] if c in t.columns]
    methods = [m for m in ORDER if m in t.index]
    lines = ["| method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    lines += [f"| {m} | " + " | ".join(f"{t.loc[m, c]:.3f} ({se.loc[m, c]:.3f})" for c in cols) + " |"
              for m in methods]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
