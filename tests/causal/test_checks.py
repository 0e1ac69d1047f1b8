"""The public causal functions refuse malformed arrays with messages naming the array (obp style)."""

import numpy as np
import pytest

from causal_router.causal.crossfit import Nuisances
from causal_router.causal.ope import contributions, policy_value
from causal_router.causal.scores import clip_report, pseudo_outcomes

N, K = 6, 3
T = np.array([0, 1, 2, 0, 1, 2])
Y = np.linspace(0, 1, N)
MU = np.full((N, K), 0.5)
E = np.full(N, 1 / 3)
NU = Nuisances(np.full((N, K), 1 / 3), E, MU, MU * 0.1)


@pytest.mark.parametrize("args, message", [
    ((T[:5], Y, MU, E), r"mu.shape\[0\] == treatment.shape\[0\]"),
    ((T, Y[:5], MU, E), r"outcome.shape\[0\] == treatment.shape\[0\]"),
    ((T, Y, MU, E[:4]), r"logged_propensity.shape\[0\] == treatment.shape\[0\]"),
    ((T + 1, Y, MU, E), r"treatment. must be in \[0, n_arms\)"),
    ((T, Y, MU[:, 0], E), "mu. must be 2D"),
    ((T.reshape(2, 3), Y, MU, E), "treatment. must be 1D"),
])
def test_pseudo_outcomes_refuse_malformed_arrays(args, message):
    with pytest.raises(ValueError, match=message):
        pseudo_outcomes(*args)


def test_ope_refuses_malformed_arrays():
    with pytest.raises(ValueError, match=r"policy.shape == \(6, 3\)"):
        contributions(np.full((N, K - 1), 0.5), T, Y, Y, NU, 1.0)
    with pytest.raises(ValueError, match="sum to 1"):
        policy_value(np.full((N, K), 0.5), T, Y, Y, NU, 1.0)
    with pytest.raises(ValueError, match=r"policy.shape\[0\] == treatment.shape\[0\]"):
        contributions(T[:4], T, Y, Y, NU, 1.0)
    with pytest.raises(ValueError, match="cost. must be finite"):
        contributions(T, T, Y, np.r_[Y[:-1], np.inf], NU, 1.0)
    with pytest.raises(ValueError, match=r"treatment. must be in \[0, n_arms\)"):
        clip_report(T, E, 2, 0.1)
    # well-formed inputs pass
    assert contributions(T, T, Y, Y, NU, 1.0).shape == (N,)
