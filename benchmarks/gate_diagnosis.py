"""The loop gate's DR estimates against the truth.

Runs the loop's ``causal`` arm (:func:`causal_router.loop.rounds.run_rounds`) and, at every gate decision,
also scores the challenger and the champion on the gate's holdout prompts with the table's full
feedback: the true values the DR estimates stand for. Records per dataset, seed and round: holdout
rows, rows where the two routers disagree, the DR value of each and of the paired difference with
its lower bound (the gate's own figures), the true values on the same prompts, and the decision.

Run from the repository root (embeddings from the cache, fp32)::

    python -m benchmarks.gate_diagnosis --datasets routerbench_subset --seeds 0,1,2 --explore 0.05

Results in ``benchmarks/results/gate_diagnosis/``, named by ``--tag`` (untagged: ``gate_diagnosis``):
``TAG.csv`` (one row per decision), ``TAG_final.csv`` (the arm's final-round test utility and mean
realised utility per seed) and ``TAG.md``.
"""

from __future__ import annotations

import argparse
import functools
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

import causal_router.loop.rounds as rounds
from causal_router.causal.ope import as_policy, supported
from causal_router.data import schema as S
from causal_router.features.embed import embed_texts
from causal_router.features.encoder import TransformerEncoder
from causal_router.loop.steps import gate
from causal_router.loop.stream import make_stream
from causal_router.promotion.gate import RULES, Policy
from causal_router.validation.loaders import load_full_feedback

from .common import DATA_ROOT, LOOP_SETTINGS, load_table_prices, result_stem, results_dir, table_path


def traced_gate(records: list, ff, context: dict, challenger, champion, holdout, X, lam, method, nuisances,
                prices=None, **kw):
    """The loop's gate (:func:`causal_router.promotion.gate.decide`), plus the truth on the holdout's prompts
    (appended to ``records``); the gate's settings are the script's flags (they replace the loop's ``rounds.GATE``)."""
    kw = {k: v for k, v in kw.items() if k not in ("alpha", "margin", "overlap", "rule")}
    decision = gate(challenger, champion, holdout, X, lam, method, nuisances, prices, overlap=context["overlap"],
                    margin=context["margin"], alpha=context["alpha"], rule=context["rule"], **kw)
    if champion is None:
        return decision
    row = {p: i for i, p in enumerate(map(str, ff.prompts))}
    idx = np.array([row[p] for p in holdout[S.PROMPT].astype(str)])
    U = ff.scores[idx] - lam * ff.costs[idx]
    ch, cp = Policy.of(challenger, method), Policy.of(champion, method)
    tokens = None  # the gate scores the routers with the logged prompt lengths: so does the truth
    if S.INPUT_TOKENS in holdout and holdout[S.INPUT_TOKENS].notna().all():
        tokens = holdout[S.INPUT_TOKENS].to_numpy(float)
    a = ch.probabilities(X, lam, ch.models, tokens).argmax(1)
    b = cp.probabilities(X, lam, ch.models, tokens).argmax(1)
    rows = np.arange(len(idx))
    logging, K = S.propensity_matrix(holdout, ch.models), len(ch.models)
    support = supported(logging, as_policy(a, K), context["overlap"]) & supported(logging, as_policy(b, K),
                                                                                  context["overlap"])
    gap = U[rows, a] - U[rows, b]
    records.append({**context, "holdout_rows": len(idx), "disagree": int((a != b).sum()),
                    "disagree_supported": int(((a != b) & support).sum()),
                    "gate_difference": decision.difference.value, "gate_low": decision.difference.ci_low,
                    "true_gate_difference": float(np.where(support, gap, 0.0).mean()),
                    "dr_challenger": decision.challenger.value, "dr_champion": decision.champion.value,
                    "dr_difference": decision.challenger.value - decision.champion.value,
                    "true_challenger": float(U[rows, a].mean()), "true_champion": float(U[rows, b].mean()),
                    "true_difference": float(U[rows, a].mean() - U[rows, b].mean()),
                    "promoted": decision.promoted, "reason": decision.reason})
    context["round"] += 1
    return decision


def write_markdown(df: pd.DataFrame, finals: pd.DataFrame, path: Path, command: str) -> None:
    overlap = float(df.overlap.iloc[0])
    lines = ["# The gate's evidence against the truth (issue 12)", "",
             f"Command: `{command}`. Every gate decision of the loop's `causal` arm; *true* values score the "
             "same two routers on the same holdout prompts with the table's full feedback. The gate promotes "
             f"iff its difference ({df['rule'].iloc[0] if 'rule' in df else 'bound'}: the estimate or its lower bound) "
             f"is above -{float(df.margin.iloc[0]):g}. *DR difference*: "
             "over every holdout row; "
             f"*gate difference*: rows where either router's choice was logged with probability < {overlap:g} "
             "count as 0 (overlap 0: the two are the same); *true gate difference*: the truth of the latter.", ""]
    for name, d in df.groupby("dataset", sort=False):
        err = d.dr_difference - d.true_difference
        gerr = d.gate_difference - d.true_gate_difference
        better = d.true_difference > 0
        f = finals[finals.dataset == name]
        lines += [f"## {name}", "",
                  f"- the `causal` arm's final-round test utility, mean over seeds: {f.final_test_utility.mean():.4f} "
                  f"({', '.join(f'{v:.3f}' for v in f.final_test_utility)}); mean realised utility "
                  f"{f.mean_deployed_utility.mean():.4f}",
                  f"- decisions: {len(d)}; challenger truly better on its holdout: {int(better.sum())}; promoted: "
                  f"{int(d.promoted.sum())} ({int((d.promoted & better).sum())} of them truly better); true gain "
                  f"of the promotions: {d.true_difference[d.promoted].sum():+.3f} in all",
                  f"- DR difference minus true difference: mean {err.mean():+.4f}, mean absolute {err.abs().mean():.4f}"
                  f"; DR champion minus true: mean {(d.dr_champion - d.true_champion).mean():+.4f}",
                  f"- gate difference minus its truth: mean {gerr.mean():+.4f}, mean absolute {gerr.abs().mean():.4f}",
                  "",
                  "| seed | round | holdout rows | disagree | of them with overlap | DR difference | gate difference "
                  "| its lower bound | true difference | true gate difference | promoted |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        lines += [f"| {r.seed} | {r.round} | {r.holdout_rows} | {r.disagree} | {r.disagree_supported} "
                  f"| {r.dr_difference:+.3f} | {r.gate_difference:+.3f} | {r.gate_low:+.3f} | {r.true_difference:+.3f} "
                  f"| {r.true_gate_difference:+.3f} | {r.promoted} |" for r in d.itertuples()]
        lines.append("")
    path.write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default="routerbench_subset")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--explore", type=float, default=0.05)
    ap.add_argument("--clip", type=float, default=None, help="propensity clip of the DR weights (default: the loop's)")
    ap.add_argument("--overlap", type=float, default=rounds.GATE["overlap"],
                    help="the gate's overlap threshold (0: every holdout row counts)")
    ap.add_argument("--margin", type=float, default=rounds.GATE["margin"], help="the gate's non-inferiority margin")
    ap.add_argument("--alpha", type=float, default=rounds.GATE["alpha"],
                    help="the gate's two-sided interval level (1: the bound is the point estimate)")
    ap.add_argument("--rule", default=rounds.GATE["rule"], choices=RULES,
                    help="promote on the estimate or its lower bound")
    ap.add_argument("--holdout-max-rows", default="2000",
                    help="the gate holdout's cap (ingest.holdout_max_rows; 'none': each round's newest slice alone)")
    ap.add_argument("--holdout-fraction", type=float, default=0.2,
                    help="share of each round's decisions that joins the gate's holdout (ingest.holdout_fraction)")
    ap.add_argument("--tag", default="", help="non-empty: gate_diagnosis/TAG.*")
    ap.add_argument("--data-root", default=str(DATA_ROOT))
    ap.add_argument("--out", type=Path, default=results_dir("gate_diagnosis"))
    args = ap.parse_args()
    cap = None if args.holdout_max_rows.lower() in ("none", "null") else int(args.holdout_max_rows)
    rounds.INGEST["holdout_max_rows"] = cap
    rounds.INGEST["holdout_fraction"] = args.holdout_fraction
    records: list = []
    finals: list = []
    encoder = TransformerEncoder(precision="fp32")
    for name in args.datasets.split(","):
        lam, n_rounds, batch = LOOP_SETTINGS[name]
        ff = load_full_feedback(table_path(name, args.data_root))
        X = embed_texts(list(ff.prompts), encoder=encoder)
        prices = load_table_prices(name)
        for seed in (int(s) for s in args.seeds.split(",")):
            context = {"dataset": name, "seed": seed, "round": 1, "overlap": args.overlap, "margin": args.margin,
                       "alpha": args.alpha, "rule": args.rule}
            rounds.gate = functools.partial(traced_gate, records, ff, context)
            stream = make_stream(ff, X, rounds=n_rounds, batch=batch, lam=lam, seed=seed, incumbent="cost-biased:3")
            nuisances = rounds.loop_nuisances(seed)
            if args.clip is not None:
                nuisances = replace(nuisances, clip=args.clip)
            out = rounds.run_rounds(stream, args.explore, nuisances=nuisances, prices=prices)
            finals.append({"dataset": name, "seed": seed, "final_test_utility": out[-1]["test_utility"],
                           "mean_deployed_utility": float(np.mean([r["deployed_utility"] for r in out]))})
            print(name, seed, flush=True)
    rounds.gate = gate
    df = pd.DataFrame(records)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = result_stem("gate_diagnosis", args.tag)
    df.to_csv(args.out / f"{stem}.csv", index=False)
    pd.DataFrame(finals).to_csv(args.out / f"{stem}_final.csv", index=False)
    command = (f"python -m benchmarks.gate_diagnosis --datasets {args.datasets} --seeds {args.seeds} "
               f"--explore {args.explore:g}" + (f" --clip {args.clip:g}" if args.clip is not None else "")
               + "".join(f" --{k} {getattr(args, k):g}" if k != "rule" else f" --rule {args.rule}"
                         for k in ("overlap", "margin", "alpha", "rule") if getattr(args, k) != rounds.GATE[k])
               + (f" --holdout-max-rows {args.holdout_max_rows}" if cap != 2000 else "")
               + (f" --holdout-fraction {args.holdout_fraction:g}" if args.holdout_fraction != 0.2 else "")
               + (f" --tag {args.tag}" if args.tag else ""))
    write_markdown(df, pd.DataFrame(finals), args.out / f"{stem}.md", command)
    print((args.out / f"{stem}.md").read_text())


if __name__ == "__main__":
    main()
