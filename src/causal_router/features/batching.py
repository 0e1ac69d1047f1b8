"""Texts in, vectors out: length-bucketed batches (texts padded to a width that depends on the text
alone, grouped by width under a text count and a padded-token budget) and pooling."""

from __future__ import annotations

import numpy as np

WIDTH_STEP = 16  # texts are padded to a multiple of this many tokens


def pad_width(length: int, cap: int) -> int:
    """Padded width of a text of ``length`` tokens: rounded up to a multiple of WIDTH_STEP, at most ``cap``.

    The width depends on the text alone, never on its batch: bf16 attention sums its
    softmax in an order that depends on the padded width, so a text padded to its batch's
    longest text would not always round the same way.
    """
    return min(cap, -(-max(1, length) // WIDTH_STEP) * WIDTH_STEP)


def length_batches(lengths: np.ndarray, cap: int, batch_size: int, token_budget: int) -> list[tuple[int, np.ndarray]]:
    """(width, rows) groups over ``lengths`` (n,), widest first: rows of one width, at most
    ``batch_size`` of them and ``token_budget`` padded tokens."""
    widths = np.array([pad_width(int(n), cap) for n in lengths], dtype=np.int64)
    batches = []
    for width in sorted(set(widths.tolist()), reverse=True):
        rows = np.flatnonzero(widths == width)
        step = max(1, min(batch_size, token_budget // width))
        batches.extend((width, rows[i : i + step]) for i in range(0, len(rows), step))
    return batches


def pool(hidden, mask, pooling: str) -> np.ndarray:
    """Unit-norm vectors (n, d) from hidden states (n, width, d) and the attention mask (n, width):
    the masked mean, the first token's state (cls) or the last real token's (last; right padding)."""
    import torch

    if pooling == "mean":
        m = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
    elif pooling == "cls":
        pooled = hidden[:, 0]
    else:
        last = (mask.sum(1) - 1).clamp(min=0)
        pooled = hidden[torch.arange(len(hidden), device=hidden.device), last]
    return torch.nn.functional.normalize(pooled, p=2, dim=1).cpu().numpy()


def as_texts(texts) -> list[str]:
    """``texts`` as a list of str; a single string or a non-str item is a TypeError (not n one-letter texts)."""
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not a single string")
    texts = list(texts)
    if not all(isinstance(t, str) for t in texts):
        raise TypeError("every text must be a str")
    return texts
