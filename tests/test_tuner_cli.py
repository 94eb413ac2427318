"""`python -m tuner.run` flags: parsing, config overrides, and exit status 2 on bad input."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from tuner import run

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tuner.run", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_budgets_accept_numbers_and_suffixes():
    assert run.parse_budgets("1e6,3.16e6") == [1e6, 3.16e6]
    assert run.parse_budgets("30k,1M") == [3e4, 1e6]
    with pytest.raises(argparse.ArgumentTypeError, match="not a number"):
        run.parse_budgets("lots")


def test_flags_become_config_overrides():
    args = run.build_parser().parse_args(
        ["--family", "cnn", "--depths", "1,3", "--budgets", "30k", "--trials", "3",
         "--epochs", "2", "--tuner", "hyperband", "--data", "synthetic", "--baseline",
         "--push", "--no-frontier", "--serving-base", "/srv/models", "--parallel", "2"])
    assert run.overrides_from(args) == {
        "search.cnn_depths": [1, 3],
        "search.budgets": [3e4],
        "search.tuner": "hyperband",
        "search.trials": 3,
        "student.schedule.epochs": 2,
        "student.mlp_epochs": 0,
        "student.cnn_epochs": 0,
        "data.source": "synthetic",
        "teacher.family": None,
        "teacher.path": None,
        "teacher.published": None,
        "search.baseline": True,
        "search.parallel": 2,
        "release.push": True,
        "frontier.measure": False,
        "release.serving_base": "/srv/models",
    }
    defaults = run.overrides_from(run.build_parser().parse_args(["--family", "mlp"]))
    assert set(defaults.values()) == {None}  # no flag: the config decides


@pytest.mark.parametrize(("text", "families"), [
    ("mlp", ("mlp",)), ("cnn", ("cnn",)), ("all", ("mlp", "cnn")), ("cnn,mlp", ("mlp", "cnn")),
    ("MLP", ("mlp",)),
])
def test_family_accepts_one_all_or_a_list(text, families):
    assert run.build_parser().parse_args(["--family", text]).family == families


def test_epochs_caps_every_trial_of_the_default_config():
    """The default config caps MLP and CNN trials apart (student.mlp_epochs, cnn_epochs);
    `--epochs` caps them all, as its help says."""
    from mimic_tf.config import load_config

    args = run.build_parser().parse_args(["--family", "all", "--epochs", "1"])
    config = load_config("default", overrides={k: v for k, v in run.overrides_from(args).items()
                                               if v is not None})
    assert load_config("default").student.epochs_for("cnn") > 1
    assert config.student.epochs_for("mlp") == config.student.epochs_for("cnn") == 1


def test_all_families_override_both_depths_only_when_asked():
    args = run.build_parser().parse_args(["--family", "all"])
    overrides = run.overrides_from(args)
    assert overrides["search.mlp_depths"] is None and overrides["search.cnn_depths"] is None


def test_bad_config_value_exits_2_in_process(capsys):
    assert run.main(["--family", "mlp", "--config", "smoke", "--depths", "7"]) == 2
    error = capsys.readouterr().err
    assert "search.mlp_depths" in error and "1..5" in error


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--config", "smoke"], "--family"),
        (["--family", "rnn"], "is not one of mlp, cnn, all"),
        (["--family", "all", "--depths", "1,2"], "applies to one family"),
        (["--family", "mlp", "--tuner", "grid"], "choose from"),
        (["--family", "mlp", "--trials", "0"], "not a positive integer"),
        (["--family", "mlp", "--budgets", "big"], "not a number"),
        (["--family", "cnn", "--config", "smoke", "--depths", "5"], "search.cnn_depths"),
        (["--family", "mlp", "--config", "no-such-config"], "not found"),
        (["--family", "mlp", "--config", "smoke", "--data", "ftp:x"], "data.source"),
        (["--family", "mlp", "--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_flags_exit_2_with_a_message(args, message):
    result = run_cli(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr


def test_help_explains_every_flag():
    result = run_cli("--help")
    assert result.returncode == 0
    for flag in ("--family", "--config", "--depths", "--budgets", "--tuner", "--trials",
                 "--epochs", "--data", "--out", "--overwrite", "--baseline"):
        assert flag in result.stdout
