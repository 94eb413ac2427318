"""CLI: publish a teacher's members as float16 logits that any run can distil from.

    python -m mimic_tf.publish_teacher --config default --to my-teacher/
    python -m mimic_tf.publish_teacher --config cpu-replication-v2 --out ~/mimic-tf-runs \\
        --to results/cpu-replication-v2/teacher --member 2 --train

For each member of the config's ensemble (or those `--member` names, counted from 1 as the
logs count them; member 1 is `member_00`): a member `--to` already holds, made under this
config's recipe, seed, data, augmentation and views, is left alone and never trained again;
else the member of the run folder (`<out>/<experiment>/teacher/member_XX.keras`, a finished
run's, the user's own `family: keras` teacher included) is published; with `--train`, a
member the run folder lacks is trained first (resumable: a killed member goes on from its
last finished epoch). Each member's files are written whole or not at all, manifest last
(`mimic_tf.teachers.published`). Exit codes: 0 done, 1 data error, 2 a bad config or a
published member that does not match it, 3 a member not trained (without `--train`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from mimic_tf.cli import VERBOSE_FLAG, VERBOSE_HELP, import_tensorflow_quietly
from mimic_tf.config import ConfigError, load_config
from mimic_tf.layout import ExperimentLayout
from mimic_tf.teachers.published import (
    PublishedTeacherError,
    member_paths,
    mismatches,
    read_manifest,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m mimic_tf.publish_teacher",
        description="Publish a teacher's members as float16 logits with manifests.",
    )
    parser.add_argument("--config", default="default",
                        help="YAML config path or a name in configs/ (default: default)")
    parser.add_argument("--data", default=None,
                        help="data source: auto | tfds:cifar10 | folder:PATH | synthetic")
    parser.add_argument("--out", default="runs",
                        help="the run folder's parent (default: runs/)")
    parser.add_argument("--to", required=True, type=Path,
                        help="the published teacher's folder (member_XX.npz and .json)")
    parser.add_argument("--member", type=int, action="append", default=None,
                        help="publish this member only, counted from 1 (repeatable; "
                        "default: every member of the config's ensemble)")
    parser.add_argument("--train", action="store_true",
                        help="train a member the run folder lacks (default: refuse, exit 3)")
    parser.add_argument(VERBOSE_FLAG, action="store_true", help=VERBOSE_HELP)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = load_config(args.config, overrides={"data.source": args.data})
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if config.teacher.published:
        print(f"error: config '{config.name}' distils from a published teacher "
              f"(teacher.published: {config.teacher.published}); it has no teacher of its own "
              "to publish", file=sys.stderr)
        return 2
    size = config.teacher.ensemble_size
    numbers = args.member or list(range(1, size + 1))
    outside = [number for number in numbers if not 1 <= number <= size]
    if outside:
        print(f"error: --member {outside[0]}: the ensemble of config '{config.name}' has "
              f"members 1..{size}", file=sys.stderr)
        return 2

    import_tensorflow_quietly(args.verbose)  # heavy imports after the flags are good
    from mimic_tf import data
    from mimic_tf.data import DataError, load_splits
    from mimic_tf.teachers import (
        TeacherMismatchError,
        check_teacher_config,
        load_model,
        member_record_path,
        train_member,
    )
    from mimic_tf.teachers.published import write_member

    layout = ExperimentLayout.for_config(config, args.out)
    try:
        splits = load_splits(config.data)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    views = None
    for number in numbers:
        index = number - 1
        label = f"teacher member {number}/{size}"
        manifest_path = member_paths(args.to, index)[1]
        if manifest_path.is_file():
            try:
                problems = mismatches(read_manifest(args.to, index), config, splits,
                                      check_recipe=True)
            except PublishedTeacherError as error:
                problems = [str(error)]
            if problems:
                print(f"error: {manifest_path} is published and does not match config "
                      f"'{config.name}': {'; '.join(problems)}. Publish into another folder, "
                      "or delete that member's two files to train it again under this "
                      "config", file=sys.stderr)
                return 2
            print(f"{label}: published already ({manifest_path}), not trained again",
                  flush=True)
            continue
        member_path = layout.teacher / f"member_{index:02d}.keras"
        record_path = member_record_path(layout.teacher, index)
        if not member_path.is_file():
            if not args.train:
                print(f"error: {label} is not trained ({member_path} is missing); train it "
                      "with --train, or run the experiment first", file=sys.stderr)
                return 3
            try:
                check_teacher_config(config, layout.teacher)
            except TeacherMismatchError as error:
                print(f"error: {error}", file=sys.stderr)
                return 2
            print(f"{label}: training", flush=True)
            started = time.perf_counter()
            train_member(config, splits, index, layout.teacher,
                         verbose=1 if sys.stdout.isatty() else 2)
            print(f"{label}: trained in {time.perf_counter() - started:,.0f} s", flush=True)
        record = json.loads(record_path.read_text()) if record_path.is_file() else {}
        if views is None:  # made once for every member published by this call
            views = data.augmented_views(splits.train_images, config.augment,
                                         config.transfer.views)
        write_member(config, splits, load_model(member_path), index, args.to, record,
                     views=views)
    return 0


if __name__ == "__main__":
    sys.exit(main())
