"""Where an experiment's artifacts live: every file and folder of `runs/<experiment>/` by name.

    runs/<experiment>/
        config.yaml                   the resolved config
        commands.txt                  the `tuner.run` command lines that made the searches
        runtime.json                  CPU, oneDNN and XLA of the processes that ran them
        dataset.json                  the images' height, width, channels and class names
        teacher/                      teacher.json, ensemble.keras, member_XX.keras and .json
                                      (its training record), logs/,
                                      evaluation_logits.npz (the ensemble's, for the transfer set)
        transfer/                     manifest.json, logits.npy, evaluation_logits.npz
        searches/<cell>/              one search (`SearchLayout`): cell.json, search.json,
                                      evaluation.json, best_student.keras and KerasTuner's
                                      oracle.json, trial_<id>/trial.json, its checkpoint
                                      and history.json (its metrics per epoch)
        logs/<cell>/<trial>/          TensorBoard: one run per trial (train/, validation/,
                                      the HParams session), grouped under its search
        logs/summary/                 TensorBoard: the report (table, Figure 1, comparison)
        lanes/                        searches side by side (`tuner.search.lanes`): each
                                      lane's output, lane<N>.log, and <search>.claim while it runs
        models/<cell>/<version>/      exported SavedModels, models/models.config
        serving/                      the default serving base of the release gate
        kept_results.csv              searches kept from an earlier run folder, as records
                                      (`tuner.search.kept`: `tuner.run --keep results/<experiment>`)
        results.csv, results.md, figure.png      (`tuner.report`)
        findings.md, findings.json               (`tuner.findings`)
        comparison.csv, comparison.md, comparison.png   (`serving.compare`)
        frontier.csv, frontier.md, frontier.png         (`tuner.frontier`: every trial served)
        reliability.png                                 (`tuner.frontier`: calibration)
        frontier/models/<cell>-t<trial>/1/   every completed trial exported for the frontier;
                                      frontier/server.log, the server that measured them

A published copy (`results/<experiment>/`) keeps the result files and `teacher.json` at its
top. Nothing here creates, reads or writes a file (`tuner.artifacts` and the stages do).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mimic_tf.config import ExperimentConfig

# Names inside folders that other stages fill (mimic_tf.teachers, mimic_tf.transfer, serving
# and KerasTuner): the writers and the readers share them from here.
TEACHER_SUMMARY_FILE = "teacher.json"
TEACHER_EVALUATION_FILE = "evaluation_logits.npz"  # the ensemble's validation and test logits
TRANSFER_MANIFEST_FILE = "manifest.json"
TRANSFER_EVALUATION_FILE = "evaluation_logits.npz"  # the teacher's, beside the transfer set
MODELS_CONFIG_FILE = "models.config"  # TF Serving's model config at the top of a model base
CHECKPOINT_FILE = "checkpoint.weights.h5"  # KerasTuner's best-epoch weights in trial_<id>/
TRIAL_BACKUP_FILE = "resume.npz"  # a running trial's last finished epoch, in trial_<id>/
TRIAL_HISTORY_FILE = "history.json"  # a finished trial's metrics per epoch, in trial_<id>/
SUMMARY_RUN = "summary"  # the report's TensorBoard run, beside the searches' runs in logs/


@dataclasses.dataclass(frozen=True)
class SearchLayout:
    """One search's folder `searches/<cell>/`: KerasTuner's project and the files of ours."""

    root: Path

    @property
    def name(self) -> str:
        """The cell's name, which is the folder's."""
        return self.root.name

    @property
    def cell_file(self) -> Path:
        """Which cell the folder holds."""
        return self.root / "cell.json"

    @property
    def settings_file(self) -> Path:
        """What the search's trials depend on (a rerun with other settings is refused)."""
        return self.root / "search.json"

    @property
    def evaluation_file(self) -> Path:
        """Test metrics of the top-k trials, the best student, its export and push."""
        return self.root / "evaluation.json"

    @property
    def best_student(self) -> Path:
        """The student of the best trial that did not diverge (the export stage reads it)."""
        return self.root / "best_student.keras"

    @property
    def oracle_file(self) -> Path:
        """KerasTuner's oracle state."""
        return self.root / "oracle.json"

    def trial_dir(self, trial_id: str) -> Path:
        return self.root / f"trial_{trial_id}"

    def trial_file(self, trial_id: str) -> Path:
        """KerasTuner's record of one trial: hyperparameters, metrics, score, status."""
        return self.trial_dir(trial_id) / "trial.json"

    def checkpoint(self, trial_id: str) -> Path:
        return self.trial_dir(trial_id) / CHECKPOINT_FILE

    def trial_backup(self, trial_id: str) -> Path:
        """A trial's last finished epoch while it trains (`mimic_tf.resume`): a killed trial
        goes on from there; removed when the trial ends."""
        return self.trial_dir(trial_id) / TRIAL_BACKUP_FILE

    def trial_history(self, trial_id: str) -> Path:
        """A finished trial's metrics per epoch and its epoch cap (`tuner.report.convergence` reads
        whether it ran long enough)."""
        return self.trial_dir(trial_id) / TRIAL_HISTORY_FILE

    def trial_files(self) -> list[Path]:
        """Every trial record of the search, in folder order."""
        return sorted(self.root.glob("trial_*/trial.json"))


@dataclasses.dataclass(frozen=True)
class ExperimentLayout:
    """Paths of one experiment's artifacts (nothing is created until something writes)."""

    root: Path

    @classmethod
    def for_config(cls, config: ExperimentConfig, out: str | Path = "runs") -> ExperimentLayout:
        return cls(Path(out) / config.name)

    @property
    def config_file(self) -> Path:
        return self.root / "config.yaml"

    @property
    def commands_file(self) -> Path:
        """The `tuner.run` command lines that made the searches, one a line."""
        return self.root / "commands.txt"

    @property
    def runtime_file(self) -> Path:
        """How TensorFlow ran the searches (CPU, oneDNN, XLA per family), one record a setup."""
        return self.root / "runtime.json"

    @property
    def dataset_file(self) -> Path:
        """What the run's images and classes look like (`mimic_tf.data.spec.DatasetSpec`)."""
        return self.root / "dataset.json"

    @property
    def teacher(self) -> Path:
        return self.root / "teacher"

    @property
    def teacher_summary(self) -> Path:
        """The teacher's record: each member's and the ensemble's accuracies, its data source."""
        return self.teacher / TEACHER_SUMMARY_FILE

    @property
    def published_teacher_summary(self) -> Path:
        """`teacher.json` at the top of a published results folder (`results/<experiment>/`)."""
        return self.root / TEACHER_SUMMARY_FILE

    @property
    def transfer(self) -> Path:
        return self.root / "transfer"

    @property
    def transfer_manifest(self) -> Path:
        """The transfer set's fingerprints (teacher weights, views) and digest."""
        return self.transfer / TRANSFER_MANIFEST_FILE

    @property
    def transfer_evaluation_logits(self) -> Path:
        """The teacher's logits on the unaugmented validation and test splits."""
        return self.transfer / TRANSFER_EVALUATION_FILE

    @property
    def searches(self) -> Path:
        return self.root / "searches"

    def search(self, name: str) -> SearchLayout:
        """The folder of the search of cell `name` (e.g. `mlp-d2-b1M`)."""
        return SearchLayout(self.searches / name)

    def search_folders(self) -> list[SearchLayout]:
        """Every folder under `searches/`, by name (`tuner.artifacts` tells which are ours)."""
        if not self.searches.is_dir():
            return []
        return [SearchLayout(path) for path in sorted(self.searches.iterdir()) if path.is_dir()]

    @property
    def unit_clock(self) -> Path:
        """A campaign unit's seconds so far, kept while it runs (`tuner.campaign.clock`)."""
        return self.root / "unit-clock.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def lanes(self) -> Path:
        """Searches side by side: lane<N>.log, and <search>.claim while a lane runs it."""
        return self.root / "lanes"

    def search_logs(self, name: str) -> Path:
        """TensorBoard folder of one search: a run per trial under it, `<trial id>/`."""
        return self.logs / name

    @property
    def summary_logs(self) -> Path:
        """TensorBoard run of the report: the results table, Figure 1, the served comparison."""
        return self.logs / SUMMARY_RUN

    @property
    def models(self) -> Path:
        """The export base: `models/<cell>/<version>/` SavedModels and `models.config`."""
        return self.root / "models"

    def model(self, name: str) -> Path:
        """The exported versions of the search of cell `name`."""
        return self.models / name

    @property
    def models_config(self) -> Path:
        """TF Serving's model config of the export base."""
        return self.models / MODELS_CONFIG_FILE

    @property
    def serving(self) -> Path:
        """The default serving base the release gate pushes into."""
        return self.root / "serving"

    @property
    def results_csv(self) -> Path:
        """One row per trial of every search."""
        return self.root / "results.csv"

    @property
    def kept_results(self) -> Path:
        """The rows of searches kept from an earlier run folder of the experiment
        (`tuner.search.kept`): records only, their weights gone with that folder."""
        return self.root / "kept_results.csv"

    @property
    def results_md(self) -> Path:
        """The paper's Table 2 layout, baselines, teacher, provenance."""
        return self.root / "results.md"

    @property
    def figure(self) -> Path:
        """The paper's Figure 1: test accuracy against parameters."""
        return self.root / "figure.png"

    @property
    def findings_md(self) -> Path:
        return self.root / "findings.md"

    @property
    def findings_json(self) -> Path:
        return self.root / "findings.json"

    @property
    def comparison_csv(self) -> Path:
        """The served students' accuracy, latency and throughput (`serving.compare`)."""
        return self.root / "comparison.csv"

    @property
    def comparison_md(self) -> Path:
        return self.root / "comparison.md"

    @property
    def comparison_png(self) -> Path:
        return self.root / "comparison.png"

    @property
    def frontier(self) -> Path:
        """The frontier stage's own folder: every trial's SavedModel and the server's log."""
        return self.root / "frontier"

    @property
    def frontier_models(self) -> Path:
        """`frontier/models/<cell>-t<trial>/1/`: one SavedModel per completed trial."""
        return self.frontier / "models"

    @property
    def frontier_measurement(self) -> Path:
        """What the frontier stage measured (checkpoints, settings, teacher, conditions)."""
        return self.frontier / "measurement.json"

    @property
    def frontier_csv(self) -> Path:
        """One row per completed trial: cost, accuracy, mimic diagnostics, served latency."""
        return self.root / "frontier.csv"

    @property
    def frontier_md(self) -> Path:
        """The Pareto-optimal students and the conditions they were measured under."""
        return self.root / "frontier.md"

    @property
    def frontier_png(self) -> Path:
        """Test accuracy against batch-1 p99 latency, the front as a step line."""
        return self.root / "frontier.png"

    @property
    def reliability_png(self) -> Path:
        """Reliability diagrams: the best student of each family beside the teacher."""
        return self.root / "reliability.png"
