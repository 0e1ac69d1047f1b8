"""Column names of the two data contracts (docs/architecture.md, Data contracts)."""

PROMPT_ID = "prompt_id"
PROMPT = "prompt"
MODEL = "model"
SCORE = "score"
COST = "cost"
PROPENSITY = "propensity"
DATASET = "dataset"
INPUT_TOKENS = "input_tokens"
OUTPUT_TOKENS = "output_tokens"
TIMESTAMP = "timestamp"
#: The served policy's whole probability vector at a decision: a JSON object ``{model: probability}``
#: whose entry for the logged model is its ``propensity``. Lets the promotion gate keep to rows where
#: the routers it compares had real support (overlap); rows without it (older logs) are not trimmed.
PROPENSITIES = "propensities"

#: Required columns of an observational log (one row per served query).
LOG_REQUIRED = (PROMPT_ID, PROMPT, MODEL, SCORE, COST)
#: Optional columns of an observational log.
LOG_OPTIONAL = (PROPENSITY, PROPENSITIES, TIMESTAMP, DATASET, INPUT_TOKENS, OUTPUT_TOKENS)
#: Required columns of a full-feedback table (one row per (prompt_id, model)).
TABLE_REQUIRED = (PROMPT_ID, PROMPT, MODEL, SCORE, COST)
TABLE_OPTIONAL = (DATASET, INPUT_TOKENS, OUTPUT_TOKENS)


def tokens_per_char(logs):
    """Input tokens per prompt character in a log (None without token counts): estimates the
    token count of a new prompt routed by text alone.

    The median of the per-row ratios, so that a few extreme prompts (one 1 MB paste) cannot move
    it: a ratio of sums would be dominated by the longest prompts. Rows with an empty prompt or a
    missing/non-finite count are left out; None when no row is left.
    """
    import numpy as np
    import pandas as pd

    if INPUT_TOKENS not in logs or PROMPT not in logs:
        return None
    tokens = pd.to_numeric(logs[INPUT_TOKENS], errors="coerce").to_numpy(dtype=float)
    chars = logs[PROMPT].map(lambda p: len(p) if isinstance(p, str) else 0).to_numpy(dtype=float)
    ok = (chars > 0) & np.isfinite(tokens) & (tokens >= 0)
    if not ok.any():
        return None
    return float(np.median(tokens[ok] / chars[ok]))


def propensity_matrix(logs, models):
    """The logged probability vectors (``propensities``) as an array (n, K) in the order of ``models``,
    NaN on rows that carry none; None when the column is absent or empty. Models outside ``models``
    are ignored; a model the vector omits had probability 0."""
    import json

    import numpy as np

    if PROPENSITIES not in logs or logs[PROPENSITIES].isna().all():
        return None
    index = {m: k for k, m in enumerate(models)}
    out = np.full((len(logs), len(index)), np.nan)
    for i, v in enumerate(logs[PROPENSITIES].tolist()):
        if isinstance(v, str):
            out[i] = 0.0
            for m, p in json.loads(v).items():
                if m in index:
                    out[i, index[m]] = float(p)
    return out


def propensities_json(models, probs) -> str:
    """One decision's probability vector (K,) as the ``propensities`` JSON text (zeros left out)."""
    import json

    return json.dumps({str(m): float(p) for m, p in zip(models, probs) if p > 0}, separators=(",", ":"))
