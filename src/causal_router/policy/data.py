"""What routers learn from: logs as arrays, cross-fitted nuisances and DR utilities."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..causal.crossfit import CrossFitter
from ..causal.scores import ClipReport, Utilities


@dataclass
class RoutingData:
    """Training and validation material shared by every router.

    Attributes
    ----------
    models : list of str, length K
    X : ndarray (n, d)             training features
    treatment : ndarray (n,) int   logged model index
    quality, cost : ndarray (n,)   observed outcomes of the logged model
    input_tokens : ndarray (n,) or None
    utilities : Utilities          cross-fitted pseudo-outcomes, (n, K) each
    crossfitter : CrossFitter      fitted; its refit models predict nuisances for new prompts
    X_val : ndarray (m, d) or None
    val_utilities : Utilities or None   DR pseudo-outcomes on validation logs (models fitted on train)
    val_input_tokens : ndarray (m,) or None
    clip_report : ClipReport or None
    """

    models: list
    X: np.ndarray
    treatment: np.ndarray
    quality: np.ndarray
    cost: np.ndarray
    input_tokens: np.ndarray | None
    utilities: Utilities
    crossfitter: CrossFitter
    X_val: np.ndarray | None = None
    val_utilities: Utilities | None = None
    val_input_tokens: np.ndarray | None = None
    clip_report: ClipReport | None = None

    @property
    def n_arms(self) -> int:
        return len(self.models)
