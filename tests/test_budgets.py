"""Budgets: a configuration over max_params / max_flops / max_latency_ms ends before training
with row status infeasible; in a search its trial is PRUNED with its constraints set, so the
sampler learns the boundary, and the feasible trials carry theirs too."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from conftest import run_cli

from cnnsweep.results import cli as aggregate

QUIET = ["progress=false", "reports=false", "tensorboard.histograms=false",
         "tensorboard.graph=false"]  # fmt: skip


def test_over_a_budget_the_job_ends_infeasible_before_training(
    tiny_root: Path, tmp_path: Path
) -> None:
    args = [f"data_dir={tiny_root}", "model=lenet", "max_params=50000", "max_flops=1e9",
            "hydra.run.dir=job", *QUIET]  # fmt: skip
    proc = run_cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = json.loads((tmp_path / "job" / "results.json").read_text())
    assert row["status"] == "infeasible" and row["epochs_run"] == 0
    assert row["error"] == "over budget: params 431080 > max_params=50000"  # flops within
    assert row["params"] == 431080 and row["objective_value"] is None
    assert not (tmp_path / "job" / "model.pt").exists()
    assert "infeasible: over budget: params 431080 > max_params=50000" in proc.stdout
    report = aggregate.aggregate([tmp_path / "job"], tmp_path / "res", base=tmp_path)
    assert [r["status"] for r in report["runs"]] == ["infeasible"]
    assert report["runs"][0]["rank"] is None  # never ranked


def test_a_latency_budget_is_measured_before_training(tiny_root: Path, tmp_path: Path) -> None:
    args = [f"data_dir={tiny_root}", "max_latency_ms=1e-6", "hydra.run.dir=job", *QUIET]
    assert run_cli(args, tmp_path).returncode == 0
    row = json.loads((tmp_path / "job" / "results.json").read_text())
    assert row["status"] == "infeasible" and row["latency_ms"] > 1e-6
    assert row["error"].startswith("over budget: latency_ms ")


@pytest.mark.parametrize(("bad", "shown"), [("-5", "-5"), ("0", "0"), ("lots", "'lots'")])
def test_a_budget_that_is_not_a_positive_number_is_one_line(
    tiny_root: Path, tmp_path: Path, bad: str, shown: str
) -> None:
    proc = run_cli([f"data_dir={tiny_root}", f"max_flops={bad}"], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: max_flops={shown} is not allowed: max_flops must be a number > 0"
    )
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # nothing written


@pytest.mark.slow
def test_a_search_under_a_budget_prunes_the_configurations_over_it(
    tiny_root: Path, tmp_path: Path
) -> None:
    args = ["-m", "hparams_search=fashion_mnist_optuna", "hydra.sweeper.n_trials=6",
            "hydra.sweeper.n_jobs=1", "model=choice(network,lenet)",
            "max_params=50000", f"data_dir={tiny_root}", "epochs=1", *QUIET]  # fmt: skip
    proc = run_cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = optuna.load_study(
        study_name="fashion_mnist", storage=f"sqlite:///{tmp_path}/studies/fashion_mnist.db"
    )
    by_model = {"network": [], "lenet": []}
    for trial in study.trials:
        by_model[trial.params["model"]].append(trial)
        row = json.loads((Path(trial.user_attrs["job_dir"]) / "results.json").read_text())
        if trial.params["model"] == "lenet":  # 431 k parameters
            assert trial.state == optuna.trial.TrialState.PRUNED
            assert trial.constraints == {"max_params": 431080 - 50000}
            assert row["status"] == "infeasible" and row["epochs_run"] == 0
        else:  # 33 k
            assert trial.constraints == {"max_params": 32998 - 50000}
            assert row["status"] in ("completed", "pruned") and row["epochs_run"] == 1
    assert by_model["network"] and by_model["lenet"]  # both sides of the boundary were tried
