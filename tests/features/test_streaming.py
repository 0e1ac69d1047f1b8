"""Streaming: chunked tokenising and encoding, one cache shard per chunk, progress, threads."""

import pickle
import sys

import numpy as np
import pytest

from causal_router.features import encoder as encoder_mod
from causal_router.features.cache import EmbeddingCache
from causal_router.features.embed import embed_with_stats
from causal_router.features.encoder import TransformerEncoder


def test_iter_encode_yields_chunks_in_order(bf16_encoder, clone, prompts):
    enc = clone(bf16_encoder, chunk_size=4)
    chunks = list(enc.iter_encode(prompts[:10]))
    assert [p.tolist() for p, _ in chunks] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    X = np.concatenate([v for _, v in chunks])
    np.testing.assert_array_equal(X, bf16_encoder.encode(prompts[:10]))
    assert list(enc.iter_encode([])) == []


def test_tokenizer_only_ever_sees_one_chunk(bf16_encoder, clone, prompts):
    """Memory is bounded by the chunk, not by the number of prompts."""
    enc = clone(bf16_encoder, chunk_size=5)
    seen = []

    class Spy:
        def __init__(self, tok):
            self.tok = tok

        def __getattr__(self, name):
            return getattr(self.tok, name)

        def __call__(self, texts, **kw):
            seen.append(len(texts))
            return self.tok(texts, **kw)

    enc._tokenizer = Spy(bf16_encoder._tokenizer)
    enc.encode(prompts[:23])
    assert seen == [5, 5, 5, 5, 3]


def test_one_cache_shard_per_chunk_and_interrupted_runs_keep_their_work(bf16_encoder, clone, prompts, tmp_path):
    texts = prompts[:7]
    enc = clone(bf16_encoder, chunk_size=3)
    whole = enc.iter_encode

    def interrupted(t):
        chunks = whole(t)
        yield next(chunks)
        raise KeyboardInterrupt

    enc.iter_encode = interrupted
    with pytest.raises(KeyboardInterrupt):
        embed_with_stats(texts, tmp_path, enc)
    assert len(EmbeddingCache(tmp_path).shards(enc.key)) == 1  # the finished chunk was kept

    enc = clone(bf16_encoder, chunk_size=3)
    X, n = embed_with_stats(texts, tmp_path, enc)
    assert n == 4 and len(EmbeddingCache(tmp_path).shards(enc.key)) == 3  # the old one + 3 + 1 new
    np.testing.assert_array_equal(X, bf16_encoder.encode(texts))
    assert embed_with_stats(texts + texts[:2], tmp_path, enc)[1] == 0


def test_progress_bar(bf16_encoder, clone, prompts, capsys, monkeypatch):
    clone(bf16_encoder, progress=True).encode(prompts[:3])
    assert "embedding" in capsys.readouterr().err
    monkeypatch.setattr(encoder_mod, "_PROGRESS_MIN", 3)
    clone(bf16_encoder).encode(prompts[:3])  # automatic: stderr is not a terminal here
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    clone(bf16_encoder).encode(prompts[:2])  # too few texts
    assert capsys.readouterr().err == ""
    clone(bf16_encoder).encode(prompts[:3])
    assert "3/3" in capsys.readouterr().err


def test_pickles_settings_not_the_model(bf16_encoder):
    copy = pickle.loads(pickle.dumps(bf16_encoder))
    assert copy._model is None and copy._tokenizer is None
    assert copy.key == bf16_encoder.key and copy.config() == bf16_encoder.config()
    assert TransformerEncoder(**bf16_encoder.config()).key == bf16_encoder.key
    assert len(pickle.dumps(bf16_encoder)) < 10_000


def test_bad_settings():
    for bad in ({"token_budget": 0}, {"chunk_size": 0}, {"threads": 0}, {"pooling": "max"}):
        with pytest.raises(ValueError):
            TransformerEncoder(**bad)
