"""Render docs/loop.md (tables and per-round PNG curves) from the committed loop records.

    python -m benchmarks.loop_report                # benchmarks/results/loop/loop.csv (the whole study)
    python -m benchmarks.loop_report --tag reduced  # benchmarks/results/loop/reduced.csv, labelled REDUCED
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .common import ROOT, result_stem, results_dir  # noqa: E402

LOOP = results_dir("loop")
DOCS = ROOT / "docs"
ORDER = ["skyline", "causal", "explore-naive", "greedy", "vw", "incumbent"]


def label(arm: str, explore: float) -> str:
    return f"{arm} (e={explore:g})" if arm in ("causal", "explore-naive", "vw") else arm


def with_labels(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df["label"] = [label(a, e) for a, e in zip(df["arm"], df["explore"])]
    df["order"] = [ORDER.index(a) if a in ORDER else 99 for a in df["arm"]]
    return df.sort_values(["order", "explore", "seed", "round"])


def per_round(df: pd.DataFrame, column: str) -> str:
    """Markdown: mean over seeds of ``column`` per arm (rows) and round (columns)."""
    g = df.groupby(["order", "label", "round"], sort=True)[column].mean().unstack()
    rounds = list(g.columns)
    lines = ["| arm | " + " | ".join(f"r{r}" for r in rounds) + " |", "|---" * (len(rounds) + 1) + "|"]
    for (_, name), row in g.iterrows():
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    return "\n".join(lines)


def uniform_level(refs: dict) -> float:
    """The static uniform-logging level: the mean over seeds of each seed's mean over its draws."""
    return float(np.mean([v["uniform_reference"] for v in refs.values()])) if refs else float("nan")


def uniform_draws(refs: dict) -> list:
    """Each seed's uniform draws (one per seed in studies from before ``--uniform-draws``)."""
    return [v.get("uniform_draws", [v["uniform_reference"]]) for v in refs.values()]


def final_table(df: pd.DataFrame, refs: dict) -> tuple[str, pd.DataFrame]:
    """Markdown: final-round test utility, mean realised utility over the stream, final regret, promotions."""
    # each arm's last round (a reduced run may stop arms early)
    last = df[df["round"] == df.groupby("label")["round"].transform("max")]
    realised = df.groupby(["order", "label", "seed"])["deployed_utility"].mean().groupby(["order", "label"])
    final = last.groupby(["order", "label"])
    promos = df[df["round"] > 0].groupby(["order", "label"])["promoted"].apply(
        lambda s: f"{int((s.astype(str) == 'True').sum())}/{len(s)}" if s.notna().any() else "n/a")
    summary = pd.DataFrame({
        "final_test": final["test_utility"].mean(), "final_test_std": final["test_utility"].std(),
        "realised": realised.mean(), "regret": final["cumulative_regret"].mean(), "promoted": promos,
        "last_round": final["round"].max(),
    }).reset_index()
    lines = ["| arm | last round | final-round test utility (std over seeds) | mean realised utility over the stream "
             "(exploration paid for) | cumulative regret | gate promotions (rounds 1..) |", "|---|---|---|---|---|---|"]
    for _, r in summary.iterrows():
        std = "" if not np.isfinite(r["final_test_std"]) else f" ({r['final_test_std']:.3f})"
        lines.append(f"| {r['label']} | {int(r['last_round'])} | {r['final_test']:.4f}{std} | {r['realised']:.4f} | "
                     f"{r['regret']:.1f} | "
                     f"{r['promoted']} |")
    uni = uniform_level(refs)
    orc = np.mean([v["oracle"] for v in refs.values()]) if refs else float("nan")
    n = next(iter(refs.values()))["n"] if refs else 0
    draws = uniform_draws(refs)
    if refs and len(draws[0]) > 1:
        first = np.mean([d[0] for d in draws])
        sd = np.std(np.concatenate(draws), ddof=1)
        lines.append(f"| static uniform-logging reference (RM-Softmax on {n} uniformly logged rows; mean of "
                     f"{len(draws[0])} uniform draws per seed, std over all draws {sd:.3f}; the first draw alone "
                     f"{first:.4f}) | | {uni:.4f} | | | |")
    else:
        lines.append(f"| static uniform-logging reference (RM-Softmax on {n} uniformly logged rows) | | {uni:.4f} "
                     "| | | |")
    lines.append(f"| per-query oracle (test) | | {orc:.4f} | | | |")
    return "\n".join(lines), summary


def goals(summary: pd.DataFrame, refs: dict) -> list[str]:
    """The issue's goals, each checked on these records (means over seeds)."""
    s = summary.set_index("label")
    out = []
    causal = [x for x in s.index if x.startswith("causal")]
    uni = uniform_level(refs)

    def get(name, col):
        return float(s.loc[name, col]) if name in s.index else float("nan")

    vws = [x for x in s.index if x.startswith("vw")]
    best_vw = max((get(v, "final_test") for v in vws), default=float("nan"))
    best_vw_real = max((get(v, "realised") for v in vws), default=float("nan"))
    for c in causal:
        e = c[c.index("e=") + 2:-1]
        en = get(f"explore-naive (e={e})", "final_test")
        ct = get(c, "final_test")
        checks = {
            "above greedy": ct > get("greedy", "final_test"),
            "above vw (best rate)": ct > best_vw,
            "above incumbent": ct > get("incumbent", "final_test"),
            f"at least explore-naive (e={e})": ct >= en,
            "at least the static uniform-logging level": ct >= uni,
            "within 0.01 of skyline": ct >= get("skyline", "final_test") - 0.01,
            "realised utility above greedy and vw": get(c, "realised") > max(get("greedy", "realised"), best_vw_real),
        }
        refs_ok = {k: np.isfinite(v) for k, v in {
            "above vw (best rate)": best_vw, "within 0.01 of skyline": get("skyline", "final_test"),
            f"at least explore-naive (e={e})": en, "at least the static uniform-logging level": uni,
            "above greedy": get("greedy", "final_test")}.items()}
        out.append(f"- **{c}**, final-round test utility {ct:.4f}: " + "; ".join(
            f"{k}: {'n/a (not run)' if not refs_ok.get(k, True) else 'yes' if v else 'NO'}"
            for k, v in checks.items()))
    return out


def per_seed_frames(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(seed x arm label) frames of the final-round test utility (each arm's last round) and the mean
    realised utility over rounds 1.."""
    last = df[df["round"] == df.groupby("label")["round"].transform("max")]
    final = last.pivot_table(index="seed", columns="label", values="test_utility")
    real = df[df["round"] > 0].groupby(["label", "seed"])["deployed_utility"].mean().unstack(0)
    return final, real


def paired_cell(frame: pd.DataFrame, a: str, b: str) -> str:
    """Markdown cell: column ``a`` minus column ``b`` of a (seed x label) frame, mean (standard error)."""
    d = (frame[a] - frame[b]).dropna() if b in frame.columns else pd.Series(dtype=float)
    return f"{d.mean():+.4f} ({d.std(ddof=1) / np.sqrt(len(d)):.4f})" if len(d) > 1 else "n/a"


def paired(df: pd.DataFrame) -> list[str]:
    """Markdown: per exploration rate, causal minus each peer on the same seeds (final round), the mean
    and its standard error over seeds: the streams and round 0 are shared, so pairs cancel their luck."""
    final, real = per_seed_frames(df)
    rates = sorted(df.loc[df["arm"] == "causal", "explore"].unique())
    if not rates or len(final) < 2:
        return []

    lines = ["", f"Paired over the {len(final)} seeds (same stream, same round 0): `causal` minus each peer, mean "
             "(standard error over seeds).", "",
             "| causal | − explore-naive, same rate: final test | − greedy: final test | − greedy: realised "
             "(rounds 1..) |", "|---|---|---|---|"]
    for e in rates:
        c, en = label("causal", e), label("explore-naive", e)
        lines.append(f"| {c} | {paired_cell(final, c, en)} | {paired_cell(final, c, 'greedy')} | "
                     f"{paired_cell(real, c, 'greedy')} |")
    return lines


def noise_note(refs: dict, skyline: float = float("nan")) -> list[str]:
    """How much one final-round figure moves: the spread of the uniform-logging level over its draws,
    and how far that level is from the skyline (``skyline``: its final-round test utility)."""
    draws = uniform_draws(refs)
    if not refs or any(len(d) < 2 for d in draws):
        return []
    flat = np.concatenate(draws)
    sd = float(np.std(flat, ddof=1))
    seeds, level = len(draws), uniform_level(refs)
    out = ["", f"**How much one figure moves.** The uniform-logging level is the mean of {len(draws[0])} "
           f"independent uniform logging draws on each of the {seeds} seeds' streams. Over those {len(flat)} draws "
           f"the same learner's final test utility has a standard deviation of {sd:.3f} (range "
           f"{flat.min():.3f}-{flat.max():.3f}); the first draw of each seed alone, the level this report gave "
           f"before, is {np.mean([d[0] for d in draws]):.4f}. Which of two near-equal models a router settles on "
           f"for a kind of prompt moves a figure that much. A mean over {seeds} seeds carries a standard error "
           f"of about {sd / np.sqrt(seeds):.3f} from the draws alone, so differences between arms smaller than "
           f"about {2 * sd / np.sqrt(seeds):.3f} are within that noise."]
    if np.isfinite(skyline):
        gap = skyline - level
        out += ["", f"The skyline learns every model's outcome on every streamed prompt. Logging one model per "
                f"prompt, even uniformly, leaves the same learner {gap:.3f} below it ({level:.4f} against "
                f"{skyline:.4f})" + (": the goal of coming within 0.01 of the skyline asks more of the learner than "
                                     "uniform logs give it." if gap > 0.01 else ", within the goal's 0.01.")]
    return out


def feedback_gap(name: str) -> list[str]:
    """The direct method with full feedback against uniform logs on the same prompts
    (``benchmarks/feedback_gap.py``), when its results are there."""
    path = results_dir("feedback_gap") / "feedback_gap.csv"
    if not path.exists():
        return []
    d = pd.read_csv(path)
    d = d[d["dataset"] == name].groupby("feedback")["test_utility"].agg(["mean", "std", "count"])
    if not {"full", "uniform"} <= set(d.index):
        return []
    full, uni = d.loc["full"], d.loc["uniform"]
    return ["", f"The direct method that every router here starts from, trained on all the streamed prompts "
            f"(`python -m benchmarks.feedback_gap`, `benchmarks/results/feedback_gap/feedback_gap.md`), scores "
            f"{full['mean']:.4f} with full feedback and {uni['mean']:.4f} (std {uni['std']:.3f} over "
            f"{int(uni['count'])} draws) with one uniformly logged model per prompt: a gap of "
            f"{full['mean'] - uni['mean']:.3f} between every outcome and one evenly spread outcome per prompt."]


def plot(df: pd.DataFrame, refs: dict, title: str, path: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    g = df.groupby(["order", "label", "round"])[["test_utility", "deployed_utility", "cumulative_regret"]].mean()
    for i, ((_, name), part) in enumerate(g.groupby(level=[0, 1])):
        r = part.reset_index()
        style = dict(marker="o", ms=3, color=plt.cm.tab10(i % 10), label=name,
                     ls="--" if name in ("skyline", "incumbent") else "-")
        for ax, col in zip(axes, ["test_utility", "deployed_utility", "cumulative_regret"]):
            ax.plot(r["round"], r[col], **style)
    if refs:
        axes[0].axhline(uniform_level(refs), color="grey", ls=":", label="static uniform-logging level")
    axes[0].set(xlabel="round", ylabel="test utility (explore 0)", title=f"{title}: the deployed router on test")
    axes[1].set(xlabel="round", ylabel="realised utility", title="the round's prompts, exploration included")
    axes[2].set(xlabel="round", ylabel="cumulative regret (sum)", title="regret against the per-query oracle")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    stem = result_stem("loop", args.tag)
    records = pd.read_csv(LOOP / f"{stem}.csv")
    meta_file = LOOP / f"{stem}_meta.json"
    meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    reduced = bool(args.tag) or meta.get("reduced", False)
    out = ["# The loop, measured", "",
           f"Generated by `python -m benchmarks.loop_report{' --tag ' + args.tag if args.tag else ''}` from "
           f"`benchmarks/results/loop/{stem}.csv`, written by `python -m benchmarks.loop_study"
           f"{' ...' if reduced else ''}` (issue: the loop, measured)."]
    if reduced:
        out += ["", f"> **REDUCED RUN, NOT THE STUDY.** Datasets {meta.get('datasets')}, seeds {meta.get('seeds')}, "
                f"explore {meta.get('explore')}, arms {meta.get('arms')}. The whole study is both tables, seeds "
                "0-2 and explore 0.02/0.05/0.1: `python -m benchmarks.loop_study --jobs 2` then "
                "`python -m benchmarks.loop_report`. With one seed there is no spread, and these figures do not "
                "decide the issue's goals."]
        if meta.get("assembly"):
            out += ["", f"> How these records were assembled: {meta['assembly']}. Arms cut short are compared at "
                    "their last round reached (column *last round*), so the comparisons below are not like for like."]
    out += ["", "Every arm starts from the same round 0 (the cost-biased β=3 incumbent routes the first batch). "
            "`causal`: RM-Softmax on DR utilities (logged propensities), served through the service's exploration "
            "policy (Thompson-style, `serve.strategy: thompson`: at least the arm's explore rate, more where the "
            "router's posterior is unsure; `benchmarks/results/exploration_sim/exploration_sim.md`) and decision "
            "log, ingested, "
            "retrained, promoted only by the gate (the paired DR difference, challenger minus champion, above 0 "
            "on the holdout: round 0's last 20% and the newest 20% of every later round's decisions, accumulating; "
            "rows where the logged `propensities` gave either router's choice less than 0.1 count as no "
            "difference: `promote.rule: estimate`, `promote.overlap: 0.1`). `greedy`: the naive "
            "router, no exploration, always deployed. `explore-naive`: the naive router with the same exploration "
            "(Thompson, at the same rate), always deployed. `vw`: Vowpal Wabbit `--cb_explore_adf` epsilon-greedy, "
            "online. `incumbent`: the "
            "logging policy (its expected utility). `skyline`: the `causal` arm's learner given full feedback on "
            "every streamed prompt (RM-Softmax from the direct method, both fitted on every model's outcome; the "
            "last 20% of the prompts early-stop it). Test utility is the deployed router's choice (explore 0) "
            "on the held-out 20% test prompts.",
            "", f"CPU: {meta.get('cpu_model', 'n/a')}; wall time {meta.get('wall_seconds', float('nan')):.0f} s "
            f"with {meta.get('jobs', 1)} process(es), cross-fitting folds {meta.get('cv', 'n/a')}."]
    DOCS.mkdir(exist_ok=True)
    for name, df in records.groupby("dataset"):
        dmeta = (meta.get("per_dataset") or {}).get(name, {})
        refs = dmeta.get("references", {})
        df = with_labels(df)
        png = DOCS / f"loop_{name}{'_' + args.tag if args.tag else ''}.png"
        plot(df, refs, name, png)
        table, summary = final_table(df, refs)
        out += ["", f"## {name} (lambda {df['lam'].iloc[0]:g}, {df['round'].max() + 1} rounds of "
                f"{dmeta.get('batch', '?')} prompts, seeds {sorted(df['seed'].unique().tolist())})", "",
                f"![{name}]({png.name})", "", table, "", "### Against the issue's goals (means over seeds)", "",
                *goals(summary, refs), *paired(df),
                *noise_note(refs, float(summary.set_index("label")["final_test"].get("skyline", float("nan")))),
                *feedback_gap(name),
                "", "### Test utility per round (mean over seeds)", "",
                per_round(df, "test_utility"), "", "### Realised utility per round (mean over seeds)", "",
                per_round(df, "deployed_utility")]
    if not args.tag:
        from .loop_change_report import committed_section

        out += more_seeds(records) + gate_evidence() + gate_strictness() + committed_section() + budget_section()
        out += static_section()
    (DOCS / "loop.md").write_text("\n".join(out) + "\n")
    print(f"wrote {DOCS / 'loop.md'}")


def static_section() -> list[str]:
    """The static encoder's loop arms beside MiniLM's (``static_vs_minilm``'s comparison.md, its loop
    study section), if committed (issue 33)."""
    path = results_dir("paper_protocol_static") / "comparison.md"
    text = path.read_text().split("\n") if path.exists() else []
    start = next((i for i, line in enumerate(text) if line.startswith("## Loop study")), None)
    if start is None:
        return []
    end = next((i for i in range(start + 1, len(text)) if text[i].startswith("## ")), len(text))
    return ["## The static encoder in the loop (issue 33)", "",
            "From `benchmarks/results/paper_protocol_static/comparison.md` (`python -m benchmarks.static_vs_minilm`; "
            "commands there):", *text[start + 1:end]]


def budget_section() -> list[str]:
    """The budget study's section (:mod:`benchmarks.budget_report`), if its results are committed."""
    from .budget_report import docs_section, floor_shares

    path = results_dir("budget") / "budget.csv"
    if not path.exists():
        return []
    meta_path = path.with_name("budget_meta.json")
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    df = pd.read_csv(path)
    return docs_section(df, meta, "loop_budget.png", floor_shares(path.parent / "traces", df))


def more_seeds(study: pd.DataFrame, tag: str = "seeds345") -> list[str]:
    """The section on ``loop/TAG.csv`` (``loop_study --seeds 3,4,5 --tag TAG``), if present: the
    study's close comparisons (``causal`` against ``explore-naive`` and ``greedy``) over the study's seeds
    and these together, paired per seed."""
    path = LOOP / f"{tag}.csv"
    if not path.exists():
        return []
    extra = pd.read_csv(path)
    arms = set(extra["arm"])
    df = pd.concat([study[study["arm"].isin(arms)], extra], ignore_index=True)
    df = with_labels(df[~df.duplicated(["dataset", "seed", "arm", "explore", "round"], keep="last")])
    seeds = sorted(df["seed"].unique())
    lines = ["", f"## More seeds for the close comparisons ({', '.join(map(str, seeds))})", "",
             f"`python -m benchmarks.loop_study --seeds 3,4,5 --arms {','.join(sorted(arms))} --tag {tag} --jobs 2 "
             f"--uniform-draws 1` reruns the arms whose differences above are within the noise on three more "
             f"seeds (`benchmarks/results/loop/{tag}.csv`); with the study's seeds they give the paired "
             "differences below: `causal` minus each peer, mean (standard error over seeds), final-round test "
             "utility and mean realised utility over rounds 1.. (exploration paid for).", "",
             "| dataset | causal | seeds | − explore-naive, same rate: final test | − greedy: final test "
             "| − explore-naive: realised | − greedy: realised |", "|---|---|---|---|---|---|---|"]
    for name, d in df.groupby("dataset"):
        final, real = per_seed_frames(d)
        for e in sorted(d.loc[d["arm"] == "causal", "explore"].unique()):
            c, en = label("causal", e), label("explore-naive", e)
            lines.append(f"| {name} | {c} | {final[c].notna().sum()} | {paired_cell(final, c, en)} | "
                         f"{paired_cell(final, c, 'greedy')} | {paired_cell(real, c, en)} | "
                         f"{paired_cell(real, c, 'greedy')} |")
    return lines


def gate_strictness() -> list[str]:
    """The section on ``loop_gate_alpha/``'s ``loop_gate_alpha.csv``, ``canary.csv`` and ``margin.csv``
    (``loop_gate_alpha.py``), if present."""
    folder = results_dir("loop_gate_alpha")
    frames = [pd.read_csv(folder / f) for f in ("loop_gate_alpha.csv", "canary.csv", "margin.csv")
              if (folder / f).exists()]
    if not frames:
        return []
    # the first sweep predates the canary: its exploration spread evenly (share 0)
    df = pd.concat([f if "challenger_share" in f else f.assign(challenger_share=0.0) for f in frames])
    df["margin"] = df["margin"].fillna(0.0) if "margin" in df else 0.0  # before the margin: superiority
    keys = ["dataset", "challenger_share", "alpha", "margin"]
    last = df[df["round"] == df.groupby("dataset")["round"].transform("max")]
    g = last.groupby(keys)
    cum = df.groupby(keys + ["seed"])["deployed_utility"].sum().groupby(keys)
    t = pd.DataFrame({"test": g["test_utility"].mean(), "se": g["test_utility"].sem(),
                      "cum": cum.mean(), "promoted": df[df["round"] > 0].groupby(keys)["promoted"].mean(),
                      "seeds": g["seed"].nunique()}).reset_index()
    lines = ["", "## How strict the gate should be, and where the exploration goes", "",
             "`python -m benchmarks.loop_gate_alpha` reruns the `causal` arm with only the gate's confidence and "
             "the canary changed (explore " + ", ".join(f"{e:g}" for e in sorted(df["explore"].unique())) + "). "
             "The gate promotes iff the lower end of the two-sided (1 - alpha) interval of the paired DR "
             "difference is above minus the *margin* (`promote.margin`: 0, the default, asks for evidence of an "
             "improvement; a positive margin for evidence that the challenger is not worse by more than it, "
             "non-inferiority); alpha 0.05 is the project's default, alpha 1 the point estimate alone. "
             "*Challenger share* is `serve.challenger_share`: the share of the exploration spread sent to the "
             "rejected challenger's choice where it differs from the champion's (1, the default since the "
             "canary; 0, spread evenly over the other models as before it). These sweeps predate the Thompson "
             "exploration: they explored exactly the rate given (`serve.strategy: spread`), so they compare "
             "gate settings with one another, not with the study above. Cumulative realised utility sums every "
             "round's deployed utility (exploration paid for), mean over seeds.", "",
             "| dataset | challenger share | alpha | margin | final-round test utility (SE over seeds) "
             "| cumulative realised utility | share of rounds 1.. promoted | seeds |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r.dataset} | {r.challenger_share:g} | {r.alpha:g} | {r.margin:g} | {r.test:.4f} ({r.se:.4f}) "
              f"| {r.cum:.3f} "
              f"| {r.promoted:.2f} | {r.seeds} |" for r in t.itertuples()]
    return lines


#: gate_diagnosis runs: file tag -> the gate's rule and settings (explore 0.05; holdout: 20% of each
#: round, accumulating). *estimate*: promote iff the difference > 0 (the bound at alpha 1 is the same);
#: *bound*: iff the lower end of its 95% interval is.
GATE_RUNS = {
    "alpha1_overlap0.1": "estimate, overlap 0.1 (the defaults)",
    "alpha1": "estimate, every row",
    "bound_overlap0": "bound, every row (the gate before stop 22)",
    "overlap0.1": "bound, overlap 0.1",
    "seeds345": "bound, overlap 0.1",
    "alpha0.5_overlap0.1": "bound at 50%, overlap 0.1",
    "overlap0.05": "bound, overlap 0.05, clip 0.05",
    "overlap0.02": "bound, overlap 0.02, clip 0.02",
    "margin0.01": "bound, overlap 0.1, margin 0.01",
    "margin0.02": "bound, overlap 0.1, margin 0.02",
    "holdout_fraction0.5": "bound, overlap 0.1, holdout 50% of each round",
    "holdout_fraction0.5_seeds345": "bound, overlap 0.1, holdout 50% of each round",
    "holdout_fraction0.5_llmrouter": "bound, overlap 0.1, holdout 50% of each round",
    "clip0.001": "bound, every row, clip 0.001",
    "holdout300": "bound, every row, holdout capped at 300 rows",
    "newest_slice": "bound, every row, each round's newest slice alone",
}


def gate_evidence() -> list[str]:
    """The section on ``gate_diagnosis/*.csv`` (``gate_diagnosis.py``), if present: each gate setting's
    decisions against the truth and the causal arm's final test utility."""
    folder = results_dir("gate_diagnosis")
    rows = []
    for tag, what in GATE_RUNS.items():
        stem = result_stem("gate_diagnosis", tag)
        if not (folder / f"{stem}.csv").exists():
            continue
        d = pd.read_csv(folder / f"{stem}.csv")
        if "gate_difference" not in d:  # before the overlap: the gate's difference is the DR difference
            d = d.assign(gate_difference=d.dr_difference, true_gate_difference=d.true_difference)
        final = pd.read_csv(folder / f"{stem}_final.csv") if (folder / f"{stem}_final.csv").exists() else None
        for name, g in d.groupby("dataset", sort=False):
            err = g.gate_difference - g.true_gate_difference
            better = g.true_difference > 0
            f = None if final is None else final[final.dataset == name]
            seeds = ",".join(str(x) for x in sorted(g.seed.unique()))
            rows.append(f"| {name} | {what} | {seeds} | {len(g)} | {int(better.sum())} | {int(g.promoted.sum())} "
                        f"({int((g.promoted & better).sum())}) | {err.mean():+.4f} | {err.abs().mean():.4f} | "
                        + ("n/a" if f is None or f.empty else f"{f.final_test_utility.mean():.4f}") + " |")
    if not rows:
        return []
    return ["", "## The gate's evidence against the truth", "",
            "`python -m benchmarks.gate_diagnosis` reruns the `causal` arm (explore 0.05) and scores "
            "the challenger and the champion of every gate decision on the gate's holdout prompts with the table's "
            "full feedback. *Error* is the gate's difference minus the true difference it estimates (rows without "
            "overlap count as 0 in both). Overlap: rows where the logging policy (the logs' `propensities`) "
            "served either router's choice with a probability below it count as no difference; there the clipped "
            "DR weight leaves the outcome model's shrinkage in place. Per-decision tables: "
            "`benchmarks/results/gate_diagnosis/*.md` (*n/a*: runs made before the script wrote `*_final.csv`; "
            "their .md gives the final utility).", "",
            "| dataset | gate | seeds | decisions | challenger truly better | promoted (truly better) | mean error "
            "| mean absolute error | final-round test utility |", "|---|---|---|---|---|---|---|---|---|", *rows]


if __name__ == "__main__":
    main()
