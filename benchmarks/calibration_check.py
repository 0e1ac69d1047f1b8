"""Does ``causal-router calibrate`` meet its target on held-out prompts? (issue 30's calibration goal)

    python -m benchmarks.calibration_check                       # both tables, seeds 0-2
    python -m benchmarks.calibration_check --datasets routerbench_subset --seeds 0 --tag probe

Per (table, seed): logs simulated from the loop's incumbent (cost-biased, beta 3); the interval router
(with its RM-Softmax endpoints) trained on the budget grid (:data:`causal_router.loop.budget.GRID_MULTIPLES`
x the loop study's lambda) from the train and val logs. The test prompts are cut in two halves (seeded);
each half in turn is *held out*: the other half's prompts are logged by the same logger (one model drawn
per prompt from its logging probabilities, the exact propensity recorded) and, with the val logs, are
what :class:`causal_router.policy.budget.BudgetCalibrator` calibrates on (DR nuisances cross-fitted on
those logs), exactly as ``calibrate --logs`` does. On the held-out half, the router's choices at the
calibrated lambda are scored with the table's true costs (full feedback).

Targets: budgets of 0.2, 0.4 and 0.6 x the best model's mean cost (as ``loop --budget``), and strong
shares of 0.2 and 0.4 for the best model. ``ratio`` = the held-out truth / the target. A budget the router
cannot spend at its spend peak is a ceiling (``spendable`` False): met when ``ratio <= 1.03``; otherwise
met when ``|ratio - 1| <= 0.03``.

Results: ``benchmarks/results/calibration_check/calibration_check.csv`` (``TAG.csv`` with ``--tag``) and
``.md`` beside it.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import pandas as pd

from .common import DATA_ROOT, LOOP_SETTINGS, load_table, result_stem, results_dir

FRACTIONS = (0.2, 0.4, 0.6)
SHARES = (0.2, 0.4)
TOL = 0.03
INCUMBENT = ("cost-biased", 3.0)


def logged_half(test: pd.DataFrame, prompts, models, rng) -> pd.DataFrame:
    """One logged row per prompt of ``prompts``: the model drawn from the logger's probabilities (the long
    test frame's ``propensity``), its outcome, its propensity and every model's (``propensities``)."""
    from causal_router.data.schema import propensities_json

    rows = []
    for pid in prompts:
        g = test[test["prompt_id"] == pid].set_index("model").loc[models]
        p = g["propensity"].to_numpy(dtype=float)
        k = int(rng.choice(len(models), p=p / p.sum()))
        row = g.iloc[k].to_dict() | {"model": models[k], "prompt_id": pid}
        row["propensities"] = propensities_json(models, p)
        rows.append(row)
    return pd.DataFrame(rows)


def run(name: str, seed: int, data_root, cv: int = 5) -> list[dict]:
    from causal_router.causal.nuisances import NuisanceConfig
    from causal_router.data.simulate import simulate
    from causal_router.loop.budget import budget_grid, budget_usd
    from causal_router.policy.budget import BudgetCalibrator
    from causal_router.policy.data import build_routing_data, holdout_evidence
    from causal_router.policy.training import fit_routers

    from .protocol import positions

    ff, X = load_table(name, data_root)
    models = [str(m) for m in ff.models]
    lam = LOOP_SETTINGS[name][0]
    grid = budget_grid(lam)
    sim = simulate(ff, X, INCUMBENT[0], beta=INCUMBENT[1], seed=seed)
    tr, va = positions(ff, sim.train["prompt_id"]), positions(ff, sim.val["prompt_id"])
    start = time.perf_counter()
    data = build_routing_data(sim.train, X[tr], sim.val, X[va], models, random_state=seed)
    routers, _ = fit_routers(data, grid, ["rm-softmax", "rm-interval"])
    router = routers["rm-interval"]
    train_s = time.perf_counter() - start
    rng = np.random.default_rng([seed, 30])
    test_ids = np.array(sorted(sim.test["prompt_id"].unique()))
    rng.shuffle(test_ids)
    halves = np.array_split(test_ids, 2)
    best = int(np.argmax(np.nanmean(ff.scores, axis=0)))
    out = []
    for h, held in enumerate(halves):
        logged = logged_half(sim.test, halves[1 - h], models, rng)
        logs = pd.concat([sim.val, logged], ignore_index=True)
        Xl = X[positions(ff, logs["prompt_id"])]
        ev = holdout_evidence(logs, Xl, models, NuisanceConfig(cv=cv, random_state=seed))
        cal = BudgetCalibrator(router, models, ev, (grid[0], grid[-1]), grid)
        pos = positions(ff, held)
        tok = ff.input_tokens[pos] if ff.input_tokens is not None else None

        def truth(lam_, pos=pos, tok=tok):
            choice = np.asarray(router.scores(X[pos], lam_, tok)).argmax(1)
            return float(ff.costs[pos, choice].mean()), float(np.mean(choice == best))

        targets = [("budget", f, budget_usd(ff, f)) for f in FRACTIONS] + [("strong_share", s, s) for s in SHARES]
        for kind, frac, value in targets:
            c = (cal.calibrate(budget=value) if kind == "budget" else cal.calibrate(strong_share=(models[best], value)))
            cost, share = truth(c.lam)
            got = cost if kind == "budget" else share
            spendable = kind != "budget" or c.peak_cost is None or c.peak_cost >= value
            ratio = got / value
            met = (ratio <= 1 + TOL) if not spendable else abs(ratio - 1) <= TOL
            out.append({"dataset": name, "seed": seed, "fold": h, "target": kind, "fraction": frac, "value": value,
                        "lam": c.lam, "calibration_met": c.met, "spendable": spendable, "dr_estimate":
                        c.cost.value if kind == "budget" else c.shares[models[best]], "heldout": got,
                        "ratio": ratio, "met": bool(met), "calibration_rows": len(logs), "heldout_prompts": len(held),
                        "train_seconds": train_s})
    return out


def report(df: pd.DataFrame, meta: dict) -> list[str]:
    lines = ["# Calibration on held-out prompts (issue 30)", "", f"Command: `{meta['command']}`", "",
             f"CPU: {meta['cpu']}; wall time {meta['seconds']:.0f} s.", "",
             f"Goal: within +-{TOL:.0%} of the target on held-out prompts (a budget the router cannot spend: at "
             "most 1.03 of it).", ""]
    for (d, t), g in df.groupby(["dataset", "target"], sort=False):
        lines.append(f"- **{d}, {t}**: met in {int(g['met'].sum())} of {len(g)} (seed, fold, target) checks; ratio "
                     f"held-out / target {g['ratio'].min():.3f} to {g['ratio'].max():.3f} (median "
                     f"{g['ratio'].median():.3f}); unspendable budgets: {int((~g['spendable']).sum())}.")
    lines += ["", "| table | seed | fold | target | fraction | lambda | DR estimate | held-out | ratio | met |",
              "|---|---:|---:|---|---:|---:|---:|---:|---:|---|"]
    for r in df.itertuples():
        lines.append(f"| {r.dataset} | {r.seed} | {r.fold} | {r.target} | {r.fraction:g} | {r.lam:.4g} | "
                     f"{r.dr_estimate:.4g} | {r.heldout:.4g} | {r.ratio:.3f} | {'yes' if r.met else 'no'}"
                     f"{'' if r.spendable else ' (ceiling)'} |")
    return lines


def main() -> None:
    import sys

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default=",".join(LOOP_SETTINGS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--data-root", default=str(DATA_ROOT))
    ap.add_argument("--out", default=str(results_dir("calibration_check")))
    ap.add_argument("--tag", default="")
    ap.add_argument("--cv", type=int, default=5)
    args = ap.parse_args()
    start = time.perf_counter()
    rows = []
    for name in args.datasets.split(","):
        for seed in [int(s) for s in args.seeds.split(",")]:
            rows += run(name, seed, args.data_root, args.cv)
            print(f"{name} seed {seed}: done ({time.perf_counter() - start:.0f} s)", flush=True)
    df = pd.DataFrame(rows)
    from pathlib import Path

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = result_stem("calibration_check", args.tag)
    df.to_csv(out / f"{stem}.csv", index=False)
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
               platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    meta = {"command": "python -m benchmarks.calibration_check " + " ".join(sys.argv[1:]), "cpu": cpu,
            "seconds": time.perf_counter() - start}
    (out / f"{stem}.md").write_text("\n".join(report(df, meta)) + "\n")
    (out / f"{stem}_meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print("\n".join(report(df, meta)[:12]))


if __name__ == "__main__":
    main()
