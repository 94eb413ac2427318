"""The `student` section: how every student is trained."""

from __future__ import annotations

import dataclasses

from mimic_tf.config.checks import check
from mimic_tf.config.schedule import ScheduleConfig
from mimic_tf.vocabulary import (
    CNN,
    JIT_COMPILE_CHOICES,
    LOSSES,
    MLP,
    PRECISIONS,
    STUDENT_FAMILIES,
    quoted,
)


@dataclasses.dataclass(frozen=True)
class StudentConfig:
    """How students are trained: loss, batch size and the plateau schedule."""

    loss: str = "mimic"  # mimic (paper: L2 on logits) | kd (Hinton) | hard (labels only)
    temperature: float = 4.0  # kd only
    alpha: float = 0.9  # kd only: weight of the soft term, 1 - alpha on hard labels
    batch_size: int = 128
    clipnorm: float = 0.0  # global gradient-norm clip for SGD; 0 = none (the paper)
    # Keras dtype policy of the students: float32 (the paper), mixed_float16 (GPUs, with loss
    # scaling), mixed_bfloat16 (GPUs, and CPUs with AMX/AVX512-BF16) or auto (the fastest of
    # these on the device at hand, mimic_tf/runtime.py). Logits stay float32.
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
        check(self.loss in LOSSES, "student.loss", self.loss, quoted(LOSSES))
        check(self.temperature > 0, "student.temperature", self.temperature, "> 0")
        check(0 <= self.alpha <= 1, "student.alpha", self.alpha, "0..1")
        check(self.batch_size >= 1, "student.batch_size", self.batch_size, ">= 1")
        check(self.clipnorm >= 0, "student.clipnorm", self.clipnorm, ">= 0 (0 = no clipping)")
        check(self.precision in PRECISIONS, "student.precision", self.precision,
               quoted(PRECISIONS))
        check(self.jit_compile in JIT_COMPILE_CHOICES, "student.jit_compile",
               self.jit_compile, quoted(JIT_COMPILE_CHOICES))
        for family in STUDENT_FAMILIES:
            key = f"{family}_epochs"
            check(getattr(self, key) >= 0, f"student.{key}", getattr(self, key),
                   ">= 0 (0: student.schedule.epochs)")
        self.schedule.validate("student.schedule")
