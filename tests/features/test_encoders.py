"""features/encoders.py: the one resolution of an encoder spec, as the embed stage, the service, the
pyfunc and the loop use it."""

from pathlib import Path

import yaml

from causal_router.features.embed import default_encoder
from causal_router.features.encoder import TransformerEncoder
from causal_router.features.encoders import resolve_encoder

ROOT = Path(__file__).resolve().parents[2]


def test_the_embed_stage_settings_build_the_encoder_they_built_before():
    """artifacts/embeddings is versioned by DVC: for params.yaml's embed section, resolve_encoder builds
    exactly the encoder the embed stage built itself (same settings, same key), and the defaults the
    shared default encoder."""
    e = yaml.safe_load((ROOT / "params.yaml").read_text())["embed"]
    args = dict(max_length=e["max_length"], pooling=e["pooling"], device=e["device"], precision=e["precision"])
    got = resolve_encoder(e["encoder"], **args)
    before = TransformerEncoder(e["encoder"], e["max_length"], device=e["device"], pooling=e["pooling"],
                                precision=e["precision"])
    assert type(got) is TransformerEncoder and vars(got) == vars(before) and got.key == before.key
    assert vars(resolve_encoder(None)) == vars(default_encoder())


def test_a_module_callable_spec_is_called():
    enc = resolve_encoder("tests.serving.tiny:TinyEncoder")
    assert enc.key == "tiny-d4"


def test_encoder_for_rebuilds_what_the_router_recorded(monkeypatch, tmp_path):
    from causal_router.features import encoders, static

    built = []
    monkeypatch.setattr(static, "static_encoder", lambda dims, cache_dir=None: built.append((dims, cache_dir)) or "S")
    assert encoders.encoder_for("static:minilm-l6-v2:pca128:0123456789ab", cache_dir=tmp_path) == "S"
    assert built == [(128, tmp_path)]
    assert encoders.dims_of_key("static:minilm-l6-v2:pca256:vocab-words:0123456789ab") == 256
    assert encoders.dims_of_key("all-MiniLM-L6-v2@abc|max_length=256|pooling=mean|precision=fp32") is None
    assert encoders.encoder_for("all-MiniLM-L6-v2@abc|max_length=256") is encoders.default_encoder()
    assert encoders.encoder_for(None) is encoders.default_encoder()
