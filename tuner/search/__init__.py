"""The search: one KerasTuner search per cell (family, depth, budget, loss), resumable.

- `cells`: what a search is (`Cell`) and which cells a config plans.
- `settings`: what a search's trials depend on (`search.json`) and the check that refuses a
  change (plain dictionaries, no TensorFlow).
- `hypermodel`: one trial: the student built from its hyperparameters, fitted by the Distiller.
- `tuners`: KerasTuner's tuners and oracles with atomic state files.
- `cell_search`: one search run to its end: resume, the top-k test evaluation, the best
  student kept, the hard-label baseline of a cell.
- `distributed`: KerasTuner's chief/worker mode on loopback ports.
- `kept`: searches kept from a published results folder, as rows (no TensorFlow).
- `progress`: the terminal's lines per trial and the run's ETA.

May import `mimic_tf`, `tuner.artifacts` and `tuner.report.rows` (the CSV that kept searches
are read from and written to); never `serving`.
"""
