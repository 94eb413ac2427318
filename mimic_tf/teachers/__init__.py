"""Teachers: the nets that students mimic, how they are trained, and their published logits.

One module per concept; import the names from here (`from mimic_tf.teachers import
ensure_teacher`) or from their module:

- `training`: `ensure_teacher` trains (or finds) each member of a config's ensemble,
  resumably, and evaluates it; `train_member`, the folder's config check.
- `ensemble`: `build_ensemble` (the mean of the members' logits, flip-averaged if asked),
  `predict_logits`, `accuracy`, loading and fingerprinting saved members.
- `airbench`, `airbench_recipe`: airbench94's net (Jordan 2024) and its training recipe.
- `paper_family`: the paper's 8-conv net and its plateau-schedule recipe.
- `keras_teacher`: a user's trained Keras model as the teacher, checked at load.
- `published`: a member's float16 logits and manifest, written and read back digest-checked
  (NumPy only: a run distils from it without TensorFlow training anything).

May import `mimic_tf`'s data, config, layout, files and runtime modules; nothing of `tuner` or
`serving`, and not `mimic_tf.transfer` (which reads teachers). Names are imported from their
module on first use (`mimic_tf.namespace`), so `published` loads without Keras.
"""

from mimic_tf.namespace import lazy_names

_MODULE_OF = {
    **dict.fromkeys(("EpochProgress", "TeacherMismatchError", "check_teacher_config",
                     "ensure_teacher", "member_record_path", "train_member", "training_plan",
                     "SUMMARY_FILE"), "training"),
    **dict.fromkeys(("ENSEMBLE_FILE", "accuracy", "build_ensemble", "load_model",
                     "member_logits", "plain_and_flip_averaged_logits", "predict_logits",
                     "saved_evaluation_logits", "weights_fingerprint"), "ensemble"),
    **dict.fromkeys(("CONV_GROUPS", "build_teacher_member", "member_widths",
                     "paper_training_plan"), "paper_family"),
    **dict.fromkeys(("TeacherLoadError", "load_keras_teacher"), "keras_teacher"),
    **dict.fromkeys(("PublishedTeacher", "PublishedTeacherError", "read_published_teacher",
                     "write_member"), "published"),
}
__getattr__, __dir__ = lazy_names(__name__, _MODULE_OF)
__all__ = sorted(_MODULE_OF)
