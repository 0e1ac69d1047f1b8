"""One set of gate defaults: params.yaml, the settings, the loop's gate and the library's own."""

import inspect
from pathlib import Path

import yaml

from causal_router.loop.rounds import GATE
from causal_router.loop.steps import gate
from causal_router.promotion.gate import DEFAULT_OVERLAP, DEFAULT_RULE, GateSettings, gate_rule
from causal_router.registry.promote import promote
from causal_router.settings.params import PromoteSettings

ROOT = Path(__file__).resolve().parents[2]


def test_the_gate_has_one_set_of_defaults():
    shipped = yaml.safe_load((ROOT / "params.yaml").read_text())["promote"]
    defaults = PromoteSettings()
    for key in ("alpha", "margin", "overlap", "rule", "no_overlap", "outcome_rows"):
        assert shipped[key] == getattr(defaults, key) == GATE[key], key
        assert inspect.signature(promote).parameters[key].default == GATE[key], key
    assert DEFAULT_OVERLAP == GATE["overlap"] and DEFAULT_RULE == GATE["rule"]
    assert inspect.signature(gate_rule).parameters["rule"].default == GATE["rule"]
    assert inspect.signature(gate).parameters["alpha"].default == GATE["alpha"]
    assert GateSettings.from_params(shipped) == GateSettings(**GATE)
