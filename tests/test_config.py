"""Configs load into frozen dataclasses; bad keys, types and ranges are named in the error."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from mimic_tf.config import ConfigError, ExperimentConfig, load_config, save_config


@pytest.mark.parametrize("name", ["default", "smoke", "paper", "cpu-replication"])
def test_shipped_configs_load_and_validate(name):
    config = load_config(name)
    assert isinstance(config, ExperimentConfig)
    assert config.name == name
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.seed = 1  # type: ignore[misc]


def test_paper_config_is_the_papers_protocol():
    config = load_config("paper")
    assert config.teacher.members == 16
    assert config.transfer.views == 160
    assert config.search.budgets == (1.0e6, 3.16e6, 10.0e6, 31.6e6)
    assert config.search.mlp_depths == (1, 2, 3, 4, 5)
    assert config.search.cnn_depths == (1, 2, 3, 4)


def write(tmp_path, data) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_unknown_key_is_named_with_the_allowed_keys(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key 'teacher\.memebrs'.*members"):
        load_config(write(tmp_path, {"teacher": {"memebrs": 4}}))


def test_wrong_type_names_key_and_value(tmp_path):
    with pytest.raises(ConfigError, match=r"'search\.trials' has value 'many'.*integer"):
        load_config(write(tmp_path, {"search": {"trials": "many"}}))


def test_out_of_range_value_names_key_value_and_range(tmp_path):
    with pytest.raises(ConfigError, match=r"'search\.mlp_depths' has value \(1, 7\).*1\.\.5"):
        load_config(write(tmp_path, {"search": {"mlp_depths": [1, 7]}}))
    with pytest.raises(ConfigError, match=r"'transfer\.mode' has value 'sometimes'"):
        load_config(write(tmp_path, {"transfer": {"mode": "sometimes"}}))


def test_bad_data_source_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.source.*folder:PATH"):
        load_config(write(tmp_path, {"data": {"source": "imagenet"}}))


def test_missing_file_lists_the_shipped_configs():
    with pytest.raises(ConfigError, match=r"not found.*default.*smoke"):
        load_config("no-such-config")


def test_overrides_and_round_trip(tmp_path):
    config = load_config("smoke", overrides={"search.trials": 7, "data.source": None})
    assert config.search.trials == 7
    assert config.data.source == "synthetic"  # None means "not overridden"
    save_config(config, tmp_path / "saved.yaml")
    assert load_config(tmp_path / "saved.yaml") == config


def test_budgets_accept_scientific_notation(tmp_path):
    config = load_config(write(tmp_path, {"search": {"budgets": ["1e6", 3.16e6]}}))
    assert config.search.budgets == (1.0e6, 3.16e6)


def test_cpu_replication_meets_the_replication_protocol():
    config = load_config("cpu-replication")
    assert config.teacher.members >= 4
    assert config.search.mlp_depths == (1, 2, 3, 4, 5)
    assert config.search.cnn_depths == (1, 2, 3, 4)
    assert max(config.search.budgets) / min(config.search.budgets) >= 10
    assert 1.0e6 in config.search.budgets
    assert config.search.trials >= 6 and config.search.top_k == 5
    assert config.search.tuner == "bayesian" and config.student.loss == "mimic"
    largest = max(config.search.budgets)
    assert all(config.search.has_baseline("cnn", b) == (b == largest)
               for b in config.search.budgets)
    assert not any(config.search.has_baseline("mlp", b) for b in config.search.budgets)


def test_baselines_can_be_limited_to_families_and_budgets(tmp_path):
    search = {"budgets": [1e5, 1e6], "baseline": True}
    every = load_config(write(tmp_path, {"search": search})).search
    assert all(every.has_baseline(f, b) for f in ("mlp", "cnn") for b in (1e5, 1e6))
    limited = load_config(write(tmp_path, {"search": {
        **search, "baseline_families": ["cnn"], "baseline_budgets": [1e6]}})).search
    assert [(f, b) for f in ("mlp", "cnn") for b in (1e5, 1e6) if limited.has_baseline(f, b)] \
        == [("cnn", 1e6)]
    off = load_config(write(tmp_path, {"search": {**search, "baseline": False}})).search
    assert not off.has_baseline("cnn", 1e6)


def test_baseline_budget_outside_the_search_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match=r"search\.baseline_budgets.*budgets listed in"):
        load_config(write(tmp_path, {"search": {"budgets": [1e5], "baseline_budgets": [1e6]}}))
    with pytest.raises(ConfigError, match=r"search\.baseline_families.*'mlp' and/or 'cnn'"):
        load_config(write(tmp_path, {"search": {"baseline_families": ["rnn"]}}))


def test_student_precision_is_a_keras_policy(tmp_path):
    assert load_config("default").student.precision == "float32"
    config = load_config(write(tmp_path, {"student": {"precision": "mixed_bfloat16"}}))
    assert config.student.precision == "mixed_bfloat16"
    with pytest.raises(ConfigError, match=r"student\.precision.*'float32' or 'mixed_float16'"):
        load_config(write(tmp_path, {"student": {"precision": "float16"}}))


@pytest.mark.parametrize("section", ["student", "teacher"])
def test_jit_compile_is_auto_true_or_false(tmp_path, section):
    assert getattr(load_config("smoke"), section).jit_compile == "auto"
    for written, loaded in [("auto", "auto"), (True, "true"), (False, "false"), ("true", "true")]:
        config = load_config(write(tmp_path, {section: {"jit_compile": written}}))
        assert getattr(config, section).jit_compile == loaded
    with pytest.raises(ConfigError, match=rf"{section}\.jit_compile.*'maybe'.*'auto' or 'true'"):
        load_config(write(tmp_path, {section: {"jit_compile": "maybe"}}))


def test_every_shipped_config_loads():
    from mimic_tf.config import CONFIG_DIR

    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        overrides = {"teacher.path": "teacher.keras"} if path.stem == "digits" else {}
        assert load_config(path, overrides=overrides).name == path.stem
    with pytest.raises(ConfigError, match="--teacher PATH"):
        load_config("digits")
