"""The campaign's committed members stay readable by the code of today.

Each published member of `results/cpu-replication-v2/teacher/` was made by the code of its
day; a restructuring, a renamed module or a new config key must not turn it into a "foreign"
artifact. The recipe, the augmentation's digest, K and the logits' digest are code's business
and are checked always; the digests of the decoded data need CIFAR-10 itself, so the full read
runs where the shared JPEG copy is beside the checkout.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from mimic_tf.config import load_config
from mimic_tf.data import sources
from mimic_tf.data.spec import CIFAR10
from mimic_tf.teachers.published import (
    augment_record,
    file_sha256,
    member_paths,
    member_recipe,
    published_members,
    read_manifest,
)
from tuner.findings import main as findings_main
from tuner.search.cells import HARD_SUFFIX

ROOT = Path(__file__).parent.parent
TEACHER = ROOT / "results" / "cpu-replication-v2" / "teacher"
CONFIG = "cpu-replication-v2"
MEMBERS = published_members(TEACHER)


def test_the_campaign_has_committed_members():
    assert MEMBERS, f"no published member in {TEACHER}"


@pytest.mark.parametrize("index", MEMBERS)
def test_a_committed_member_matches_todays_config_and_code(index):
    config = load_config(CONFIG)
    manifest = read_manifest(TEACHER, index)
    logits_path, _ = member_paths(TEACHER, index)
    assert file_sha256(logits_path) == manifest["logits_sha256"]
    assert manifest["seed"] == config.seed
    assert manifest["recipe"] == member_recipe(config, index)
    assert manifest["augment"]["sha256"] == augment_record(config)["sha256"]
    assert manifest["views"] >= config.transfer.views
    assert manifest["data"]["class_names"] == list(CIFAR10.class_names)


def test_the_committed_members_are_read_as_a_teacher_on_the_real_data():
    if not any(path.is_file() for path in sources._archive_candidates()):
        pytest.skip("the shared CIFAR-10 JPEG copy is not beside this checkout")
    from mimic_tf.data import load_splits
    from mimic_tf.teachers.published import read_published_teacher

    config = load_config(CONFIG)
    splits = load_splits(config.data)
    teacher = read_published_teacher(TEACHER, config, splits, check_recipe=True)
    assert teacher.transfer_logits.shape[:2] == (config.transfer.views, len(splits.train_labels))
    assert teacher.evaluation_logits["test"].shape == (len(splits.test_labels), 10)


def test_the_committed_results_check_the_five_findings(tmp_path):
    """`python -m tuner.findings results/cpu-replication-v2` reads what the campaign committed
    with today's code: all five findings, each measured where the results hold its searches
    (finding 4 needs the hard-label baselines)."""
    results = TEACHER.parent
    assert findings_main([str(results), "--out", str(tmp_path)]) == 0
    markdown = (tmp_path / "findings.md").read_text()
    assert markdown.startswith("# The paper's findings, checked on results/cpu-replication-v2")
    assert all(f"\n{number}. **" in markdown for number in range(1, 6))
    with (results / "results.csv").open(newline="") as stream:
        has_baselines = any(row["cell"].endswith(HARD_SUFFIX) for row in csv.DictReader(stream))
    findings = json.loads((tmp_path / "findings.json").read_text())
    assert [finding["measured"] for finding in findings] == [True, True, True, has_baselines,
                                                             True]
