"""A killed job continues where it stopped: last.pt, exact continuation, Ctrl-C, bad checkpoints."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, write_idx_dataset

from cnnsweep.train.job import run_job

QUIET = ["progress=false", "reports=false", "tensorboard.graph=false"]
RECIPE = ["model=cnn", "model.width=8", "augment=shift_flip", "scheduler=onecycle", "ema=on"]


@pytest.fixture(scope="module")
def small_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1500 training images: an epoch takes long enough to be interrupted in the middle."""
    return write_idx_dataset(tmp_path_factory.mktemp("small"), n_train=1500, n_test=200)


def row_of(job_dir: Path) -> dict:
    return json.loads((job_dir / "results.json").read_text())


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # Ctrl-C as in a shell
    )


def epochs_written(job_dir: Path) -> int:
    try:
        return len(json.loads((job_dir / "epochs.json").read_text()))
    except (OSError, ValueError):
        return 0


def stop_after(proc: subprocess.Popen, job_dir: Path, epochs: int, sig: int) -> int:
    """Send ``sig`` once ``job_dir`` has a checkpoint and ``epochs`` epoch rows; the epochs
    written when it arrived."""
    deadline = time.time() + 300
    while epochs_written(job_dir) < epochs or not (job_dir / "last.pt").exists():
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline
        time.sleep(0.005)
    proc.send_signal(sig)
    proc.wait(timeout=120)
    return epochs_written(job_dir)


def epoch_values(job_dir: Path) -> list[dict]:
    with open(job_dir / "epochs.csv") as f:
        return [{k: v for k, v in row.items() if "duration" not in k} for row in csv.DictReader(f)]


def weights(job_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(job_dir / "model.pt", weights_only=True)["state_dict"]


@pytest.mark.slow
@pytest.mark.parametrize("recipe", [RECIPE, []], ids=["cnn-shift_flip-onecycle-ema", "seed"])
def test_sigkill_then_resume_ends_exactly_like_an_uninterrupted_run(
    tmp_path: Path, small_root: Path, recipe: list[str]
) -> None:
    args = [f"data_dir={small_root}", "epochs=6", "batch_size=50", "threads=1", *QUIET, *recipe]
    whole = start([*args, "hydra.run.dir=whole"], tmp_path)
    assert whole.wait(timeout=600) == 0, whole.stdout.read()

    killed = tmp_path / "killed"
    proc = start([*args, "hydra.run.dir=killed"], tmp_path)
    at = stop_after(proc, killed, 2 + int(time.time()) % 3, signal.SIGKILL)  # epoch 2, 3 or 4
    assert at < 6 and row_of(killed)["status"] == "running"  # killed: no chance to say more
    again = start([*args, "hydra.run.dir=killed"], tmp_path)
    output = again.communicate(timeout=600)[0]
    assert again.returncode == 0, output

    row, reference = row_of(killed), row_of(tmp_path / "whole")
    assert row["status"] == "completed" and row["resumed_from_epoch"] in (at - 1, at)
    assert f"resumed at epoch {row['resumed_from_epoch'] + 1} of 6" in output
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
                "best_epoch", "last_val_acc"):  # fmt: skip
        assert row[key] == reference[key], key
    assert epoch_values(killed) == epoch_values(tmp_path / "whole")
    a, b = weights(killed), weights(tmp_path / "whole")
    assert all(torch.equal(a[k], b[k]) for k in b)
    assert not (killed / "last.pt").exists()  # removed once the job completed
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (run,) = (killed / "tb").iterdir()
    acc = EventAccumulator(str(run))
    acc.Reload()
    assert [e.step for e in acc.Scalars("Accuracy/val")] == [1, 2, 3, 4, 5, 6]  # no repeats


@pytest.mark.slow
def test_ctrl_c_leaves_an_interrupted_row_and_the_same_command_continues(
    tmp_path: Path, small_root: Path
) -> None:
    args = [f"data_dir={small_root}", "epochs=5", "batch_size=50", *QUIET, "hydra.run.dir=run"]
    proc = start(args, tmp_path)
    stop_after(proc, tmp_path / "run", 2, signal.SIGINT)
    row = row_of(tmp_path / "run")
    assert row["status"] == "interrupted" and "KeyboardInterrupt" in row["error"]
    assert (tmp_path / "run" / "last.pt").is_file()
    again = start(args, tmp_path)
    assert again.wait(timeout=600) == 0
    row = row_of(tmp_path / "run")
    assert row["status"] == "completed" and row["resumed_from_epoch"] >= 1
    assert [r["epoch"] for r in json.loads((tmp_path / "run/epochs.json").read_text())] == [
        1, 2, 3, 4, 5,
    ]  # fmt: skip


def interrupted_job(compose_cfg, job_dir: Path, *extra: str) -> None:
    """A job that wrote last.pt after epoch 2 of 3 and was killed (its row: running)."""
    run_job(compose_cfg(["epochs=3", "checkpoint.keep=true", *QUIET, *extra]), job_dir)
    payload = torch.load(job_dir / "last.pt", weights_only=True)
    assert payload["epoch"] == 3
    row = row_of(job_dir) | {"status": "running"}
    (job_dir / "results.json").write_text(json.dumps(row))


def test_a_good_checkpoint_is_continued(compose_cfg, tmp_path: Path, caplog) -> None:
    interrupted_job(compose_cfg, tmp_path)
    with caplog.at_level("INFO"):
        run_job(compose_cfg(["epochs=3", *QUIET]), tmp_path)
    row = row_of(tmp_path)
    assert row["status"] == "completed" and row["resumed_from_epoch"] == 3
    assert "resumed after the last epoch (3)" in caplog.text  # only test and save were left
    assert not (tmp_path / "last.pt").exists()


@pytest.mark.parametrize("damage", ["truncated", "foreign", "other_config", "newer_format"])
def test_a_bad_checkpoint_is_set_aside_and_the_job_starts_over(
    compose_cfg, tmp_path: Path, caplog, damage: str
) -> None:
    job = tmp_path / "job"
    interrupted_job(compose_cfg, job)
    last = job / "last.pt"
    if damage == "truncated":
        last.write_bytes(last.read_bytes()[:1000])
    elif damage == "foreign":
        torch.save({"hello": torch.zeros(2)}, last)
    elif damage == "other_config":
        interrupted_job(compose_cfg, tmp_path / "other", "lr=0.01")
        os.replace(tmp_path / "other" / "last.pt", last)
    else:
        payload = torch.load(last, weights_only=True)
        torch.save(payload | {"format": 99}, last)
    sibling = tmp_path / "sibling.json"
    sibling.write_text("{}")
    with caplog.at_level("WARNING"):
        run_job(compose_cfg(["epochs=3", *QUIET]), job)
    assert f"{last} not resumed" in caplog.text and "starting over" in caplog.text
    assert (job / "last.pt.unusable").is_file()
    row = row_of(job)
    assert row["status"] == "completed" and row["resumed_from_epoch"] is None
    assert sibling.read_text() == "{}"


def test_checkpoints_can_be_turned_off_or_kept(compose_cfg, tmp_path: Path) -> None:
    run_job(compose_cfg(["epochs=2", "checkpoint.every=0", *QUIET]), tmp_path / "off")
    assert not (tmp_path / "off" / "last.pt").exists()
    run_job(compose_cfg(["epochs=2", "checkpoint.keep=true", *QUIET]), tmp_path / "kept")
    payload = torch.load(tmp_path / "kept" / "last.pt", weights_only=True)
    assert payload["epoch"] == 2 and len(payload["epoch_rows"]) == 2
    assert set(payload["rng"]) == {"torch", "cuda", "batches", "augment"}
    assert (tmp_path / "kept").stat().st_mode  # the folder is still there


@pytest.mark.slow
def test_a_killed_grid_continues_its_interrupted_job(tmp_path: Path, small_root: Path) -> None:
    grid = ["-m", f"data_dir={small_root}", "hydra.sweep.dir=grid", "epochs=5",
            "batch_size=50", *QUIET, "lr=0.01,0.001"]  # fmt: skip
    proc = start(grid, tmp_path)
    stop_after(proc, tmp_path / "grid" / "1", 2, signal.SIGKILL)
    assert row_of(tmp_path / "grid" / "0")["status"] == "completed"
    again = start(grid, tmp_path)
    output = again.communicate(timeout=600)[0]
    assert again.returncode == 0, output
    assert output.count("skipped (resume=true)") == 1
    row = row_of(tmp_path / "grid" / "1")
    assert row["status"] == "completed" and row["resumed_from_epoch"] >= 1
    assert [r["epoch"] for r in json.loads((tmp_path / "grid/1/epochs.json").read_text())] == [
        1, 2, 3, 4, 5,
    ]  # fmt: skip
