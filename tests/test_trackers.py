"""MLflow and W&B beside TensorBoard (``logger=[...]``): what each run holds, read back as a
user would; a killed job continues its MLflow run; the UI shows the runs; bad setups refused."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, chromium_page, free_port, get_json, refused_line, run_cli
from test_resume import small_root, start, stop_after  # noqa: F401 (small_root: a fixture)

from cnnsweep.results import load_mlflow_runs, load_runs
from cnnsweep.tracking.wandb_run import wandb_mode
from cnnsweep.train.job import run_job

mlflow = pytest.importorskip("mlflow")
QUIET = ["progress=false", "tensorboard.graph=false", "tensorboard.histograms=false"]


def wandb_records(run_dir: Path) -> list:
    """The records of an offline W&B run (its ``run-*.wandb`` file: LevelDB's log format, 32 KiB
    blocks of checksummed chunks, after a 7-byte W&B header); a truncated tail is left out."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = next(run_dir.glob("run-*.wandb")).read_bytes()
    pos, chunk, records = 7, b"", []
    while pos + 7 <= len(data):
        room = 32768 - pos % 32768
        if room < 7:  # a block's tail too short for a header is padding
            pos += room
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0 or pos + 7 + length > len(data):
            break
        chunk += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or a record's last chunk
            record = pb.Record()
            record.ParseFromString(chunk)
            records.append(record)
            chunk = b""
    return records


def wandb_run(run_dir: Path) -> dict:
    """An offline W&B run's name, history (``_step`` -> values) and exit code."""
    out = {"name": None, "history": {}, "exit_code": None}
    for record in wandb_records(run_dir):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["name"] = record.run.display_name
        elif kind == "history":
            items = record.history.item
            values = {i.key or ".".join(i.nested_key): json.loads(i.value_json) for i in items}
            out["history"][values["_step"]] = values
        elif kind == "exit":
            out["exit_code"] = record.exit.exit_code
    return out


@pytest.fixture(scope="module")
def tracked_grid(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-job grid with every tracker, run as a user would, from its own folder."""
    cwd = tmp_path_factory.mktemp("tracked")
    args = ["-m", "lr=0.01,0.001", "logger=[tensorboard,mlflow,wandb]", f"data_dir={tiny_root}",
            "epochs=2", "batch_size=50", "hydra.sweep.dir=grid", *QUIET]  # fmt: skip
    proc = run_cli(args, cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cwd


def test_a_grid_logs_every_job_to_mlflow_and_wandb_beside_tensorboard(
    tracked_grid: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tracked_grid}/mlflow.db")
    runs = mlflow.search_runs(experiment_names=["grid"])  # the experiment: the sweep folder
    assert sorted(runs["params.lr"]) == ["0.001", "0.01"] and len(runs) == 2
    client = mlflow.tracking.MlflowClient()
    wandb_runs = [wandb_run(d) for d in (tracked_grid / "wandb").glob("offline-run-*")]
    assert len(wandb_runs) == 2
    for _, run in runs.iterrows():
        job = Path(run["tags.job_dir"])
        row = json.loads((job / "results.json").read_text())
        epochs = json.loads((job / "epochs.json").read_text())
        assert run["status"] == "FINISHED" and run["tags.status"] == "completed"
        assert run["params.batch_size"] == "50" and run["params.model"] == "network"
        assert f"lr={row['lr']}" in run["tags.overrides"] and len(run["tags.config_id"]) == 8
        assert run["tags.version.torch"] == row["versions"]["torch"]
        for metric, column in (("val_acc", "val_accuracy"), ("train_loss", "loss")):
            history = client.get_metric_history(run["run_id"], metric)
            assert [p.step for p in history] == [1, 2]  # the epoch is the step, each once
            assert [p.value for p in history] == pytest.approx([e[column] for e in epochs])
        assert run["metrics.test_acc"] == pytest.approx(row["test_acc"])
        files = {a.path for a in client.list_artifacts(run["run_id"])}
        assert {"model.pt", "plot.png", "results.json", "confusion_matrix.png"} <= files
        assert list((job / "tb").rglob("events.out.tfevents.*"))  # TensorBoard as before
        (same,) = [w for w in wandb_runs if w["name"] == row["run_name"]]
        assert sorted(same["history"]) == [1, 2] and same["exit_code"] == 0
        val = [same["history"][e]["val_acc"] for e in (1, 2)]
        assert val == pytest.approx([e["val_accuracy"] for e in epochs])


def test_the_mlflow_experiment_reads_back_as_load_runs_frame(tracked_grid: Path) -> None:
    uri = f"sqlite:///{tracked_grid}/mlflow.db"
    from_mlflow = load_mlflow_runs("grid", uri, base=tracked_grid)
    pd.testing.assert_frame_equal(from_mlflow, load_runs(tracked_grid / "grid", base=tracked_grid))
    with pytest.raises(ValueError, match="no MLflow experiment 'nope'"):
        load_mlflow_runs("nope", uri)


@pytest.mark.slow
def test_the_mlflow_ui_serves_the_runs(tracked_grid: Path, tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        ["make", "-C", str(REPO), "mlflow", f"MLFLOW_URI=sqlite:///{tracked_grid}/mlflow.db",
         f"MLFLOW_PORT={port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                found = get_json(
                    f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=grid"
                )
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "no MLflow UI"
                time.sleep(0.5)
        experiment = found["experiment"]["experiment_id"]
        dom = chromium_page(
            f"{base}/#/experiments/{experiment}/runs", tmp_path / "c", tmp_path / "ui.png"
        )
        assert "lr=0.01" in dom and "lr=0.001" in dom  # the runs' names in the table
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@pytest.mark.slow
def test_a_killed_job_continues_its_mlflow_run(small_root: Path, tmp_path: Path) -> None:  # noqa: F811
    args = [f"data_dir={small_root}", "epochs=4", "batch_size=50", "logger=[mlflow,wandb]",
            "hydra.run.dir=killed", *QUIET, "reports=false"]  # fmt: skip
    stop_after(start(args, tmp_path), tmp_path / "killed", 2, signal.SIGKILL)
    proc = start(args, tmp_path)
    assert proc.wait(timeout=300) == 0, proc.stdout.read()
    row = json.loads((tmp_path / "killed/results.json").read_text())
    resumed = row["resumed_from_epoch"]
    assert row["status"] == "completed" and 1 <= resumed < 4
    client = mlflow.tracking.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (run,) = client.search_runs(["0"])  # one run: the same one continued (Default: one job)
    assert run.info.status == "FINISHED" and run.data.tags["resumed_from_epoch"] == str(resumed)
    steps = [p.step for p in client.get_metric_history(run.info.run_id, "train_loss")]
    assert steps == [1, 2, 3, 4]  # every epoch once: none lost, none logged twice
    runs = sorted((wandb_run(d) for d in (tmp_path / "wandb").glob("offline-run-*")),
                  key=lambda r: len(r["name"] or ""))  # fmt: skip
    assert len(runs) == 2  # offline W&B cannot continue a run: a second one, named so
    assert runs[1]["name"] == f"{row['run_name']} (continued from epoch {resumed})"
    assert sorted(runs[1]["history"]) == list(range(resumed + 1, 5))
    assert set(runs[0]["history"]) <= set(range(1, resumed + 1))


def test_a_diverged_job_ends_its_mlflow_run_as_failed(
    compose_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # MLflow keeps artifacts in ./mlruns
    uri = f"sqlite:///{tmp_path}/m.db"
    mlflow_knobs = [f"logger.mlflow.tracking_uri={uri}", "logger.mlflow.experiment=bad"]
    cfg = compose_cfg(["optimizer=sgd", "lr=1e6", "epochs=3", "logger=[mlflow]", *mlflow_knobs])
    run_job(cfg, output_dir=tmp_path / "job")
    client = mlflow.tracking.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("bad").experiment_id])
    assert run.info.status == "FAILED" and run.data.tags["status"] == "diverged"
    assert "nan" in run.data.tags["error"]
    assert not (tmp_path / "job" / "tb").exists()  # logger=[mlflow]: no TensorBoard events


def test_a_missing_tracker_package_is_one_line_before_training(tmp_path: Path) -> None:
    shim = tmp_path / "shim" / "wandb"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('No module named wandb')\n")
    cwd = tmp_path / "run"
    cwd.mkdir()
    line = refused_line(["logger=[tensorboard,wandb]"], cwd, env={"PYTHONPATH": str(shim.parent)})
    assert line == (
        "error: logger=wandb needs the wandb package: pip install -e '.[wandb]' "
        "(make setup installs it)"
    )


def test_a_tracking_uri_with_a_password_is_refused_without_showing_it(tmp_path: Path) -> None:
    uri = "postgresql://me:s3cret@127.0.0.1/runs"
    line = refused_line(["logger=[mlflow]", f"logger.mlflow.tracking_uri={uri}"], tmp_path)
    assert "carries a password" in line and "s3cret" not in line and "me:***@" in line


def test_wandb_is_offline_unless_the_user_is_logged_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert wandb_mode(None) == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_mode(None) == "online" and wandb_mode("disabled") == "disabled"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_mode(None) == "offline"
