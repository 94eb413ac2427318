"""tuner: the paper's experiment on top of mimic_tf.

One Bayesian search per (student family, depth, parameter budget) with KerasTuner, students
trained by the `Distiller` on the shared transfer set, the top trials evaluated on the test
set, the best students exported for TF Serving, and the results drawn as the paper's Table 2
and Figure 1 (docs/tuner.md).

    python -m tuner.run --family mlp [--config smoke]       # tuner/run.py
    python -m tuner.report runs/<experiment>                # tuner/report.py

Modules: cells (what a search is), hypermodel (build and fit one trial), tuners (KerasTuner
classes with atomic state), progress (terminal lines and ETA), search (one search: resume,
test evaluation, the best student kept, baselines), distributed (chief/worker ports),
publish (export and push stages), experiment (the whole run: `run_experiment`), run (the
search CLI). The read side imports no TensorFlow: artifacts (typed readers and writers of the
files `mimic_tf.layout` names), paper (the paper's numbers), results (rows, CSV, Table 2),
report (figure and the report CLI), summary_run (the report as a TensorBoard run), findings
(the paper's five findings).
"""

import mimic_tf  # noqa: F401  (sets oneDNN's default before a module here loads TensorFlow)
