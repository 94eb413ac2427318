"""tuner: the paper's experiment on top of mimic_tf.

One Bayesian search per (student family, depth, parameter budget) with KerasTuner, students
trained by the `Distiller` on the shared transfer set, the top trials evaluated on the test
set, the best students exported for TF Serving, and the results drawn as the paper's Table 2
and Figure 1 (docs/tuner.md).

    python -m tuner.run --family mlp [--config smoke]       # tuner/run.py
    python -m tuner.report runs/<experiment>                # tuner/report/__main__.py

Three folders, one a concept, as the user meets them:
- `search/`: what a search is and how it runs (cells, hypermodel, tuners, settings,
  cell_search, distributed, kept, progress);
- `report/`: what a run found (rows and results.csv, results.md, figure.png, the findings, the
  paper's numbers, the TensorBoard summary run), built as one `Report`; no TensorFlow;
- `frontier/`: which student to ship (served and timed, the Pareto rule, its table).
Beside them: `artifacts` (typed readers and writers of the files `mimic_tf.layout` names),
`experiment` (the whole run: `run_experiment`), `publish` (export and push stages),
`campaign` (a long run as committed units) and the commands `run`, `status`, `findings`,
`publish`, `campaign`. Nothing here is imported by `mimic_tf` or `serving`.
"""

import mimic_tf  # noqa: F401  (sets oneDNN's default before a module here loads TensorFlow)
