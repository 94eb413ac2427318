"""Teacher family, ensemble averaging, resumable training and the teacher CLI."""

from __future__ import annotations

import dataclasses
import json

import keras
import numpy as np
import pytest
import yaml

from mimic_tf import teachers
from mimic_tf import train_teacher as teacher_cli
from mimic_tf.config import load_config
from mimic_tf.data import load_splits
from mimic_tf.data.spec import CIFAR10


@pytest.fixture(scope="module")
def smoke():
    config = load_config("smoke")
    return config, load_splits(config.data)


def test_member_is_the_papers_family():
    config = dataclasses.replace(load_config("paper").teacher, width_jitter=0.0)
    member = teachers.build_teacher_member(config, spec=CIFAR10)
    convs = [layer for layer in member.layers if isinstance(layer, keras.layers.Conv2D)]
    pools = [layer for layer in member.layers if isinstance(layer, keras.layers.MaxPooling2D)]
    dense = [layer for layer in member.layers if isinstance(layer, keras.layers.Dense)]
    dropouts = [layer for layer in member.layers if isinstance(layer, keras.layers.Dropout)]
    assert [c.filters for c in convs] == list(config.conv_widths)
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert len(pools) == 3 and len(dropouts) == 5  # after each pool and each FC layer
    assert [d.units for d in dense] == [*config.fc_widths, 10]
    assert all(layer.kernel_regularizer is not None for layer in convs + dense)
    # The paper's best single model 76c2-mp-126c2-mp-148c4-mp-1200fc2 has 5.3M parameters.
    assert member.count_params() == pytest.approx(5.3e6, rel=0.02)


def test_width_jitter_makes_members_differ():
    config = load_config("paper").teacher
    first = teachers.member_widths(config, 0, seed=0)
    second = teachers.member_widths(config, 1, seed=0)
    assert first != second
    assert first == teachers.member_widths(config, 0, seed=0)


def test_ensemble_output_is_the_mean_of_member_logits():
    config = load_config("smoke").teacher
    members = [teachers.build_teacher_member(config, index, seed=0, spec=CIFAR10)
               for index in range(3)]
    ensemble = teachers.build_ensemble(members)
    images = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    expected = np.mean([m.predict(images, verbose=0) for m in members], axis=0)
    np.testing.assert_allclose(ensemble.predict(images, verbose=0), expected, rtol=1e-5,
                               atol=1e-6)
    assert not ensemble.trainable


def test_ensure_teacher_trains_saves_and_resumes(smoke, tmp_path, monkeypatch):
    config, splits = smoke
    ensemble = teachers.ensure_teacher(config, splits, tmp_path, verbose=0)
    summary = json.loads((tmp_path / "teacher.json").read_text())
    assert len(summary["members"]) == config.teacher.members
    for record in summary["members"] + [summary["ensemble"]]:
        assert 0.0 <= record["validation_accuracy"] <= 1.0
        assert 0.0 <= record["test_accuracy"] <= 1.0
    assert (tmp_path / "ensemble.keras").exists() and (tmp_path / "config.yaml").exists()
    assert list((tmp_path / "logs").iterdir())  # TensorBoard logs per member
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary files left behind
    # Each member's and the ensemble's weights, named to the bit as their files load.
    for record in summary["members"]:
        member = teachers.load_model(tmp_path / f"member_{record['member']:02d}.keras")
        assert record["weights_sha256"] == teachers.weights_fingerprint(member)
    saved_ensemble = teachers.load_model(tmp_path / "ensemble.keras")
    assert summary["ensemble"]["weights_sha256"] == teachers.weights_fingerprint(saved_ensemble)

    # Resumable: a member already trained is never retrained.
    def fail(*args, **kwargs):
        raise AssertionError("a trained member was trained again")

    monkeypatch.setattr(teachers.training, "train_member", fail)
    (tmp_path / "ensemble.keras").unlink()
    again = teachers.ensure_teacher(config, splits, tmp_path, verbose=0)
    np.testing.assert_allclose(
        again.predict(splits.test_images[:8], verbose=0),
        ensemble.predict(splits.test_images[:8], verbose=0), rtol=1e-5, atol=1e-6,
    )

    # A member trained by an earlier process keeps its training record (member_XX.json),
    # as in a campaign whose teacher.json is written only once the ensemble is complete.
    (tmp_path / "ensemble.keras").unlink()
    (tmp_path / "teacher.json").unlink()
    teachers.ensure_teacher(config, splits, tmp_path, verbose=0)
    found = json.loads((tmp_path / "teacher.json").read_text())["members"]
    for trained, kept in zip(summary["members"], found, strict=True):
        for key in ("epochs", "train_seconds", "images_per_second"):
            assert kept[key] == trained[key], key


def test_a_teacher_trained_twice_from_scratch_is_the_same_to_the_bit(smoke, tmp_path):
    """Training is deterministic: a teacher lost with its machine and trained again on one of
    the same kind can be recognised by the fingerprints its teacher.json recorded."""
    config, splits = smoke
    config = dataclasses.replace(config, teacher=dataclasses.replace(config.teacher, members=1))
    digests = []
    for folder in ("first", "again"):
        teachers.ensure_teacher(config, splits, tmp_path / folder, verbose=0)
        digests.append(json.loads((tmp_path / folder / "teacher.json").read_text()))
    first, again = digests
    assert first["members"][0]["weights_sha256"] == again["members"][0]["weights_sha256"]
    assert first["ensemble"]["weights_sha256"] == again["ensemble"]["weights_sha256"]
    other = dataclasses.replace(config, seed=config.seed + 1)
    teachers.ensure_teacher(other, splits, tmp_path / "other seed", verbose=0)
    reseeded = json.loads((tmp_path / "other seed" / "teacher.json").read_text())
    assert reseeded["members"][0]["weights_sha256"] != first["members"][0]["weights_sha256"]


def test_teacher_cli_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        teacher_cli.main(["--no-such-flag"])
    assert exit_info.value.code == 2
    assert teacher_cli.main(["--config", "smoke", "--members", "0"]) == 2
    assert "teacher.members" in capsys.readouterr().err


def test_the_ensembles_evaluation_logits_are_kept_for_the_transfer_set(smoke, tmp_path,
                                                                       monkeypatch):
    from mimic_tf import transfer

    config, splits = smoke
    ensemble = teachers.ensure_teacher(config, splits, tmp_path / "teacher", verbose=0)
    saved = teachers.saved_evaluation_logits(tmp_path / "teacher", ensemble)
    assert saved is not None
    np.testing.assert_allclose(saved["test"], teachers.predict_logits(ensemble,
                                                                      splits.test_images),
                               rtol=1e-5, atol=1e-5)
    # Another teacher's weights: not its logits.
    other = teachers.build_ensemble([teachers.build_teacher_member(config.teacher, 0, seed=9,
                                                                   spec=CIFAR10)])
    assert teachers.saved_evaluation_logits(tmp_path / "teacher", other) is None

    # Given them, the transfer set runs the teacher over the training views only.
    evaluated = []
    monkeypatch.setattr(transfer, "predict_logits",
                        lambda *args, **kwargs: evaluated.append(args) or None)
    built = transfer.build_transfer_set(config, splits, ensemble, tmp_path / "transfer",
                                        verbose=0, evaluation_logits=saved)
    assert not evaluated
    np.testing.assert_array_equal(built.validation_logits, saved["validation"])


def test_a_teacher_recorded_before_newer_config_keys_stays_valid(tmp_path):
    """Keys added to the data and teacher sections since a teacher was trained take their
    defaults: a campaign's hours of members survive the refactor that added them."""
    config = load_config("cpu-replication-v2")
    recorded = config.to_dict()
    for section, key in (("data", "image_size"), ("data", "test_size"),
                         ("teacher", "jit_compile")):
        del recorded[section][key]
    del recorded["frontier"]
    old_file = yaml.safe_dump(recorded, sort_keys=False)
    (tmp_path / "config.yaml").write_text(old_file)
    teachers.check_teacher_config(config, tmp_path)  # no error
    (tmp_path / "config.yaml").write_text(old_file)
    resized = dataclasses.replace(config, data=dataclasses.replace(config.data,
                                                                   image_size=(24, 24)))
    with pytest.raises(teachers.TeacherMismatchError, match="data"):
        teachers.check_teacher_config(resized, tmp_path)
