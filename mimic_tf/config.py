"""Experiment configuration: YAML files in `configs/` loaded into frozen dataclasses.

Configs are plain data. Every field has a type and an allowed range; an unknown key, a wrong
type or an out-of-range value raises `ConfigError` naming the key, the value and what is
allowed. `save_config` writes the resolved config beside the artifacts it produced.

    config = load_config("configs/default.yaml", overrides={"search.trials": 2})
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from mimic_tf.files import atomic_write_text
from mimic_tf.vocabulary import (
    CANARY,
    CNN,
    JIT_COMPILE_CHOICES,
    LOSSES,
    MLP,
    PICK_BEST,
    PICK_FRONTIER,
    PRECISIONS,
    RELEASE_LABELS,
    RELEASE_PICKS,
    RELEASE_SPLITS,
    STUDENT_FAMILIES,
    TEACHER_FAMILIES,
    TUNERS,
    quoted,
)

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"




class ConfigError(ValueError):
    """A config file or override that does not describe a valid experiment."""


def _check(condition: bool, key: str, value: Any, allowed: str) -> None:
    if not condition:
        raise ConfigError(f"config key '{key}' has value {value!r}; allowed: {allowed}")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where CIFAR-10 comes from and how it is split (40k train / 10k validation / 10k test)."""

    source: str = "auto"  # auto | tfds:cifar10 | folder:PATH (tree or .tar.gz) | synthetic
    validation_size: int = 10_000  # held out of the 50k training images, stratified
    split_seed: int = 0  # fixes which training images are held out
    train_fraction: float = 1.0  # keep this fraction of the 40k train split (scaled configs)
    synthetic_examples: int = 600  # images per split for source=synthetic (tests)

    def validate(self) -> None:
        _check(
            self.source in ("auto", "synthetic", "tfds:cifar10")
            or self.source.startswith("folder:"),
            "data.source",
            self.source,
            "'auto', 'tfds:cifar10', 'folder:PATH' or 'synthetic'",
        )
        _check(self.validation_size >= 10, "data.validation_size", self.validation_size, ">= 10")
        _check(
            0.0 < self.train_fraction <= 1.0,
            "data.train_fraction",
            self.train_fraction,
            "0 < fraction <= 1",
        )
        _check(
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
        _check(1 <= self.crop_min <= 32, "augment.crop_min", self.crop_min, "1..32")
        _check(
            self.crop_min <= self.crop_max <= 32,
            "augment.crop_max",
            self.crop_max,
            f"{self.crop_min}..32 (crop_min..32)",
        )
        for name in ("hue_shift", "saturation_shift", "value_shift"):
            value = getattr(self, name)
            _check(0.0 <= value <= 1.0, f"augment.{name}", value, "0 <= value <= 1")
        for name in ("saturation_scale", "value_scale"):
            value = getattr(self, name)
            _check(0.0 <= value <= 2.0, f"augment.{name}", value, "0 <= value <= 2")


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """The paper's plateau schedule, counted in epochs.

    Halve the learning rate after `plateau_patience` epochs without validation improvement,
    no further cut within `cooldown` epochs of one; stop after `stop_patience` epochs without
    improvement, when the rate has been cut by more than `max_reduction`, or at `epochs`.
    """

    epochs: int = 100  # hard cap on epochs
    plateau_patience: int = 10
    cooldown: int = 8
    stop_patience: int = 30
    reduction_factor: float = 0.5
    max_reduction: float = 2000.0

    def validate(self, prefix: str) -> None:
        _check(self.epochs >= 1, f"{prefix}.epochs", self.epochs, ">= 1")
        for name in ("plateau_patience", "cooldown", "stop_patience"):
            value = getattr(self, name)
            _check(value >= 0, f"{prefix}.{name}", value, ">= 0")
        _check(
            0.0 < self.reduction_factor < 1.0,
            f"{prefix}.reduction_factor",
            self.reduction_factor,
            "0 < factor < 1",
        )
        _check(self.max_reduction > 1.0, f"{prefix}.max_reduction", self.max_reduction, "> 1")


@dataclasses.dataclass(frozen=True)
class AirbenchConfig:
    """The airbench teacher family (`teacher.family: airbench`): net and training recipe.

    Defaults are airbench94's (Jordan 2024) at batch 512, its rates converted to Keras' units:
    airbench's SGD steps on the *sum* of the losses with lr 11.5 / (1024 * (1 + 1 / (1 - 0.85)))
    per example, i.e. 0.75 on the batch-mean loss at batch 512 (scale it with the batch size);
    its weight decay 0.0153 per 1024 examples, coupled through momentum, is decoupled decay
    0.0153 / (11.5 * (1 - 0.85)) = 0.0089 times the current rate here.
    """

    widths: tuple[int, ...] = (64, 256, 256)  # channels of the three conv groups
    epochs: int = 10
    batch_size: int = 512
    learning_rate: float = 0.75  # peak Nesterov SGD rate on the batch-mean loss
    momentum: float = 0.85
    weight_decay: float = 0.0089  # decoupled: weights *= 1 - rate * weight_decay every step
    bias_lr_scale: float = 64.0  # BatchNorm biases learn this many times faster (1: off)
    warmup: float = 0.2  # fraction of steps rising from 0.2x to the peak rate (airbench: 0.23)
    final_rate: float = 0.0  # the rate falls linearly to this fraction of the peak (airbench: 0.07)
    label_smoothing: float = 0.2  # airbench's; 0 can make the better distillation teacher
    batchnorm_momentum: float = 0.6  # Keras convention: moving = m * moving + (1 - m) * batch
    lookahead_every: int = 5  # steps between lookahead syncs (0: off)
    lookahead_decay: float = 0.95  # per-step EMA decay reached at the end of training
    translate: int = 2  # random translation, pixels, reflect padding (0: off)
    alternating_flip: bool = True  # mirror each image in every other epoch (false: coin flips)
    whiten: bool = True  # first conv frozen to whiten 2x2 patches (false: trained from init)
    dirac: bool = True  # convs start as identities (false: PyTorch's default init)
    whitening_images: int = 5000  # training images whose patches set the whitening conv
    flip_tta: bool = True  # logits averaged over each image and its mirror (ensemble, transfer)
    precision: str = "float32"  # float32 | mixed_bfloat16 | mixed_float16 (loss scaling)

    def validate(self) -> None:
        prefix = "teacher.airbench"
        _check(len(self.widths) == 3 and all(w >= 1 for w in self.widths),
               f"{prefix}.widths", self.widths, "3 positive widths (one per conv group)")
        _check(self.epochs >= 1, f"{prefix}.epochs", self.epochs, ">= 1")
        _check(self.batch_size >= 1, f"{prefix}.batch_size", self.batch_size, ">= 1")
        _check(self.learning_rate > 0, f"{prefix}.learning_rate", self.learning_rate, "> 0")
        _check(0 <= self.momentum < 1, f"{prefix}.momentum", self.momentum, "[0, 1)")
        _check(self.weight_decay >= 0, f"{prefix}.weight_decay", self.weight_decay, ">= 0")
        _check(self.bias_lr_scale >= 1, f"{prefix}.bias_lr_scale", self.bias_lr_scale,
               ">= 1 (1: no scaling)")
        _check(0 < self.warmup < 1, f"{prefix}.warmup", self.warmup, "0 < fraction < 1")
        _check(0 <= self.final_rate < 1, f"{prefix}.final_rate", self.final_rate,
               "0 <= fraction < 1")
        _check(0 <= self.label_smoothing < 1, f"{prefix}.label_smoothing",
               self.label_smoothing, "[0, 1)")
        _check(0 <= self.batchnorm_momentum < 1, f"{prefix}.batchnorm_momentum",
               self.batchnorm_momentum, "[0, 1)")
        _check(self.lookahead_every >= 0, f"{prefix}.lookahead_every", self.lookahead_every,
               ">= 0 (0: off)")
        _check(0 < self.lookahead_decay < 1, f"{prefix}.lookahead_decay",
               self.lookahead_decay, "0 < decay < 1")
        _check(0 <= self.translate <= 8, f"{prefix}.translate", self.translate, "0..8 pixels")
        _check(self.whitening_images >= 1, f"{prefix}.whitening_images",
               self.whitening_images, ">= 1")
        _check(self.precision in PRECISIONS, f"{prefix}.precision", self.precision,
               quoted(PRECISIONS))


@dataclasses.dataclass(frozen=True)
class TeacherConfig:
    """The teacher ensemble: its family, size, and the paper family's net and training.

    `family: paper` is the paper's net (8 conv 3x3 in groups 2-2-4, max-pool per group, 2 FC)
    trained with the keys below; `family: airbench` is airbench94's net and recipe, set in
    the `airbench` section (`members` and `width_jitter` apply to both).
    """

    family: str = "paper"  # paper | airbench
    members: int = 16  # ensemble size; its output is the mean of the members' logits
    conv_widths: tuple[int, ...] = (76, 76, 126, 126, 148, 148, 148, 148)
    fc_widths: tuple[int, ...] = (1200, 1200)
    pool_dropout: tuple[float, ...] = (0.2, 0.3, 0.37)  # after each of the three pools
    fc_dropout: float = 0.4  # after each FC layer
    weight_decay: float = 2.0e-4  # L2 on every kernel
    learning_rate: float = 0.03
    momentum: float = 0.85  # Nesterov
    batch_size: int = 128
    width_jitter: float = 0.0  # member m scales its widths by U(1-j, 1+j): a diverse ensemble
    schedule: ScheduleConfig = ScheduleConfig(epochs=300)
    airbench: AirbenchConfig = AirbenchConfig()
    # XLA for the members' training: auto (what measured faster here, mimic_tf/runtime.py),
    # true or false. A runtime choice: members trained either way are the same teacher.
    jit_compile: str = "auto"

    def validate(self) -> None:
        _check(self.family in TEACHER_FAMILIES, "teacher.family", self.family,
               quoted(TEACHER_FAMILIES))
        _check(1 <= self.members <= 256, "teacher.members", self.members, "1..256")
        _check(
            len(self.conv_widths) == 8 and all(w >= 1 for w in self.conv_widths),
            "teacher.conv_widths",
            self.conv_widths,
            "8 positive widths (groups 2-2-4)",
        )
        _check(
            len(self.fc_widths) == 2 and all(w >= 1 for w in self.fc_widths),
            "teacher.fc_widths",
            self.fc_widths,
            "2 positive widths",
        )
        _check(
            len(self.pool_dropout) == 3 and all(0 <= p < 1 for p in self.pool_dropout),
            "teacher.pool_dropout",
            self.pool_dropout,
            "3 rates in [0, 1)",
        )
        _check(0 <= self.fc_dropout < 1, "teacher.fc_dropout", self.fc_dropout, "[0, 1)")
        _check(self.weight_decay >= 0, "teacher.weight_decay", self.weight_decay, ">= 0")
        _check(self.learning_rate > 0, "teacher.learning_rate", self.learning_rate, "> 0")
        _check(0 <= self.momentum < 1, "teacher.momentum", self.momentum, "[0, 1)")
        _check(self.batch_size >= 1, "teacher.batch_size", self.batch_size, ">= 1")
        _check(0 <= self.width_jitter < 1, "teacher.width_jitter", self.width_jitter, "[0, 1)")
        _check(self.jit_compile in JIT_COMPILE_CHOICES, "teacher.jit_compile",
               self.jit_compile, quoted(JIT_COMPILE_CHOICES))
        self.schedule.validate("teacher.schedule")
        self.airbench.validate()

    @property
    def flip_average(self) -> bool:
        """Whether the ensemble's logits are averaged over each image and its mirror."""
        return self.family == "airbench" and self.airbench.flip_tta


@dataclasses.dataclass(frozen=True)
class TransferConfig:
    """The transfer set: the ensemble's logits on `views` augmented copies of the train split."""

    views: int = 160  # K: augmented epochs' worth of transfer data (the paper used 160)
    mode: str = "cached"  # cached: logits computed once and stored; online: teacher in train_step
    batch_size: int = 500  # teacher inference batch size when building the cache

    def validate(self) -> None:
        _check(self.views >= 1, "transfer.views", self.views, ">= 1")
        _check(self.mode in ("cached", "online"), "transfer.mode", self.mode,
               "'cached' or 'online'")
        _check(self.batch_size >= 1, "transfer.batch_size", self.batch_size, ">= 1")


@dataclasses.dataclass(frozen=True)
class StudentConfig:
    """How students are trained: loss, batch size and the plateau schedule."""

    loss: str = "mimic"  # mimic (paper: L2 on logits) | kd (Hinton) | hard (labels only)
    temperature: float = 4.0  # kd only
    alpha: float = 0.9  # kd only: weight of the soft term, 1 - alpha on hard labels
    batch_size: int = 128
    clipnorm: float = 0.0  # global gradient-norm clip for SGD; 0 = none (the paper)
    # Keras dtype policy of the students: float32 (the paper), mixed_float16 (GPUs, with loss
    # scaling) or mixed_bfloat16 (GPUs, and CPUs with AMX/AVX512-BF16). Logits stay float32.
    precision: str = "float32"
    # XLA (Keras' jit_compile) for the Distiller: auto (per family and device, what measured
    # faster counting each trial's compile, mimic_tf/runtime.py), true or false.
    jit_compile: str = "auto"
    schedule: ScheduleConfig = ScheduleConfig(epochs=160)
    # Epoch cap of one trial per family (0: schedule.epochs). An MLP epoch costs a fraction
    # of a CNN's, so a short run can afford MLPs more of them.
    mlp_epochs: int = 0
    cnn_epochs: int = 0

    def epochs_for(self, family: str) -> int:
        """The epoch cap of one trial of a `family` student."""
        return {MLP: self.mlp_epochs, CNN: self.cnn_epochs}.get(family) or self.schedule.epochs

    def validate(self) -> None:
        _check(self.loss in LOSSES, "student.loss", self.loss, quoted(LOSSES))
        _check(self.temperature > 0, "student.temperature", self.temperature, "> 0")
        _check(0 <= self.alpha <= 1, "student.alpha", self.alpha, "0..1")
        _check(self.batch_size >= 1, "student.batch_size", self.batch_size, ">= 1")
        _check(self.clipnorm >= 0, "student.clipnorm", self.clipnorm, ">= 0 (0 = no clipping)")
        _check(self.precision in PRECISIONS, "student.precision", self.precision,
               quoted(PRECISIONS))
        _check(self.jit_compile in JIT_COMPILE_CHOICES, "student.jit_compile",
               self.jit_compile, quoted(JIT_COMPILE_CHOICES))
        for family in STUDENT_FAMILIES:
            key = f"{family}_epochs"
            _check(getattr(self, key) >= 0, f"student.{key}", getattr(self, key),
                   ">= 0 (0: student.schedule.epochs)")
        self.schedule.validate("student.schedule")


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """The hyperparameter searches: one per (family, depth, budget)."""

    tuner: str = "bayesian"  # bayesian | hyperband | random
    trials: int = 30  # trials per search
    budgets: tuple[float, ...] = (1.0e6, 3.16e6, 10.0e6, 31.6e6)  # trainable parameters
    mlp_depths: tuple[int, ...] = (1, 2, 3, 4, 5)  # hidden layers
    cnn_depths: tuple[int, ...] = (1, 2, 3, 4)  # conv layers
    top_k: int = 5  # trials per search evaluated on the test split
    baseline: bool = False  # also train the best architecture of each cell on hard labels
    baseline_families: tuple[str, ...] = STUDENT_FAMILIES  # which cells get a baseline ...
    baseline_budgets: tuple[float, ...] = ()  # ... and at which budgets (empty: every budget)
    export: bool = True  # export the best student of each search for TF Serving

    def validate(self) -> None:
        _check(self.tuner in TUNERS, "search.tuner", self.tuner, quoted(TUNERS))
        _check(self.trials >= 1, "search.trials", self.trials, ">= 1")
        _check(
            len(self.budgets) >= 1 and all(1e4 <= b <= 1e9 for b in self.budgets),
            "search.budgets",
            self.budgets,
            "one or more parameter counts in [1e4, 1e9]",
        )
        _check(all(1 <= d <= 5 for d in self.mlp_depths), "search.mlp_depths", self.mlp_depths,
               "depths in 1..5")
        _check(all(1 <= d <= 4 for d in self.cnn_depths), "search.cnn_depths", self.cnn_depths,
               "depths in 1..4")
        _check(self.top_k >= 1, "search.top_k", self.top_k, ">= 1")
        _check(
            all(family in STUDENT_FAMILIES for family in self.baseline_families),
            "search.baseline_families",
            self.baseline_families,
            "a list of 'mlp' and/or 'cnn'",
        )
        _check(
            all(any(math.isclose(b, budget, rel_tol=1e-9) for budget in self.budgets)
                for b in self.baseline_budgets),
            "search.baseline_budgets",
            self.baseline_budgets,
            f"budgets listed in search.budgets {list(self.budgets)} (empty: every budget)",
        )

    def has_baseline(self, family: str, budget: float) -> bool:
        """Whether the cell (family, budget) gets a hard-label baseline search."""
        return (
            self.baseline
            and family in self.baseline_families
            and (not self.baseline_budgets
                 or any(math.isclose(budget, b, rel_tol=1e-9) for b in self.baseline_budgets))
        )


@dataclasses.dataclass(frozen=True)
class ReleaseConfig:
    """Pushing each search's best student through the release gate (`serving.release`)."""

    push: bool = False  # at the end of tuner.run (python -m tuner.publish --push does it later)
    serving_base: str = ""  # the folder a model server serves; "": runs/<experiment>/serving
    label: str = CANARY  # label of a pushed version: canary (promote later) | stable
    split: str = "validation"  # the labelled split the gate evaluates on
    min_accuracy: float = 0.0  # value threshold on served accuracy (0: off)
    max_accuracy_drop: float = 0.01  # change threshold: stable's accuracy - candidate's (1: off)
    max_p99_ms: float = 0.0  # value threshold on batch-1 p99 latency, ms (0: off)
    max_latency_growth: float = 0.0  # change threshold: candidate p99 / stable p99 (0: off)
    latency_requests: int = 500  # batch-1 requests timed per model
    # Which students to push: each search's best (best) or the most accurate student of the
    # accuracy-latency frontier whose measured p99 is within max_p99_ms (frontier).
    pick: str = PICK_BEST

    def validate(self) -> None:
        _check(self.pick in RELEASE_PICKS, "release.pick", self.pick, quoted(RELEASE_PICKS))
        _check(self.pick != PICK_FRONTIER or self.max_p99_ms > 0, "release.max_p99_ms",
               self.max_p99_ms, "a latency budget in ms > 0 with release.pick: frontier")
        _check(self.label in RELEASE_LABELS, "release.label", self.label,
               quoted(RELEASE_LABELS))
        _check(self.split in RELEASE_SPLITS, "release.split", self.split,
               quoted(RELEASE_SPLITS))
        _check(0.0 <= self.min_accuracy <= 1.0, "release.min_accuracy", self.min_accuracy,
               "an accuracy in [0, 1] (0: off)")
        _check(0.0 <= self.max_accuracy_drop <= 1.0, "release.max_accuracy_drop",
               self.max_accuracy_drop, "an accuracy difference in [0, 1] (1: off)")
        _check(self.max_p99_ms >= 0.0, "release.max_p99_ms", self.max_p99_ms,
               "milliseconds >= 0 (0: off)")
        _check(self.max_latency_growth >= 0.0, "release.max_latency_growth",
               self.max_latency_growth, "a ratio >= 0 (0: off)")
        _check(self.latency_requests >= 1, "release.latency_requests", self.latency_requests,
               ">= 1")


@dataclasses.dataclass(frozen=True)
class FrontierConfig:
    """Serving every trained student to measure the accuracy-latency frontier (`tuner.frontier`)."""

    measure: bool = True  # at the end of tuner.run (python -m tuner.frontier does it later)
    latency_requests: int = 200  # batch-1 requests timed per student, interleaved
    warmup_requests: int = 20  # untimed batch-1 requests per student first
    throughput_batch_size: int = 32  # images per request of the throughput measurement
    throughput_requests: int = 20  # such requests timed per student, interleaved

    def validate(self) -> None:
        for key in ("latency_requests", "throughput_batch_size", "throughput_requests"):
            _check(getattr(self, key) >= 1, f"frontier.{key}", getattr(self, key), ">= 1")
        _check(self.warmup_requests >= 0, "frontier.warmup_requests", self.warmup_requests,
               ">= 0")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """One experiment: everything under `runs/<name>/` is produced from this."""

    name: str = "default"
    seed: int = 0
    data: DataConfig = DataConfig()
    augment: AugmentConfig = AugmentConfig()
    teacher: TeacherConfig = TeacherConfig()
    transfer: TransferConfig = TransferConfig()
    student: StudentConfig = StudentConfig()
    search: SearchConfig = SearchConfig()
    release: ReleaseConfig = ReleaseConfig()
    frontier: FrontierConfig = FrontierConfig()

    def validate(self) -> None:
        _check(
            bool(self.name) and all(c.isalnum() or c in "-_." for c in self.name),
            "name",
            self.name,
            "a non-empty name of letters, digits, '-', '_' or '.'",
        )
        for section in (self.data, self.augment, self.teacher, self.transfer, self.student,
                        self.search, self.release, self.frontier):
            section.validate()

    def to_dict(self) -> dict[str, Any]:
        """The config as plain YAML-ready data (tuples become lists)."""
        return _to_plain(dataclasses.asdict(self))


def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _to_plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(item) for item in value]
    return value


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Convert YAML data to the annotated type, or raise ConfigError naming the key."""
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        return _build(annotation, value, key)
    if origin is tuple:
        (item_type, _) = typing.get_args(annotation)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}' has value {value!r}; allowed: a list of "
                              f"{item_type.__name__}")
        return tuple(_coerce(item, item_type, f"{key}[{i}]") for i, item in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"unsupported annotation {annotation} for {key}")
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}' has value {value!r}; allowed: true or false")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"config key '{key}' has value {value!r}; allowed: an integer")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            if isinstance(value, str):
                try:
                    return float(value)  # YAML reads '1e6' (no dot) as a string
                except ValueError:
                    pass
            raise ConfigError(f"config key '{key}' has value {value!r}; allowed: a number")
        return float(value)
    if annotation is str:
        if isinstance(value, bool):  # YAML reads an unquoted true/false as a boolean
            return "true" if value else "false"
        if not isinstance(value, str):
            raise ConfigError(f"config key '{key}' has value {value!r}; allowed: a string")
        return value
    raise TypeError(f"unsupported annotation {annotation} for {key}")


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, Mapping):
        where = f"section '{prefix}'" if prefix else "the config file"
        raise ConfigError(f"{where} must be a mapping of keys to values, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {field.name: field for field in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        full_key = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            raise ConfigError(
                f"unknown config key '{full_key}'; allowed keys here: {', '.join(sorted(fields))}"
            )
        kwargs[key] = _coerce(value, hints[key], full_key)
    return cls(**kwargs)


def config_from_dict(data: Mapping[str, Any]) -> ExperimentConfig:
    """Build and validate an ExperimentConfig from nested plain data."""
    config = _build(ExperimentConfig, data, "")
    config.validate()
    return config


def _set_dotted(data: dict[str, Any], dotted_key: str, value: Any) -> None:
    node = data
    parts = dotted_key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"cannot override '{dotted_key}': '{part}' is not a section")
        node = child
    node[parts[-1]] = value


def resolve_config_path(path: str | os.PathLike[str]) -> Path:
    """A config path as given, or a bare name like 'smoke' looked up in `configs/`."""
    candidate = Path(path)
    if candidate.exists():
        return candidate
    for guess in (CONFIG_DIR / candidate, CONFIG_DIR / f"{candidate}.yaml"):
        if guess.exists():
            return guess
    available = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
    raise ConfigError(
        f"config file '{path}' not found; pass a YAML path or one of: {available}"
    )


def load_config(
    path: str | os.PathLike[str] = "default",
    overrides: Mapping[str, Any] | None = None,
) -> ExperimentConfig:
    """Load a YAML config, apply dotted-key overrides (`{"search.trials": 2}`) and validate."""
    config_path = resolve_config_path(path)
    try:
        data = yaml.safe_load(config_path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"config file '{config_path}' is not valid YAML: {error}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{config_path}' must hold a mapping, got {data!r}")
    for dotted_key, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(data, dotted_key, value)
    return config_from_dict(data)


def save_config(config: ExperimentConfig, path: str | os.PathLike[str]) -> None:
    """Write the resolved config as YAML (atomically) beside the artifacts it produced."""
    atomic_write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
