"""The training job end to end on tiny data: files written, numbers in range, bad input refused."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import run_cli
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from cnnsweep.train.job import ConfigError, run_job, validate

HPARAMS = ["lr", "batch_size", "shuffle", "epochs", "seed", "model", "data", "optimizer"]


def test_job_writes_results_row(tiny_job: Path) -> None:
    row = json.loads((tiny_job / "results.json").read_text())
    assert row["status"] == "completed" and row["error"] is None
    assert {k: row[k] for k in HPARAMS} == {
        "lr": 0.001, "batch_size": 50, "shuffle": True, "epochs": 2, "seed": 42,
        "model": "network", "data": "fashion_mnist", "optimizer": "adam",
    }  # fmt: skip
    for split in ("train", "val", "test"):
        assert 0 <= row[f"{split}_acc"] <= 1 and row[f"{split}_loss"] > 0
    assert row["best_val_acc"] >= row["val_acc"] and row["best_epoch"] in (1, 2)
    assert row["epochs_run"] == 2 and 0 < row["epoch_duration"] < row["run_duration"]
    assert row["versions"]["torch"] == metadata.version("torch")
    assert row["config"]["model"]["name"] == "network"
    csv = pd.read_csv(tiny_job / "results.csv")
    assert len(csv) == 1 and csv.loc[0, "status"] == "completed"
    assert csv.loc[0, "test_acc"] == pytest.approx(row["test_acc"])


def test_job_writes_epoch_rows_in_the_seed_layout(tiny_job: Path) -> None:
    rows = pd.read_csv(tiny_job / "epochs.csv")
    seed_cols = ["run", "epoch", "loss", "accuracy", "epoch duration", "run duration"]
    assert list(rows.columns[:6]) == seed_cols
    assert {"lr", "batch_size", "shuffle", "val_loss", "val_accuracy"} <= set(rows.columns)
    assert rows["epoch"].tolist() == [1, 2]
    assert rows["run duration"].is_monotonic_increasing
    assert json.loads((tiny_job / "epochs.json").read_text())[1]["epoch"] == 2


def test_checkpoint_rebuilds_the_model(tiny_job: Path) -> None:
    ckpt = torch.load(tiny_job / "model.pt", weights_only=True)
    assert ckpt["model"] == {
        "name": "network",
        "in_channels": 1,
        "num_classes": 10,
        "image_size": 28,
    }
    assert ckpt["data"]["class_names"][0] == "T-shirt/top"
    assert "features.0.weight" in ckpt["state_dict"]


def test_tensorboard_events_hold_everything(tiny_job: Path) -> None:
    runs = list((tiny_job / "tb").iterdir())
    assert [r.name for r in runs] == ["default"]  # no extra sub-run for the hparams
    acc = EventAccumulator(str(runs[0]), size_guidance={"scalars": 0, "histograms": 0, "images": 0})
    acc.Reload()
    tags = acc.Tags()
    for tag in ("Loss/train", "Accuracy/train", "Loss/val", "Accuracy/val"):
        assert [e.step for e in acc.Scalars(tag)] == [1, 2]
    assert acc.Scalars("Accuracy/test")[0].value == pytest.approx(
        json.loads((tiny_job / "results.json").read_text())["test_acc"], abs=1e-6
    )
    assert {"features.0.weight", "features.0.weight.grad"} <= set(tags["histograms"])
    assert [e.step for e in acc.Histograms("features.0.weight")] == [1, 2]
    assert "images" in tags["images"] and "reports/plot" in tags["images"]
    assert tags["graph"] is True
    content = acc.PluginTagToContent("hparams")
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(content)
    start = HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["lr"].number_value == 0.001
    assert start.hparams["model"].string_value == "network"
    assert "hparam/test_acc" in tags["scalars"]


def test_same_seed_same_metrics(compose_cfg, tmp_path: Path) -> None:
    # threads pinned: threads=auto counts the jobs running on the host (another test's, too),
    # and another thread count sums floats in another order
    cfg = compose_cfg(["reports=false", "tensorboard.graph=false", "threads=2"])
    first = run_job(cfg, output_dir=tmp_path / "a")
    second = run_job(cfg, output_dir=tmp_path / "b")
    a = json.loads((tmp_path / "a/results.json").read_text())
    b = json.loads((tmp_path / "b/results.json").read_text())
    assert first == second
    assert [a[k] for k in ("train_loss", "val_loss", "test_loss")] == [
        b[k] for k in ("train_loss", "val_loss", "test_loss")
    ]


def test_shuffle_false_trains_differently_but_reproducibly(compose_cfg, tmp_path: Path) -> None:
    cfg = compose_cfg(["reports=false", "shuffle=false", "tensorboard.graph=false"])
    assert run_job(cfg, output_dir=tmp_path / "a") == run_job(cfg, output_dir=tmp_path / "b")
    row = json.loads((tmp_path / "a/results.json").read_text())
    assert row["shuffle"] is False and row["status"] == "completed"


def test_diverged_job_says_so(compose_cfg, tmp_path: Path) -> None:
    cfg = compose_cfg(["optimizer=sgd", "lr=1e6", "epochs=3"])
    value = run_job(cfg, output_dir=tmp_path)
    row = json.loads((tmp_path / "results.json").read_text())
    assert row["status"] == "diverged" and "nan" in row["error"]
    assert row["epochs_run"] < 3 and row["train_loss"] is None and value != value  # NaN returned
    assert not (tmp_path / "model.pt").exists()


def test_objective_is_configurable(compose_cfg, tmp_path: Path) -> None:
    value = run_job(compose_cfg(["objective=test_acc", "reports=false"]), output_dir=tmp_path)
    assert value == json.loads((tmp_path / "results.json").read_text())["test_acc"]


@pytest.mark.parametrize(
    "override,message",
    [
        ("lr=-0.1", "lr=-0.1 is not allowed: lr must be a number > 0"),
        ("lr=0", "lr=0 is not allowed"),
        ("batch_size=0", "batch_size=0 is not allowed: batch_size must be an integer > 0"),
        ("batch_size=1.5", "batch_size=1.5 is not allowed"),
        ("epochs=-2", "epochs=-2 is not allowed: epochs must be an integer > 0"),
        ("data.val_fraction=1.0", "data.val_fraction=1.0 is not allowed: it must be in [0, 1)"),
        ("data.val_fraction=-0.1", "data.val_fraction=-0.1 is not allowed"),
        ("device=tpu", "device='tpu' is not allowed: use auto, cpu, cuda, cuda:N or mps"),
        ("threads=0", "threads=0 is not allowed: use auto or an integer > 0"),
        ("reuse_memory=maybe", "reuse_memory='maybe' is not allowed: use true or false"),
        ("objective=f1", "objective='f1' is not allowed"),
    ],
)
def test_bad_knobs_are_refused_by_name(compose_cfg, override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate(compose_cfg([override]))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bad_knob_on_the_command_line_is_one_line_and_writes_nothing(
    tmp_path: Path, tiny_root: Path
) -> None:
    res = run_cli([f"data_dir={tiny_root}", "lr=-1", "hydra.run.dir=run"], cwd=tmp_path)
    assert res.returncode == 2
    assert (
        res.stderr.strip().splitlines()[-1]
        == "error: lr=-1 is not allowed: lr must be a number > 0"
    )
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "run/results.json").exists()


def test_csv_with_wrong_columns_fails_before_training(tmp_path: Path, tiny_root: Path) -> None:
    from conftest import write_csv_dataset

    write_csv_dataset(tmp_path / "train.csv", n=10, columns=100)
    write_csv_dataset(tmp_path / "test.csv", n=10)
    res = run_cli(
        ["data=csv", "data.train_csv=train.csv", "data.test_csv=test.csv", "hydra.run.dir=run"],
        cwd=tmp_path,
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "train.csv has 100 columns; expected 785" in res.stderr
    # refused before the job folder is touched, like a bad knob: no row, nothing else written
    assert not (tmp_path / "run/results.json").exists()
    assert not (tmp_path / "run/epochs.json").exists()


@pytest.mark.slow
def test_real_fashion_mnist_smoke(tmp_path: Path) -> None:
    """A few hundred steps on the real data through the command line."""
    data_dir = Path("data").resolve()
    if (
        not Path("/usr/share/datasets/fashion-mnist").is_dir()
        and not (data_dir / "FashionMNIST").is_dir()
    ):
        pytest.skip("Fashion-MNIST not installed (apt-get install -y dataset-fashion-mnist)")
    res = run_cli(
        [
            f"data_dir={data_dir}",
            "epochs=1",
            "batch_size=200",
            "hydra.run.dir=run",
            "progress=false",
        ],
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    row = json.loads((tmp_path / "run/results.json").read_text())
    assert row["status"] == "completed"
    assert row["val_acc"] > 0.75 and row["test_acc"] > 0.75  # 270 steps of Adam reach ~0.8
    assert (tmp_path / "run/model.pt").exists() and (tmp_path / "run/plot.png").exists()
