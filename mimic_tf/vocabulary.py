"""The project's names, defined once: configs, CLIs, reports and the server import them from here.

    from mimic_tf.vocabulary import STUDENT_FAMILIES, DEPTHS, architecture_label
    architecture_label("mlp", 2)   # 'MLP 2 hidden'

Nothing here imports anything: every package (mimic_tf, tuner, serving) may use it.
"""

from __future__ import annotations

# Students: the two families of the paper and the depths it searched.
MLP = "mlp"
CNN = "cnn"
STUDENT_FAMILIES = (MLP, CNN)
ALL_FAMILIES = "all"  # tuner.run --family all
DEPTHS = {MLP: (1, 2, 3, 4, 5), CNN: (1, 2, 3, 4)}  # hidden layers / conv layers

# How a student learns: the paper's L2 on logits, Hinton's KD, or 0/1 labels (baselines).
MIMIC_LOSS = "mimic"
KD_LOSS = "kd"
HARD_LOSS = "hard"
LOSSES = (MIMIC_LOSS, KD_LOSS, HARD_LOSS)

TUNERS = ("bayesian", "hyperband", "random")  # KerasTuner algorithms; the paper's is bayesian
# Searches side by side (tuner.search.lanes): a lane runs the mimic searches, then the baselines.
LANE_SEARCHES = "searches"
LANE_BASELINES = "baselines"
LANE_PHASES = (LANE_SEARCHES, LANE_BASELINES)
KERAS_TEACHER = "keras"  # a trained model of the user's (teacher.path), never trained here
TEACHER_FAMILIES = ("paper", "airbench", KERAS_TEACHER)  # the paper's 8-conv net, airbench94's
AUTO_PRECISION = "auto"  # the fastest policy on the device at hand (mimic_tf.runtime)
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16", AUTO_PRECISION)  # Keras dtype policies
JIT_COMPILE_CHOICES = ("auto", "true", "false")  # XLA: measured choice (mimic_tf.runtime), on, off
FLIP_AVERAGE_CHOICES = ("auto", "true", "false")  # transfer logits: as the teacher, on, off

# Releases: the version labels of a serving base and the splits a gate may evaluate on.
CANARY = "canary"
STABLE = "stable"
RELEASE_LABELS = (CANARY, STABLE)
RELEASE_SPLITS = ("validation", "test")
PICK_BEST = "best"  # release each search's best student
PICK_FRONTIER = "frontier"  # release the most accurate student within a p99 budget
RELEASE_PICKS = (PICK_BEST, PICK_FRONTIER)


def architecture_label(family: str, depth: int) -> str:
    """The table's row name of a student architecture: `MLP 2 hidden`, `CNN 1 conv`."""
    return f"MLP {depth} hidden" if family == MLP else f"CNN {depth} conv"


def quoted(names) -> str:
    """`'a' or 'b' or 'c'`: allowed values, as error messages list them."""
    return " or ".join(f"'{name}'" for name in names)
