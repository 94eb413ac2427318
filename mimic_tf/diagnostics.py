"""How faithfully a student mimics its teacher, beyond top-1 accuracy (NumPy only).

    diagnostics = mimic_diagnostics(teacher_logits, student_logits, labels)
    # {"agreement": ..., "kl_teacher_student": ..., "logit_mse": ..., "ece": ...}

- agreement: the share of images where student and teacher pick the same class;
- `kl_teacher_student`: mean over images of KL(softmax(teacher) || softmax(student)), in nats;
- `logit_mse`: the mimic loss on these images, mean over images of the summed squared logit
  difference (`mimic_tf.losses.mimic_loss`);
- `ece`: expected calibration error of the student's softmax against the true labels, over
  `bins` equal-width confidence bins (Guo et al. 2017): sum over bins of
  (bin size / N) x |accuracy in bin - mean confidence in bin|.
"""

from __future__ import annotations

import numpy as np

ECE_BINS = 15


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, computed stably in float64."""
    shifted = np.asarray(logits, np.float64) - np.max(logits, axis=-1, keepdims=True)
    exponentials = np.exp(shifted)
    return exponentials / exponentials.sum(axis=-1, keepdims=True)


def reliability_bins(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS
                     ) -> list[dict[str, float]]:
    """Per equal-width confidence bin: its bounds, image count, mean confidence, accuracy."""
    confidence = probabilities.max(axis=-1)
    correct = probabilities.argmax(axis=-1) == np.asarray(labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bin b holds confidences in (edges[b], edges[b + 1]]; a confidence of 0 falls in bin 0.
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    result = []
    for b in range(bins):
        members = index == b
        count = int(members.sum())
        result.append({
            "low": float(edges[b]), "high": float(edges[b + 1]), "count": count,
            "confidence": float(confidence[members].mean()) if count else 0.0,
            "accuracy": float(correct[members].mean()) if count else 0.0,
        })
    return result


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray,
                               bins: int = ECE_BINS) -> float:
    """ECE over `bins` equal-width confidence bins (0: perfectly calibrated)."""
    total = len(labels)
    return float(sum(b["count"] / total * abs(b["accuracy"] - b["confidence"])
                     for b in reliability_bins(probabilities, labels, bins) if b["count"]))


def mimic_diagnostics(teacher_logits: np.ndarray, student_logits: np.ndarray,
                      labels: np.ndarray, bins: int = ECE_BINS) -> dict[str, float]:
    """Agreement, KL(teacher || student), logit MSE and the student's ECE on one split."""
    teacher_logits = np.asarray(teacher_logits, np.float64)
    student_logits = np.asarray(student_logits, np.float64)
    if teacher_logits.shape != student_logits.shape or teacher_logits.ndim != 2:
        raise ValueError(f"teacher and student logits must both be [N, classes], got "
                         f"{teacher_logits.shape} and {student_logits.shape}")
    teacher, student = softmax(teacher_logits), softmax(student_logits)
    log_ratio = np.log(np.clip(teacher, 1e-300, None)) - np.log(np.clip(student, 1e-300, None))
    return {
        "agreement": float(np.mean(teacher.argmax(-1) == student.argmax(-1))),
        "kl_teacher_student": float(np.mean(np.sum(teacher * log_ratio, axis=-1))),
        "logit_mse": float(np.mean(np.sum((student_logits - teacher_logits) ** 2, axis=-1))),
        "ece": expected_calibration_error(student, labels, bins),
    }
