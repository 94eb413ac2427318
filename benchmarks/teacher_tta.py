"""Experiment: how much does airbench94's multi-crop test-time augmentation add to a teacher?

The port averages each image's logits with its mirror's (`teacher.airbench.flip_tta`).
airbench94 also averages 1-pixel translations: its `infer_mirror_translate` is half the
flip-averaged logits of the image and half the mean of the flip-averaged logits of two
copies shifted by one pixel (reflect padding), up-left and down-right. This measures, on the
members of a teacher folder, each member's and the ensemble's accuracy under

    none        the image alone
    flip        the mean over the image and its mirror (what the teacher uses now)
    translate   airbench94's mirror-and-translate average (6 passes an image)
    mean6       the uniform mean of the same 6 passes

on the validation split (to choose) and the test split (to report). Each member's 6 passes
are saved to `--out` (`member_XX.npz`), so that a later call with more members trained pays
only for the new ones.

    python benchmarks/teacher_tta.py --teacher ~/mimic-tf-runs/cpu-replication-v2/teacher

Reference run: results/cpu-replication-v2/lost-runs/campaign-log.md. Prints one JSON object last.
"""

from __future__ import annotations

import mimic_tf  # noqa: F401  (first: sets oneDNN's default before TensorFlow loads)

# isort: split

import argparse
import json
import time
from pathlib import Path

import numpy as np

from mimic_tf import data, runtime
from mimic_tf.config import load_config
from mimic_tf.files import atomic_path
from mimic_tf.teachers import accuracy, load_model, predict_logits

SPLITS = ("validation", "test")
# Each pass: (its name, the view it starts from, whether it is mirrored).
PASSES = (("plain", "plain", False), ("mirror", "plain", True),
          ("up_left", "up_left", False), ("up_left_mirror", "up_left", True),
          ("down_right", "down_right", False), ("down_right_mirror", "down_right", True))


def shifted(images: np.ndarray, offset: int) -> np.ndarray:
    """uint8 NHWC images moved by one pixel: reflect-padded by 1 and cropped at `offset`
    (0: the content moves down-right, 2: up-left), as airbench94's translate views."""
    height, width = images.shape[1:3]
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    return np.ascontiguousarray(padded[:, offset:offset + height, offset:offset + width])


def mirrored(images: np.ndarray) -> np.ndarray:
    """The images flipped left to right."""
    return np.ascontiguousarray(images[:, :, ::-1])


def member_passes(member_path: Path, splits: data.Splits, cache: Path) -> dict[str, np.ndarray]:
    """The member's logits for every pass of PASSES on each split, `[6, N, classes]` a split,
    read from `cache` when an earlier call computed them (same member file, same images)."""
    stamp = f"{member_path.stat().st_size}-{int(member_path.stat().st_mtime)}"
    if cache.exists():
        saved = np.load(cache)
        if str(saved["stamp"]) == stamp:
            return {split: saved[split] for split in SPLITS}
    member = load_model(member_path)
    result = {}
    for split in SPLITS:
        images = getattr(splits, f"{split}_images")
        views = {"plain": images, "up_left": shifted(images, 2), "down_right": shifted(images, 0)}
        logits = []
        for name, base, mirror in PASSES:
            started = time.perf_counter()
            view = mirrored(views[base]) if mirror else views[base]
            logits.append(predict_logits(member, view))
            print(f"{member_path.name} {split} {name}: "
                  f"{len(images) / (time.perf_counter() - started):,.0f} img/s", flush=True)
        result[split] = np.stack(logits)
    cache.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache) as temporary:
        with open(temporary, "wb") as stream:
            np.savez(stream, stamp=np.array(stamp), **result)
    return result


def averaged(passes: np.ndarray) -> dict[str, np.ndarray]:
    """Each test-time augmentation's logits from one member's 6 passes `[6, N, classes]`."""
    plain, mirror, up_left, up_left_mirror, down_right, down_right_mirror = passes
    flip = (plain + mirror) / 2
    translated = ((up_left + up_left_mirror) / 2 + (down_right + down_right_mirror) / 2) / 2
    return {"none": plain, "flip": flip, "translate": (flip + translated) / 2,
            "mean6": passes.mean(axis=0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", type=Path, required=True,
                        help="a teacher folder with config.yaml and member_XX.keras")
    parser.add_argument("--out", type=Path, default=Path("/tmp/teacher-tta"),
                        help="where each member's passes are kept between calls")
    args = parser.parse_args()
    config = load_config(args.teacher / "config.yaml")
    members = sorted(args.teacher.glob("member_*.keras"))
    if not members:
        raise SystemExit(f"{args.teacher} holds no member_XX.keras: pass a teacher folder")
    splits = data.load_splits(config.data)
    labels = {split: getattr(splits, f"{split}_labels") for split in SPLITS}

    results: dict = {"teacher": str(args.teacher), "runtime": runtime.describe(),
                     "members": {}, "ensemble": {}}
    sums: dict[str, dict[str, np.ndarray]] = {split: {} for split in SPLITS}
    for path in members:
        passes = member_passes(path, splits, args.out / f"{path.stem}.npz")
        record = {}
        for split in SPLITS:
            for level, logits in averaged(passes[split]).items():
                record[f"{split}_{level}"] = round(100 * accuracy(logits, labels[split]), 2)
                sums[split][level] = sums[split].get(level, 0.0) + logits
        results["members"][path.stem] = record
        print(json.dumps({path.stem: record}), flush=True)
    for split in SPLITS:
        for level, logits in sums[split].items():
            results["ensemble"][f"{split}_{level}"] = round(
                100 * accuracy(logits, labels[split]), 2)
    results["ensemble"]["members"] = len(members)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
