"""Nothing a user made is lost: refused and reconfigured reruns, Optuna's heartbeat race and
retries, honest clocks, bounded names, a NaN that is never best, storages refused clearly."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import optuna
import pytest
import torch
from conftest import run_cli

import cnnsweep.train.job as job
from cnnsweep.files import write_results_row
from cnnsweep.results.load import load_runs
from cnnsweep.schema import MAX_RUN_NAME, run_name
from cnnsweep.sweep.callbacks import sweep_line
from cnnsweep.sweep.storage import fail_stale_trials, heartbeat_storage, storage_error
from cnnsweep.sweep.trial import OptunaTrial
from cnnsweep.train.job import run_job
from cnnsweep.train.monitor import Monitor

QUIET = ["progress=false", "reports=false", "tensorboard.graph=false"]
FAST = ["epochs=1", "batch_size=50", *QUIET]


def row_of(job_dir: Path) -> dict:
    return json.loads((job_dir / "results.json").read_text())


def snapshot(job_dir: Path) -> dict[str, bytes]:
    """Every file a job wrote (Hydra's .hydra/ and log left out), by path."""
    return {
        str(p.relative_to(job_dir)): p.read_bytes()
        for p in sorted(job_dir.rglob("*"))
        if p.is_file() and ".hydra" not in p.parts and p.suffix != ".log"
    }


def test_a_refused_rerun_keeps_the_finished_jobs_files(tmp_path: Path, tiny_root: Path) -> None:
    base = ["-m", f"data_dir={tiny_root}", "hydra.sweep.dir=grid", *FAST, "lr=0.01"]
    assert run_cli(base, cwd=tmp_path).returncode == 0
    done = tmp_path / "grid" / "0"
    before = snapshot(done)
    assert {"model.pt", "results.json", "epochs.json"} <= set(before)
    # refused by validation (no GPU here, or a bad value) and by its data (a moved CSV)
    for refusal in (["device=cuda:7"], ["data=csv", "data.train_csv=/nonexistent/train.csv",
                                        "data.test_csv=/nonexistent/test.csv"]):  # fmt: skip
        proc = run_cli([*base, *refusal], cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr  # a sweep goes on: the refusal is a log line
        assert snapshot(done) == before  # model, rows and events as they were
        assert row_of(done)["status"] == "completed"


def test_a_refused_rerun_keeps_a_killed_jobs_checkpoint(compose_cfg, tmp_path: Path) -> None:
    run_job(compose_cfg(["epochs=2", "checkpoint.keep=true", *QUIET]), tmp_path)
    write_results_row(tmp_path, row_of(tmp_path) | {"status": "running"})  # as if killed
    before = snapshot(tmp_path)
    with pytest.raises(job.ConfigError):
        run_job(compose_cfg(["epochs=2", "lr=-1", *QUIET]), tmp_path)
    assert snapshot(tmp_path) == before and (tmp_path / "last.pt").is_file()


def test_another_configuration_in_the_same_folder_moves_the_finished_job_aside(
    compose_cfg, tmp_path: Path, caplog
) -> None:
    folder = tmp_path / "grid" / "0"
    run_job(compose_cfg(["lr=0.1", *FAST, "tensorboard.histograms=false"]), folder)
    first = snapshot(folder)
    with caplog.at_level("WARNING"):
        run_job(compose_cfg(["lr=0.01", *FAST, "tensorboard.histograms=false"]), folder)
    assert row_of(folder)["lr"] == 0.01 and row_of(folder)["status"] == "completed"
    (moved,) = (folder / "replaced").iterdir()
    assert "held the results of another configuration: moved to" in caplog.text
    assert str(moved) in caplog.text
    # the earlier job's files together, byte for byte: its row beside its model and events
    assert snapshot(moved) == {k: v for k, v in first.items() if not k.startswith("replaced")}
    assert row_of(moved)["lr"] == 0.1 and (moved / "model.pt").is_file()
    # the aggregate still finds both
    runs = load_runs(tmp_path / "grid")
    assert sorted(runs["lr"]) == [0.01, 0.1] and set(runs["status"]) == {"completed"}
    # a runtime knob is the same job: skipped, nothing moved
    run_job(compose_cfg(["lr=0.01", *FAST, "threads=1", "reports=true"]), folder)
    assert len(list((folder / "replaced").iterdir())) == 1


def test_a_resumed_job_counts_the_time_before_it_was_stopped(
    compose_cfg, tmp_path: Path, monkeypatch
) -> None:
    real = job.train_epoch

    def slow_then_stopped(cfg, epoch, *args):
        if epoch == 3:
            raise KeyboardInterrupt
        time.sleep(0.6)  # the first attempt's epochs take a measurable time
        return real(cfg, epoch, *args)

    monkeypatch.setattr(job, "train_epoch", slow_then_stopped)
    with pytest.raises(KeyboardInterrupt):
        run_job(compose_cfg(["epochs=3", *QUIET]), tmp_path)
    first = row_of(tmp_path)
    assert first["status"] == "interrupted"
    monkeypatch.setattr(job, "train_epoch", real)
    run_job(compose_cfg(["epochs=3", *QUIET]), tmp_path)
    row = row_of(tmp_path)
    epochs = json.loads((tmp_path / "epochs.json").read_text())
    durations = [e["run duration"] for e in epochs]
    assert row["resumed_from_epoch"] == 2 and durations == sorted(durations)
    assert durations[1] >= 1.2 and row["run_duration"] >= durations[-1] >= 1.2
    assert row["started_at"] == first["started_at"]


def test_a_long_run_name_is_bounded_and_stays_distinct(tmp_path: Path) -> None:
    overrides = [f"data.train_csv=/very/long/path/{'x' * 120}/train.csv", "lr=0.1",
                 *(f"model.k{i}={'y' * 30}" for i in range(10))]  # fmt: skip
    name = run_name(overrides)
    other = run_name([*overrides[:-1], "model.k9=z"])
    assert len(name.encode()) <= MAX_RUN_NAME and name != other
    assert name.startswith("data.train_csv=_very_long_path")
    assert run_name(["lr=0.1", "batch_size=100"]) == "batch_size=100,lr=0.1"  # short: as before
    from cnnsweep.train.tensorboard import TensorBoardRun

    TensorBoardRun(tmp_path / "tb" / name).close()  # a folder any file system can hold


def test_a_non_finite_value_is_never_the_best() -> None:
    monitor = Monitor("val_loss", patience=2)
    assert not monitor.update(1, float("nan"))
    assert monitor.update(2, 0.9) and monitor.update(3, 0.5)
    assert monitor.best_epoch == 3 and not monitor.should_stop
    acc = Monitor("val_acc")
    assert not acc.update(1, float("inf")) and acc.update(2, 0.5) and acc.best == 0.5


def test_a_bogus_storage_is_one_line_naming_the_forms_that_work(tmp_path: Path) -> None:
    error = storage_error("bogus://x")
    assert error and "bogus://x" in error and "postgresql://user@host/db" in error
    assert storage_error("sqlite:///studies/x.db") is None
    assert storage_error("journal:///studies/x.log") is None
    proc = run_cli(["-m", "hparams_search=fashion_mnist_optuna",
                    "hydra.sweeper.storage=bogus://x"], cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()  # one line, no traceback
    assert line.startswith("error: hydra.sweeper.storage=bogus://x cannot be opened"), line
    assert "none ran" not in proc.stdout + proc.stderr


def test_a_sweep_that_wrote_nothing_says_so(tmp_path: Path) -> None:
    assert sweep_line(tmp_path / "never") == "no job ran: nothing was written"
    (tmp_path / "empty").mkdir()
    assert "make aggregate" not in sweep_line(tmp_path / "empty")


# --- Optuna: the heartbeat race and retries ------------------------------------------------


def trial_overrides(study: str, storage: str, number: int) -> list[str]:
    return [f"++optuna.study_name={study}", f"++optuna.storage='{storage}'",
            f"++optuna.trial={number}", "++optuna.heartbeat_interval=1"]  # fmt: skip


def test_a_finished_trial_is_never_failed_as_stale(compose_cfg, tmp_path: Path) -> None:
    """Interval 1 s, grace 2 s: a job that ended waits past the grace for its batch to end."""
    url = f"sqlite:///{tmp_path}/s.db"
    storage = heartbeat_storage(url, 1, 2, 3)
    with warnings.catch_warnings():  # Optuna expects heartbeats from Study.optimize
        warnings.simplefilter("ignore", UserWarning)
        study = optuna.create_study(study_name="race", storage=storage, direction="maximize")
        trial = study.ask()
    value = run_job(compose_cfg([*FAST, *trial_overrides("race", url, trial.number)]), tmp_path)
    time.sleep(3)  # the sweeper would still be waiting for the rest of its batch
    fail_stale_trials(storage, "race")  # what another worker does before it asks
    (finished,) = optuna.load_study(study_name="race", storage=url).trials
    assert finished.state == optuna.trial.TrialState.COMPLETE and finished.value == value
    assert row_of(tmp_path)["status"] == "completed"


def test_a_retry_of_a_retry_continues_from_the_newest_attempt(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    study = optuna.create_study(study_name="retry", storage=url, direction="maximize")
    storage = study._storage
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        callback = optuna.storages.RetryHeartbeatStaleTrialCallback(3, True)
    dirs = [tmp_path / f"trial_{n}" for n in range(3)]

    def attempt(n: int) -> None:
        """Trial n starts in its folder, writes a checkpoint and a running row, and dies."""
        trial = study.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)})
        assert trial.number == n
        OptunaTrial("retry", url, n).start(dirs[n])
        dirs[n].mkdir(parents=True, exist_ok=True)
        torch.save({"attempt": n}, dirs[n] / "last.pt")
        write_results_row(dirs[n], {"status": "running", "trial_number": n})
        storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
        callback(study, storage.get_trial(trial._trial_id))  # as fail_stale_trials does

    attempt(0)
    attempt(1)  # retries 0: it adopts 0's checkpoint, then writes its own
    OptunaTrial("retry", url, 2).start(dirs[2])  # retries 1, which retried 0
    assert torch.load(dirs[2] / "last.pt", weights_only=True) == {"attempt": 1}
    for n in (0, 1):  # the dead attempts say who took over; the aggregate counts neither
        row = row_of(dirs[n])
        assert row["status"] == "retried" and f"retried by trial {n + 1}" in row["error"]
    runs = load_runs(tmp_path)
    assert sorted(runs["status"].astype(str)) == ["retried", "retried"]
