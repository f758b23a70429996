"""Warm starts: enqueued points run first and exactly once (two workers too), and a search can
start from another study's completed trials."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from conftest import REPO, TRIAL_STATE
from test_optuna import QUIET, load, rows, search

ENQUEUE = "hydra.sweeper.enqueue=[{lr:0.01,batch_size:100,optimizer:adam,model:network,shuffle:true},{lr:0.001,batch_size:32,optimizer:sgd,model:lenet,shuffle:false}]"  # noqa: E501
POINTS = [
    {"lr": 0.01, "batch_size": 100, "optimizer": "adam", "model": "network", "shuffle": True},
    {"lr": 0.001, "batch_size": 32, "optimizer": "sgd", "model": "lenet", "shuffle": False},
]


@pytest.mark.slow
def test_enqueued_points_run_first_and_once_with_two_workers(
    tiny_root: Path, tmp_path: Path
) -> None:
    args = [sys.executable, str(REPO / "train.py"), "-m", *search(tiny_root, 2, epochs=1),
            "threads=1", ENQUEUE]  # fmt: skip
    workers = [subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True) for _ in range(2)]  # fmt: skip
    logs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], logs[0][-2000:] + logs[1][-2000:]
    trials = load(tmp_path).trials
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert [trials[0].params, trials[1].params] == POINTS  # first, in order
    assert sum(t.params in POINTS for t in trials) == 2  # and once each
    assert sum("starts from 2 enqueued point(s)" in log for log in logs) == 1  # one worker
    assert sorted(rows(tmp_path)) == [0, 1, 2, 3]

    # the same command again continues the study: nothing is enqueued twice
    again = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    trials = load(tmp_path).trials
    assert len(trials) == 6 and sum(t.params in POINTS for t in trials) == 2


@pytest.mark.slow
def test_a_search_starts_from_another_studys_completed_trials(
    tiny_root: Path, tmp_path: Path
) -> None:
    source = f"sqlite:///{tmp_path}/studies/earlier.db"
    (tmp_path / "studies").mkdir()
    earlier = optuna.create_study(study_name="earlier", storage=source, direction="maximize")
    space = {
        "lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True),
        "batch_size": optuna.distributions.CategoricalDistribution([32, 100, 256, 1000]),
    }
    for value in (0.5, 0.7, 0.6):
        earlier.tell(earlier.ask(space), value)
    earlier.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
    proc = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "-m", *search(tiny_root, 1, epochs=1),
         f"hydra.sweeper.warm_start={{study_name:earlier,storage:'{source}'}}", *QUIET],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = load(tmp_path).trials
    assert len(trials) == 4  # the 3 completed trials copied, the failed one not, then 1 new
    assert [t.value for t in trials[:3]] == [0.5, 0.7, 0.6]
    assert trials[3].state.name == TRIAL_STATE[rows(tmp_path)[3]["status"]]  # the new one, run
    assert "starts from 0 enqueued point(s) and 3 trial(s) of study 'earlier'" in (
        proc.stdout + proc.stderr
    )
