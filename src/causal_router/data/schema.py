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

#: Required columns of an observational log (one row per served query).
LOG_REQUIRED = (PROMPT_ID, PROMPT, MODEL, SCORE, COST)
#: Optional columns of an observational log.
LOG_OPTIONAL = (PROPENSITY, TIMESTAMP, DATASET, INPUT_TOKENS, OUTPUT_TOKENS)
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
