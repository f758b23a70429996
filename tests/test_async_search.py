"""Asynchronous trials: with hydra.sweeper.n_jobs=K, K trials run at all times and a new one is
asked the moment one ends; hydra.sweeper.asynchronous=false restores the plugin's batches."""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd
import pytest
from conftest import CONF, TRIAL_STATE, run_cli
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf
from test_optuna import PRESET, QUIET, load, rows

from cnnsweep.results.stats import busy_fraction
from cnnsweep.sweep.trial import PRUNER_WHITELIST, OptunaTrial

K2 = ["hydra/launcher=joblib", "hydra.sweeper.n_jobs=2", "threads=1"]
# trial 0 trains 80 epochs of tiny data, trials 1-3 one to three (enqueued points are unique)
LONG_FIRST = [
    "epochs=choice(1,2,3,80)", "model=lenet", "optimizer=adam", "hydra/sweeper/pruner=nop",
    "hydra.sweeper.enqueue=[{epochs:80},{epochs:1},{epochs:2},{epochs:3}]",
]  # fmt: skip


def search(tiny_root: Path, cwd: Path, *extra: str, n_trials: int = 4) -> dict[int, dict]:
    cwd.mkdir(exist_ok=True)
    args = ["-m", PRESET, f"hydra.sweeper.n_trials={n_trials}", f"data_dir={tiny_root}", *QUIET]
    proc = run_cli([*args, *K2, *extra], cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return rows(cwd)


def at(row: dict, column: str) -> pd.Timestamp:
    return pd.Timestamp(row[column])


@pytest.mark.slow
def test_a_new_trial_starts_while_a_longer_one_still_runs(tiny_root: Path, tmp_path: Path) -> None:
    by_trial = search(tiny_root, tmp_path / "async", *LONG_FIRST)
    assert sorted(by_trial) == [0, 1, 2, 3]
    assert [by_trial[n]["epochs_run"] for n in range(4)] == [80, 1, 2, 3]
    long_end = at(by_trial[0], "finished_at")
    assert all(at(by_trial[n], "started_at") < long_end for n in (1, 2, 3)), by_trial
    assert all(by_trial[n]["threads"] == 1 for n in range(4))  # 2 cores, 2 trials at a time
    busy_async = busy_fraction(list(by_trial.values()), 2)

    # the plugin's batches: trial 2 waits until the slowest of trials 0 and 1 has ended
    batches = search(tiny_root, tmp_path / "sync", *LONG_FIRST, "hydra.sweeper.asynchronous=false")
    assert at(batches[2], "started_at") >= at(batches[0], "finished_at")
    busy_sync = busy_fraction(list(batches.values()), 2)
    assert busy_async > busy_sync, (busy_async, busy_sync)


@pytest.mark.slow
def test_pruning_under_two_workers_stops_hopeless_trials(tiny_root: Path, tmp_path: Path) -> None:
    """A good trial (lr 3e-3) and three hopeless ones (lr about 1e-5, distinct: enqueued points
    are unique). Each hopeless trial that starts after the good one has completed is pruned
    (the median of one); at least one does, whichever slot frees first."""
    by_trial = search(
        tiny_root, tmp_path, "model=network", "optimizer=adam", "batch_size=30", "epochs=3",
        "hydra/sweeper/pruner=median", "hydra.sweeper.pruner.n_startup_trials=1",
        "hydra.sweeper.pruner.n_warmup_steps=1",
        "hydra.sweeper.enqueue=[{lr:0.003},{lr:0.00001},{lr:0.000011},{lr:0.000012}]",
    )  # fmt: skip
    trials = load(tmp_path).trials
    assert trials[0].state.name == "COMPLETE" and trials[0].params["lr"] == 0.003
    late = [t for t in trials[1:] if t.datetime_start > trials[0].datetime_complete]
    assert late and all(t.state.name == "PRUNED" for t in late), [t.state for t in trials]
    assert all(by_trial[t.number]["status"] == "pruned" for t in late)
    assert all(by_trial[t.number]["epochs_run"] < 3 for t in late)


@pytest.mark.slow
def test_hyperband_brackets_are_the_trials_epochs_in_every_worker(
    tiny_root: Path, tmp_path: Path
) -> None:
    """Optuna's ``max_resource: auto`` guesses the brackets per process from the trials it has
    seen (Optuna #3083); each job here takes its own ``epochs``: with 9 epochs and a reduction
    factor of 3, the rungs are epochs 1, 3 and 9, and a trial can stop only at 1 or 3."""
    by_trial = search(
        tiny_root, tmp_path, "model=lenet", "epochs=9", "hydra/sweeper/pruner=hyperband",
        n_trials=8,
    )  # fmt: skip
    trials = load(tmp_path).trials
    assert all(t.state.name == TRIAL_STATE[by_trial[t.number]["status"]] for t in trials)
    for t in trials:
        rungs = sorted(int(k.rsplit("_", 1)[1]) for k in t.system_attrs if "completed_rung" in k)
        assert rungs == list(range(len(rungs))), t.system_attrs
        if t.state.name == "PRUNED":
            assert by_trial[t.number]["epochs_run"] in (1, 3), by_trial[t.number]
    assert any(t.system_attrs for t in trials)  # the pruner judged trials at its rungs


def test_hyperband_auto_takes_the_jobs_epochs() -> None:
    pruner = OmegaConf.load(CONF / "hydra/sweeper/pruner/hyperband.yaml")
    block = {"study_name": "s", "storage": "sqlite:///x.db", "trial": 0, "pruner": pruner}
    cfg = OmegaConf.create({"epochs": 7, "optuna": block})
    assert OptunaTrial.from_config(cfg)._pruner_cfg["max_resource"] == 7


@pytest.mark.parametrize(
    "pruner", sorted(p.stem for p in (CONF / "hydra/sweeper/pruner").glob("*.yaml"))
)
@pytest.mark.parametrize(
    "preset", ["fashion_mnist_optuna", "fashion_mnist_recipe", "fashion_mnist_pareto"]
)
def test_every_pruner_can_be_chosen_in_every_preset(preset: str, pruner: str) -> None:
    """What a job builds from ``hparams_search=<preset> hydra/sweeper/pruner=<pruner>``: a
    preset's settings of its own pruner must not reach another pruner (a TypeError in every
    job)."""
    overrides = [f"hparams_search={preset}", f"hydra/sweeper/pruner={pruner}"]
    with initialize_config_dir(config_dir=str(CONF)):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    block = {"study_name": "s", "storage": "sqlite:///x.db", "trial": 0,
             "pruner": cfg.hydra.sweeper.pruner}  # fmt: skip
    trial = OptunaTrial.from_config(OmegaConf.create({"epochs": cfg.epochs, "optuna": block}))
    built = instantiate(trial._pruner_cfg, _execution_whitelist_=PRUNER_WHITELIST)
    assert isinstance(built, optuna.pruners.BasePruner)


def test_two_at_once_with_the_basic_launcher_is_one_line(tiny_root: Path, tmp_path: Path) -> None:
    args = ["-m", PRESET, "hydra/launcher=basic", "hydra.sweeper.n_jobs=2", f"data_dir={tiny_root}"]
    proc = run_cli([*args, *QUIET], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: hydra.sweeper.n_jobs=2 runs 2 trials at once, but the basic launcher runs one "
        "job at a time: add hydra/launcher=joblib (this machine) or hydra/launcher=slurm, or "
        "pass hydra.sweeper.n_jobs=1"
    ]
    assert not (tmp_path / "multirun").exists() and not list(tmp_path.rglob("*.db"))


@pytest.mark.slow
def test_enqueued_trials_run_first_and_once_with_two_at_a_time(
    tiny_root: Path, tmp_path: Path
) -> None:
    points = [{"lr": 0.01, "batch_size": 100}, {"lr": 0.002, "batch_size": 32}]
    enqueue = "hydra.sweeper.enqueue=[{lr:0.01,batch_size:100},{lr:0.002,batch_size:32}]"
    by_trial = search(tiny_root, tmp_path, "epochs=1", "model=lenet", enqueue)
    trials = load(tmp_path).trials
    assert [t.number for t in trials] == [0, 1, 2, 3]
    firsts = [{k: t.params[k] for k in ("lr", "batch_size")} for t in trials[:2]]
    assert firsts == points
    assert sum({k: t.params[k] for k in ("lr", "batch_size")} in points for t in trials) == 2
    assert sorted(by_trial) == [0, 1, 2, 3]
    assert all(t.state.name == TRIAL_STATE[by_trial[t.number]["status"]] for t in trials)


@pytest.mark.slow
def test_a_conditional_space_gives_a_width_only_to_models_that_have_one(
    tiny_root: Path, tmp_path: Path
) -> None:
    by_trial = search(
        tiny_root, tmp_path, "epochs=1", "model=choice(network,cnn)",
        "hydra.sweeper.custom_search_space=cnnsweep.sweep.spaces.width_where_the_model_has_one",
        "hydra.sweeper.enqueue=[{model:cnn},{model:network}]", "hydra.sweeper.params=null",
    )  # fmt: skip
    trials = load(tmp_path).trials
    assert {t.params["model"] for t in trials[:2]} == {"cnn", "network"}
    for t in trials:
        row = by_trial[t.number]
        assert row["model"] == t.params["model"]
        if t.params["model"] == "cnn":
            assert (
                t.params["model.width"] in (16, 24, 32) and row["width"] == t.params["model.width"]
            )
        else:
            assert "model.width" not in t.params and row.get("width") is None
