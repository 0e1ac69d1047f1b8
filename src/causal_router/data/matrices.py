"""Array views of a full-feedback table, aligned by prompt and model."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import pandas as pd

from . import schema as S


@dataclass(frozen=True)
class FullFeedback:
    """A full-feedback table as dense arrays.

    Attributes
    ----------
    prompt_ids : ndarray of str, shape (n_prompts,)
    prompts : ndarray of str, shape (n_prompts,)
    models : ndarray of str, shape (n_models,), sorted
    scores : ndarray of float, shape (n_prompts, n_models)
    costs : ndarray of float, shape (n_prompts, n_models)
    datasets : ndarray of str, shape (n_prompts,), or None
    input_tokens : ndarray of float, shape (n_prompts,), or None
    output_tokens : ndarray of float, shape (n_prompts, n_models), or None
    propensities : ndarray of float, shape (n_prompts, n_models), or None
        The logging policy's probabilities, when the table carries them (simulated test split).
    """

    prompt_ids: np.ndarray
    prompts: np.ndarray
    models: np.ndarray
    scores: np.ndarray
    costs: np.ndarray
    datasets: np.ndarray | None = None
    input_tokens: np.ndarray | None = None
    output_tokens: np.ndarray | None = None
    propensities: np.ndarray | None = None

    @property
    def n_prompts(self) -> int:
        return len(self.prompt_ids)

    @property
    def n_models(self) -> int:
        return len(self.models)

    def subset(self, rows) -> FullFeedback:
        """The same table restricted to the prompts at positions ``rows`` (n_rows,), in that order."""
        rows = np.asarray(rows)
        return replace(self, **{f.name: getattr(self, f.name)[rows] for f in fields(self)
                                if f.name != "models" and getattr(self, f.name) is not None})

    def select_models(self, models) -> FullFeedback:
        """The same table with its model axis in the order of ``models`` (the same set)."""
        diff = sorted(set(self.models) ^ set(models))
        if diff:
            raise ValueError(f"the table and the routers disagree on the models: {diff}")
        order = [list(self.models).index(m) for m in models]
        pick = lambda a: None if a is None else a[:, order]  # noqa: E731
        return replace(self, models=self.models[order], scores=self.scores[:, order], costs=self.costs[:, order],
                       output_tokens=pick(self.output_tokens), propensities=pick(self.propensities))

    def utility(self, lam: float) -> np.ndarray:
        """Utility ``score - lam * cost``, shape (n_prompts, n_models)."""
        return self.scores - lam * self.costs

    @classmethod
    def from_frame(cls, table: pd.DataFrame) -> FullFeedback:
        """Pivot a long, validated full-feedback table (one row per (prompt_id, model))."""
        models = np.array(sorted(table[S.MODEL].astype(str).unique()))
        first = table.drop_duplicates(S.PROMPT_ID).set_index(S.PROMPT_ID)
        ids = first.index.to_numpy().astype(str)

        def wide(col: str) -> np.ndarray:
            w = table.pivot(index=S.PROMPT_ID, columns=S.MODEL, values=col)
            return w.reindex(index=first.index, columns=models).to_numpy(dtype=float)

        return cls(
            prompt_ids=ids,
            prompts=first[S.PROMPT].to_numpy().astype(str),
            models=models,
            scores=wide(S.SCORE),
            costs=wide(S.COST),
            datasets=first[S.DATASET].to_numpy().astype(str) if S.DATASET in table else None,
            input_tokens=first[S.INPUT_TOKENS].to_numpy(dtype=float) if S.INPUT_TOKENS in table else None,
            output_tokens=wide(S.OUTPUT_TOKENS) if S.OUTPUT_TOKENS in table else None,
            propensities=wide(S.PROPENSITY) if S.PROPENSITY in table else None,
        )
