"""Selection rules replayed on the loggers study's stored candidates, without retraining (issue 32).

Each (dataset, logger, M, lambda) cell of ``benchmarks/results/loggers/candidates.parquet`` holds the RM
head's candidates with their test utility and their validation-log estimates (improvement over each
anchor; :mod:`benchmarks.loggers_study`). A rule picks one candidate per cell from the estimates alone;
its test utility is then compared with the cell's best simple alternative (``loggers.csv``).

Run from the repository root (the tune half chooses; ``--split report`` only once the rule is frozen)::

    python -m benchmarks.loggers_rules --split tune

Results: ``benchmarks/results/loggers/rules_<split>.md`` and ``rules_<split>.csv``.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from causal_router.features.hardware import cpu_model

from .common import results_dir

RESULTS = results_dir("loggers")
KEYS = ["dataset", "logger", "eval_set", "lam"]
#: Candidates a router can serve (the estimated logging probabilities are an anchor only).
SERVABLE = ["network", "dm", "logging", "dr-regress", "best-arm"]


def _lb(g: pd.DataFrame, anchor: str, z: float) -> pd.Series:
    return g[f"est_{anchor}"] - z * g[f"se_{anchor}"]


def anchored(default: str, z: float, cands=SERVABLE):
    """Keep ``default`` unless a candidate's improvement over it has a positive lower bound (the largest wins)."""
    def rule(g: pd.DataFrame) -> str:
        g = g[g.candidate.isin(cands)]
        lb = _lb(g, default, z).where(g.candidate != default, 0.0)
        return g.candidate.iloc[int(np.argmax(lb.to_numpy()))]
    rule.__name__ = f"anchor={default} z={z:g}"
    return rule


def anchored_split(default: str, z_simple: float, z_other: float, simple=("best-arm", "dr-regress"),
                   cands=SERVABLE):
    """As :func:`anchored`, with ``z_simple`` standard errors for the simple candidates (a constant arm,
    DR regress-and-compare: few degrees of freedom, no early-stopping winner's curse) and ``z_other``
    for the others."""
    def rule(g: pd.DataFrame) -> str:
        g = g[g.candidate.isin(cands)]
        z = np.where(g.candidate.isin(simple), z_simple, z_other)
        lb = (g[f"est_{default}"] - z * g[f"se_{default}"]).where(g.candidate != default, 0.0)
        return g.candidate.iloc[int(np.argmax(lb.to_numpy()))]
    rule.__name__ = f"anchor={default} z_simple={z_simple:g} z_other={z_other:g}"
    return rule


def own_value(z: float, cands=SERVABLE):
    """The candidate with the largest lower bound of its own value (pessimistic selection, no default)."""
    def rule(g: pd.DataFrame) -> str:
        g = g[g.candidate.isin(cands)]
        return g.candidate.iloc[int(np.argmax(_lb(g, "zero", z).to_numpy()))]
    rule.__name__ = f"own-value z={z:g}"
    return rule


def best_anchor(z: float, pool=("dm", "best-arm", "logging"), cands=SERVABLE):
    """The anchor is the member of ``pool`` with the largest own-value lower bound; it is left only for a
    candidate whose improvement over that anchor has a positive lower bound."""
    def rule(g: pd.DataFrame) -> str:
        gp = g[g.candidate.isin(pool)]
        anchor = gp.candidate.iloc[int(np.argmax(_lb(gp, "zero", z).to_numpy()))]
        return anchored(anchor, z, cands)(g)
    rule.__name__ = f"best-anchor{'/'.join(pool)} z={z:g}"
    return rule


def all_anchors(z: float, anchors=("dm", "best-arm", "logging-prob"), fallback="best-arm", cands=SERVABLE):
    """A candidate must improve on every anchor (its smallest lower bound over them > 0; the largest such
    wins); otherwise ``fallback`` (an anchor that is itself a servable candidate)."""
    def rule(g: pd.DataFrame) -> str:
        g = g[g.candidate.isin(cands)]
        worst = np.min([_lb(g, a, z).where(g.candidate != a, 0.0).to_numpy() for a in anchors], axis=0)
        i = int(np.argmax(worst))
        return g.candidate.iloc[i] if worst[i] > 0 else fallback
    rule.__name__ = f"all-anchors {'/'.join(anchors)} fb={fallback} z={z:g}"
    return rule


def rules() -> list:
    out = []
    for z in (0.0, 0.5, 1.0, 2.0):
        out += [anchored("dm", z), anchored("logging", z), anchored("best-arm", z), anchored("logging-prob", z),
                own_value(z), best_anchor(z), best_anchor(z, ("dm", "best-arm")),
                all_anchors(z), all_anchors(z, fallback="dm"), all_anchors(z, ("dm", "best-arm"))]
    for zs in (0.0, 0.25, 0.5, 1.0):
        for zo in (1.0, 2.0, 3.0):
            out.append(anchored_split("dm", zs, zo))
    return out


def replay(cand: pd.DataFrame, cells: pd.DataFrame, rule) -> pd.DataFrame:
    """Per cell of ``cells`` (loggers.csv rows): the rule's choice and its test utility."""
    picks = []
    for key, g in cand.groupby(KEYS, sort=False):
        name = rule(g)
        picks.append((*key, name, float(g.loc[g.candidate == name, "test_utility"].iloc[0])))
    p = pd.DataFrame(picks, columns=KEYS + ["pick", "utility"])
    return cells.merge(p, on=KEYS)


def score(df: pd.DataFrame) -> pd.DataFrame:
    d = df.assign(diff=df.utility - df.best_simple_utility)
    out = d.groupby(["dataset", "eval_set"]).agg(
        share_ok=("diff", lambda x: float((x >= -0.005).mean())), worst=("diff", "min"),
        mean_diff=("diff", "mean"), mean=("utility", "mean"))
    out["goal"] = (out.share_ok >= 0.95) & (out.worst >= -0.02) & (out.mean_diff >= 0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--split", default="tune", choices=["tune", "report"])
    args = ap.parse_args()
    cells = pd.read_csv(RESULTS / "loggers.csv")
    cells = cells[cells.split == args.split]
    cand = pd.read_parquet(RESULTS / "candidates.parquet")
    cand = cand[cand.split == args.split]
    rows = []
    current = replay(cand, cells, lambda g: g.candidate[g.chosen].iloc[0])

    def hindsight(g):  # the best servable candidate on the test prompts: no rule does better
        g = g[g.candidate.isin(SERVABLE)]
        return g.candidate.iloc[int(np.argmax(g.test_utility.to_numpy()))]
    hindsight.__name__ = "hindsight (test-chosen; a bound, not a rule)"
    for rule in [None, hindsight, *rules()]:
        df = current if rule is None else replay(cand, cells, rule)
        s = score(df)
        rows.append({"rule": "current (as trained)" if rule is None else rule.__name__,
                     "settings_met": int(s.goal.sum()), "share_ok": float((df.utility - df.best_simple_utility
                                                                          >= -0.005).mean()),
                     "worst": float((df.utility - df.best_simple_utility).min()),
                     "mean_diff": float((df.utility - df.best_simple_utility).mean()),
                     "min_setting_mean_diff": float(s.mean_diff.min()),
                     "picks": df.pick.value_counts().to_dict()})
    out = pd.DataFrame(rows).sort_values(["settings_met", "share_ok", "mean_diff"], ascending=False)
    out.to_csv(RESULTS / f"rules_{args.split}.csv", index=False)
    lines = [f"# Selection rules replayed on the {args.split} half (issue 32)", "",
             f"`python -m benchmarks.loggers_rules --split {args.split}`; CPU: {cpu_model()}. Over all "
             f"{len(current)} (table, logger, M, lambda) cells of the half: *settings met*: (table, M) "
             "settings meeting the goal (>= 95% of cells within 0.005 of the best simple alternative, none "
             "below -0.02, mean difference >= 0).", "",
             out.drop(columns="picks").to_markdown(index=False, floatfmt="+.4f")]
    (RESULTS / f"rules_{args.split}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
