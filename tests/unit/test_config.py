from pathlib import Path

import pytest

from configs import ConfigError, config_hash, load_config
from configs.loader import apply_override, preset_paths


def test_every_preset_loads():
    paths = preset_paths()
    assert {p.name for p in paths} >= {"demo.yaml", "ml100k.yaml"}
    for path in paths:
        cfg = load_config(path)
        assert cfg.name


def test_defaults_are_valid_and_hash_is_stable():
    a, b = load_config(None), load_config(None)
    assert config_hash(a) == config_hash(b)
    assert config_hash(load_config(None, ["fl.rounds=7"])) != config_hash(a)


def test_overrides_parse_yaml_values_and_nested_paths():
    cfg = load_config("configs/demo.yaml", ["fl.rounds=5", "tier_mapping.balance=false", "tiers.profiles.0.share=2.5"])
    assert cfg.fl.rounds == 5
    assert cfg.tier_mapping.balance is False
    assert cfg.tiers.profiles[0].share == 2.5


def test_unknown_key_names_its_path():
    with pytest.raises(ConfigError) as err:
        load_config("configs/demo.yaml", ["fl.roundz=5"])
    assert "fl.roundz" in str(err.value) and "unknown key" in str(err.value)


def test_bad_value_names_path_and_reason():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["fl.clients_per_round=-3"])
    assert "fl.clients_per_round" in str(err.value) and "greater than 0" in str(err.value)


def test_cross_field_rules():
    with pytest.raises(ConfigError, match="needs alpha"):
        load_config(None, ["tier_mapping.mapping=dirichlet"])
    with pytest.raises(ConfigError, match="data.path"):
        load_config(None, ["data.source=movielens"])
    with pytest.raises(ConfigError, match="unique"):
        load_config(None, ["tiers.profiles.1.name=low"])
    assert load_config(None, ["tier_mapping.mapping=dirichlet", "tier_mapping.alpha=0.3"]).tier_mapping.alpha == 0.3


def test_malformed_yaml_reports_line(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("fl:\n  rounds: [1, 2\nseed: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert f"{bad}:" in str(err.value) and "invalid YAML" in str(err.value)


def test_missing_file_and_non_mapping(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(scalar)


@pytest.mark.parametrize("assignment", ["fl.rounds", "=3", "tiers.profiles.9.share=1", "seed.x=1"])
def test_malformed_overrides(assignment):
    with pytest.raises(ConfigError):
        apply_override({"seed": 1, "tiers": {"profiles": [{}]}}, assignment)


def test_env_vars_expand_in_paths(monkeypatch):
    monkeypatch.setenv("FF_TEST_DATA", "/data/here")
    cfg = load_config(None, ["data.source=movielens", "data.path=$FF_TEST_DATA/ml-100k"])
    assert str(cfg.data.path) == "/data/here/ml-100k"


@pytest.mark.parametrize("override,hint", [
    ("fl.clients_per_rond=3", "did you mean fl.clients_per_round?"),  # a typo, in its own section
    ("fl.worker_num_cpus=1", "did you mean fl.runtime.worker_num_cpus?"),  # a key that lives elsewhere
    ("fl.strategy.n_cluster=3", "did you mean fl.strategy.n_clusters?"),  # inside a tagged union's member
])
def test_an_unknown_key_suggests_the_setting_it_likely_means(override, hint):
    with pytest.raises(ConfigError) as raised:
        load_config(None, ["fl.strategy=cali3f", override])
    assert hint in str(raised.value)


def test_a_key_like_no_setting_gets_no_suggestion():
    with pytest.raises(ConfigError) as raised:
        load_config(None, ["fl.bogus_thing=1"])
    assert "unknown key" in str(raised.value) and "did you mean" not in str(raised.value)


def test_an_empty_config_file_warns_that_every_setting_is_a_default(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing set\n")
    with pytest.warns(UserWarning, match="empty.yaml: the config file is empty"):
        assert load_config(empty) == load_config(None)


def test_a_key_of_another_kind_names_that_kind_and_never_suggests_itself():
    with pytest.raises(ConfigError) as raised:
        load_config(None, ["fl.strategy.phi=2"])  # phi is Cali3F's, the strategy is FedAvg
    message = str(raised.value)
    assert "phi is a setting of kind 'cali3f'" in message and "did you mean fl.strategy.phi" not in message
