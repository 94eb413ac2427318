"""The `teacher` section: the ensemble's family, size and training (`teacher.airbench`)."""

from __future__ import annotations

import dataclasses

from mimic_tf.config.checks import check
from mimic_tf.config.schedule import ScheduleConfig
from mimic_tf.vocabulary import (
    JIT_COMPILE_CHOICES,
    KERAS_TEACHER,
    PRECISIONS,
    TEACHER_FAMILIES,
    quoted,
)


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
    precision: str = "float32"  # float32 | mixed_bfloat16 | mixed_float16 (loss scaling) | auto

    def validate(self) -> None:
        prefix = "teacher.airbench"
        check(len(self.widths) == 3 and all(w >= 1 for w in self.widths),
               f"{prefix}.widths", self.widths, "3 positive widths (one per conv group)")
        check(self.epochs >= 1, f"{prefix}.epochs", self.epochs, ">= 1")
        check(self.batch_size >= 1, f"{prefix}.batch_size", self.batch_size, ">= 1")
        check(self.learning_rate > 0, f"{prefix}.learning_rate", self.learning_rate, "> 0")
        check(0 <= self.momentum < 1, f"{prefix}.momentum", self.momentum, "[0, 1)")
        check(self.weight_decay >= 0, f"{prefix}.weight_decay", self.weight_decay, ">= 0")
        check(self.bias_lr_scale >= 1, f"{prefix}.bias_lr_scale", self.bias_lr_scale,
               ">= 1 (1: no scaling)")
        check(0 < self.warmup < 1, f"{prefix}.warmup", self.warmup, "0 < fraction < 1")
        check(0 <= self.final_rate < 1, f"{prefix}.final_rate", self.final_rate,
               "0 <= fraction < 1")
        check(0 <= self.label_smoothing < 1, f"{prefix}.label_smoothing",
               self.label_smoothing, "[0, 1)")
        check(0 <= self.batchnorm_momentum < 1, f"{prefix}.batchnorm_momentum",
               self.batchnorm_momentum, "[0, 1)")
        check(self.lookahead_every >= 0, f"{prefix}.lookahead_every", self.lookahead_every,
               ">= 0 (0: off)")
        check(0 < self.lookahead_decay < 1, f"{prefix}.lookahead_decay",
               self.lookahead_decay, "0 < decay < 1")
        check(0 <= self.translate <= 8, f"{prefix}.translate", self.translate, "0..8 pixels")
        check(self.whitening_images >= 1, f"{prefix}.whitening_images",
               self.whitening_images, ">= 1")
        check(self.precision in PRECISIONS, f"{prefix}.precision", self.precision,
               quoted(PRECISIONS))


@dataclasses.dataclass(frozen=True)
class TeacherConfig:
    """The teacher ensemble: its family, size, and the paper family's net and training.

    `family: paper` is the paper's net (8 conv 3x3 in groups 2-2-4, max-pool per group, 2 FC)
    trained with the keys below; `family: airbench` is airbench94's net and recipe, set in
    the `airbench` section (`members` and `width_jitter` apply to both).
    """

    family: str = "paper"  # paper | airbench | keras (your own trained model, teacher.path)
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
    # family keras: a `.keras` file or a SavedModel folder whose model maps a batch of images
    # to logits, and what it takes: 0 the uint8 pixels as stored, > 0 float32 pixels times
    # this factor (1/255 for pixels in [0, 1]).
    path: str = ""
    pixel_scale: float = 0.0
    # Per member, counted from 1, the epochs it trains (airbench.epochs, or schedule.epochs for
    # the paper family) where a member differs: a campaign whose units must fit a slower
    # machine trains its later members shorter. []: every member the same.
    member_epochs: tuple[int, ...] = ()
    # A published teacher to distil from instead of training one: a folder of member_XX.npz and
    # .json (mimic_tf.teachers.published), absolute or relative to the working directory or the
    # project's root; every member it holds is averaged. "": train the teacher (family...).
    published: str = ""
    # XLA for the members' training: auto (what measured faster here, mimic_tf/runtime.py),
    # true or false. A runtime choice: members trained either way are the same teacher.
    jit_compile: str = "auto"

    def validate(self) -> None:
        check(self.family in TEACHER_FAMILIES, "teacher.family", self.family,
               quoted(TEACHER_FAMILIES))
        check(1 <= self.members <= 256, "teacher.members", self.members, "1..256")
        check(self.family != KERAS_TEACHER or bool(self.path), "teacher.path", self.path,
              "the .keras file or SavedModel folder of your teacher (tuner.run --teacher PATH)")
        check(self.pixel_scale >= 0, "teacher.pixel_scale", self.pixel_scale,
              ">= 0 (0: uint8 pixels as stored; 1/255: float pixels in [0, 1])")
        check(
            len(self.conv_widths) == 8 and all(w >= 1 for w in self.conv_widths),
            "teacher.conv_widths",
            self.conv_widths,
            "8 positive widths (groups 2-2-4)",
        )
        check(
            len(self.fc_widths) == 2 and all(w >= 1 for w in self.fc_widths),
            "teacher.fc_widths",
            self.fc_widths,
            "2 positive widths",
        )
        check(
            len(self.pool_dropout) == 3 and all(0 <= p < 1 for p in self.pool_dropout),
            "teacher.pool_dropout",
            self.pool_dropout,
            "3 rates in [0, 1)",
        )
        check(0 <= self.fc_dropout < 1, "teacher.fc_dropout", self.fc_dropout, "[0, 1)")
        check(self.weight_decay >= 0, "teacher.weight_decay", self.weight_decay, ">= 0")
        check(self.learning_rate > 0, "teacher.learning_rate", self.learning_rate, "> 0")
        check(0 <= self.momentum < 1, "teacher.momentum", self.momentum, "[0, 1)")
        check(self.batch_size >= 1, "teacher.batch_size", self.batch_size, ">= 1")
        check(0 <= self.width_jitter < 1, "teacher.width_jitter", self.width_jitter, "[0, 1)")
        check(self.jit_compile in JIT_COMPILE_CHOICES, "teacher.jit_compile",
               self.jit_compile, quoted(JIT_COMPILE_CHOICES))
        check(not self.member_epochs or (len(self.member_epochs) == self.members
                                         and all(epochs >= 1 for epochs in self.member_epochs)),
              "teacher.member_epochs", list(self.member_epochs),
              f"[] or one positive epoch count for each of the {self.members} members")
        self.schedule.validate("teacher.schedule")
        self.airbench.validate()

    def for_member(self, member_index: int) -> TeacherConfig:
        """The teacher settings member `member_index` (from 0) trains by: its own epochs
        (`member_epochs`) in place of the family's."""
        if not self.member_epochs:
            return self
        epochs = self.member_epochs[member_index]
        if self.family == "airbench":
            return dataclasses.replace(self, member_epochs=(),
                                       airbench=dataclasses.replace(self.airbench, epochs=epochs))
        return dataclasses.replace(self, member_epochs=(),
                                   schedule=dataclasses.replace(self.schedule, epochs=epochs))

    @property
    def ensemble_size(self) -> int:
        """Members of the ensemble: `members`, or the one model of `family: keras`."""
        return 1 if self.family == KERAS_TEACHER else self.members

    @property
    def flip_average(self) -> bool:
        """Whether the ensemble's logits are averaged over each image and its mirror."""
        return self.family == "airbench" and self.airbench.flip_tta
