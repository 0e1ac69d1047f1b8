"""The budget study's report: the goal checks and the plot of spend and lambda over the stream.

    python -m benchmarks.budget_report            # benchmarks/results/budget/budget.csv -> budget.md, budget_trace.png
    python -m benchmarks.budget_report --tag probe

Goals (issue 30): the ``causal`` arm's spend after warm-up within +-2% of the budget and its worst
500-decision window within +-10%, on both tables at every budget; its final test utility at least
``hindsight``'s minus 0.005; and above ``causal-fixed``'s where the prompt mix drifts.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from .budget_study import SPEND_TOL, WARMUP, WINDOW
from .common import result_stem, results_dir, shown

WINDOW_TOL, QUALITY_TOL = 0.10, 0.005


def arm_table(df: pd.DataFrame) -> list[str]:
    """Markdown: per (dataset, scenario, budget, arm) the means over seeds (and the seeds' count)."""
    cols = ["spend_ratio", "worst_window_ratio", "final_test_utility", "final_test_quality"]
    g = df.groupby(["dataset", "scenario", "budget_fraction", "arm"], sort=False)
    m = g[cols].mean()
    n = g.size()
    lines = ["| table | scenario | B | arm | seeds | spend ratio | worst window | final test utility | "
             "final test quality |", "|---|---|---:|---|---:|---:|---:|---:|---:|"]
    for (d, s, b, a), row in m.iterrows():
        lines.append(f"| {d} | {s} | {b:g} | {a} | {n[(d, s, b, a)]} | {row.spend_ratio:.3f} | "
                     f"{row.worst_window_ratio:.3f} | {row.final_test_utility:.4f} | {row.final_test_quality:.4f} |")
    return lines


def goal_checks(df: pd.DataFrame, floors: pd.Series | None = None) -> list[str]:
    out = []
    iid = df[df["scenario"] == "iid"]
    c = iid[iid["arm"] == "causal"]
    if len(c):
        ok = (c["spend_ratio"] - 1).abs() <= SPEND_TOL
        out.append(f"- **Spend within +-{SPEND_TOL:.0%} after warm-up** (causal, iid): {int(ok.sum())} of {len(c)} "
                   f"(table, seed, budget) runs; spend ratios {c['spend_ratio'].min():.3f} to "
                   f"{c['spend_ratio'].max():.3f}. {'MET' if ok.all() else 'MISSED'}.")
        okw = (c["worst_window_ratio"] - 1).abs() <= WINDOW_TOL
        out.append(f"- **Worst 500-decision window within +-{WINDOW_TOL:.0%}** (causal, iid): {int(okw.sum())} of "
                   f"{len(c)}; worst windows {c['worst_window_ratio'].min():.3f} to "
                   f"{c['worst_window_ratio'].max():.3f}. {'MET' if okw.all() else 'MISSED'}.")
        if floors is not None and len(floors):
            out.append("- Share of the causal arm's decisions after warm-up served at the bottom of the interval "
                       "(lambda <= 1% of the loop's: the router will hardly spend more by lambda there), and the "
                       "mean fill there (the share the controller's slack moved to the models that reach the "
                       "budget): " + ", ".join(f"{d} {s} s{seed} B={b:g} {v:.0%} (fill {f:.2f})"
                                               for (d, s, seed, b), (v, f) in floors.items()) + ".")
    key = ["dataset", "scenario", "seed", "budget_fraction"]
    piv = df.pivot_table(index=key, columns="arm", values="final_test_utility")
    if {"causal", "hindsight"} <= set(piv.columns):
        p = piv.dropna(subset=["causal", "hindsight"])
        p = p.xs("iid", level="scenario") if "iid" in p.index.get_level_values("scenario") else p.iloc[:0]
        h = df[(df["arm"] == "hindsight") & (df["scenario"] == "iid")]
        unmet = h[h["hindsight_met"].astype(str) == "False"]
        if len(unmet):  # no fixed lambda tried met the budget: no skyline to compare with
            p = p.drop([(r.dataset, r.seed, r.budget_fraction) for r in unmet.itertuples()], errors="ignore")
            out.append("- Hindsight runs where no fixed lambda tried met the budget (left out of the quality check): "
                       + ", ".join(f"{r.dataset} s{r.seed} B={r.budget_fraction:g}" for r in unmet.itertuples()) + ".")
        d = p["causal"] - p["hindsight"]
        by = d.groupby(level=["dataset", "budget_fraction"]).mean()
        ok = by >= -QUALITY_TOL
        out.append(f"- **Quality >= hindsight - {QUALITY_TOL}** (final test utility, iid, mean over seeds per table "
                   f"and budget): {int(ok.sum())} of {len(by)}; causal - hindsight: "
                   + ", ".join(f"{ds} B={b:g} {v:+.4f}" for (ds, b), v in by.items())
                   + f"; per run {int((d >= -QUALITY_TOL).sum())} of {len(d)}. {'MET' if ok.all() else 'MISSED'}.")
        # the same, where the hindsight run spent the budget too (within the spend goal's tolerance): a fixed
        # lambda that underspends is scored at the loop's lambda on less spend, not at the budget
        sp = h.set_index(["dataset", "seed", "budget_fraction"])["spend_ratio"]
        eq = [i for i in d.index if i in sp.index and abs(sp[i] - 1) <= SPEND_TOL]
        out.append(f"- Where the hindsight run spent the budget too (spend within +-{SPEND_TOL:.0%}): {len(eq)} of "
                   f"{len(d)} runs" + (": causal - hindsight " + ", ".join(
                       f"{ds} s{seed} B={b:g} {d[(ds, seed, b)]:+.4f}" for ds, seed, b in eq) if eq else "")
                   + ". Elsewhere the hindsight run spent " + ", ".join(
                       f"{ds} s{seed} B={b:g} {sp[(ds, seed, b)]:.2f}" for ds, seed, b in d.index if (ds, seed, b)
                       not in eq and (ds, seed, b) in sp.index) + " of the budget.")
    if {"causal", "causal-fixed"} <= set(piv.columns) and "drift" in piv.index.get_level_values("scenario"):
        p = piv.xs("drift", level="scenario").dropna(subset=["causal", "causal-fixed"])
        d = p["causal"] - p["causal-fixed"]
        by = d.groupby(level=["dataset", "budget_fraction"]).mean()
        sp = df[(df["scenario"] == "drift") & df["arm"].isin(["causal", "causal-fixed"])] \
            .groupby(["dataset", "arm"])["spend_ratio"].mean()
        out.append(f"- **Beats causal-fixed under drift** (final test utility): {int((by > 0).sum())} of {len(by)} "
                   "(table, budget) means; causal - causal-fixed: "
                   + ", ".join(f"{ds} B={b:g} {v:+.4f}" for (ds, b), v in by.items())
                   + f"; per run {int((d > 0).sum())} of {len(d)}. Spend ratios under drift: "
                   + ", ".join(f"{ds} {a} {v:.3f}" for (ds, a), v in sp.items())
                   + f". {'MET' if (by > 0).all() else 'MISSED'}.")
    return out


def floor_shares(trace_dir: Path, df: pd.DataFrame) -> pd.Series:
    """Per causal run, (the share of decisions after warm-up served at the bottom of the lambda interval,
    their mean fill): lambda at most 1% of the loop's is the router's most quality-minded choices, so
    spending less than the budget there is the router's limit, and the controller's slack fills it
    (``fill``: 0 in traces from before it existed)."""
    from .common import LOOP_SETTINGS

    out = {}
    for r in df[df["arm"] == "causal"].itertuples():
        f = trace_dir / f"{r.dataset}_{r.scenario}_s{r.seed}_b{r.budget_fraction:g}_causal.parquet"
        if f.exists():
            t = pd.read_parquet(f).iloc[WARMUP:]
            low = t["lam"].to_numpy() <= 0.01 * LOOP_SETTINGS[r.dataset][0]
            fill = t["fill"].to_numpy() if "fill" in t else np.zeros(len(t))
            out[(r.dataset, r.scenario, r.seed, r.budget_fraction)] = (
                float(np.mean(low)) if len(t) else 0.0, float(np.mean(fill[low])) if low.any() else 0.0)
    return pd.Series(out, dtype=object)


def plot(trace_dir: Path, png: Path, seed: int = 0, fraction: float = 0.4) -> list[str]:
    """Spend (mean cost over the last 500 decisions / budget), lambda and fill over the stream, one seed,
    ``causal`` and ``causal-fixed``, each table (iid, and drift where run). Returns the files plotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = sorted(trace_dir.glob(f"*_s{seed}_b{fraction:g}_causal.parquet"))
    if not files:
        return []
    fig, axes = plt.subplots(3, len(files), figsize=(4.2 * len(files), 7.5), squeeze=False, sharex="col")
    used = []
    for j, f in enumerate(files):
        meta = json.loads(f.with_suffix(".json").read_text()) if f.with_suffix(".json").exists() else {}
        budget = meta.get("budget_usd")
        for arm, style in (("causal", "-"), ("causal-fixed", "--"), ("hindsight", ":")):
            g = f.with_name(f.name.replace("_causal.parquet", f"_{arm}.parquet"))
            if not g.exists():
                continue
            t = pd.read_parquet(g)
            b = budget or float(np.mean(t["cost"]))
            roll = t["cost"].rolling(WINDOW, min_periods=50).mean() / b
            axes[0, j].plot(roll.to_numpy(), style, label=arm)
            axes[1, j].plot(t["lam"].to_numpy(), style, label=arm)
            if "fill" in t:
                axes[2, j].plot(t["fill"].to_numpy(), style, label=arm)
            used.append(shown(g))
        axes[0, j].axhline(1.0, color="grey", lw=0.8)
        axes[0, j].axvline(WARMUP, color="grey", lw=0.5, ls=":")
        axes[0, j].set_title(f.name.split(f"_s{seed}")[0], fontsize=9)
        axes[0, j].set_ylabel(f"spend / budget (last {WINDOW})")
        axes[1, j].set_ylabel("lambda")
        axes[2, j].set_ylabel("fill (slack to the dear models)")
        axes[2, j].set_xlabel("budgeted decision (rounds 1 on)")
        axes[0, j].legend(fontsize=7)
    fig.suptitle(f"Budget {fraction:g} x the best model's mean cost, seed {seed}")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    return used


SECTION = "## Holding a budget in the loop"

INTRO = [
    "`causal-router loop TABLE --rounds R --batch N --lam LAM --explore 0.05 --out OUT --budget B` holds a spend "
    "target while the loop learns. **B is a fraction of the best model's mean cost per decision on the table**, "
    "the best model being the one with the highest mean quality over the table's prompts (the model a team "
    "would send everything to without a router): RouterBench's gpt-4-1106-preview (0.00502 USD), LLMRouter's "
    "llama-3.1-nemotron-51b-instruct (0.0000677 USD). `--budget 0.4` asks for 40% of that, per decision, on average.",
    "",
    "Under a budget the loop deploys the interval router (`rm-interval`, started from its RM-Softmax endpoints), "
    "trained each round on the lambdas 0, 0.5, 1, 2, 5 and 10 x `--lam`, and serves the decisions **one at a time "
    "in stream order**, each at the lambda of the service's own controller "
    "(`causal_router.serving.budget.BudgetController`: PI / dual ascent in a warped lambda coordinate, bounded by "
    "the router's interval, its lower end raised to the router's spend peak `lam_floor` as `calibrate` finds it "
    "(below the peak a router whose small-lambda heads fell back to a cheap model spends less, and a controller "
    "would wind down there); integral gain 0.02 in the loop, `LOOP_GAIN`), which steps on each decision's "
    "realised cost as the outcome comes back. Below the floor its coordinate goes on as a **fill**: when the "
    "router underspends even at its spend peak, up to all of each decision's probability above the "
    "exploration floor moves to the model the router scores best among those whose mean recorded cost reaches "
    "the budget (`serve.budget_fill`, default 1; each model's mean cost known from round 0's logs on), so the "
    "unspent budget logs the dear models that the cost-biased incumbent rarely chose, with exact propensities, "
    "and the next rounds learn what they are worth. Its cold start is the lambda `causal-router calibrate`'s "
    "calibrator finds on round 0's validation and holdout logs (DR mean cost), as `serve --budget` starts from a "
    "calibrated lambda; when the gate deploys a new router, the controller's operating point moves to the "
    "lambda calibrated for it on the holdout (`BudgetController.rebase`; the integral keeps its memory). "
    "Round 0 is the incumbent's and is not budgeted. The gate compares challenger and champion at the "
    "controller's current lambda. Every decision in "
    "the decision log records the lambda it was served at (`lam`) and its propensities, and the ingested logs "
    "keep the propensities, so the next round's DR training stays valid; `OUT/budget_trace.csv` lists every "
    "budgeted decision (round, prompt, lambda, fill, model, propensity, cost) and `loop.csv` gains the columns "
    "`budget, spend, test_quality, test_cost` (`lam`: the controller's lambda after the round).",
    "",
    "The study (`python -m benchmarks.budget_study`, then `python -m benchmarks.budget_report --docs`): the "
    "loop study's streams (RouterBench lambda 100, 8 rounds of 300; LLMRouter lambda 7400, 9 rounds of 500; "
    "incumbent cost-biased beta=3), explore 0.05. Arms: `causal` (the controller), `causal-fixed` (the lambda "
    "calibrated on round 0, never moved), `explore-naive` (the naive router, always deployed, with the "
    "controller), `cheapest` (the table's cheapest model throughout), `hindsight` (the causal loop at a fixed "
    "lambda chosen in hindsight: the best final test utility among the fixed-lambda runs tried whose spend "
    "after warm-up is within 2% of the budget; tried: causal-fixed's lambda, the controller's median lambda "
    "after warm-up and, with `--hindsight-tries` above 1, secant steps: a skyline found by a short search, not "
    "an exhaustive one). Drift scenario: the "
    "streamed prompts in 8 k-means clusters of their embeddings, ranked by the mean cost of the table's "
    "best-quality answer and cut into two halves of the pool; before the middle round 80% of the decisions come "
    "from the cheap-to-answer-well half, after it 80% from the other half. `spend_ratio`: mean cost per "
    "budgeted decision after a warm-up of 200, over the budget; `worst_window_ratio`: the same over the "
    "500-decision window (after warm-up) furthest from 1; `final_test_utility`: the final router's choices on the "
    "held-out test prompts at the arm's last lambda, utility at the loop's lambda.",
]


#: What the committed (reduced, seed 0) run says beyond the checks: rewrite it with the run.
READING = [
    'Reading of the committed run (seed 0, and RouterBench B = 0.2 and 0.4 of seed 1). **The spend is now held on'
    ' every iid run** (8 of 8: 0.995-1.018 of the budget after warm-up, worst 500-window 0.942-1.080), where the '
    'previous committed run (before the fill) underspent in every one (0.615-0.957, worst windows down to 0.359):'
    " the routers trained on the cost-biased incumbent's logs underrate the dear models, so at the bottom of "
    'their interval they spend less than the budget, and no lambda spends it. The fill spends the rest on the '
    'dear models where the router likes them best, and the next rounds learn from those rows: on RouterBench B = '
    '0.2 seed 0 rounds 2-4 were served at lambda ~0 with a fill of 0.15-0.20, and from round 5 on the retrained '
    'routers spent the budget by lambda alone (lambda ~25, no fill). Under drift RouterBench seed 0 ends at 1.022'
    ' (just outside 2%): the router deployed after round 1 spent 1.12x the budget in round 2 at its calibrated '
    "lambda, and the rebase to each new router's calibrated lambda keeps the integral but not the debt; seed 1 at"
    " 1.003, LLMRouter at 0.999. **Quality** by the study's rule (final test utility at the loop's lambda against"
    ' the best fixed lambda tried whose stream spend is at most 1.02 of the budget) is missed: the fixed lambdas '
    "that qualify spent 17-84% of the budget, and at the loop's lambda a router that spends less than a budget "
    "above that lambda's own spend scores better, so the comparison rewards not spending the budget. Where the "
    'hindsight run did spend it (RouterBench B = 0.6: the calibrated lambda 0 spent 0.999), causal is +0.049. '
    "Final test quality, the budget's point, is higher for causal than for the hindsight arm in 7 of 8 runs "
    '(RouterBench B = 0.4 s0 0.813 against 0.722, s1 0.817 against 0.787, B = 0.2 s1 0.816 against 0.787; '
    'LLMRouter B = 0.2 0.586 against 0.550, 0.6 0.613 against 0.559); the exception is RouterBench B = 0.6 (0.833'
    ' against 0.862, at 0.0035 against 0.0043 USD per test decision). The naive router with the same controller '
    '(`explore-naive`) spends as exactly and is above causal in final test utility in 6 of 8 runs. Under drift '
    'the controller beats the round-0 calibrated lambda by +0.32 (RouterBench, two seeds) and +0.33 (LLMRouter), '
    'which overspends 2.1-2.4x.',
]


def docs_section(df: pd.DataFrame, meta: dict, png: str, floors: pd.Series | None = None) -> list[str]:
    """The section of docs/loop.md on the budget study."""
    reduced = meta.get("reduced") or meta.get("partial")
    lines = ["", SECTION, "", *INTRO, ""]
    if reduced:
        lines += [f"> **REDUCED RUN.** {meta.get('note', '')} Command: `{meta.get('command', '')}`.", ""]
    lines += [f"CPU: {meta.get('cpu_model', 'n/a')}; wall time {meta.get('wall_seconds', float('nan')):.0f} s.", "",
              "### Goal checks", "", *goal_checks(df, floors), "", *READING, "", "### Means over seeds", "",
              *arm_table(df), "",
              f"![spend and lambda over the stream]({png})", ""]
    return lines


def write_docs(lines: list[str], path) -> None:
    """Replace the budget section of docs/loop.md (from its heading to the next second-level heading, or
    the end) with ``lines``."""
    path = Path(path)
    text = path.read_text() if path.exists() else ""
    head, _, rest = text.partition("\n" + SECTION)
    nxt = rest.find("\n## ")
    body = head.rstrip("\n") + "\n" + "\n".join(lines).rstrip("\n") + "\n"
    path.write_text(body + ("\n" + rest[nxt + 1:] if nxt >= 0 else ""))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=str(results_dir("budget")))
    ap.add_argument("--tag", default="")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget", type=float, default=0.4)
    ap.add_argument("--docs", action="store_true", help="also write docs/loop.md's section and docs/loop_budget.png")
    args = ap.parse_args()
    d = Path(args.dir)
    stem = result_stem("budget", args.tag)
    path = d / f"{stem}.csv"
    if not path.exists():  # a run still going: its partial rows
        path = d / f"{stem}.partial.csv"
    df = pd.read_csv(path)
    meta_path = d / f"{stem}_meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    png = d / f"{stem}_trace.png"
    plotted = plot(d / "traces", png, args.seed, args.budget)
    lines = [f"# Budget loop study ({shown(path)})", ""]
    if meta:
        lines += [f"Command: `{meta.get('command')}`; CPU: {meta.get('cpu_model')}; "
                  f"wall {meta.get('wall_seconds', 0):.0f} s" + ("; **reduced run**" if meta.get("reduced") else ""),
                  ""]
    floors = floor_shares(d / "traces", df)
    lines += ["## Goal checks", "", *goal_checks(df, floors), "", "## Means over seeds", "", *arm_table(df), ""]
    if plotted:
        lines += [f"Plot: `{shown(png)}` (seed {args.seed}, B = {args.budget:g})", ""]
    (d / f"{stem}.md").write_text("\n".join(lines))
    print("\n".join(lines))
    if args.docs:
        from .common import ROOT

        docs_png = ROOT / "docs" / "loop_budget.png"
        plot(d / "traces", docs_png, args.seed, args.budget)
        write_docs(docs_section(df, meta, docs_png.name, floors), ROOT / "docs" / "loop.md")


if __name__ == "__main__":
    main()
