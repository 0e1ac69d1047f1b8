import logging
from pathlib import Path

import numpy as np
import pytest

from causal_router.features.cache import EmbeddingCache, default_cache_dir
from causal_router.features.embed import embed_texts, embed_with_stats
from causal_router.features.encoder import TransformerEncoder

TEXTS = ["how do I sort a list", "capital of France?", "write a limerick", "2 + 2 = ?"]


@pytest.fixture(scope="module")
def encoder():
    return TransformerEncoder()


def test_second_call_embeds_nothing(encoder, tmp_path):
    X1, n1 = embed_with_stats(TEXTS, tmp_path, encoder)
    X2, n2 = embed_with_stats(TEXTS, tmp_path, encoder)
    assert (n1, n2) == (len(TEXTS), 0)
    assert X1.shape == (len(TEXTS), 384)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_allclose(X1, encoder.encode(TEXTS), atol=1e-5)


def test_only_new_texts_are_embedded_and_order_kept(encoder, tmp_path):
    embed_with_stats(TEXTS[:2], tmp_path, encoder)
    texts = [TEXTS[3], TEXTS[0], TEXTS[2], TEXTS[0], TEXTS[1]]
    X, n = embed_with_stats(texts, tmp_path, encoder)
    assert n == 2  # TEXTS[2] and TEXTS[3]; duplicates embedded once
    np.testing.assert_allclose(X, encoder.encode(texts), atol=1e-5)
    np.testing.assert_array_equal(X[1], X[3])
    assert len(EmbeddingCache(tmp_path).shards(encoder.key)) == 2


def test_use_cache_false_writes_nothing(encoder, tmp_path):
    X, n = embed_with_stats(TEXTS, tmp_path / "c", encoder, use_cache=False)
    assert n == len(TEXTS) and not (tmp_path / "c").exists()
    assert embed_texts([], tmp_path / "c", encoder).shape == (0, 384)


@pytest.mark.parametrize("damage", ["garbage", "truncate", "checksum"])
def test_corrupted_shard_is_dropped_and_reembedded(encoder, tmp_path, caplog, damage):
    X1, _ = embed_with_stats(TEXTS, tmp_path, encoder)
    [shard] = EmbeddingCache(tmp_path).shards(encoder.key)
    if damage == "garbage":
        shard.write_bytes(b"not a zip file" * 100)
    elif damage == "truncate":
        shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    else:  # a readable shard whose vectors no longer match its checksum
        with np.load(shard) as z:
            arrays = dict(z)
        arrays["vectors"][0, 0] += 1.0
        with shard.open("wb") as f:
            np.savez(f, **arrays)
    with caplog.at_level(logging.WARNING, logger="causal_router.features.cache"):
        X2, n = embed_with_stats(TEXTS, tmp_path, encoder)
    assert n == len(TEXTS)
    # dropped, then re-embedded into a shard of the same content-derived name that reads back cleanly
    assert "corrupted" in caplog.text
    assert EmbeddingCache(tmp_path).shards(encoder.key) == [shard] and EmbeddingCache(tmp_path)._read(shard)
    np.testing.assert_allclose(X1, X2, atol=1e-5)
    assert embed_with_stats(TEXTS, tmp_path, encoder)[1] == 0


def test_encoder_keys_do_not_collide(tmp_path):
    cache = EmbeddingCache(tmp_path)
    a, b = np.ones((2, 3), np.float32), np.zeros((1, 3), np.float32)
    cache.put("enc-a", ["x", "y"], a)
    cache.put("enc-b", ["x"], b)
    found_a, found_b = cache.lookup("enc-a", ["y", "x", "z"]), cache.lookup("enc-b", ["x", "y"])
    assert sorted(found_a) == [0, 1] and list(found_b) == [0]
    np.testing.assert_array_equal(found_a[1], a[0])
    np.testing.assert_array_equal(found_b[0], b[0])
    assert cache.lookup("enc-c", ["x"]) == {}
    assert cache.encoder_dir("enc-a") != cache.encoder_dir("enc-b")


def test_different_encoders_do_not_share_entries(encoder, tmp_path):
    short = TransformerEncoder(max_length=4)
    short._tokenizer, short._model, short._dim = encoder._tokenizer, encoder._model, encoder._dim
    X_full, _ = embed_with_stats(TEXTS, tmp_path, encoder)
    X_short, n = embed_with_stats(TEXTS, tmp_path, short)
    assert n == len(TEXTS)
    assert not np.allclose(X_full, X_short, atol=1e-3)


def test_shard_layout_and_atomic_files(tmp_path):
    cache = EmbeddingCache(tmp_path / "new")
    assert not (tmp_path / "new").exists()  # nothing created before the first put
    assert cache.lookup("k", ["x"]) == {}
    shard = cache.put("k", ["x", "x", "y"], np.arange(9, dtype=np.float32).reshape(3, 3))
    assert shard.parent == cache.encoder_dir("k") and shard.name.startswith("shard-")
    assert [p.name for p in shard.parent.iterdir()] == [shard.name]  # no temp files left
    with np.load(shard) as z:
        assert z["keys"].shape == (2,) and len(z["keys"][0]) == 64
        assert z["vectors"].dtype == np.float32 and z["vectors"].shape == (2, 3)
    np.testing.assert_array_equal(cache.lookup("k", ["x"])[0], [3, 4, 5])  # last wins
    with pytest.raises(ValueError):
        cache.put("k", ["x"], np.ones((2, 3)))


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("CAUSAL_ROUTER_CACHE_DIR", str(tmp_path / "env"))
    assert default_cache_dir() == tmp_path / "env"
    monkeypatch.delenv("CAUSAL_ROUTER_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "causal-router" / "embeddings"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "causal-router" / "embeddings"


def test_fill_copies_rows_and_reports_hits(tmp_path, caplog):
    cache = EmbeddingCache(tmp_path)
    cache.put("k", ["a", "b"], np.array([[1, 2], [3, 4]], np.float32))
    cache.put("k", ["c"], np.array([[5, 6]], np.float32))
    out = np.zeros((4, 2), np.float32)
    found = cache.fill("k", ["c", "z", "a", "c"], out)
    assert found.tolist() == [True, False, True, True]
    np.testing.assert_array_equal(out, [[5, 6], [0, 0], [1, 2], [5, 6]])
    cache.put("k", ["z"], np.ones((1, 3), np.float32))  # a shard of another dimension is ignored
    with caplog.at_level(logging.WARNING, logger="causal_router.features.cache"):
        assert not cache.fill("k", ["z"], np.zeros((1, 2), np.float32))[0]
    assert "dimension" in caplog.text


def test_shards_are_named_by_content_and_reproducible(tmp_path):
    """The same embeddings give the same shard file, byte for byte: a versioned cache hashes the same."""
    vectors = np.arange(12, dtype=np.float32).reshape(3, 4)
    first = EmbeddingCache(tmp_path / "a").put("k", ["x", "y", "z"], vectors)
    second = EmbeddingCache(tmp_path / "b").put("k", ["x", "y", "z"], vectors)
    assert first.name == second.name and first.read_bytes() == second.read_bytes()
    other = EmbeddingCache(tmp_path / "a").put("k", ["x", "y", "w"], vectors)
    assert other.name != first.name
