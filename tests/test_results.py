"""load_runs / load_epochs over hand-written job folders: every status, dtypes, joined knobs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from test_aggregate import make_job, make_sweep

from cnnsweep.results.load import STATUSES, load_epochs, load_runs
from cnnsweep.schema import KNOBS


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """One job of every status a sweep folder can hold."""
    sweep = make_sweep(tmp_path / "s", [
        {"val_acc": 0.6, "width": 32, "ema": None, "started_at": "2026-01-01T10:00:00+00:00",
         "finished_at": "2026-01-01T10:05:00+00:00", "class_names": ["a", "b"]},
        {"status": "failed", "error": "RuntimeError: out of memory", "val_acc": None},
        {"status": "diverged", "error": "training loss became nan", "train_loss": float("nan")},
        {"status": "pruned", "error": "pruned by optuna at epoch 1"},
        {"status": "interrupted", "error": "KeyboardInterrupt after epoch 1"},
        {"status": "running", "val_acc": 0.99},
    ])  # fmt: skip
    (sweep / "6").mkdir()
    (sweep / "6" / "results.json").write_text('{"status": "completed", "lr": 0.0')  # truncated
    (sweep / "7" / ".hydra").mkdir(parents=True)  # killed before its row was written
    (sweep / "7" / ".hydra" / "config.yaml").write_text(
        "lr: 0.5\nmodel: {name: lenet, width: 8}\nema: {enabled: false, decay: 0.9}\n"
    )
    return sweep


def test_load_runs_gives_every_job_with_its_status_and_typed_columns(
    sweep: Path, tmp_path: Path
) -> None:
    runs = load_runs(sweep, base=tmp_path)
    assert len(runs) == 8 and list(runs.columns[:3]) == ["sweep", "job", "status"]
    assert list(zip(runs["job"], runs["status"].astype(str))) == [
        (0, "completed"), (1, "failed"), (2, "diverged"), (3, "pruned"), (4, "interrupted"),
        (5, "running"), (6, "corrupt"), (7, "missing"),
    ]  # fmt: skip
    assert isinstance(runs["status"].dtype, pd.CategoricalDtype)
    assert list(runs["status"].cat.categories) == list(STATUSES)
    assert runs["status"].cat.ordered  # sorting by status lists them in this order
    columns = ("job", "lr", "batch_size", "shuffle", "model", "val_acc", "width", "started_at",
               "finished_at")  # fmt: skip
    dtypes = {c: str(runs[c].dtype) for c in columns}
    assert dtypes == {"job": "Int64", "lr": "float64", "batch_size": "Int64", "shuffle": "boolean",
                      "model": "string", "val_acc": "float64", "width": "Int64",
                      "started_at": "datetime64[us, UTC]",
                      "finished_at": "datetime64[us, UTC]"}  # fmt: skip
    assert runs.loc[0, "started_at"] == pd.Timestamp("2026-01-01T10:00:00Z")
    assert runs.loc[0, "class_names"] == ["a", "b"]  # lists stay lists
    by_job = runs.set_index("job")
    assert pd.isna(by_job.loc[2, "train_loss"])  # NaN was written as null
    assert "not valid JSON" in by_job.loc[6, "error"]
    assert "still running" in by_job.loc[5, "error"]
    assert by_job.loc[7, "lr"] == 0.5 and by_job.loc[7, "model"] == "lenet"
    assert by_job.loc[7, "width"] == 8 and pd.isna(by_job.loc[7, "ema"])  # EMA off: no decay
    assert list(by_job["job_dir"]) == [f"s/{i}" for i in range(8)]
    # the seed is not part of the configuration; a missing job's id comes from its knobs
    assert by_job.loc[0, "config_id"] == by_job.loc[1, "config_id"] != by_job.loc[7, "config_id"]


def test_load_epochs_joins_the_job_and_numbers_runs_by_job(sweep: Path, tmp_path: Path) -> None:
    epochs = load_epochs(sweep, base=tmp_path)
    assert len(epochs) == 6 * 2  # two epochs for each job that wrote epoch rows
    assert list(epochs.columns[:7]) == [
        "run", "epoch", "loss", "accuracy", "epoch duration", "run duration", "lr"
    ]  # fmt: skip
    assert set(KNOBS) <= set(epochs.columns)
    assert {"val_loss", "val_accuracy", "sweep", "status", "job_dir", "config_id"} <= set(epochs)
    # the epoch rows do not repeat these: they come from the job's row
    assert set(epochs["batch_size"]) == {100} and set(epochs["optimizer"]) == {"adam"}
    assert str(epochs["run"].dtype) == "Int64" and str(epochs["epoch"].dtype) == "Int64"
    assert list(epochs.loc[epochs["run"] == 5, "status"].astype(str)) == ["running"] * 2
    assert (epochs["run"].astype(str).radd("s/") == epochs["job_dir"]).all()
    assert epochs.loc[epochs["run"] == 0, "width"].tolist() == [32, 32]


def test_optuna_trials_are_numbered_by_trial_and_kept_apart_by_folder(tmp_path: Path) -> None:
    """Two workers in one sweep folder both count their jobs from 0."""
    sweep = tmp_path / "search"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    make_job(sweep / "trial_3", job_num=0, trial_number=3, study_name="s", val_acc=0.7)
    make_job(sweep / "trial_4", job_num=0, trial_number=4, study_name="s", val_acc=0.9)
    runs = load_runs(sweep, base=tmp_path)
    assert list(runs["job"]) == [3, 4] and list(runs["job_num"]) == [0, 0]
    epochs = load_epochs(sweep, base=tmp_path)
    curves = epochs.groupby("job_dir")["val_accuracy"].last().to_dict()
    assert curves == {"search/trial_3": 0.7, "search/trial_4": 0.9}
    assert dict(epochs.groupby("job_dir")["run"].first()) == {
        "search/trial_3": 3, "search/trial_4": 4
    }  # fmt: skip


def test_default_folders_and_nothing_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_runs().empty and load_epochs().empty  # no multirun/, no outputs/: no rows
    assert {"sweep", "job", "status", "job_dir", "config_id", *KNOBS} <= set(load_runs())
    make_job(tmp_path / "outputs" / "2026-01-01" / "10-00-00", sweep_dir=None)
    make_job(tmp_path / "elsewhere" / "0")
    runs = load_runs()
    assert list(runs["job_dir"]) == ["outputs/2026-01-01/10-00-00"]
    assert list(runs["sweep"]) == ["outputs/2026-01-01/10-00-00"]  # a single run: its own sweep
    assert len(load_runs("outputs", "elsewhere")) == 2
