"""Several objectives: objective=[val_acc,flops] with one direction each; the job returns
both, the study has two directions and its report draws the Pareto front; bad lists are one
line and exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from conftest import refused_line, run_cli

from cnnsweep.results import cli as aggregate
from cnnsweep.sweep.optuna_sweeper import direction_error

QUIET = ["progress=false", "reports=false", "tensorboard.histograms=false",
         "tensorboard.graph=false"]  # fmt: skip


def test_one_direction_each_and_the_right_way() -> None:
    assert direction_error(["val_acc", "flops"], ["maximize", "minimize"]) is None
    assert direction_error(["val_acc", "flops"], "maximize") == (
        "objective=[val_acc,flops] has 2 objective(s) but hydra.sweeper.direction=[maximize] "
        "has 1: give one each, e.g. hydra.sweeper.direction=[maximize,minimize]"
    )
    assert direction_error(["val_acc", "latency_ms"], ["maximize", "maximize"]) == (
        "objective=[val_acc,latency_ms]: latency_ms is a cost (lower is better) but "
        "hydra.sweeper.direction=[maximize,maximize]: pass "
        "hydra.sweeper.direction=[maximize,minimize]"
    )
    assert direction_error("val_loss", "maximize") == (  # one objective: as before
        "objective=val_loss is a loss (lower is better) but hydra.sweeper.direction=maximize: "
        "pass hydra.sweeper.direction=minimize"
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["objective=[val_acc,speed]"],
         "error: objective=[val_acc,speed] is not allowed: 'speed' is unknown; after the first, "
         "use metrics"),
        (["objective=[flops,val_acc]"],
         "error: objective=[flops,val_acc] is not allowed: its first name must be one of ["),
        (["objective=[val_acc,val_acc]"],
         "error: objective=[val_acc,val_acc] is not allowed: a name is repeated"),
    ],
)  # fmt: skip
def test_a_bad_objective_list_is_one_line(
    tiny_root: Path, tmp_path: Path, overrides: list[str], message: str
) -> None:
    assert refused_line([f"data_dir={tiny_root}", *overrides], tmp_path).startswith(message)


def test_a_direction_list_of_the_wrong_length_is_one_line(tiny_root: Path, tmp_path: Path) -> None:
    args = ["-m", "hydra/sweeper=optuna", "objective=[val_acc,flops]", f"data_dir={tiny_root}",
            "hydra.sweeper.direction=[maximize]"]  # fmt: skip
    proc = run_cli(args, tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: objective=[val_acc,flops] has 2 objective(s) but hydra.sweeper.direction="
        "[maximize] has 1: give one each, e.g. hydra.sweeper.direction=[maximize,minimize]"
    )
    assert not (tmp_path / "studies").exists() and not (tmp_path / "multirun").exists()


@pytest.mark.slow
def test_the_pareto_preset_returns_both_values_and_reports_the_front(
    tiny_root: Path, tmp_path: Path
) -> None:
    args = ["-m", "hparams_search=fashion_mnist_pareto", "hydra.sweeper.n_trials=4",
            f"data_dir={tiny_root}", "epochs=1", *QUIET]  # fmt: skip
    proc = run_cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = optuna.load_study(
        study_name="fashion_mnist_pareto",
        storage=f"sqlite:///{tmp_path}/studies/fashion_mnist_pareto.db",
    )
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert study.metric_names == ["val_acc", "flops"]
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 4
    for trial in done:
        row = json.loads((Path(trial.user_attrs["job_dir"]) / "results.json").read_text())
        assert trial.values == [row["val_acc"], row["flops"]]
        assert row["objective"] == "val_acc" and not trial.intermediate_values  # no reports
    report = aggregate.aggregate([tmp_path / "multirun"], tmp_path / "res", base=tmp_path)
    front = tmp_path / "res" / "fashion_mnist_pareto" / "pareto_front.png"
    assert front.read_bytes()[:4] == b"\x89PNG"
    summary = (tmp_path / "res" / "summary.md").read_text()
    assert f"{len(study.best_trials)} on the Pareto front" in summary
    assert sum(bool(r["pareto"]) for r in report["runs"]) >= 1


def test_cheaper_median_stops_a_trial_below_its_cheaper_peers() -> None:
    from cnnsweep.sweep.pruners import EPOCH_VALUES, TRIAL_COSTS, CheaperMedianPruner

    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_metric_names(["val_acc", "flops"])
    for acc3, flops in ((0.80, 100), (0.84, 200), (0.95, 900)):  # completed peers
        trial = study.ask()
        trial.set_user_attr(EPOCH_VALUES, {"1": acc3 - 0.1, "3": acc3})
        study.tell(trial, [acc3 + 0.02, flops])
    pruner = CheaperMedianPruner(n_warmup_steps=2, n_min_trials=2, quantile=0.5)

    def judged(acc: float, flops: float, epoch: str = "3") -> bool:
        trial = study.ask()
        trial.set_user_attr(EPOCH_VALUES, {epoch: acc})
        trial.set_user_attr(TRIAL_COSTS, {"flops": flops, "params": 1})
        frozen = study._storage.get_trial(trial._trial_id)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)  # out of the peers' way
        return pruner.prune(study, frozen)

    assert judged(0.81, 250)  # peers costing no more: 0.80 and 0.84, median 0.82
    assert not judged(0.83, 250)
    assert not judged(0.50, 150)  # one peer that cheap: too few to judge
    assert not judged(0.50, 250, epoch="2")  # warm-up
    assert not judged(0.88, 1000)  # all three cost no more: median 0.84, and 0.88 is above
    assert judged(0.83, 1000)
    pruner = CheaperMedianPruner()  # the default: worse than every cheaper trial
    assert not judged(0.81, 250) and judged(0.79, 250)
