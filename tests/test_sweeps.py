"""Hydra multiruns through `python train.py -m ...` on tiny data, and their aggregation."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CONF, REPO, run_cli
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from cnnsweep.results import cli as aggregate
from cnnsweep.train.job import run_job
from cnnsweep.train.runtime import cpu_count

# one job takes about a second: tiny data, one epoch, no per-job pictures
SWEEP_FAST = ["epochs=1", "batch_size=50", "progress=false", "reports=false"]


def sweep(tmp_path: Path, tiny_root: Path, name: str, *args: str) -> tuple[Path, str]:
    """Run `train.py -m` into tmp_path/name; returns the sweep dir and the output."""
    sweep_dir = tmp_path / name
    argv = ["-m", f"data_dir={tiny_root}", f"hydra.sweep.dir={sweep_dir}", *SWEEP_FAST, *args]
    proc = run_cli(argv, cwd=tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    return sweep_dir, output


def results(job_dir: Path) -> dict:
    return json.loads((job_dir / "results.json").read_text())


def aggregate_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cnnsweep.aggregate", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


@pytest.mark.slow
def test_grid_multirun_then_aggregate_row_by_row(tmp_path: Path, tiny_root: Path) -> None:
    sweep_dir, _ = sweep(tmp_path, tiny_root, "grid", "lr=0.01,0.001", "shuffle=true,false")

    jobs = sorted(p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1", "2", "3"]
    assert (sweep_dir / "multirun.yaml").is_file()
    grid = set()
    for job in jobs:
        row = results(job)
        assert row["status"] == "completed", row["error"]
        assert row["sweep_dir"] == str(sweep_dir.resolve())
        grid.add((row["lr"], row["shuffle"]))
        # one TensorBoard run per job, named after the swept hyperparameters
        (run_dir,) = (job / "tb").iterdir()
        assert f"lr={row['lr']}" in run_dir.name and f"shuffle={row['shuffle']}" in run_dir.name
        assert any(f.name.startswith("events.out.tfevents") for f in run_dir.iterdir())
    assert grid == {(0.01, True), (0.01, False), (0.001, True), (0.001, False)}
    # `tensorboard --logdir <sweep>`: 4 runs, each with its HParams entry
    from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer

    tb = EventMultiplexer()
    tb.AddRunsFromDirectory(str(sweep_dir))
    tb.Reload()
    hparams = tb.PluginRunToTagToContent("hparams")
    assert len(tb.Runs()) == 4 and len(hparams) == 4
    assert all("_hparams_/session_start_info" in tags for tags in hparams.values())

    proc = aggregate_cli(["grid", "--out", "res"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "res/runs.csv" in proc.stdout and "top 4 by val_acc" in proc.stdout
    out = tmp_path / "res"
    runs = json.loads((out / "runs.json").read_text())
    assert len(runs) == 4
    assert [r["rank"] for r in runs] == [1, 2, 3, 4]
    scores = [r["val_acc"] for r in runs]
    assert scores == sorted(scores, reverse=True)
    for r in runs:  # each leaderboard row is the job's own row
        own = results(tmp_path / r["job_dir"])
        assert r["sweep"] == "grid" and r["job_dir"] == f"grid/{own['job_num']}"
        assert r["job"] == own["job_num"] and r["status"] == "completed"
        for key in (
            "lr",
            "batch_size",
            "shuffle",
            "epochs",
            "seed",
            "model",
            "optimizer",
            "train_loss",
            "val_acc",
            "val_loss",
            "test_acc",
            "best_val_acc",
            "threads",
        ):
            assert r[key] == own[key], key
        assert r["score"] == own["val_acc"] and 0 <= r["test_acc"] <= 1

    epochs = json.loads((out / "epochs.json").read_text())
    assert len(epochs) == 4  # one epoch per job
    seed_layout = ["run", "epoch", "loss", "accuracy", "epoch duration", "run duration"]
    assert list(epochs[0])[:6] == seed_layout
    assert {"val_loss", "val_accuracy", "sweep"} <= set(epochs[0])
    assert sorted(e["run"] for e in epochs) == [0, 1, 2, 3]
    header = (out / "epochs.csv").read_text().splitlines()[0]
    assert header.startswith("run,epoch,loss,accuracy,epoch duration,run duration,lr")
    assert len((out / "runs.csv").read_text().splitlines()) == 5

    summary = (out / "summary.md").read_text()
    table = [line for line in summary.splitlines() if line.startswith("| ") and "rank" not in line]
    assert len(table) == 4 and table[0].startswith("| 1 |")
    for png in ("val_acc.png", "test_acc.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # running it twice gives the same files
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert aggregate_cli(["grid", "--out", "res"], cwd=tmp_path).returncode == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.slow
def test_group_sweep_over_models_and_optimizers(tmp_path: Path, tiny_root: Path) -> None:
    sweep_dir, _ = sweep(
        tmp_path,
        tiny_root,
        "groups",
        "model=network,bn_cnn,lenet",
        "optimizer=adam,sgd",
        "tensorboard.graph=false",
    )
    report = aggregate.aggregate([sweep_dir], tmp_path / "res", base=tmp_path)
    runs = report["runs"]
    assert {(r["model"], r["optimizer"]) for r in runs} == {
        (m, o) for m in ("network", "bn_cnn", "lenet") for o in ("adam", "sgd")
    }
    assert all(r["status"] == "completed" and r["rank"] for r in runs)
    assert len({r["config_id"] for r in runs}) == 6


@pytest.mark.slow
def test_failed_diverged_and_half_written_jobs_are_listed_not_ranked(
    tmp_path: Path, tiny_root: Path
) -> None:
    # job 0 learns, job 1 diverges (huge SGD step), job 2 is refused (lr must be > 0)
    sweep_dir, output = sweep(tmp_path, tiny_root, "bad", "optimizer=sgd", "lr=0.01,1e6,-1")
    assert results(sweep_dir / "0")["status"] == "completed"
    diverged = results(sweep_dir / "1")
    assert diverged["status"] == "diverged" and "nan" in diverged["error"]
    refused = results(sweep_dir / "2")  # refused before training, but its row says why
    assert refused["status"] == "failed" and "lr=-1 is not allowed" in refused["error"]
    assert refused["lr"] == -1 and not (sweep_dir / "2" / "epochs.json").exists()
    assert "lr=-1 is not allowed" in output
    # one line per job and one for the sweep, each saying what to do next
    assert "completed: test acc" in output and "predict.py" in output
    assert f"3 job(s): 1 completed, 1 diverged, 1 failed in {sweep_dir}" in output
    assert f"make aggregate DIRS={sweep_dir}" in output
    # a job killed while writing its row, and one still running (or killed) at epoch 0
    shutil.copytree(sweep_dir / "0", sweep_dir / "3")
    text = (sweep_dir / "3" / "results.json").read_text()
    (sweep_dir / "3" / "results.json").write_text(text[: len(text) // 2])
    shutil.copytree(sweep_dir / "0", sweep_dir / "4")
    (sweep_dir / "4" / "epochs.json").unlink()
    row = results(sweep_dir / "4") | {"status": "running", "test_acc": None, "job_num": 4}
    (sweep_dir / "4" / "results.json").write_text(json.dumps(row))

    proc = aggregate_cli(["bad", "--out", "res"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    runs = json.loads((tmp_path / "res" / "runs.json").read_text())
    status = {r["job"]: r["status"] for r in runs}
    assert status == {0: "completed", 1: "diverged", 2: "failed", 3: "corrupt", 4: "running"}
    assert [r["job"] for r in runs] == [0, 1, 2, 4, 3]  # ranked first, then by status
    assert [r["rank"] for r in runs] == [1, None, None, None, None]
    by_job = {r["job"]: r for r in runs}
    assert "nan" in by_job[1]["error"]
    assert "lr=-1 is not allowed" in by_job[2]["error"] and by_job[2]["lr"] == -1
    assert "not valid JSON" in by_job[3]["error"] and by_job[3]["job_dir"] == "bad/3"
    assert "running" in by_job[4]["error"] or "killed" in by_job[4]["error"]
    for job in (1, 2, 3, 4):
        assert f"bad/{job}" in proc.stdout  # each non-completed job is printed with its error
    summary = (tmp_path / "res" / "summary.md").read_text()
    assert "## Not ranked" in summary and "1 completed, 1 diverged, 1 failed" in summary
    epochs = json.loads((tmp_path / "res" / "epochs.json").read_text())
    assert sorted(e["run"] for e in epochs) == [0, 1, 3]  # job 4 has no epochs.json


@pytest.mark.slow
def test_resume_skips_completed_jobs_and_reruns_the_others(tmp_path: Path, tiny_root: Path) -> None:
    args = ["lr=0.01,0.001"]
    sweep_dir, _ = sweep(tmp_path, tiny_root, "resume", *args)
    done = sweep_dir / "0"
    kept = {name: (done / name).read_bytes() for name in ("results.json", "model.pt")}
    # job 1 was killed mid-way: its row still says running, no weights
    row = results(sweep_dir / "1") | {"status": "running", "test_acc": None}
    (sweep_dir / "1" / "results.json").write_text(json.dumps(row))
    (sweep_dir / "1" / "model.pt").unlink()

    _, output = sweep(tmp_path, tiny_root, "resume", *args)  # the same command again
    assert "already completed" in output and output.count("skipped (resume=true)") == 1
    assert {name: (done / name).read_bytes() for name in kept} == kept
    assert results(sweep_dir / "1")["status"] == "completed"
    assert (sweep_dir / "1" / "model.pt").is_file()
    # the re-run replaces the interrupted attempt's TensorBoard events: one run, one file
    assert len(list((sweep_dir / "1" / "tb").glob("*/events.out.tfevents*"))) == 1


def test_resume_needs_the_same_learning_config(compose_cfg, tmp_path: Path) -> None:
    cfg = compose_cfg(["tensorboard.graph=false", "reports=false"])
    run_job(cfg, output_dir=tmp_path)
    first = (tmp_path / "results.json").read_bytes()
    run_job(compose_cfg(["tensorboard.graph=false", "reports=false", "threads=1"]), tmp_path)
    assert (tmp_path / "results.json").read_bytes() == first  # runtime knob only: skipped
    run_job(
        compose_cfg(["tensorboard.graph=false", "reports=false", "seed=7"]), output_dir=tmp_path
    )
    assert results(tmp_path)["seed"] == 7  # another config: trained again, row replaced
    assert results(tmp_path)["status"] == "completed"


@pytest.mark.slow
def test_joblib_runs_two_jobs_with_split_threads(tmp_path: Path, tiny_root: Path) -> None:
    sweep_dir, _ = sweep(
        tmp_path,
        tiny_root,
        "joblib",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "lr=0.01,0.001",
    )
    rows = [results(sweep_dir / str(i)) for i in range(2)]
    assert [r["status"] for r in rows] == ["completed", "completed"]
    assert {r["lr"] for r in rows} == {0.01, 0.001}
    assert [r["threads"] for r in rows] == [max(1, cpu_count() // 2)] * 2


@pytest.mark.slow
def test_joblib_default_n_jobs_divides_the_cores_by_the_jobs_that_run(
    tmp_path: Path, tiny_root: Path
) -> None:
    """n_jobs=-1 (joblib's default: one worker per core) with a 1-job sweep: that job gets all
    the cores, not cores / n_jobs."""
    sweep_dir, _ = sweep(tmp_path, tiny_root, "one", "hydra/launcher=joblib", "lr=0.01")
    assert results(sweep_dir / "0")["threads"] == cpu_count()


@pytest.mark.slow
def test_submitit_local_rows_land_where_aggregate_finds_them(
    tmp_path: Path, tiny_root: Path
) -> None:
    sweep_dir, _ = sweep(
        tmp_path,
        tiny_root,
        "submitit",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=5",
        "hydra.launcher.cpus_per_task=1",
        "lr=0.01,0.001",
    )
    assert (sweep_dir / ".submitit").is_dir()
    report = aggregate.aggregate([tmp_path], tmp_path / "res", base=tmp_path)
    runs = report["runs"]
    assert sorted(r["job_dir"] for r in runs) == ["submitit/0", "submitit/1"]
    assert all(r["status"] == "completed" and r["sweep"] == "submitit" for r in runs)
    assert all(r["threads"] == 1 for r in runs)  # threads=auto follows cpus_per_task
    assert len(report["epochs"]) == 2


def test_slurm_preset_settings_reach_sbatch(tmp_path: Path, monkeypatch) -> None:
    """hydra/launcher=slurm: partition, time, CPUs and GPUs per job end up in the sbatch file."""
    submitit = pytest.importorskip("submitit")
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF)):
            cfg = compose(
                "config",
                return_hydra_config=True,
                overrides=[
                    "hydra/launcher=slurm",
                    "hydra.launcher.partition=gpu",
                    "hydra.launcher.timeout_min=30",
                    "hydra.launcher.cpus_per_task=8",
                    "hydra.launcher.gpus_per_node=1",
                    f"hydra.sweep.dir={tmp_path / 'sweep'}",
                ],
            )
            params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    finally:
        GlobalHydra.instance().clear()
    assert params.pop("_target_").endswith("SlurmLauncher")
    # what hydra_submitit_launcher's launch() does with them, on a machine without Slurm
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 0\n")
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    init = {"folder": params.pop("submitit_folder")}
    init.update({f"slurm_{k}": params.pop(k) for k in ("max_num_timeout", "python")})
    executor = submitit.AutoExecutor(cluster="slurm", **init)
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    sbatch = executor._executor._make_submission_file_text("python train.py", "uid")
    for flag in (
        "--partition=gpu",
        "--time=30",
        "--cpus-per-task=8",
        "--gpus-per-node=1",
        "--mem=16GB",
    ):
        assert f"#SBATCH {flag}\n" in sbatch, sbatch
    assert str(tmp_path / "sweep" / ".submitit") in sbatch
    assert REPO.joinpath("conf/hydra/launcher/slurm.yaml").is_file()
