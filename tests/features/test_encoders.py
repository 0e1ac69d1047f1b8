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
