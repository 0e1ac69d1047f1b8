"""The static encoder's fast token ids (features/static_ids.py): the tokenizer's ids exactly, and the
same vectors."""

from __future__ import annotations

import random

import numpy as np
import pytest

from causal_router.features.static import StaticEncoder
from causal_router.features.static_ids import FastIds

PIECES = ["the", "Hello", "x2", "WORLD", "ünï", "café", "日本", "[PAD]", "[UNK]", "[pad]", "[unk]", "\t", "\n", "\r",
          "\x0b", "\x0c", "\x1c", "\x1f", "\x7f", "\x00", "\x85", "\xa0", "  ", "...", "'s", "_", "a_b", "3.14",
          "supercalifragilisticexpialidocious" * 4, "##ing", "def f(x):\n\treturn x**2  # ok"]


def _texts(n: int = 1500, seed: int = 0) -> list[str]:
    """Random ASCII (every code point 0-127) and mixes of words, control characters, non-ASCII text and
    added tokens' texts."""
    rng = random.Random(seed)
    ascii_chars = [chr(c) for c in range(128)]
    out = []
    for i in range(n):
        k = rng.randint(0, 150)
        pool = ascii_chars if i % 2 else PIECES + ascii_chars
        out.append("".join(rng.choice(pool) for _ in range(k)))
    return out


def _reference(tokenizer, texts):
    return [e.ids for e in tokenizer.encode_batch_fast(texts, add_special_tokens=False)]


@pytest.fixture(scope="module")
def tokenizer(built):
    return built._load().tokenizer


def test_ids_are_the_tokenizers(tokenizer, prompts):
    fast = FastIds.for_tokenizer(tokenizer)
    assert fast is not None and fast.max_length == 512 and set(fast.added) == {"[PAD]", "[UNK]"}
    long_text = " ".join(prompts) * 20  # past the token cap
    texts = prompts + [long_text, long_text.upper()] + _texts()
    assert fast.ids(texts) == _reference(tokenizer, texts)
    assert fast.ids(texts) == _reference(tokenizer, texts)  # warm word cache
    assert sum(fast.fast(t) for t in texts) > len(texts) // 2  # the fast path did most of them


def test_texts_the_fast_path_leaves_to_the_tokenizer(tokenizer):
    fast = FastIds.for_tokenizer(tokenizer)
    assert not fast.fast("café") and not fast.fast("say [PAD] now") and not fast.fast("[UNK]")
    assert fast.fast("say [pad] now") and fast.fast("plain text\x01 with a control character")
    texts = ["say [PAD] now", "[UNK]", "café au lait", "say [pad] now"]
    assert fast.ids(texts) == _reference(tokenizer, texts)


def test_word_cache_is_bounded(tokenizer, monkeypatch):
    import causal_router.features.static_ids as static_ids

    monkeypatch.setattr(static_ids, "MAX_WORDS", 5)
    fast = FastIds.for_tokenizer(tokenizer)
    texts = [f"word{i} other{i} and more words here" for i in range(20)]
    for text in texts:  # when full, the cache starts again with one call's words (6 here)
        assert fast.ids([text]) == _reference(tokenizer, [text])
        assert len(fast._words) <= 6
    assert fast.ids(texts) == _reference(tokenizer, texts)  # one call's words may exceed the bound


def test_another_tokenizer_configuration_has_no_fast_path(tokenizer):
    from tokenizers import Tokenizer, normalizers

    other = Tokenizer.from_str(tokenizer.to_str())
    other.normalizer = normalizers.BertNormalizer(lowercase=False)
    assert FastIds.for_tokenizer(other) is None
    assert FastIds.for_tokenizer(object()) is None


def test_encode_gives_the_same_vectors_with_and_without_the_fast_path(built, prompts):
    texts = prompts + [" ".join(prompts) * 20] + _texts(300, seed=1)
    enc = StaticEncoder(**built.config())
    X = enc.encode(texts)
    assert enc._fast is not None
    enc._fast = None  # the tokenizer's own pipeline
    np.testing.assert_array_equal(enc.encode(texts), X)


def test_a_lone_text_gets_the_same_vector_as_in_a_batch(built, prompts):
    """A few texts are summed row by row, a batch through the sparse product: the same float32 sums."""
    texts = prompts[:40] + _texts(60, seed=2) + [""]
    enc = StaticEncoder(**built.config())
    X = enc.encode(texts)
    np.testing.assert_array_equal(np.vstack([enc.encode([t]) for t in texts]), X)
    np.testing.assert_array_equal(enc.encode(texts[:3]), X[:3])
