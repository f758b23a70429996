"""k-fold cross-validation: ``data.folds=K data.fold=i`` validates on fold i, the aggregate
groups the folds of a configuration like seeds, and ``data.fold=all`` is one job (or one Optuna
trial) that trains every fold and returns their mean."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import optuna
import pytest
import torch
from conftest import refused_line, run_cli

from cnnsweep.data.load import load_data
from cnnsweep.data.splits import fold_split
from cnnsweep.results import cli as aggregate

QUIET = ["progress=false", "reports=false", "tensorboard.histograms=false",
         "tensorboard.graph=false"]  # fmt: skip


def test_folds_are_stratified_disjoint_and_cover_every_image_once() -> None:
    labels = torch.arange(10).repeat_interleave(31)  # 31 images of each of 10 classes
    vals = [fold_split(labels, 3, i, seed=0) for i in range(3)]
    for train, val in vals:
        assert set(train.tolist()).isdisjoint(val.tolist())
        assert len(train) + len(val) == len(labels)
        counts = torch.bincount(labels[val], minlength=10)
        assert counts.min() >= 10 and counts.max() <= 11  # every class cut in near-equal thirds
    covered = sorted(i for _, val in vals for i in val.tolist())
    assert covered == list(range(len(labels)))
    assert fold_split(labels, 3, 1, seed=0)[1].tolist() == vals[1][1].tolist()  # fixed by seed
    assert fold_split(labels, 3, 1, seed=1)[1].tolist() != vals[1][1].tolist()


def test_a_fold_validates_on_its_part_of_the_training_split_and_never_on_test(
    compose_cfg,
) -> None:
    cfg = compose_cfg(["data.folds=3", "data.fold=2"])
    data = load_data(cfg.data, cfg.seed)
    plain = compose_cfg([])
    whole = load_data(plain.data, plain.seed)
    assert len(data.train) + len(data.val) == len(whole.train) + len(whole.val)  # 300 images
    assert len(data.val) == 100  # a third, not val_fraction's tenth
    assert torch.equal(data.test.images, whole.test.images)
    again = load_data(compose_cfg(["data.folds=3", "data.fold=2", "seed=7"]).data, 7)
    assert torch.equal(again.val.labels, data.val.labels)  # the seed trains; split_seed splits


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.folds=1", "data.fold=0"],
         "data.folds=1 is not allowed: use an integer >= 2, or null"),
        (["data.folds=3", "data.fold=3"],
         "data.fold=3 is not allowed with data.folds=3: use 0..2 (that fold validates) or all "
         "(every fold in turn, their mean returned)"),
        (["data.folds=3"], "data.fold=None is not allowed with data.folds=3: use 0..2"),
        (["data.fold=1"], "data.fold=1 needs data.folds=K (K >= 2 folds to hold out)"),
    ],
)  # fmt: skip
def test_bad_folds_are_one_line_and_exit_2(
    tiny_root: Path, tmp_path: Path, overrides: list[str], message: str
) -> None:
    line = refused_line([f"data_dir={tiny_root}", *overrides], tmp_path)
    assert line.startswith(f"error: {message}")


@pytest.mark.slow
def test_a_grid_over_folds_is_grouped_like_seeds(tiny_root: Path, tmp_path: Path) -> None:
    args = ["-m", f"data_dir={tiny_root}", "epochs=1", "batch_size=50", "data.folds=3",
            "data.fold=0,1,2", "hydra.sweep.dir=cv", *QUIET]  # fmt: skip
    proc = run_cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = aggregate.aggregate([tmp_path / "cv"], tmp_path / "res", base=tmp_path)
    runs = report["runs"]
    assert sorted(r["fold"] for r in runs) == [0, 1, 2] and {r["folds"] for r in runs} == {3}
    assert len({r["config_id"] for r in runs}) == 1  # one configuration, three repeats
    summary = (tmp_path / "res" / "summary.md").read_text()
    assert "folds of a k-fold cross-validation (`fold`) count as seeds" in summary
    mean = statistics.fmean(r["val_acc"] for r in runs)
    assert f"{mean:.4f} ±" in summary  # the mean over the folds, with its spread


@pytest.mark.slow
def test_fold_all_trains_every_fold_and_returns_their_mean(tiny_root: Path, tmp_path: Path) -> None:
    args = [f"data_dir={tiny_root}", "epochs=1", "batch_size=50", "data.folds=3",
            "data.fold=all", "hydra.run.dir=cv", *QUIET]  # fmt: skip
    proc = run_cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    cv = json.loads((tmp_path / "cv" / "cross_validation.json").read_text())
    rows = [json.loads((tmp_path / "cv" / f"fold_{i}" / "results.json").read_text())
            for i in range(3)]  # fmt: skip
    assert [r["fold"] for r in rows] == [0, 1, 2] and all(r["status"] == "completed" for r in rows)
    assert cv["status"] == "completed" and cv["values"] == [r["val_acc"] for r in rows]
    assert cv["mean"] == pytest.approx(statistics.fmean(cv["values"]))
    assert f"cross-validated val_acc {cv['mean']:.4f}" in proc.stdout
    report = aggregate.aggregate([tmp_path / "cv"], tmp_path / "res", base=tmp_path)
    assert sorted(r["fold"] for r in report["runs"]) == [0, 1, 2]  # the folds, not the parent
    assert all(r["status"] == "completed" for r in report["runs"])

    again = run_cli(args, tmp_path)  # the same command: every fold is found completed
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("already completed") == 3
    assert json.loads((tmp_path / "cv" / "cross_validation.json").read_text()) == cv


@pytest.mark.slow
def test_an_optuna_trial_of_fold_all_is_the_cross_validated_score(
    tiny_root: Path, tmp_path: Path
) -> None:
    args = ["-m", "hparams_search=fashion_mnist_optuna", "hydra.sweeper.n_trials=2",
            "hydra.sweeper.n_jobs=1", f"data_dir={tiny_root}", "epochs=1", "data.folds=2",
            "data.fold=all", *QUIET]  # fmt: skip
    proc = run_cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = optuna.load_study(
        study_name="fashion_mnist", storage=f"sqlite:///{tmp_path}/studies/fashion_mnist.db"
    )
    assert len(study.trials) == 2
    for trial in study.trials:
        job = Path(trial.user_attrs["job_dir"])
        cv = json.loads((job / "cross_validation.json").read_text())
        if trial.state == optuna.trial.TrialState.COMPLETE:
            assert trial.value == pytest.approx(cv["mean"]) and len(cv["values"]) == 2
        assert trial.intermediate_values[1] == pytest.approx(cv["values"][0])  # after fold 0
