"""The run's terminal progress lines (`tuner.search.progress`)."""

from __future__ import annotations

import io

from tuner.search.cells import Cell
from tuner.search.progress import Progress, TrialProgress


def run_trial(progress: Progress, trial_id: str, val_accuracy: list[float]) -> None:
    """One trial's callbacks, as Keras calls them, without training anything."""
    callback = TrialProgress(progress, trial_id, {"learning_rate": 0.01}, 1000)
    callback.set_params({"epochs": len(val_accuracy)})
    callback.on_train_begin()
    for epoch, value in enumerate(val_accuracy):
        callback.on_epoch_begin(epoch)
        callback.on_epoch_end(epoch, {"loss": 1.0, "val_accuracy": value})
    callback.on_train_end()


def test_a_resumed_search_counts_the_trials_it_finished_before_in_its_best():
    stream = io.StringIO()
    progress = Progress(planned_trials=6, max_epochs=2, stream=stream)
    progress.begin_search(Cell("mlp", 2, 3.16e5), 1, 1, max_trials=6, finished=3, best=0.52)
    run_trial(progress, "3", [0.10, 0.10])  # a trial stuck at chance after the resume
    lines = stream.getvalue().splitlines()
    assert lines[0] == "[mlp-d2-b316k 1/1] search of 6 trials, 3 finished trial(s) kept"
    assert "trial 4/6 done in" in lines[-1]
    assert "val_accuracy 0.1000 (best of search 0.5200)" in lines[-1]
    run_trial(progress, "4", [0.50, 0.61])
    assert "val_accuracy 0.6100 (best of search 0.6100)" in stream.getvalue().splitlines()[-1]


def test_a_new_search_starts_without_a_best():
    stream = io.StringIO()
    progress = Progress(planned_trials=2, max_epochs=1, stream=stream)
    progress.begin_search(Cell("cnn", 1, 1e6), 2, 3, max_trials=2, finished=0)
    run_trial(progress, "0", [0.40])
    assert "val_accuracy 0.4000 (best of search 0.4000); run ETA" in stream.getvalue()


def finish_trial(progress: Progress, cell: Cell, seconds: float) -> None:
    progress.begin_search(cell, 1, 1, max_trials=1, finished=0)
    progress.trial_done(seconds, 0.5)


def test_the_eta_between_trials_counts_every_trial_left():
    progress = Progress(planned_trials=3, max_epochs=4, verbose=0)
    finish_trial(progress, Cell("mlp", 1, 1e5), 60.0)
    assert progress.remaining_trials == 2
    assert progress.eta(in_progress=False) == 120.0  # after a trial: two more to run
    assert progress.eta(30.0) == 90.0  # during one: its 30 s left and one more


def test_the_eta_counts_each_familys_trials_at_that_familys_pace():
    """Costliest first, as lanes run: a 200 s CNN trial done, two 20 s MLP trials and one
    CNN left. One mean over all trials (the ETA before) would say 600 s, not 240."""
    progress = Progress(planned_trials={"cnn": 2, "mlp": 3}, max_epochs=6, verbose=0)
    finish_trial(progress, Cell("cnn", 2, 3.16e5), 200.0)
    finish_trial(progress, Cell("mlp", 1, 1e5), 20.0)
    assert progress.remaining_trials == 3
    assert progress.eta(in_progress=False) == 200.0 + 2 * 20.0
    progress.begin_search(Cell("mlp", 2, 1e5), 1, 1, max_trials=2, finished=0)
    assert progress.eta(5.0) == 5.0 + 20.0 + 200.0  # this MLP's 5 s, one more MLP, the CNN


def test_a_family_with_no_trial_finished_takes_the_mean_of_the_others():
    progress = Progress(planned_trials={"mlp": 1, "cnn": 2}, max_epochs=6, verbose=0)
    progress.begin_search(Cell("cnn", 1, 1e5), 1, 2, max_trials=2, finished=0)
    assert progress.eta(50.0) == 50.0 * 3  # nothing finished: the current trial's time left
    progress.trial_done(100.0, 0.6)
    assert progress.eta(in_progress=False) == 100.0 + 100.0  # the CNN left, the MLP at 100


def test_a_trial_resumed_from_its_backup_reports_its_whole_trial():
    """The backup keeps the progress callback's state (its `get_state`), so the last line of
    a trial killed after epoch 2 counts epochs 1-2 too."""
    stream = io.StringIO()
    progress = Progress(planned_trials=1, max_epochs=3, stream=stream)
    progress.begin_search(Cell("mlp", 1, 3.16e5), 1, 1, max_trials=1, finished=0)
    killed = TrialProgress(progress, "0", {}, 1000)
    killed.set_params({"epochs": 3})
    killed.on_train_begin()
    for epoch, value in enumerate([0.30, 0.55]):
        killed.on_epoch_begin(epoch)
        killed.on_epoch_end(epoch, {"val_accuracy": value})
    state = killed.get_state()  # what the backup wrote at epoch 2's end

    resumed = TrialProgress(progress, "0", {}, 1000)
    resumed.set_params({"epochs": 3})
    resumed.on_train_begin()
    resumed.set_state(state)  # the backup restores after the others' on_train_begin
    resumed.on_epoch_begin(2)
    resumed.on_epoch_end(2, {"val_accuracy": 0.50})
    resumed.on_train_end()
    assert "trial 1/1 done in" in stream.getvalue().splitlines()[-1]
    assert "val_accuracy 0.5500 (best of search 0.5500)" in stream.getvalue().splitlines()[-1]
    assert resumed.seconds_before == state["seconds"] >= 0.0
