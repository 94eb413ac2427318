"""CLI: a published teacher's card: what it is, how it was made, and how accurate it is.

    python -m mimic_tf.teacher_card results/cpu-replication-v2/teacher
    python -m mimic_tf.teacher_card results/cpu-replication-v2/teacher --config cpu-replication-v2

From the members' manifests alone: the net, the data and augmented views its logits are of,
each member's seed, epochs, precision, accuracies, training time and machine, and the
commits and CPUs that made them. With `--config` (and its data at hand), also the ensemble's
accuracies, from the members' logits, each checked against its digest and the config as a
run that distils from them checks it. Prints markdown (a README can paste it). Exit codes: 0,
1 the config's data could not be read, 2 no published teacher there or a member that does
not match the config.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mimic_tf.cli import VERBOSE_FLAG, VERBOSE_HELP, import_tensorflow_quietly
from mimic_tf.config import ConfigError, load_config
from mimic_tf.teachers.published import (
    PublishedTeacherError,
    published_members,
    read_manifest,
)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _with_and_without(manifest: Mapping[str, Any], split: str) -> str:
    """`90.96 (90.32)`: the member's accuracy as the teacher averages it, and without the
    mirror in brackets where the teacher averages with it."""
    shown = _percent(manifest.get(f"{split}_accuracy"))
    if manifest.get("flip_average"):
        shown += f" ({_percent(manifest.get(f'{split}_accuracy_without_flip'))})"
    return shown


def _net(recipe: Mapping[str, Any]) -> str:
    family = recipe.get("family", "?")
    if family == "airbench":
        widths = "/".join(str(width) for width in recipe["airbench"]["widths"])
        return f"airbench (block widths {widths})"
    if family == "paper":
        return f"the paper's CNN (conv widths {'/'.join(map(str, recipe['conv_widths']))})"
    return family


def card_lines(folder: Path, manifests: Sequence[Mapping[str, Any]],
               ensemble: Mapping[str, Any] | None = None) -> list[str]:
    """The card, as markdown lines: `manifests` in member order, `ensemble` the
    `PublishedTeacher.summary(...)["ensemble"]` record where the data were at hand."""
    first = manifests[0]
    data = first["data"]
    sizes = data.get("sizes", {})
    params = sum(int(m.get("params", 0)) for m in manifests)
    megabytes = sum(int(m.get("logits_bytes", 0)) for m in manifests) / 1e6
    mirror = (" Each accuracy averages the image's logits with its mirror's, as the ensemble "
              "does (in brackets: the image alone)." if first.get("flip_average") else "")
    made = sorted({(m["made_by"].get("commit", "?")[:7], m["made_by"].get("cpu", "?"))
                   for m in manifests})
    dates = sorted(m["made_by"].get("date", "?") for m in manifests)
    lines = [
        f"# Published teacher: {folder}",
        "",
        f"{len(manifests)} member{'s' if len(manifests) != 1 else ''} of {_net(first['recipe'])}, "
        f"{params:,} parameters in all: float16 logits on {first['views']} augmented views of "
        f"the {sizes.get('train', 0):,} training images and on the "
        f"{sizes.get('validation', 0):,} validation and {sizes.get('test', 0):,} test images, "
        f"{megabytes:.1f} MB. Data: `{data.get('source', '?')}`, "
        f"{len(data.get('class_names', []))} classes ({', '.join(data.get('class_names', []))})."
        f" Seed {first.get('seed', '?')}: the members differ by their number (their weights' "
        "initialisation and their data order)."
        f" Made by {'; '.join(f'commit {commit} on {cpu}' for commit, cpu in made)}, "
        f"{dates[0][:10]}{f' to {dates[-1][:10]}' if dates[-1][:10] != dates[0][:10] else ''}."
        f"{mirror}",
        "",
        "| member | epochs | precision | params | validation % | test % | training "
        "| trained on |",
        "|---|---|---|---|---|---|---|---|",
    ]
    training_seconds = 0.0
    for manifest in manifests:
        record = manifest.get("training_record", {})
        seconds = float(manifest.get("train_seconds", 0.0))
        training_seconds += seconds
        rate = record.get("images_per_second")
        lines.append(
            f"| {int(manifest['member']) + 1} | {manifest.get('epochs', '?')} | "
            f"{manifest.get('precision', '?')} | "
            f"{int(manifest.get('params', 0)):,} | {_with_and_without(manifest, 'validation')} | "
            f"{_with_and_without(manifest, 'test')} | {seconds / 3600:.2f} h"
            f"{f' ({rate} img/s)' if rate else ''} | "
            f"{record.get('runtime', {}).get('cpu', manifest['made_by'].get('cpu', '?'))} |")
    if ensemble is not None:
        lines.append(f"| **ensemble** (mean logits) | | | {params:,} | "
                     f"**{_percent(ensemble['validation_accuracy'])}** | "
                     f"**{_percent(ensemble['test_accuracy'])}** | "
                     f"{training_seconds / 3600:.2f} h | |")
    else:
        lines += ["", "The ensemble's accuracy needs its data: add `--config CONFIG` (the "
                  "config whose data and views the teacher was published for)."]
    return lines


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mimic_tf.teacher_card",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a published teacher's folder "
                        "(member_XX.npz and .json), e.g. results/cpu-replication-v2/teacher")
    parser.add_argument("--config", default=None,
                        help="a config whose data the teacher was published on: adds the "
                        "ensemble's accuracies (default: the manifests alone)")
    parser.add_argument(VERBOSE_FLAG, action="store_true", help=VERBOSE_HELP)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    prog = "python -m mimic_tf.teacher_card"
    try:
        indices = published_members(args.folder) if args.folder.is_dir() else []
        if not indices:
            raise PublishedTeacherError(f"{args.folder}: holds no published teacher member "
                                        "(member_XX.json beside member_XX.npz)")
        manifests = [read_manifest(args.folder, index) for index in indices]
        config = load_config(args.config) if args.config else None
    except (PublishedTeacherError, ConfigError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    ensemble = None
    if config is not None:
        import_tensorflow_quietly(args.verbose)
        from mimic_tf.data import DataError, load_splits
        from mimic_tf.teachers.published import read_published_teacher

        try:
            splits = load_splits(config.data)
            teacher = read_published_teacher(args.folder, config, splits)
        except DataError as error:
            print(f"{prog}: error: {error}", file=sys.stderr)
            return 1
        except PublishedTeacherError as error:
            print(f"{prog}: error: {error}", file=sys.stderr)
            return 2
        ensemble = teacher.summary(splits)["ensemble"]
    print("\n".join(card_lines(args.folder, manifests, ensemble)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
