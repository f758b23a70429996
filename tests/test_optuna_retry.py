"""An Optuna trial whose worker died is failed by the next worker and retried from its last.pt.

``kill_and_retry`` is shared with tests/test_cluster.py, which runs it on PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import optuna
import pytest
from conftest import REPO, write_idx_dataset

ARGS = [
    "-m", "hparams_search=fashion_mnist_optuna", "hydra/sweeper/pruner=nop",
    "hydra.sweeper.n_trials=1", "epochs=6", "batch_size=50", "model=bn_cnn", "threads=1",
    "progress=false", "reports=false", "tensorboard.graph=false",
    "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=2",
]  # fmt: skip


def worker(cwd: Path, data: Path, extra: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), *ARGS, *extra, f"data_dir={data}"],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip


def trial_dir(cwd: Path, number: int) -> Path | None:
    found = list((cwd / "multirun").rglob(f"trial_{number}"))
    return found[0] if found else None


def kill_and_retry(
    tmp_path: Path, study: str, storage: str, storage_override: str, second_args: tuple = ()
) -> None:
    """A worker SIGKILLed after two epochs of its trial; a second worker started afterwards
    (``second_args`` added) fails the dead trial and runs its retry, which continues from the
    dead trial's last.pt; any further trials it runs complete."""
    data = write_idx_dataset(tmp_path / "data", n_train=1500, n_test=200)
    extra = [f"hydra.sweeper.study_name={study}", storage_override]
    first = worker(tmp_path, data, extra)
    deadline = time.time() + 300
    while True:  # kill the worker once its trial has a checkpoint and two epochs
        job = trial_dir(tmp_path, 0)
        rows = job / "epochs.json" if job else None
        if job and (job / "last.pt").exists() and rows.exists():
            if len(json.loads(rows.read_text() or "[]")) >= 2:
                break
        assert first.poll() is None and time.time() < deadline, first.stdout.read()
        time.sleep(0.01)
    first.send_signal(signal.SIGKILL)
    first.wait()
    (dead,) = optuna.load_study(study_name=study, storage=storage).trials
    assert dead.state == optuna.trial.TrialState.RUNNING  # nobody said otherwise
    time.sleep(3)  # past the grace period: its heartbeat is stale

    second = worker(tmp_path, data, [*extra, *second_args])
    output = second.communicate(timeout=600)[0]
    assert second.returncode == 0, output

    trials = optuna.load_study(study_name=study, storage=storage).trials
    states = [t.state.name for t in trials]
    assert states[:2] == ["FAIL", "COMPLETE"] and set(states[2:]) <= {"COMPLETE"}  # none RUNNING
    retry = trials[1]
    assert retry.params == dead.params
    with warnings.catch_warnings():  # an API Optuna still calls experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        assert optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(retry) == 0
    assert sorted(retry.intermediate_values) == [1, 2, 3, 4, 5, 6]  # the dead trial's carried over
    row = json.loads((trial_dir(tmp_path, 1) / "results.json").read_text())
    assert row["status"] == "completed" and row["resumed_from_epoch"] >= 1
    assert f"resumed at epoch {row['resumed_from_epoch'] + 1} of 6" in output
    assert "retries trial 0: continuing from" in output
    epochs = json.loads((trial_dir(tmp_path, 1) / "epochs.json").read_text())
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4, 5, 6]


@pytest.mark.slow
def test_a_killed_workers_trial_is_failed_and_its_retry_continues_it(tmp_path: Path) -> None:
    kill_and_retry(tmp_path, "retry", f"sqlite:///{tmp_path}/studies/retry.db",
                   "hydra.sweeper.storage=sqlite:///studies/retry.db")  # fmt: skip


@pytest.mark.slow
def test_a_retry_under_two_trials_at_a_time_continues_the_dead_trial(tmp_path: Path) -> None:
    two = ("hydra/launcher=joblib", "hydra.sweeper.n_jobs=2", "hydra.sweeper.n_trials=2")
    kill_and_retry(tmp_path, "retry2", f"sqlite:///{tmp_path}/studies/retry2.db",
                   "hydra.sweeper.storage=sqlite:///studies/retry2.db", two)  # fmt: skip
