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
    token count of a new prompt routed by text alone."""
    if INPUT_TOKENS not in logs:
        return None
    return float(logs[INPUT_TOKENS].sum() / logs[PROMPT].str.len().sum())
