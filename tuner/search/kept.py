"""Searches kept from an earlier run folder of the same experiment, as records.

A run folder lives on one machine, and a long run can outlive it: when the machine changes,
the folder goes, but its published copy (`results/<experiment>/`: `results.csv` and
`config.yaml`, committed) still holds every finished search's trials and test accuracies.

    python -m tuner.run --family cnn --config cpu-replication-v2 --out ~/mimic-tf-runs \
        --keep results/cpu-replication-v2

copies the rows of those searches into the run folder's `kept_results.csv` and does not
search their cells again; the report (results.csv, results.md, figure.png), the findings and
`tuner.status` count them with the run's own. Their weights went with the old folder, so they
are not exported, pushed or served on the frontier, and a hard-label baseline of a kept cell
pins the architecture its kept best trial names.

A published search is kept when
- it finished: it holds all its trials and its best one was tested (a search tests its best
  trials as it ends; a part of a search, `tuner.run --stop-after-trials`, is not kept);
- this run plans it (a mimic cell of its families, or the baseline of one);
- this run folder holds no finished search of that cell (one finished here wins);
- the published `config.yaml` gives it this run's recipe (`search_recipe`): the teacher's
  recipe, the data, the transfer set's views and the search's own settings. Only the
  teacher's weights differ: the teacher was trained again. `results.csv`'s `teacher` column
  names the weights each search stood on (the ensemble's digest), so the report can say
  which searches stood on which teacher.
Nothing here imports TensorFlow.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mimic_tf.config import ConfigError, ExperimentConfig, load_config
from mimic_tf.layout import ExperimentLayout
from tuner import artifacts
from tuner.report.rows import write_csv
from tuner.search.cells import HARD_SUFFIX, Cell
from tuner.search.settings import search_settings

Rows = dict[str, list[dict[str, str]]]  # cell name -> its rows of results.csv, as read
RECIPE_SECTIONS = ("data", "augment", "teacher", "transfer")


class KeptSearchError(ValueError):
    """A published results folder that cannot be kept by this run, and why."""


def search_recipe(config: ExperimentConfig, family: str) -> dict[str, Any]:
    """What a search of `family` learns from, its teacher's weights aside: the teacher's
    recipe, the data, the transfer set's views, and the search's settings and trials."""
    settings = search_settings(config, transfer_fingerprint="", family=family)
    del settings["transfer"]  # the transfer set's digest names the teacher's weights
    plain = config.to_dict()
    # Where a published teacher's logits were read from is no part of the recipe: its
    # members' digests are (results.csv's `teacher` column).
    plain["teacher"].pop("published", None)
    return {**settings, **{section: plain[section] for section in RECIPE_SECTIONS},
            "trials": config.search.trials}


def finished(rows: Sequence[Mapping[str, str]], trials: int) -> bool:
    """Whether a search's rows hold all its `trials` and its tested best trial (it ended;
    a search run in parts publishes tested rows of fewer trials after each part)."""
    return len(rows) >= trials and any(row.get("rank") == "1" and row.get("test_accuracy")
                                       for row in rows)


def rows_by_cell(records: Iterable[Mapping[str, str]]) -> Rows:
    """results.csv's rows grouped by search, in the file's order."""
    grouped: Rows = {}
    for record in records:
        grouped.setdefault(record["cell"], []).append(dict(record))
    return grouped


def read_rows(path: Path) -> Rows:
    """A results.csv's rows by search; empty when there is no such file."""
    if not path.is_file():
        return {}
    with path.open(newline="") as stream:
        return rows_by_cell(csv.DictReader(stream))


def planned_names(config: ExperimentConfig, cells: Sequence[Cell]) -> list[str]:
    """The searches a run of `cells` plans, mimic cells first, then their baselines."""
    baselines = [cell.name + HARD_SUFFIX for cell in cells
                 if config.search.has_baseline(cell.family, cell.budget)]
    return [cell.name for cell in cells] + baselines


def select(published: Path, layout: ExperimentLayout, config: ExperimentConfig,
           cells: Sequence[Cell]) -> Rows:
    """The searches of the results folder `published` that this run keeps (module doc)."""
    if not published.is_dir():
        raise KeptSearchError(f"--keep {published}: no such folder; pass a published results "
                              "folder such as results/<experiment> (its results.csv and "
                              "config.yaml)")
    rows = read_rows(published / "results.csv")
    if not rows:
        return {}
    try:
        theirs = load_config(published / "config.yaml")
    except ConfigError as error:
        raise KeptSearchError(f"--keep {published}: its config.yaml says what recipe its "
                              f"searches ran with, and it could not be read ({error})") from None
    planned = set(planned_names(config, cells))
    checked: set[str] = set()  # families whose recipes were compared
    kept: Rows = {}
    for name, cell_rows in rows.items():
        if name not in planned or not finished(cell_rows, config.search.trials):
            continue
        if artifacts.search_complete(layout.search(name), config.search.trials):
            continue  # finished in this run folder too: this run's own
        family = cell_rows[0]["family"]
        if family in checked:
            kept[name] = cell_rows
            continue
        ours, recipe = search_recipe(config, family), search_recipe(theirs, family)
        checked.add(family)
        if recipe != ours:
            changed = ", ".join(sorted(key for key in ours if recipe.get(key) != ours[key]))
            raise KeptSearchError(
                f"--keep {published}: its searches ran with another recipe than this run's "
                f"({changed} differ in its config.yaml), so they are another experiment's; "
                "move its results.csv aside, or run without --keep")
        kept[name] = cell_rows
    return kept


def kept_rows(layout: ExperimentLayout) -> Rows:
    """The searches this run folder keeps as records (`kept_results.csv`), by name."""
    return read_rows(layout.kept_results)


def write(layout: ExperimentLayout, kept: Rows) -> None:
    """Add `kept` to the run folder's `kept_results.csv` (a search kept again is replaced)."""
    merged = {**kept_rows(layout), **kept}
    write_csv([], layout.kept_results,
              [row for cell_rows in merged.values() for row in cell_rows])


def best_values(rows: Sequence[Mapping[str, str]]) -> dict[str, Any]:
    """The best trial's columns, numbers as numbers: its hyperparameter values among them."""
    best = next(row for row in rows if row.get("rank") == "1")
    return {key: _number(value) for key, value in best.items()}


def _number(text: str) -> Any:
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text else value
