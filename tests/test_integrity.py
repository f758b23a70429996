"""Every row says exactly what it measured, a rerun leaves nothing stale, one config schema."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from cnnsweep import schema
from cnnsweep.schema import METRICS
from cnnsweep.train.job import run_job

QUIET = ["reports=false", "tensorboard.graph=false", "tensorboard.histograms=false"]


def row_of(job_dir: Path) -> dict:
    return json.loads((job_dir / "results.json").read_text())


def test_row_objective_and_weights_describe_the_kept_epoch(
    compose_cfg, tmp_path: Path, monkeypatch
) -> None:
    """A scripted run whose best epoch (2) is not the last (3)."""
    import cnnsweep.train.job as job

    script = iter([0.5, 0.9, 0.7])
    weights = {}
    real = job.evaluate_epoch

    def scripted(cfg, state, splits, recipe):
        metrics = real(cfg, state, splits, recipe) | {"val_accuracy": next(script)}
        weights[len(weights) + 1] = {k: v.clone() for k, v in state.eval_model.state_dict().items()}
        return metrics

    monkeypatch.setattr(job, "evaluate_epoch", scripted)
    value = run_job(compose_cfg(["epochs=3", *QUIET]), output_dir=tmp_path)
    row = row_of(tmp_path)
    epochs = json.loads((tmp_path / "epochs.json").read_text())
    assert value == row["val_acc"] == row["objective_value"] == 0.9
    assert (
        row["best_epoch"] == row["metrics_epoch"] == 2 and row["objective_from"] == "best epoch 2"
    )
    assert row["train_loss"] == epochs[1]["loss"] and row["val_loss"] == epochs[1]["val_loss"]
    assert row["last_val_acc"] == 0.7 and row["last_train_loss"] == epochs[2]["loss"]
    saved = torch.load(tmp_path / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(saved[k], weights[2][k].cpu()) for k in saved)
    assert not all(torch.equal(saved[k], weights[3][k].cpu()) for k in saved)

    # keep_best=false: the last epoch's, as before
    script = iter([0.5, 0.9, 0.7])
    value = run_job(compose_cfg(["epochs=3", "keep_best=false", *QUIET]), tmp_path / "last")
    row = row_of(tmp_path / "last")
    assert value == row["val_acc"] == 0.7 and row["metrics_epoch"] == 3
    assert row["objective_from"] == "last epoch 3" and row["best_epoch"] == 2


def test_a_rerun_that_diverges_leaves_nothing_of_the_earlier_attempt(
    compose_cfg, tmp_path: Path
) -> None:
    run_job(compose_cfg(["epochs=2", "tensorboard.graph=false"]), output_dir=tmp_path)
    assert (tmp_path / "model.pt").is_file() and (tmp_path / "plot.png").is_file()
    value = run_job(compose_cfg(["optimizer=sgd", "lr=1e6", "epochs=3"]), output_dir=tmp_path)
    row = row_of(tmp_path)
    assert row["status"] == "diverged" and value != value  # NaN to the sweeper
    assert row["objective_from"] == "diverged: NaN"
    for stale in ("model.pt", "plot.png", "samples.png", "confusion_matrix.png", "last.pt"):
        assert not (tmp_path / stale).exists(), stale
    epochs = json.loads((tmp_path / "epochs.json").read_text())
    assert len(epochs) == row["epochs_run"] and epochs[0]["lr"] == 1e6
    assert len(list((tmp_path / "tb").rglob("events.out.tfevents*"))) == 1


def test_moving_the_data_or_changing_the_objective_does_not_retrain(
    compose_cfg, tmp_path: Path, tiny_root: Path
) -> None:
    run_job(compose_cfg(QUIET), output_dir=tmp_path / "job")
    before = (tmp_path / "job" / "results.json").read_bytes()
    moved = shutil.copytree(tiny_root, tmp_path / "moved")
    cfg = compose_cfg([f"data_dir={moved}", "objective=val_loss", "threads=1", *QUIET])
    value = run_job(cfg, output_dir=tmp_path / "job")
    assert (tmp_path / "job" / "results.json").read_bytes() == before  # skipped
    assert value == json.loads(before)["val_loss"]  # the new objective, from the stored row
    run_job(compose_cfg(["label_smoothing=0.1", *QUIET]), output_dir=tmp_path / "job")
    assert row_of(tmp_path / "job")["label_smoothing"] == 0.1  # what is learned: trained again


def test_one_definition_serves_resume_run_names_and_seed_groups(compose_cfg) -> None:
    a = schema.learning_config(compose_cfg(["data_dir=/a", "objective=val_loss"]))
    b = schema.learning_config(compose_cfg(["data_dir=/b", "device=cpu", "reports=false"]))
    assert a == b and "objective" not in a and "root" not in a["data"]
    assert schema.config_id(a | {"seed": 1}) == schema.config_id(b | {"seed": 2})
    assert schema.config_id(a) != schema.config_id(a | {"lr": 0.5})
    overrides = ["lr=0.01", "data_dir=/x", "device=cpu", "++optuna.trial=3", "batch_size=100",
                 "tensorboard.graph=false", "model=cnn"]  # fmt: skip
    name = schema.run_name(overrides)
    assert name == "batch_size=100,lr=0.01,model=cnn"
    assert schema.run_name(["threads=1", "objective=val_loss"]) == "default"


def test_hparams_columns_are_the_same_in_a_run_that_diverged(compose_cfg, tmp_path: Path) -> None:
    run_job(compose_cfg(["optimizer=sgd", "lr=1e6", "epochs=2", *QUIET]), output_dir=tmp_path)
    (run,) = (tmp_path / "tb").iterdir()
    acc = EventAccumulator(str(run))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")["_hparams_/experiment"]
    experiment = HParamsPluginData.FromString(content).experiment
    declared = {m.name.tag for m in experiment.metric_infos}
    assert declared == {f"hparam/{m}" for m in METRICS}


def test_atomic_files_get_the_permissions_of_a_normal_write(compose_cfg, tmp_path: Path) -> None:
    import os

    old = os.umask(0o022)
    try:
        run_job(compose_cfg(["epochs=1", "tensorboard.graph=false"]), output_dir=tmp_path)
    finally:
        os.umask(old)
    for name in ("results.json", "results.csv", "epochs.json", "model.pt", "plot.png",
                 "classification_report.json"):  # fmt: skip
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name


@pytest.mark.parametrize("missing", ["data.train_csv", "data.test_csv"])
def test_a_missing_csv_path_is_a_one_line_error(tmp_path: Path, missing: str) -> None:
    from conftest import run_cli

    given = [k for k in ("data.train_csv", "data.test_csv") if k != missing]
    res = run_cli(["data=csv", *(f"{k}=x.csv" for k in given), "hydra.run.dir=run"], tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {missing} not set") and f"{missing}=<" in last
    assert "python train.py data=csv" in last
    assert not (tmp_path / "run" / "results.json").exists()
