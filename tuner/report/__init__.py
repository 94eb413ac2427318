"""The report: what a run found, built as one `Report` (`build.write_report`), no TensorFlow.

- `rows`: every trial as a row, each search's `CellSummary`, `results.csv`.
- `markdown`: `results.md`: the paper's Table 2 and how the run was made.
- `figure`: `figure.png`, the paper's Figure 1.
- `convergence`: whether a best trial ran long enough (its last epochs' gain).
- `findings`: the paper's five findings checked on `results.csv`.
- `paper`: the paper's own numbers (`paper_results.csv`, `paper_hard_labels.csv`).
- `summary_run`: the table and figures as the TensorBoard run `logs/summary`.
- `build`: the whole report written and returned, which `tuner.run` prints from memory.

`python -m tuner.report DIR` rebuilds it (`__main__.py`). May import `mimic_tf`'s plain modules,
`tuner.artifacts`, `tuner.search.cells` and `tuner.search.kept`, and the frontier's table
(`tuner.frontier.table`); never TensorFlow, Keras or KerasTuner.
"""
