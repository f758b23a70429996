"""Optuna study reports from the aggregate: a tiny real study in sqlite, rows that name it."""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from test_aggregate import make_job

from cnnsweep.results import cli as aggregate
from cnnsweep.results.studies import open_study

PNG = b"\x89PNG\r\n\x1a\n"
PLOTS = ("optimization_history.png", "param_importances.png", "intermediate_values.png",
         "best_so_far.png",
         "parallel_coordinate.png")  # fmt: skip


def make_study(
    tmp_path: Path, name: str, values: list[float | None], journal: bool = False
) -> tuple[str, Path]:
    """A study in ``tmp_path/studies.db`` (``journal``: in the journal file
    ``tmp_path/studies.log``, as the sweeper's ``journal:///`` storage) with one trial per value
    (None: pruned after epoch 1) and a sweep folder with each trial's job; returns the storage
    URL and the sweep."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if journal:
        storage = f"journal:///{tmp_path / 'studies.log'}"  # journal:////abs/studies.log
        backend = JournalFileBackend(str(tmp_path / "studies.log"))
        where: str | JournalStorage = JournalStorage(backend)
    else:
        storage = where = f"sqlite:///{tmp_path / 'studies.db'}"
    study = optuna.create_study(study_name=name, storage=where, direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))  # fmt: skip
    space = {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True),
             "batch_size": optuna.distributions.CategoricalDistribution([32, 100])}  # fmt: skip
    sweep = tmp_path / name
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    for number, value in enumerate(values):
        trial = study.ask(space)
        for epoch in (1, 2, 3)[: 1 if value is None else 3]:
            trial.report((value or 0.3) * epoch / 3, epoch)
        study.tell(trial, value, state=optuna.trial.TrialState.PRUNED if value is None else None)
        make_job(sweep / f"trial_{number}", job_num=0, trial_number=trial.number, study_name=name,
                 study_storage=storage, lr=trial.params["lr"], val_acc=value,
                 status="completed" if value is not None else "pruned")  # fmt: skip
    return storage, sweep


def test_study_reports_from_a_real_study(tmp_path: Path) -> None:
    _, sweep = make_study(tmp_path, "tiny", [0.6, 0.8, None, 0.7, 0.75])
    report = aggregate.aggregate([sweep], tmp_path / "out", base=tmp_path)
    assert report["notes"] == []
    folder = tmp_path / "out" / "tiny"
    assert sorted(p.name for p in folder.iterdir()) == sorted([*PLOTS, "trials.csv"])
    assert all((folder / p).read_bytes()[:8] == PNG for p in PLOTS)
    trials = pd.read_csv(folder / "trials.csv")
    assert list(trials["number"]) == [0, 1, 2, 3, 4]
    assert list(trials["state"]) == ["COMPLETE", "COMPLETE", "PRUNED", "COMPLETE", "COMPLETE"]
    assert {"value", "params_lr", "params_batch_size"} <= set(trials.columns)
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "## Optuna studies" in summary
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    assert (f"- `tiny`: 5 trial(s) (4 complete, 1 pruned), best 0.8000 (trial 1) in `{storage}`: "
            "`tiny/`") in summary  # fmt: skip
    runs = {r["job_dir"]: r["job"] for r in report["runs"]}
    assert runs == {f"tiny/trial_{i}": i for i in range(5)}  # the trial number, not job_num

    # twice: the same bytes, study pictures included
    files = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    aggregate.aggregate([sweep], tmp_path / "out", base=tmp_path)
    assert {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()} == files


def test_a_plot_that_cannot_be_drawn_is_skipped_with_one_line(tmp_path: Path) -> None:
    _, sweep = make_study(tmp_path, "young", [0.6, None])  # one completed trial so far
    report = aggregate.aggregate([sweep], tmp_path / "out", base=tmp_path)
    folder = tmp_path / "out" / "young"
    assert sorted(p.name for p in folder.iterdir()) == [
        "best_so_far.png", "intermediate_values.png", "optimization_history.png", "trials.csv"
    ]  # fmt: skip
    assert len(report["notes"]) == 2
    assert report["notes"][0].startswith("study 'young': no param_importances.png: 1 completed")


def test_unreadable_storage_is_skipped_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    sweep = tmp_path / "multirun" / "s"
    gone = tmp_path / "moved.db"
    garbage = tmp_path / "garbage.db"
    garbage.write_text("not a database")
    make_job(sweep / "0", trial_number=0, study_name="gone", study_storage=f"sqlite:///{gone}")
    make_job(sweep / "1", trial_number=0, study_name="bad", study_storage=f"sqlite:///{garbage}")
    make_job(sweep / "2", trial_number=0, study_name="nameless",
             study_storage="postgresql://me:secret@127.0.0.1:9/optuna")  # fmt: skip
    make_job(sweep / "3", trial_number=1, study_name="old")  # a row from before study_storage

    assert aggregate.main([]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 4 and all(line.startswith("warning: study '") for line in err)
    assert f"'bad' in sqlite:///{garbage} skipped: " in err[0]  # sorted by name
    assert f"'gone' in sqlite:///{gone} skipped: FileNotFoundError: no such file" in err[1]
    assert "'nameless' in postgresql://me:***@127.0.0.1:9/optuna skipped: " in err[2]
    assert "'old': its rows name no study_storage" in err[3]
    assert not gone.exists()  # never created by looking
    assert garbage.read_text() == "not a database"
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == [
        "epochs.csv", "epochs.json", "pareto.png", "runs.csv", "runs.json", "summary.md",
        "test_acc.png", "val_acc.png",
    ]  # fmt: skip


def test_study_reports_from_a_journal_storage(tmp_path: Path) -> None:
    """The sweeper's journal file (``optuna.storage=journal:///...``) is reported as sqlite is,
    read without writing to it."""
    storage, sweep = make_study(tmp_path, "logged", [0.6, 0.8, None], journal=True)
    assert storage.startswith("journal:////")
    log = tmp_path / "studies.log"
    before = log.read_bytes()
    report = aggregate.aggregate([sweep], tmp_path / "out", base=tmp_path)
    assert report["notes"] == []
    folder = tmp_path / "out" / "logged"
    assert sorted(p.name for p in folder.iterdir()) == sorted([*PLOTS, "trials.csv"])
    assert list(pd.read_csv(folder / "trials.csv")["state"]) == ["COMPLETE", "COMPLETE", "PRUNED"]
    summary = (tmp_path / "out" / "summary.md").read_text()
    line = "- `logged`: 3 trial(s) (2 complete, 1 pruned), best 0.8000 (trial 1) in `journal:///"
    assert line in summary and "studies.log`: `logged/`" in summary
    assert log.read_bytes() == before  # read, never written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logged", "out", "studies.log"]


def test_a_missing_journal_file_is_not_created(tmp_path: Path) -> None:
    gone = tmp_path / "moved.log"
    with pytest.raises(FileNotFoundError, match="no such file"):
        open_study("gone", f"journal:///{gone}")
    assert not gone.exists() and list(tmp_path.iterdir()) == []


def test_one_study_name_in_two_storages_gives_two_reports_that_say_which(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    _, first = make_study(tmp_path / "a", "same", [0.6, 0.7])
    _, second = make_study(tmp_path / "b", "same", [0.5, 0.9])
    report = aggregate.aggregate([first, second], tmp_path / "out", base=tmp_path)
    assert report["notes"] == []
    folders = sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_dir())
    assert folders == ["same@studies.db", "same@studies.db_"]
    summary = (tmp_path / "out" / "summary.md").read_text()
    for where in ("a", "b"):
        assert f"in `sqlite:///{tmp_path / where / 'studies.db'}`" in summary
