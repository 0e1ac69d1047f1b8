"""The static encoder (embed.encoder: static): distilled once, content-addressed, cached, keyed.

The distillations here run on a tiny random BERT that shares MiniLM's tokenizer (a few seconds
each, no network); the real MiniLM distillation (minutes on a loaded machine) runs in
``benchmarks/embed_static.py``.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time

import numpy as np
import pytest

from causal_router.features.cache import EmbeddingCache
from causal_router.features.embed import embed_with_stats
from causal_router.features.encoders import resolve_encoder
from causal_router.features.static import StaticEncoder, static_encoder


def _spy(monkeypatch, result_from=None):
    """Record the distillations; with ``result_from`` (a distilled folder), return its model
    instead of distilling again (the same table, in no time)."""
    calls = []
    original = StaticEncoder._run_distill

    def run(self, *args, **kwargs):
        calls.append(self.key)
        if result_from is not None:
            from model2vec import StaticModel

            return StaticModel.from_pretrained(result_from)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(StaticEncoder, "_run_distill", run)
    return calls


def test_encode_shape_dtype_and_unit_norm(built, prompts):
    X = built.encode(prompts)
    assert X.shape == (len(prompts), 16) == (len(prompts), built.dim)
    assert X.dtype == np.float32
    norms = np.linalg.norm(X, axis=1)
    empty = [i for i, p in enumerate(prompts) if p == ""]
    assert empty and np.all(norms[empty] == 0)  # no token: the zero vector
    rest = np.setdiff1d(np.arange(len(prompts)), empty)
    np.testing.assert_allclose(norms[rest], 1.0, atol=1e-5)
    assert built.encode([]).shape == (0, 16)
    with pytest.raises(TypeError):
        built.encode("one string")


def test_deterministic_and_independent_of_chunking(built, prompts):
    X = built.encode(prompts)
    np.testing.assert_array_equal(X, built.encode(prompts))
    np.testing.assert_array_equal(X[3], built.encode([prompts[3]])[0])
    small = StaticEncoder(**{**built.config(), "chunk_size": 5})
    np.testing.assert_allclose(small.encode(prompts), X, atol=1e-6)
    assert len(list(small.iter_encode(prompts))) == -(-len(prompts) // 5)


def test_same_vectors_as_model2vec_encode(built, prompts):
    from model2vec import StaticModel

    model = StaticModel.from_pretrained(built.model_dir)
    model.embedding = model.embedding.astype(np.float32)
    long_text = " ".join(prompts) * 20  # past the character and token caps
    texts = prompts + [long_text]
    np.testing.assert_allclose(built.encode(texts), model.encode(texts, normalize=True), atol=1e-6)


def test_key_format_and_what_changes_it(built, tiny_source, tmp_path):
    assert re.fullmatch(r"static:tiny-bert\d*:pca16:[0-9a-f]{12}", built.key)
    assert built.model_dir.name == f"{built.source_name}-pca16-{built.key.rsplit(':', 1)[1]}"
    same = StaticEncoder(16, source=tiny_source, cache_dir=tmp_path)  # the cache folder is not part of it
    assert same.key == built.key
    assert StaticEncoder(8, source=tiny_source).key != built.key
    assert StaticEncoder(16, source=tiny_source, max_length=128).key != built.key
    words = tmp_path / "words.txt"
    words.write_text("routerbench\nllmrouter\n", encoding="utf-8")
    with_vocab = StaticEncoder(16, source=tiny_source, vocabulary=words)
    assert re.fullmatch(r"static:tiny-bert\d*:pca16:vocab-words:[0-9a-f]{12}", with_vocab.key)
    words.write_text("routerbench\n", encoding="utf-8")
    assert StaticEncoder(16, source=tiny_source, vocabulary=words).key != with_vocab.key
    manifest = json.loads((built.model_dir / "manifest.json").read_text())
    assert manifest["key"] == built.key and manifest["recipe"]["pca_dims"] == 16
    assert manifest["recipe"]["model2vec"] == "0.10.0"
    assert built.model_dir.stat().st_mode & 0o755 == 0o755  # readable by a shared cache's other users


def test_default_source_key_needs_no_distillation(tmp_path):
    enc = StaticEncoder(cache_dir=tmp_path)
    assert re.fullmatch(r"static:minilm-l6-v2:pca256:[0-9a-f]{12}", enc.key)
    assert enc.dim == 256 and StaticEncoder(384).dim == 384 and StaticEncoder(512).dim == 384
    assert not any(tmp_path.iterdir())  # nothing distilled or written


def test_second_encoder_reuses_the_distilled_model(built, monkeypatch, prompts):
    calls = _spy(monkeypatch)
    mtime = (built.model_dir / "model.safetensors").stat().st_mtime_ns
    again = StaticEncoder(**built.config())
    np.testing.assert_array_equal(again.encode(prompts), built.encode(prompts))
    assert calls == [] and not again.distilled
    assert (built.model_dir / "model.safetensors").stat().st_mtime_ns == mtime


def test_damaged_model_is_distilled_again(built, tmp_path, monkeypatch, prompts):
    shutil.copytree(built.model_dir, tmp_path / "static" / built.model_dir.name)
    enc = StaticEncoder(**{**built.config(), "cache_dir": str(tmp_path)})
    (enc.model_dir / "model.safetensors").write_bytes(b"broken")
    calls = _spy(monkeypatch, result_from=built.model_dir)
    np.testing.assert_allclose(enc.encode(prompts), built.encode(prompts), atol=1e-6)
    assert calls == [enc.key] and enc.distilled


def test_a_waiting_process_reuses_what_the_lock_holder_built(built, tmp_path, monkeypatch):
    from filelock import FileLock

    calls = _spy(monkeypatch)
    enc = StaticEncoder(**{**built.config(), "cache_dir": str(tmp_path)})
    enc.model_dir.parent.mkdir(parents=True)
    holder = FileLock(str(enc.model_dir.with_name(enc.model_dir.name + ".lock")))
    holder.acquire()
    result = {}
    waiter = threading.Thread(target=lambda: result.setdefault("dir", enc.ensure()))
    try:
        waiter.start()
        time.sleep(0.5)
        assert waiter.is_alive() and "dir" not in result  # waits for the holder
        shutil.copytree(built.model_dir, enc.model_dir)  # the holder finishes its distillation
    finally:
        holder.release()
    waiter.join(30)
    assert result["dir"] == enc.model_dir and calls == [] and not enc.distilled


def test_embed_with_stats_caches_under_the_static_key(built, tmp_path, prompts):
    X, n_new = embed_with_stats(prompts, cache_dir=tmp_path, encoder=built)
    assert n_new == len(set(prompts))
    np.testing.assert_allclose(X, built.encode(prompts), atol=1e-6)
    assert EmbeddingCache(tmp_path).shards(built.key)
    X2, n_again = embed_with_stats(prompts, cache_dir=tmp_path, encoder=built)
    assert n_again == 0
    np.testing.assert_array_equal(X2, X)


def test_resolve_encoder_static_spec():
    enc = resolve_encoder("static")
    assert isinstance(enc, StaticEncoder) and enc.pca_dims == 256
    assert resolve_encoder("static") is enc is static_encoder() is static_encoder(256)
    assert resolve_encoder("static", device="cpu", precision="fp32") is enc  # the values it has anyway
    narrow = resolve_encoder("static:128")
    assert narrow.pca_dims == 128 and narrow is resolve_encoder("static:128") and narrow.key != enc.key
    for bad in ("static:", "static:x", "static:0"):
        with pytest.raises(ValueError):
            resolve_encoder(bad)
    with pytest.raises(ValueError):
        resolve_encoder("static", precision="bf16")
    with pytest.raises(ValueError):
        resolve_encoder("static", pooling="cls")


def test_invalid_parameters(tmp_path):
    for kwargs in ({"pca_dims": 0}, {"pca_dims": 2.5}, {"max_length": 0}, {"chunk_size": 0},
                   {"sif_coefficient": 0.0}):
        with pytest.raises(ValueError):
            StaticEncoder(**kwargs)
    with pytest.raises(ValueError):
        _ = StaticEncoder(source=tmp_path).key  # no config.json
    with pytest.raises(ValueError):
        _ = StaticEncoder(vocabulary=tmp_path / "missing.txt").key
