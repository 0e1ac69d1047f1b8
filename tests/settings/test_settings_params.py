"""params.yaml as typed settings: one loader, unknown keys and a missing file refused, typed values,
and defaults equal to what the committed params.yaml sets."""

from pathlib import Path

import pytest
import yaml

from causal_router.errors import CausalRouterError, MissingFileError, SettingsError
from causal_router.settings.params import (
    CHALLENGER_SHARE,
    EXPLORE,
    FLOOR,
    POSTERIOR_SCALE,
    STRATEGY,
    TEMPERATURE,
    ServeSettings,
    Settings,
    load_settings,
)

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ("data", "artifacts", "validate", "embed", "runner", "crossfit", "train", "evaluate", "promote",
            "serve", "ingest")


def _leaves(d: dict, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def test_every_section_of_params_yaml_is_declared():
    shipped = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert set(shipped) == set(SECTIONS)
    assert set(Settings().to_dict()) == set(SECTIONS)


def test_defaults_equal_the_committed_params_yaml():
    """Where params.yaml sets a value, the default is that value (lambdas null: the training grid)."""
    shipped = yaml.safe_load((ROOT / "params.yaml").read_text())
    defaults = dict(_leaves(Settings().to_dict()))
    for key, value in _leaves(shipped):
        if key in ("evaluate.lambdas", "promote.lambdas") and value is None:
            assert defaults[key] == defaults["train.lambdas"], key
            continue
        assert defaults[key] == value, key
    assert load_settings(ROOT / "params.yaml") == Settings()


def test_values_are_typed_attributes(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("crossfit: {cv: '3', clip: 0.2}\ntrain: {lambdas: [0, 100]}\nserve: {seed: 7}\n")
    s = load_settings(f)
    assert s.crossfit.cv == 3 and isinstance(s.crossfit.cv, int) and s.crossfit.clip == 0.2
    assert s.train.lambdas == [0.0, 100.0] and s.evaluate.lambdas == [0.0, 100.0] == s.promote.lambdas
    assert s.serve.seed == 7 and s.validation.positivity_floor == 0.001
    assert s.to_dict()["validate"]["warn"] == ["positivity_floor"]  # the dict view keeps params.yaml's keys


@pytest.mark.parametrize("text, words", [
    ("crossfit: {cvv: 3}\n", "unknown key 'cvv' in section 'crossfit'"),
    ("serve: {explor: 0.2}\n", "unknown key 'explor' in section 'serve'"),
    ("promte: {alpha: 0.1}\n", "unknown section 'promte'"),
    ("crossfit: {cv: three}\n", "crossfit.cv"),
    ("promote: {rule: lenient}\n", "promote.rule"),
    ("- just\n- a list\n", "maps sections"),
    ("crossfit: {cv: [\n", "not a readable params file"),
])
def test_a_bad_params_file_is_one_line_naming_file_and_key(tmp_path, text, words):
    f = tmp_path / "params.yaml"
    f.write_text(text)
    with pytest.raises(SettingsError) as err:
        load_settings(f)
    msg = str(err.value)
    assert words in msg and str(f) in msg and "\n" not in msg
    assert isinstance(err.value, CausalRouterError) and isinstance(err.value, ValueError)


def test_a_missing_params_file_is_an_error_not_the_defaults(tmp_path):
    with pytest.raises(MissingFileError, match="paramz.yaml"):
        load_settings(tmp_path / "paramz.yaml")
    with pytest.raises(MissingFileError):
        ServeSettings.from_params(tmp_path / "paramz.yaml")


def test_an_empty_file_gives_the_defaults(tmp_path):
    (tmp_path / "params.yaml").write_text("")
    assert load_settings(tmp_path / "params.yaml") == Settings()


def test_serve_settings_from_params(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("crossfit: {prices: sheet.yaml}\nserve: {explore: 0.2}\n")
    s = ServeSettings.from_params(f, model_uri="models:/x/1", seed=None)
    assert (s.explore, s.prices, s.model_uri, s.strategy) == (0.2, "sheet.yaml", "models:/x/1", "thompson")
    assert ServeSettings.from_env(s.to_env()) == s
    f.write_text("serve: {explore: lots}\n")
    with pytest.raises(SettingsError, match="serve.explore"):
        ServeSettings.from_params(f)


def test_exploration_defaults_have_one_home():
    """The served policy's defaults (params.yaml's serve section wins at runtime and equals them); the
    plain ExplorationPolicy shares the tunables and keeps its two switches off."""
    from causal_router.policy.exploration import ExplorationPolicy

    shipped = yaml.safe_load((ROOT / "params.yaml").read_text())["serve"]
    assert (shipped["explore"], shipped["floor"], shipped["temperature"], shipped["challenger_share"],
            shipped["strategy"], shipped["posterior_scale"]) == (EXPLORE, FLOOR, TEMPERATURE, CHALLENGER_SHARE,
                                                                 STRATEGY, POSTERIOR_SCALE)
    s, plain = ServeSettings(), ExplorationPolicy()
    assert (s.explore, s.floor, s.temperature, s.posterior_scale) == (plain.explore, plain.floor,
                                                                      plain.temperature, plain.posterior_scale)
    assert (plain.challenger_share, plain.strategy) == (0.0, "spread")
