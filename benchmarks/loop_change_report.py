"""Report of the loop under change: ``python -m benchmarks.loop_change_report [--tag TAG]`` reads
``benchmarks/results/loop_change/<stem>.csv`` and its meta, writes ``<stem>.md`` (tables and the issue's
goals) and one plot per scenario (``<stem>_<scenario>.png``: test utility per round, mean over seeds)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from .common import result_stem, results_dir

CHANGED = ("new-model", "degrade", "price")
PEERS = ("explore-naive", "greedy", "vw", "litellm-adaptive")


def _sem(x) -> float:
    x = np.asarray(x, dtype=float)
    return float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


def final(df: pd.DataFrame) -> pd.DataFrame:
    """The last round's row per (dataset, seed, scenario, arm), with the mean realised utility over rounds 1..."""
    key = ["dataset", "seed", "scenario", "arm"]
    last = df.sort_values("round").groupby(key).tail(1).set_index(key)
    last["mean_realised"] = df[df["round"] >= 1].groupby(key)["realised_utility"].mean()
    return last.reset_index()


def scenario_table(fin: pd.DataFrame, dataset: str, scenario: str) -> list[str]:
    g = fin[(fin["dataset"] == dataset) & (fin["scenario"] == scenario)]
    lines = ["| arm | final test utility (std) | mean realised utility, rounds 1.. | cumulative regret after change "
             "| changed model's share, last round | rounds to adapt (per seed) |", "|---|---|---|---|---|---|"]
    for arm, a in g.groupby("arm", sort=False):
        adapt = ", ".join("never" if pd.isna(x) else str(int(x)) for x in a["rounds_to_adapt"])
        share = "" if a["changed_model_share"].isna().all() else f"{a['changed_model_share'].mean():.3f}"
        lines.append(f"| {arm} | {a['test_utility'].mean():.4f} ({a['test_utility'].std(ddof=0):.3f}) | "
                     f"{a['mean_realised'].mean():.4f} | {a['cumulative_regret_after_change'].mean():.1f} | {share} | "
                     f"{adapt if scenario in CHANGED else ''} |")
    return lines


def goals(df: pd.DataFrame, fin: pd.DataFrame, dataset: str) -> list[str]:
    """The issue's goals for ``causal`` on one dataset, each in one line."""
    out = []
    f = fin[fin["dataset"] == dataset].set_index(["scenario", "arm", "seed"]).sort_index()
    scenarios = list(dict.fromkeys(fin[fin["dataset"] == dataset]["scenario"]))

    def col(sc, arm, c):
        return f.loc[(sc, arm)][c] if (sc, arm) in f.index.droplevel(2) else None

    for sc in [s for s in scenarios if s in CHANGED]:
        a = col(sc, "causal", "rounds_to_adapt")
        if a is not None:
            ok = all(pd.notna(x) and x <= 2 for x in a)
            out.append(f"- **Adapting**, {sc}: rounds to adapt per seed {[None if pd.isna(x) else int(x) for x in a]}: "
                       f"{'yes' if ok else 'NO'}")
    for sc in scenarios:
        c = col(sc, "causal", "cumulative_regret_after_change")
        if c is None:
            continue
        parts, ok = [], True
        for peer in PEERS:
            p = col(sc, peer, "cumulative_regret_after_change")
            if p is None:
                continue
            d = (c - p).dropna().to_numpy(float)  # paired over seeds: negative is less regret for causal
            se = _sem(d)
            ok &= bool(d.mean() < 0 and (np.isfinite(se) and -d.mean() > se))
            parts.append(f"{peer} {d.mean():+.1f} ({'n/a' if not np.isfinite(se) else f'{se:.1f}'})")
        out.append(f"- **Regret**, {sc}: causal minus each peer, cumulative regret after the change, mean (paired SE): "
                   + "; ".join(parts) + f": lowest by more than one SE: {'yes' if ok else 'NO'}")
    for sc in scenarios:
        c, lt = col(sc, "causal", "test_utility"), col(sc, "litellm-adaptive", "test_utility")
        if c is None or lt is None:
            continue
        d = float((c - lt).dropna().mean())
        out.append(f"- **Against LiteLLM**, {sc}: final test utility causal {c.mean():.4f}, litellm-adaptive "
                   f"{lt.mean():.4f} (cost weight {col(sc, 'litellm-adaptive', 'cost_weight').tolist()}): "
                   f"{d:+.4f}: {'yes' if d >= 0.01 else 'NO'}")
    c_b, c_n = col("partial-feedback-b", "causal", "test_utility"), col("none", "causal", "test_utility")
    if c_b is not None and c_n is not None:
        d = float(c_b.mean() - c_n.mean())
        out.append(f"- **Partial feedback**: causal's final test utility in partial-feedback-b {c_b.mean():.4f}, "
                   f"with full feedback (none) {c_n.mean():.4f}: {d:+.4f}: {'yes' if abs(d) <= 0.01 else 'NO'} "
                   f"(within 0.01)")
    g = df[df["dataset"] == dataset]
    for sc in scenarios:
        m = g[g["scenario"] == sc].groupby(["arm", "round"])["test_utility"].mean()
        if "causal" not in m.index.get_level_values(0) or "skyline" not in m.index.get_level_values(0):
            continue
        gap = (m["skyline"] - m["causal"])
        gap = gap[gap.index >= 5]
        if len(gap):
            out.append(f"- **Moonshot**, {sc}: skyline minus causal, test utility, rounds 5..: "
                       f"{', '.join(f'{x:+.3f}' for x in gap)}: {'yes' if (gap <= 0.01).all() else 'NO'}")
    return out


def plot(df: pd.DataFrame, scenario: str, path: Path, change_round: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = df[df["scenario"] == scenario]
    names = list(dict.fromkeys(g["dataset"]))
    fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names):
        m = g[g["dataset"] == name].groupby(["arm", "round"])["test_utility"].mean()
        for arm in dict.fromkeys(g["arm"]):
            if arm in m.index.get_level_values(0):
                ax.plot(m[arm].index, m[arm].values, marker="o", ms=3, label=arm,
                        lw=2.5 if arm == "causal" else 1.2, ls="--" if arm == "skyline" else "-")
        if scenario != "none":
            ax.axvline(change_round - 0.5, color="grey", lw=0.8, ls=":")
        ax.set_title(f"{name}: {scenario}")
        ax.set_xlabel("round")
        ax.set_ylabel("test utility (mean over seeds)")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


SECTION = "## The loop under change"
#: What the section says before the run's own report (the scenarios and arms are defined in the code's docstrings).
INTRO = [
    "`python -m benchmarks.loop_change` runs every arm on every scenario of `causal-router loop --scenario` "
    "(`causal_router/loop/scenarios.py`) on the loop study's streams, exploration 0.05, the change at round 3: "
    "`new-model` (the model with the highest mean utility at the study's lambda is out of the pool in rounds 0-2 "
    "and joins at round 3 through the service's cold-start share, `serve.cold_start_share` 0.05 until "
    "`serve.cold_start_outcomes` 50 outcomes), `degrade` (from round 3 the model `causal`'s champion served most "
    "in round 2 answers every prompt as the table's weakest model, the lowest mean score, answers it; its costs "
    "stay its own), `price` (the dearest model costs a third from round 3), `partial-feedback-a` / `-b` (30% of "
    "decisions get a score, at random / a score below 0.5 three times as likely to be reported; a decision "
    "without a score never becomes a training row, the gateway's rule in `serving/ingest.py`), `none`.",
    "",
    "`litellm-adaptive` is LiteLLM's adaptive router's own bandit (`bandit.py`: a Beta cell per (request type, "
    "model), Thompson sampling, `quality_weight * sample + cost_weight * normalised cost`) driven offline with "
    "its own classifier (`classifier.py`, regular expressions, runs offline), tiers declared from price, and "
    "every cost weight of 0-0.8 tried: the records are those of the weight with the best final test utility "
    "(`benchmarks/litellm_adaptive.py`). The skyline is trained on the world as it is (every seen prompt's "
    "current outcomes among the served models) and routes each round knowing that round's world.",
    "",
    "Rounds to adapt: the first round of the changed world (1 = round 3) where the arm's share of decisions "
    "to the changed model (`degrade`: away from it) reaches 80% of the skyline's. Cumulative regret after the "
    "change: summed per-prompt regret over rounds 3.. in each round's world.",
]


def docs_section(out: Path, stem: str, meta: dict) -> list[str]:
    """docs/loop.md's section on the change study: the intro, then ``<stem>.md``'s body with its links
    made relative to docs/."""
    body = (out / f"{stem}.md").read_text().splitlines()[1:]
    rel = "../benchmarks/results/loop_change/"
    body = [("#" + line) if line.startswith("#") else line.replace("](" + stem + "_", "](" + rel + stem + "_")
            for line in body]
    note = ([f"> **REDUCED RUN** ({', '.join(meta['datasets'])}, seeds {meta['seeds']}): the full study "
             "(both tables, seeds 0-2) was not run in the time this work had.", ""] if meta.get("reduced") else [])
    reading = out / "reading.md"  # the findings in words, written by hand beside the generated report
    words = reading.read_text().splitlines() + [""] if reading.exists() else []
    return ["", SECTION, "", *INTRO, "", *note, *words, *body]


def committed_section() -> list[str]:
    """The section from the committed results (the full run's, else the reduced run's), or nothing."""
    out = results_dir("loop_change")
    for stem in ("loop_change", "reduced_all", "reduced"):
        if (out / f"{stem}.md").exists() and (out / f"{stem}_meta.json").exists():
            return docs_section(out, stem, json.loads((out / f"{stem}_meta.json").read_text()))
    return []


def write_docs(lines: list[str], path: Path) -> None:
    """Put ``lines`` in docs/loop.md: in place of the section, else before the budget section, else at the end."""
    text = path.read_text()
    new = "\n".join(lines).strip("\n") + "\n"
    budget = "\n## Holding a budget in the loop"
    if "\n" + SECTION in text:
        head, rest = text.split("\n" + SECTION, 1)
        tail = rest[rest.index(budget):] if budget in rest else ""
        text = head.rstrip("\n") + "\n\n" + new + tail
    elif budget in text:
        head, tail = text.split(budget, 1)
        text = head.rstrip("\n") + "\n\n" + new + budget + tail
    else:
        text = text.rstrip("\n") + "\n\n" + new
    path.write_text(text)


def merge(out: Path, parts, stem: str) -> None:
    """Join the runs ``parts`` (their CSVs and metas) into ``stem``'s: per-row metrics are per
    (dataset, seed, scenario, arm), so runs on other seeds or scenarios join as they are."""
    metas = [json.loads((out / f"{p}_meta.json").read_text()) for p in parts]
    df = pd.concat([pd.read_csv(out / f"{p}.csv") for p in parts], ignore_index=True)
    df.to_csv(out / f"{stem}.csv", index=False)
    meta = {**metas[0], "reduced": any(m["reduced"] for m in metas), "tag": stem,
            "command": " ; ".join(m["command"] for m in metas) + f" ; python -m benchmarks.loop_change_report "
            f"--merge {','.join(parts)} --tag {stem}",
            "seeds": sorted({s for m in metas for s in m["seeds"]}),
            "wall_seconds": sum(m["wall_seconds"] for m in metas),
            "per_job": {k: v for m in metas for k, v in m["per_job"].items()}, "parts": list(parts)}
    (out / f"{stem}_meta.json").write_text(json.dumps(meta, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tag", default="")
    ap.add_argument("--out", default=str(results_dir("loop_change")))
    ap.add_argument("--docs", action="store_true", help="also write docs/loop.md's section")
    ap.add_argument("--merge", default="", help="comma-separated tags of runs (e.g. one seed each) to join "
                    "into --tag first")
    args = ap.parse_args()
    out = Path(args.out)
    stem = result_stem("loop_change", args.tag)
    if args.merge:
        merge(out, args.merge.split(","), stem)
    df = pd.read_csv(out / f"{stem}.csv")
    meta = json.loads((out / f"{stem}_meta.json").read_text())
    fin = final(df)
    lines = [f"# The loop under change{' (REDUCED run)' if meta.get('reduced') else ''}", "",
             f"Generated by `python -m benchmarks.loop_change_report{' --tag ' + args.tag if args.tag else ''}` from "
             f"`benchmarks/results/loop_change/{stem}.csv`, written by `{meta['command']}`.", "",
             f"CPU: {meta['cpu_model']}; wall time {meta['wall_seconds']:.0f} s with {meta['jobs']} process(es); "
             f"seeds {meta['seeds']}; exploration {meta['explore']}; the change at round {meta['change_round']}; "
             f"adapted: the changed model's share (degrade: the share away from it) at least "
             f"{meta['adapt_share']:.0%} of the skyline's, counted from 1 (the first round of the changed world).", "",
             "Changed model per job (degrade: the one causal's champion served most in round 2; the weaker model "
             "whose outcomes it takes):", ""]
    for job, info in meta["per_job"].items():
        if info.get("changed_model"):
            lines.append(f"- {job}: {info['changed_model']}" + (f" -> outcomes of {info['weaker_model']}"
                                                                  if info.get("weaker_model") else ""))
    for dataset in dict.fromkeys(df["dataset"]):
        lines += ["", f"## {dataset}", "", "### Against the issue's goals", ""] + goals(df, fin, dataset)
        for sc in dict.fromkeys(df[df["dataset"] == dataset]["scenario"]):
            lines += ["", f"### {sc}", "", f"![{sc}]({stem}_{sc}.png)", ""] + scenario_table(fin, dataset, sc)
    for sc in dict.fromkeys(df["scenario"]):
        plot(df, sc, out / f"{stem}_{sc}.png", meta["change_round"])
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print(f"{stem}.md written")
    if args.docs:
        from .common import ROOT

        write_docs(docs_section(out, stem, meta), ROOT / "docs" / "loop.md")
        print("docs/loop.md: section written")


if __name__ == "__main__":
    main()
