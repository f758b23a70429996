"""The Makefile's helper targets, run as a user would from a folder of their own."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from conftest import REPO

from cnnsweep.paths import newest_job, newest_sweep


def make(target: str, cwd: Path, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        ["make", "--no-print-directory", "-f", str(REPO / "Makefile"), target,
         f"VENV={REPO / '.venv'}"],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen,
    )  # fmt: skip


def touch(path: Path, age: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x")
    os.utime(path, (time.time() - age, time.time() - age))
    return path


def test_predict_without_a_trained_job_says_so(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a job")
    proc = make("predict", tmp_path)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 2 and "no trained job found" in output, output
    assert not (tmp_path / "predictions.png").exists()


def test_the_newest_job_and_sweep_are_found(tmp_path: Path, monkeypatch) -> None:
    touch(tmp_path / "outputs/2026-01-01/10-00-00/model.pt", 300)
    touch(tmp_path / "multirun/2026-01-02/10-00-00/3/model.pt", 100)
    touch(tmp_path / "multirun/2026-01-02/10-00-00/multirun.yaml", 200)
    touch(tmp_path / "multirun/optuna/study/2026-01-03_10-00-00_1/multirun.yaml", 50)
    touch(tmp_path / "multirun/optuna/study/2026-01-03_10-00-00_1/trial_0/model.pt", 500)
    monkeypatch.chdir(tmp_path)
    assert newest_job() == Path("multirun/2026-01-02/10-00-00/3")
    # one search's folder, not the study folder that holds every search of the study
    assert newest_sweep() == Path("multirun/optuna/study/2026-01-03_10-00-00_1")


def test_tensorboard_serves_the_newest_sweep_on_localhost(tmp_path: Path) -> None:
    touch(tmp_path / "multirun/optuna/study/2026-01-01_09-00-00/multirun.yaml", 500)
    touch(tmp_path / "multirun/2026-01-02/10-00-00/multirun.yaml", 10)
    env = {**os.environ, "TB_PORT": "6123"}
    proc = make("tensorboard", tmp_path, env=env, start_new_session=True)
    try:
        first = proc.stdout.readline()
    finally:  # make and the TensorBoard it started
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert first.strip() == "TensorBoard on multirun/2026-01-02/10-00-00: http://127.0.0.1:6123"
