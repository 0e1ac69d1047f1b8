"""A battery of bad observational logs, one per kind, shared by the agreement and CLI tests.

Each case mutates a valid 12-row log (3 models) and names the checks that must fail. Row-level
cases spoil rows 4 (and 7); every other row must survive validation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from causal_router.data import schema as S

MODELS = ["m-a", "m-b", "m-c"]
N = 12


def base(n: int = N) -> pd.DataFrame:
    return pd.DataFrame({
        S.PROMPT_ID: [f"p{i}" for i in range(n)],
        S.PROMPT: [f"question {i}" for i in range(n)],
        S.MODEL: [MODELS[i % 3] for i in range(n)],
        S.SCORE: np.linspace(0.0, 1.0, n),
        S.COST: np.linspace(0.001, 0.01, n),
        S.PROPENSITY: np.full(n, 0.5),
        S.INPUT_TOKENS: np.arange(1, n + 1, dtype=float),
        S.OUTPUT_TOKENS: np.arange(1, n + 1, dtype=float),
    })


def _set(col, value, rows=(4,)):
    def f(df):
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not (number and pd.api.types.is_numeric_dtype(df[col])):
            df[col] = df[col].astype(object)
        for r in rows:
            df.iat[r, df.columns.get_loc(col)] = value
        return df
    return f


def _id_clash(df):
    df[S.PROMPT_ID] = df[S.PROMPT_ID].astype(object)
    df.iat[4, 0], df.iat[7, 0] = "7", 7  # the loaders read both as "7"
    return df


def _all_bad(df):
    df[S.SCORE] = 2.0
    return df


#: name -> (mutation, expected failing checks, models passed or None, rows quarantined)
ROW_CASES = {
    "missing score": (_set(S.SCORE, np.nan), {"not_null:score"}, None),
    "missing cost": (_set(S.COST, None), {"not_null:cost"}, None),
    "missing prompt": (_set(S.PROMPT, None), {"not_null:prompt"}, None),
    "missing prompt_id": (_set(S.PROMPT_ID, None), {"not_null:prompt_id"}, None),
    "missing model": (_set(S.MODEL, None), {"not_null:model"}, None),
    "prompt is a number": (_set(S.PROMPT, 12345), {"prompt_is_text"}, None),
    "prompt is a list": (_set(S.PROMPT, ["a", "b"]), {"prompt_is_text"}, None),
    "score is text": (_set(S.SCORE, "high"), {"numeric:score"}, None),
    "cost is text": (_set(S.COST, "cheap"), {"numeric:cost"}, None),
    "score above 1": (_set(S.SCORE, 1.5), {"score_range"}, None),
    "score below 0": (_set(S.SCORE, -0.2), {"score_range"}, None),
    "score infinite": (_set(S.SCORE, np.inf), {"score_range"}, None),
    "negative cost": (_set(S.COST, -0.5), {"cost_nonnegative"}, None),
    "infinite cost": (_set(S.COST, np.inf), {"cost_finite"}, None),
    "minus infinite cost": (_set(S.COST, -np.inf), {"cost_nonnegative", "cost_finite"}, None),
    "propensity zero": (_set(S.PROPENSITY, 0.0), {"propensity_range"}, None),
    "propensity above 1": (_set(S.PROPENSITY, 1.5), {"propensity_range"}, None),
    "missing propensity": (_set(S.PROPENSITY, np.nan), {"not_null:propensity"}, None),
    "propensity is text": (_set(S.PROPENSITY, "half"), {"numeric:propensity"}, None),
    "negative input tokens": (_set(S.INPUT_TOKENS, -3.0), {"input_tokens_range"}, None),
    "infinite output tokens": (_set(S.OUTPUT_TOKENS, np.inf), {"output_tokens_range"}, None),
    "missing input tokens": (_set(S.INPUT_TOKENS, np.nan), {"not_null:input_tokens"}, None),
    "duplicate prompt_id": (_set(S.PROMPT_ID, "p1"), {"unique_prompt_id"}, None),
    "prompt_id 7 and '7'": (_id_clash, {"unique_prompt_id"}, None),
    "unknown model": (_set(S.MODEL, "gpt-x", rows=(4, 7)), {"model_in_set"}, MODELS),
}

#: name -> (mutation, expected failing check, models)
FRAME_CASES = {
    "missing column": (lambda df: df.drop(columns=[S.COST]), "columns_exist", None),
    "header only": (lambda df: df.iloc[0:0], "has_rows", None),
    "single model": (lambda df: df.assign(model="m-a"), "several_models", None),
    "configured model without rows": (lambda df: df, "models_present", MODELS + ["m-z"]),
    "every row bad": (_all_bad, "has_rows", None),
}


def write_case(df: pd.DataFrame, path_stem) -> str:
    """Parquet where the values allow it, else a pandas pickle (mixed-type columns)."""
    try:
        path = f"{path_stem}.parquet"
        df.to_parquet(path, index=False)
    except (ValueError, TypeError, OverflowError):  # pyarrow refuses mixed-type columns
        path = f"{path_stem}.pkl"
        df.to_pickle(path)
    return path
