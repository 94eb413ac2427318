"""The data sections: where the images come from (`data`), their augmentation (`augment`)
and the transfer set the students learn from (`transfer`).
"""

from __future__ import annotations

import dataclasses

from mimic_tf.config.checks import check
from mimic_tf.vocabulary import FLIP_AVERAGE_CHOICES, quoted


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how they are split (CIFAR-10: 40k train / 10k validation
    / 10k test)."""

    source: str = "auto"  # auto | tfds:cifar10 | folder:PATH (tree or .tar.gz) | synthetic
    validation_size: int = 10_000  # held out of the 50k training images, stratified
    split_seed: int = 0  # fixes which training images are held out
    train_fraction: float = 1.0  # keep this fraction of the 40k train split (scaled configs)
    synthetic_examples: int = 600  # images per split for source=synthetic (tests)
    # [height, width] every image is resized to; needed when a source's images differ in
    # size ([]: the images' own size, which must then be one).
    image_size: tuple[int, ...] = ()
    # Images held out of the training images for testing, for a source without a test split
    # (0: the source's own test split, which it must then have).
    test_size: int = 0
    # Keep only these classes, relabelled 0.. in this order ([]: every class of the source),
    # e.g. [airplane, automobile, bird, cat, deer] for a 5-class CIFAR-10.
    classes: tuple[str, ...] = ()

    def validate(self) -> None:
        check(
            self.source in ("auto", "synthetic")
            or (self.source.startswith("tfds:") and len(self.source) > len("tfds:"))
            or (self.source.startswith("folder:") and len(self.source) > len("folder:")),
            "data.source",
            self.source,
            "'auto', 'tfds:NAME' (e.g. tfds:cifar10), 'folder:PATH' or 'synthetic'",
        )
        check(not self.image_size or (len(self.image_size) == 2
                                      and all(side >= 1 for side in self.image_size)),
              "data.image_size", list(self.image_size),
              "[height, width] in pixels, or [] for the images' own size")
        check(self.test_size >= 0, "data.test_size", self.test_size,
              ">= 0 (0: the source's own test split)")
        check(len(self.classes) != 1 and len(set(self.classes)) == len(self.classes),
              "data.classes", list(self.classes),
              "two or more distinct class names, or [] for every class")
        check(self.validation_size >= 10, "data.validation_size", self.validation_size, ">= 10")
        check(
            0.0 < self.train_fraction <= 1.0,
            "data.train_fraction",
            self.train_fraction,
            "0 < fraction <= 1",
        )
        check(
            self.synthetic_examples >= 20,
            "data.synthetic_examples",
            self.synthetic_examples,
            ">= 20",
        )


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """The paper's augmentation: flips, random square crops resized to 32x32, HSV jitter.

    Defaults are the best teacher's HSV constants (Urban et al. 2017, section 2).
    """

    flip: bool = True  # left-right flip with p = 0.5
    crop_min: int = 24  # crop side S ~ U{crop_min..crop_max}, resized back to 32x32
    crop_max: int = 32
    hue_shift: float = 0.06  # Dh: additive hue shift ~ U(-Dh, Dh), hue in [0, 1)
    saturation_shift: float = 0.26  # Ds: additive saturation shift ~ U(-Ds, Ds)
    value_shift: float = 0.20  # Dv: additive value shift ~ U(-Dv, Dv)
    saturation_scale: float = 0.21  # As: saturation scaled by ~ U(1/(1+As), 1+As)
    value_scale: float = 0.13  # Av: value scaled by ~ U(1/(1+Av), 1+Av)
    seed: int = 0  # view k of image i is a pure function of (seed, i, k)

    def validate(self) -> None:
        check(1 <= self.crop_min <= 32, "augment.crop_min", self.crop_min, "1..32")
        check(
            self.crop_min <= self.crop_max <= 32,
            "augment.crop_max",
            self.crop_max,
            f"{self.crop_min}..32 (crop_min..32)",
        )
        for name in ("hue_shift", "saturation_shift", "value_shift"):
            value = getattr(self, name)
            check(0.0 <= value <= 1.0, f"augment.{name}", value, "0 <= value <= 1")
        for name in ("saturation_scale", "value_scale"):
            value = getattr(self, name)
            check(0.0 <= value <= 2.0, f"augment.{name}", value, "0 <= value <= 2")


@dataclasses.dataclass(frozen=True)
class TransferConfig:
    """The transfer set: the ensemble's logits on `views` augmented copies of the train split."""

    views: int = 160  # K: augmented epochs' worth of transfer data (the paper used 160)
    mode: str = "cached"  # cached: logits computed once and stored; online: teacher in train_step
    batch_size: int = 500  # teacher inference batch size when building the cache
    # Each view's logits averaged with its mirror's: auto follows the teacher's own flip
    # test-time augmentation (teacher.airbench.flip_tta); false halves the teacher's inference
    # (benchmarks/transfer_flip.py measured no gain for the students, docs/performance.md).
    flip_average: str = "auto"

    def validate(self) -> None:
        check(self.views >= 1, "transfer.views", self.views, ">= 1")
        check(self.flip_average in FLIP_AVERAGE_CHOICES, "transfer.flip_average",
              self.flip_average, quoted(FLIP_AVERAGE_CHOICES))
        check(self.mode in ("cached", "online"), "transfer.mode", self.mode,
               "'cached' or 'online'")
        check(self.batch_size >= 1, "transfer.batch_size", self.batch_size, ">= 1")
