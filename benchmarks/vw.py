"""The online peer: Vowpal Wabbit's contextual bandit (``--cb_explore_adf``) over the same stream.

Features: the prompt embedding as shared features, one action namespace per model (its identity
and its mean cost on the streamed prompts' logs is unknown to VW, so only identity), crossed with
the shared features (``-q sa``) so that each model gets its own linear utility. Cost is
``-(quality - lam * cost)``. VW learns from the incumbent's round-0 logs with their
propensities, then explores with epsilon-greedy at rate ``explore`` and learns from every
prompt it routes.
"""

from __future__ import annotations

import numpy as np

from causal_router.loop.rounds import record, round0
from causal_router.loop.stream import Stream

VW_MISSING = "the vw arm needs Vowpal Wabbit: pip install -e '.[loop]' (vowpalwabbit)"


def _workspace(explore: float, seed: int):
    try:
        import vowpalwabbit
    except ImportError:  # pragma: no cover - the 'loop' extra is installed for tests
        raise RuntimeError(VW_MISSING) from None
    return vowpalwabbit.Workspace(f"--cb_explore_adf --epsilon {float(explore):g} -q sa --random_seed {int(seed)} "
                                  "--quiet")


def _shared(x: np.ndarray) -> str:
    return "shared |s " + " ".join(f"{j}:{v:.5g}" for j, v in enumerate(x) if v != 0.0)


def _example(shared: str, K: int, label: tuple[int, float, float] | None = None) -> list[str]:
    lines = [shared]
    for k in range(K):
        prefix = f"0:{label[1]:.6g}:{label[2]:.6g} " if label is not None and label[0] == k else ""
        lines.append(f"{prefix}|a m{k}")
    return lines


class VWRouter:
    """A VW ``--cb_explore_adf`` learner over ``K`` models (costs: negative utilities)."""

    def __init__(self, K: int, explore: float, seed: int = 0, scale: float = 1.0):
        self.K, self.scale = int(K), float(scale)
        self.ws = _workspace(explore, seed)

    def pmf(self, x: np.ndarray) -> np.ndarray:
        """Exploration probabilities (K,) for one prompt's features (d,)."""
        p = np.asarray(self.ws.predict(_example(_shared(x), self.K)), dtype=float)
        return p / p.sum()

    def learn(self, x: np.ndarray, action: int, utility: float, prob: float) -> None:
        self.ws.learn(_example(_shared(x), self.K, (int(action), -float(utility) * self.scale, float(prob))))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Greedy choices (n,): the most probable model of each pmf."""
        return np.array([int(np.argmax(self.pmf(x))) for x in X], dtype=int)

    def close(self) -> None:
        self.ws.finish()


def run_vw(stream: Stream, explore: float, test_every_round: bool = True, scenario=None) -> list[dict]:
    """The VW arm's records, one per round (as :func:`benchmarks.loop_arms.run_arm`). Under a
    ``scenario`` (:class:`causal_router.loop.scenarios.Scenario`), VW's pmf is renormalised over the
    served pool (the probability it learns with is the one it drew with), it learns only the reported
    outcomes, and utilities are the round's world's."""
    from causal_router.loop.scenarios import LOW_SCORE, Scenario

    given, sc = scenario is not None, scenario or Scenario()
    K = len(stream.models)
    vw = VWRouter(K, explore, stream.seed)
    start = sc.start(stream)
    idx0, _, chosen0, regret, _ = round0(start)
    out = []
    rng = np.random.default_rng(np.random.SeedSequence(stream.seed, spawn_key=(202,)))
    fb = np.random.default_rng(np.random.SeedSequence(stream.seed, spawn_key=(203,)))
    try:
        for i, k in zip(idx0, chosen0):  # the incumbent's logs, with their propensities
            vw.learn(stream.X[i], int(k), start.utility[i, k], start.incumbent[i, k])
        for r in range(stream.rounds):
            world = sc.world(stream, r)
            U = world.utility
            served = np.isin(stream.models, sc.pool(stream, r)).astype(float)
            idx = stream.round_prompts(r)
            if r == 0:
                chosen = chosen0
            else:
                low = float((world.ff.scores[idx] < LOW_SCORE).mean())
                chosen = np.empty(len(idx), dtype=int)
                for j, i in enumerate(idx):
                    p = vw.pmf(stream.X[i]) * served
                    p = p / p.sum() if p.sum() > 0 else served / served.sum()
                    k = int(rng.choice(K, p=p))
                    if sc.reported(np.array([world.ff.scores[i, k]]), fb, low)[0]:
                        vw.learn(stream.X[i], k, U[i, k], p[k])
                    chosen[j] = k
                regret += world.regret(idx, chosen)
            sc.after_round(stream, r, chosen)
            test = world.test_utility(_served_choice(vw, stream.X[stream.test], served)) if test_every_round or \
                r == stream.rounds - 1 else float("nan")
            out.append(record("vw", explore, r, stream, (r + 1) * stream.batch,
                              world.realised(idx, chosen).mean(), test, regret, None))
            if given:
                out[-1]["changed_model_share"] = (None if sc.changed is None
                                                  else float(np.mean(chosen == stream.models.index(sc.changed))))
    finally:
        vw.close()
    return out


def _served_choice(vw: VWRouter, X: np.ndarray, served: np.ndarray) -> np.ndarray:
    """VW's greedy choices (n,) among the served models (``served``: (K,) 0/1)."""
    return np.array([int(np.argmax(vw.pmf(x) * served + served * 1e-12)) for x in X], dtype=int)
