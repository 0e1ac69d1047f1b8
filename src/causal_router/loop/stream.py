"""The prompt stream of a simulated deployment: the split, the seeded order, the rounds, the incumbent.

The prompts are split as ``simulate`` splits them (:func:`causal_router.data.simulate.split_prompts`):
the test 20% is held out and never streamed; the train and val prompts, shuffled with the seed,
are the stream, cut into rounds of ``batch`` prompts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.logging_policies import POLICIES, logging_probabilities
from ..data.matrices import FullFeedback
from ..data.simulate import split_prompts

#: Spawn key of the stream order's seed sequence (apart from simulate's keys 0-7).
_ORDER = 100


def parse_incumbent(text: str) -> tuple[str, float | None]:
    """``"cost-biased:3"`` -> ("cost-biased", 3.0); ``"uniform"`` -> ("uniform", None)."""
    name, _, strength = str(text).partition(":")
    if name not in POLICIES or name == "previous-router":
        raise ValueError(f"incumbent must be uniform or cost-biased[:BETA], got {text!r}")
    try:
        return name, float(strength) if strength else None
    except ValueError:
        raise ValueError(f"incumbent strength must be a number, got {strength!r} in {text!r}") from None


@dataclass
class Stream:
    """One seeded stream over a full-feedback table.

    Attributes
    ----------
    ff : FullFeedback        ``n`` prompts, ``K`` models
    X : ndarray (n, d)       prompt features, rows aligned with ``ff.prompt_ids``
    lam : float              cost weight of the utility ``score - lam * cost``
    seed : int
    batch : int              prompts per round
    rounds : int
    order : ndarray of int (rounds * batch,)   streamed prompt indices, in stream order
    test : ndarray of int (m,)                 held-out prompt indices (never streamed)
    incumbent : ndarray (n, K)                 the incumbent logging policy's probabilities
    """

    ff: FullFeedback
    X: np.ndarray
    lam: float
    seed: int
    batch: int
    rounds: int
    order: np.ndarray
    test: np.ndarray
    incumbent: np.ndarray

    @property
    def models(self) -> list[str]:
        return [str(m) for m in self.ff.models]

    @property
    def utility(self) -> np.ndarray:
        """True utility (n, K) at ``lam``."""
        return self.ff.utility(self.lam)

    def round_prompts(self, r: int) -> np.ndarray:
        """Prompt indices (batch,) of round ``r``."""
        if not 0 <= r < self.rounds:
            raise IndexError(f"round {r} outside 0..{self.rounds - 1}")
        return self.order[r * self.batch:(r + 1) * self.batch]

    def seen(self, r: int) -> np.ndarray:
        """Prompt indices streamed in rounds 0..r."""
        return self.order[:(r + 1) * self.batch]

    def realised(self, idx, actions) -> np.ndarray:
        """Utility (m,) of ``actions`` (m,) on prompts ``idx`` (m,)."""
        return self.utility[np.asarray(idx), np.asarray(actions)]

    def regret(self, idx, actions) -> float:
        """Summed per-query regret against the oracle (the best model of each prompt)."""
        u = self.utility[np.asarray(idx)]
        return float((u.max(1) - u[np.arange(len(u)), np.asarray(actions)]).sum())

    def test_utility(self, actions) -> float:
        """Mean utility of ``actions`` (m,) on the test prompts."""
        return float(self.realised(self.test, actions).mean())

    def input_tokens(self, idx):
        return None if self.ff.input_tokens is None else np.asarray(self.ff.input_tokens, float)[np.asarray(idx)]


def make_stream(ff: FullFeedback, X: np.ndarray, *, rounds: int, batch: int, lam: float, seed: int = 0,
                incumbent: str = "cost-biased:3") -> Stream:
    """The stream of ``rounds`` rounds of ``batch`` prompts (see the module docstring).

    Raises ValueError when the table has too few non-test prompts for ``rounds * batch``.
    """
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or len(X) != ff.n_prompts:
        raise ValueError(f"X must have shape (n_prompts, d) = ({ff.n_prompts}, d), got {X.shape}")
    if int(rounds) < 1 or int(batch) < 1:
        raise ValueError(f"rounds and batch must be at least 1, got rounds={rounds}, batch={batch}")
    if not np.isfinite(lam) or lam < 0:
        raise ValueError(f"lam must be a finite number >= 0, got {lam}")
    train, val, test = split_prompts(ff, seed)
    pool = np.concatenate([train, val])
    need = int(rounds) * int(batch)
    if need > len(pool):
        raise ValueError(f"{rounds} rounds of {batch} prompts need {need} streamed prompts, but the table has "
                         f"{len(pool)} outside the held-out test 20% ({ff.n_prompts} prompts in all)")
    order = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_ORDER,))).permutation(pool)[:need]
    policy, strength = parse_incumbent(incumbent)
    kw = {"beta": strength} if policy == "cost-biased" and strength is not None else {}
    probs, _ = logging_probabilities(ff, X, policy, seed=seed, **kw)
    return Stream(ff, X, float(lam), int(seed), int(batch), int(rounds), order, test, probs)


class LookupEncoder:
    """The stream's cached prompt features, served to the routing code as an encoder (text -> row).

    Equal texts have equal embeddings, so a lookup by text is exact.
    """

    key = ""  # the loop's routers are trained on these very features

    def __init__(self, prompts, X: np.ndarray):
        self.X = np.asarray(X, dtype=np.float32)
        self.index = {str(p): i for i, p in enumerate(prompts)}
        self.dim = self.X.shape[1]

    def rows(self, texts) -> np.ndarray:
        try:
            return np.array([self.index[str(t)] for t in texts], dtype=int)
        except KeyError as err:
            raise KeyError(f"prompt not in the stream's table: {str(err)[:80]}") from None

    def encode(self, texts) -> np.ndarray:
        """Features (len(texts), d) of prompts of the table."""
        return self.X[self.rows(texts)]
