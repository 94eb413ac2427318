"""The release of a student, TFX's way: infra validation, evaluation, push, labels.

    serving.release.infra_validation  SandboxServer, validate_candidate (INFRA_BLESSED or not)
    serving.release.evaluator         served metrics, value and change thresholds, the blessing
    serving.release.gate              release_candidate: infra validation -> evaluation -> push
    serving.release.serving_base      the serving base: atomic push, canary/stable labels,
                                      promote, rollback, lineage
    serving.release.status            a serving base's state as rows
    python -m serving.release         push | promote | rollback | status (`__main__.py`)

May import `serving`'s shared modules, the client and `serving.server` (its sandbox runs the
model server); never `tuner`.
"""
