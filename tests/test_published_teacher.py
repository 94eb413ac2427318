"""Published teachers: members' float16 logits with manifests, and runs that distil from them.

A module fixture trains a smoke run's teacher (2 tiny members) with one MLP search, publishes
its members (`mimic_tf.publish_teacher`), and runs the same search again from the published
logits (`teacher.published`); the tests compare the two and try every kind of mismatch.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml

from mimic_tf import publish_teacher
from mimic_tf.config import load_config
from mimic_tf.data import load_splits
from mimic_tf.teachers.published import (
    PublishedTeacherError,
    compare_views,
    file_sha256,
    member_paths,
    read_published_teacher,
)
from tuner import run
from tuner.experiment import run_experiment

REPO = Path(__file__).resolve().parent.parent


def write_config(path: Path, **overrides) -> Path:
    """configs/smoke.yaml with one MLP search of 2 trials and `overrides` (dotted keys)."""
    config = yaml.safe_load((REPO / "configs" / "smoke.yaml").read_text())
    config["search"].update({"mlp_depths": [1], "cnn_depths": [], "baseline": False,
                             "export": False})
    for dotted, value in overrides.items():
        section, key = dotted.split(".", 1)
        config.setdefault(section, {})[key] = value
    path.write_text(yaml.safe_dump(config))
    return path


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as stream:
        return list(csv.DictReader(stream))


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A run that trained its teacher, its members published, and a run distilled from them."""
    root = tmp_path_factory.mktemp("published")
    config_path = write_config(root / "smoke.yaml")
    trained = run_experiment(load_config(config_path), ("mlp",), root / "trained", verbose=0)
    folder = root / "teacher"
    assert publish_teacher.main(["--config", str(config_path), "--out",
                                 str(root / "trained"), "--to", str(folder)]) == 0
    distilled_config = load_config(config_path, overrides={"teacher.published": str(folder)})
    distilled = run_experiment(distilled_config, ("mlp",), root / "distilled", verbose=0)
    return {"root": root, "config": config_path, "folder": folder, "trained": trained.root,
            "trained_out": root / "trained", "distilled": distilled.root}


def test_each_member_is_float16_logits_beside_a_manifest_that_names_their_digests(published):
    config = load_config(published["config"])
    splits = load_splits(config.data)
    for index in range(config.teacher.members):
        logits_path, manifest_path = member_paths(published["folder"], index)
        manifest = json.loads(manifest_path.read_text())
        assert manifest["logits_sha256"] == file_sha256(logits_path)
        assert manifest["member"] == index and manifest["seed"] == config.seed
        assert manifest["views"] == config.transfer.views
        assert manifest["data"]["class_names"] == list(splits.spec.class_names)
        assert set(manifest["data"]["splits_sha256"]) == {"train", "validation", "test"}
        assert manifest["made_by"]["commit"] and manifest["made_by"]["cpu"]
        member_record = json.loads((published["trained"] / "teacher" /
                                    f"member_{index:02d}.json").read_text())
        assert manifest["epochs"] == member_record["epochs"]
        with np.load(logits_path) as arrays:
            transfer = arrays["transfer"]
            assert transfer.dtype == np.float16
            assert transfer.shape == (config.transfer.views, len(splits.train_labels),
                                      splits.spec.num_classes)
            assert arrays["test_flip"].shape == (len(splits.test_labels), 10)


def test_the_same_member_published_twice_is_the_same_bytes(published, tmp_path):
    again = tmp_path / "again"
    assert publish_teacher.main(["--config", str(published["config"]), "--out",
                                 str(published["trained_out"]), "--to", str(again)]) == 0
    for index in (0, 1):
        assert (file_sha256(member_paths(again, index)[0])
                == file_sha256(member_paths(published["folder"], index)[0]))


def test_the_published_mean_is_the_trained_transfer_set_up_to_float16(published):
    trained = np.load(published["trained"] / "transfer" / "logits.npy")
    config = load_config(published["config"])
    teacher = read_published_teacher(published["folder"], config, load_splits(config.data))
    assert teacher.transfer_logits.shape == trained.shape
    # float16 keeps 11 significant bits: about 3 decimal digits of each logit
    np.testing.assert_allclose(teacher.transfer_logits, trained, rtol=2e-3, atol=2e-3)
    assert not np.array_equal(teacher.transfer_logits, trained)  # rounded, not copied


def test_distilling_from_the_published_teacher_gives_the_same_students(published):
    trained = read_rows(published["trained"] / "results.csv")
    distilled = read_rows(published["distilled"] / "results.csv")
    assert [row["trial_id"] for row in distilled] == [row["trial_id"] for row in trained]
    for ours, theirs in zip(distilled, trained, strict=True):
        assert ours["widths"] == theirs["widths"] and ours["learning_rate"] == theirs[
            "learning_rate"]
        for column in ("val_accuracy", "test_accuracy"):
            assert round(float(ours[column]), 3) == round(float(theirs[column]), 3), column


def test_lanes_distil_from_the_published_teacher_as_one_process_does(published, tmp_path):
    """Searches side by side from published logits: the lanes make and check the views, the
    parent makes none, and the search both runs share ends the same."""
    config_path = write_config(tmp_path / "two-searches.yaml", **{
        "search.mlp_depths": [1, 2], "search.parallel": 2,
        "teacher.published": str(published["folder"])})
    summary = run_experiment(load_config(config_path), ("mlp",), tmp_path / "runs", verbose=0)
    ours = [row for row in read_rows(summary.root / "results.csv")
            if row["cell"] == "mlp-d1-b30k"]
    reference = read_rows(published["distilled"] / "results.csv")
    assert [row["trial_id"] for row in ours] == [row["trial_id"] for row in reference]
    for mine, theirs in zip(ours, reference, strict=True):
        assert mine["learning_rate"] == theirs["learning_rate"]
        for column in ("val_accuracy", "test_accuracy"):
            assert round(float(mine[column]), 3) == round(float(theirs[column]), 3), column
    assert {p.name for p in (summary.root / "lanes").iterdir()} == {"lane1.log", "lane2.log"}


def test_a_distilled_run_records_where_its_teacher_came_from(published):
    run_root = published["distilled"]
    summary = json.loads((run_root / "teacher" / "teacher.json").read_text())
    assert summary["loaded_from"]["folder"] == str(published["folder"].resolve())
    assert summary["ensemble"]["members"] == 2
    trained = json.loads((published["trained"] / "teacher" /
                          "teacher.json").read_text())
    assert summary["ensemble"]["test_accuracy"] == pytest.approx(
        trained["ensemble"]["test_accuracy"], abs=0.01)
    assert not (run_root / "teacher" / "ensemble.keras").exists()  # nothing trained
    assert not (run_root / "transfer" / "logits.npy").exists()  # no transfer pass
    results = (run_root / "results.md").read_text()
    assert "Teacher: published, not trained here" in results
    assert str(published["folder"].resolve()) in results


@pytest.mark.parametrize(("overrides", "named"), [
    ({"data.synthetic_examples": 300}, "data: the decoded"),
    ({"augment.crop_min": 26}, "augment.crop_min"),
    ({"transfer.views": 3}, "views: this run asks for 3"),
    ({"data.classes": ["airplane", "automobile", "bird"]}, "classes: this run has 3"),
])
def test_a_mismatch_stops_before_any_training_with_exit_2(published, tmp_path, capsys,
                                                         overrides, named):
    config_path = write_config(tmp_path / "other.yaml", **overrides)
    out = tmp_path / "runs"
    code = run.main(["--family", "mlp", "--config", str(config_path), "--out", str(out),
                     "--teacher-logits", str(published["folder"]), "--quiet"])
    error = capsys.readouterr().err
    assert code == 2
    assert named in error and "member_00.json" in error
    assert "--train-teacher" in error and "Traceback" not in error
    assert not out.exists()  # nothing written under runs/


@pytest.mark.parametrize("damage", ["truncate", "alter"])
def test_a_truncated_or_altered_logits_file_is_refused_by_its_digest(published, tmp_path,
                                                                    damage):
    folder = tmp_path / "teacher"
    shutil.copytree(published["folder"], folder)
    path = member_paths(folder, 1)[0]
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2] if damage == "truncate"
                     else content[:100] + bytes([content[100] ^ 1]) + content[101:])
    config = load_config(published["config"])
    with pytest.raises(PublishedTeacherError, match="member_01.npz: its sha256 is not"):
        read_published_teacher(folder, config, load_splits(config.data))


def test_a_manifest_that_is_not_one_is_named(published, tmp_path):
    folder = tmp_path / "teacher"
    shutil.copytree(published["folder"], folder)
    member_paths(folder, 0)[1].write_text('{"format": "something else"}')
    config = load_config(published["config"])
    with pytest.raises(PublishedTeacherError, match="not a mimic-tf teacher member"):
        read_published_teacher(folder, config, load_splits(config.data))


def test_views_regenerated_differently_are_measured_not_refused(published):
    config = load_config(published["config"])
    splits = load_splits(config.data)
    teacher = read_published_teacher(published["folder"], config, splits)
    from mimic_tf import data

    views = data.augmented_views(splits.train_images, config.augment, config.transfer.views)
    assert compare_views(teacher, views) is None  # the same machine: bit for bit
    views[1, 7, 3, 3, 0] += 1 if views[1, 7, 3, 3, 0] < 255 else -1
    views[0, 2, 0, 0, 2] += 1 if views[0, 2, 0, 0, 2] < 255 else -1
    note = compare_views(teacher, views)
    assert note is not None and f"2 of {views.shape[0] * views.shape[1]} differ" in note
    assert "by 2 pixel levels" in note


def test_publish_leaves_a_matching_member_alone_and_refuses_another_recipes(published,
                                                                           tmp_path, capsys):
    folder = tmp_path / "teacher"
    shutil.copytree(published["folder"], folder)
    before = file_sha256(member_paths(folder, 0)[1])
    assert publish_teacher.main(["--config", str(published["config"]), "--out",
                                 str(tmp_path / "empty"), "--to", str(folder)]) == 0
    assert "published already" in capsys.readouterr().out
    assert file_sha256(member_paths(folder, 0)[1]) == before
    assert not (tmp_path / "empty").exists()  # nothing trained
    other = write_config(tmp_path / "other.yaml", **{"teacher.learning_rate": 0.01})
    assert publish_teacher.main(["--config", str(other), "--out", str(tmp_path / "empty"),
                                 "--to", str(folder), "--member", "1"]) == 2
    error = capsys.readouterr().err
    assert "recipe: teacher.learning_rate differ" in error and "member_00.json" in error


def test_an_untrained_member_is_not_published_without_train(tmp_path, capsys):
    config_path = write_config(tmp_path / "smoke.yaml")
    assert publish_teacher.main(["--config", str(config_path), "--out", str(tmp_path / "runs"),
                                 "--to", str(tmp_path / "teacher")]) == 3
    assert "--train" in capsys.readouterr().err


def test_train_teacher_trains_where_the_config_names_a_published_one(published, tmp_path):
    config_path = write_config(tmp_path / "smoke.yaml",
                               **{"teacher.published": str(published["folder"])})
    out = tmp_path / "runs"
    assert run.main(["--family", "mlp", "--config", str(config_path), "--out", str(out),
                     "--train-teacher", "--quiet"]) == 0
    summary = json.loads((out / "smoke" / "teacher" / "teacher.json").read_text())
    assert "loaded_from" not in summary and summary["ensemble"]["members"] == 2
    assert (out / "smoke" / "teacher" / "ensemble.keras").is_file()
    assert (out / "smoke" / "transfer" / "logits.npy").is_file()


def test_your_own_keras_teacher_is_published_like_any_other(tmp_path):
    keras.utils.set_random_seed(0)
    images = keras.Input((32, 32, 3), dtype="float32")
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(images))
    keras.Model(images, keras.layers.Dense(10)(features)).save(tmp_path / "mine.keras")
    config_path = write_config(tmp_path / "smoke.yaml", **{
        "teacher.family": "keras", "teacher.path": str(tmp_path / "mine.keras")})
    out = tmp_path / "runs"
    run_experiment(load_config(config_path), ("mlp",), out, verbose=0)
    folder = tmp_path / "teacher"
    assert publish_teacher.main(["--config", str(config_path), "--out", str(out),
                                 "--to", str(folder)]) == 0
    manifest = json.loads(member_paths(folder, 0)[1].read_text())
    assert manifest["recipe"]["family"] == "keras" and manifest["epochs"] is None
    config = load_config(config_path)
    teacher = read_published_teacher(folder, config, load_splits(config.data))
    trained = json.loads((out / "smoke" / "teacher" / "teacher.json").read_text())
    assert teacher.summary(load_splits(config.data))["ensemble"]["test_accuracy"] == (
        pytest.approx(trained["ensemble"]["test_accuracy"], abs=0.01))


def test_status_says_the_teacher_was_published_not_trained(published):
    from tuner.status import format_status, run_status

    text = format_status(run_status(published["distilled"]))
    assert "published (" in text and "not trained here: 2 members" in text
    assert "views of the published teacher's logits" in text


def test_a_member_of_other_epochs_is_its_own_recipe_and_checked_as_such(published):
    from mimic_tf.teachers.published import member_recipe, mismatches, read_manifest

    config = load_config(published["config"])
    epochs = config.teacher.schedule.epochs
    shorter = load_config(published["config"], overrides={
        "teacher.member_epochs": [epochs, epochs - 1]})
    assert member_recipe(shorter, 0) == member_recipe(config, 0)
    assert member_recipe(shorter, 1)["schedule"]["epochs"] == epochs - 1
    splits = load_splits(config.data)
    first, second = (read_manifest(published["folder"], index) for index in (0, 1))
    assert mismatches(first, shorter, splits, check_recipe=True) == []
    assert mismatches(second, shorter, splits, check_recipe=True) == [
        "recipe: teacher.schedule.epochs differ from the member's"]


def test_member_epochs_must_name_every_member():
    from mimic_tf.config import ConfigError

    with pytest.raises(ConfigError, match="teacher.member_epochs"):
        load_config("smoke", overrides={"teacher.member_epochs": [3]})
    config = load_config("smoke", overrides={"teacher.member_epochs": [3, 2]})
    assert config.teacher.for_member(1).schedule.epochs == 2
    assert config.teacher.for_member(0).airbench == config.teacher.airbench


def test_the_teacher_card_says_what_the_members_are_and_how_accurate_together(published,
                                                                             capsys, tmp_path):
    from mimic_tf import teacher_card

    assert teacher_card.main([str(published["folder"])]) == 0
    alone = capsys.readouterr().out
    manifests = [json.loads(path.read_text())
                 for path in sorted(published["folder"].glob("member_*.json"))]
    rows = [line for line in alone.splitlines() if line.startswith("| ")][1:]
    assert [row.split(" | ")[0] for row in rows] == ["| 1", "| 2"]
    for row, manifest in zip(rows, manifests, strict=True):
        assert f"{100 * manifest['test_accuracy']:.2f}" in row.split(" | ")[5]
    assert "add `--config CONFIG`" in alone

    assert teacher_card.main([str(published["folder"]), "--config",
                              str(published["config"])]) == 0
    together = capsys.readouterr().out
    teacher = json.loads((published["distilled"] / "teacher" / "teacher.json").read_text())
    ensemble = [line for line in together.splitlines() if line.startswith("| **ensemble**")]
    assert ensemble and f"**{100 * teacher['ensemble']['test_accuracy']:.2f}**" in ensemble[0]

    assert teacher_card.main([str(tmp_path)]) == 2  # no teacher there
    assert "holds no published teacher member" in capsys.readouterr().err


def test_the_default_config_distils_from_the_committed_v2_ensemble_as_it_was_published():
    """configs/default.yaml names the campaign's committed members; each is intact (its
    logits file matches its digest) and was made with the default's augmentation and classes,
    with at least the views the default reads, so the main command refuses nothing on the
    data the members were made from."""
    from mimic_tf.data.spec import CIFAR10
    from mimic_tf.teachers.published import (
        augment_record,
        published_members,
        read_manifest,
        resolve_folder,
    )

    config = load_config("default")
    folder = resolve_folder(config.teacher.published)
    members = published_members(folder)
    assert len(members) >= 3
    for index in members:
        manifest = read_manifest(folder, index)
        assert file_sha256(folder / manifest["logits_file"]) == manifest["logits_sha256"]
        assert manifest["augment"]["sha256"] == augment_record(config)["sha256"]
        assert config.transfer.views <= manifest["views"]
        assert manifest["data"]["class_names"] == list(CIFAR10.class_names)
        assert manifest["test_accuracy"] >= 0.90


def test_the_frontier_serves_the_students_of_a_published_teacher(published, tmp_path):
    """A run distilled from published logits keeps the ensemble's validation and test logits
    in its transfer folder, as a trained teacher's run does, so the frontier (agreement with
    the teacher) measures its students."""
    from tuner.frontier import __main__ as frontier

    run_copy = tmp_path / "distilled"
    shutil.copytree(published["distilled"], run_copy)
    saved = np.load(run_copy / "transfer" / "evaluation_logits.npz")
    config = load_config(published["config"])
    teacher = read_published_teacher(published["folder"], config, load_splits(config.data))
    for split in ("validation", "test"):
        np.testing.assert_array_equal(saved[split], teacher.evaluation_logits[split])
    assert frontier.main(["--run", str(run_copy), "--latency-requests", "5"]) == 0
    rows = list(csv.DictReader((run_copy / "frontier.csv").open()))
    assert len(rows) == 2  # both trials of the one search, served and timed
    assert all(0.0 <= float(row["agreement"]) <= 1.0 for row in rows)
