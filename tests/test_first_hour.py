"""A new user's first hour: the README's commands work as written, Ctrl-C is one line and the
same command continues the job, a refused run leaves nothing, parallel jobs share the cores,
each dataset gets its own leaderboard."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import CONF, REPO, run_cli, write_idx_dataset
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser

from cnnsweep.commands import look_commands
from cnnsweep.results.cli import aggregate
from cnnsweep.train import liveness, runtime
from cnnsweep.train.liveness import Alive, live_jobs

QUIET = ["progress=false", "reports=false", "tensorboard.graph=false"]
VENV = REPO / ".venv" / "bin" / "activate"


def readme_commands(path: Path = REPO / "README.md") -> list[str]:
    """Every command in the README's ``bash`` blocks, continuation lines joined, comments cut."""
    blocks = re.findall(r"```bash\n(.*?)```", path.read_text(), flags=re.S)
    text = "\n".join(blocks).replace("\\\n", " ")
    lines = [line.split("  #")[0].split(" #")[0].strip() for line in text.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def first_values(args: list[str]) -> list[str]:
    """A multirun's overrides with each sweep cut to its first value (one job of the grid)."""
    texts = [a for a in args if a != "-m" and not a.startswith("--") and a != "job"]
    parsed = OverridesParser.create().parse_overrides(texts)
    out = []
    for override, text in zip(parsed, texts):
        if override.is_sweep_override():
            first = next(iter(override.sweep_string_iterator()))
            out.append(f"{text.split('=', 1)[0]}={first}")
        else:
            out.append(text)
    return out


def test_every_train_command_in_the_readme_composes() -> None:
    """Each ``python train.py ...`` of the README names keys, groups and values that exist."""
    commands = [shlex.split(c)[2:] for c in readme_commands() if c.startswith("python train.py")]
    assert len(commands) >= 8
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF)):
        for args in commands:
            cfg = compose("config", overrides=first_values(args), return_hydra_config=True)
            assert cfg.lr > 0, args
    GlobalHydra.instance().clear()


def test_every_make_target_in_the_readme_exists() -> None:
    for command in readme_commands():
        if command.startswith("make "):
            words = shlex.split(command)
            target = next(w for w in words[1:] if "=" not in w)
            env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "ARGS")}
            proc = subprocess.run(["make", "-n", "-C", str(REPO), target], capture_output=True,
                                  text=True, timeout=60, env=env)  # fmt: skip
            assert proc.returncode == 0, (command, proc.stderr)


@pytest.mark.slow
@pytest.mark.skipif(not VENV.exists(), reason="no .venv: make setup makes it")
def test_the_readme_commands_run_as_written_in_a_fresh_shell(
    tmp_path: Path, tiny_root: Path
) -> None:
    """The first job, the seed's grid and the aggregate, shrunk by overrides, in a new bash
    with the venv activated as the README says; then the commands the job's last line prints."""
    shrink = f"data_dir={tiny_root} epochs=1 progress=false"
    commands = readme_commands()
    grid = next(c for c in commands if c.startswith("python train.py -m lr=0.01,0.001"))
    script = "\n".join([
        f"source {VENV}", f"cd {REPO}",  # the README's commands run where the README is
        f"python train.py {shrink} hydra.run.dir={tmp_path}/job",
        f"{grid} {shrink} hydra.sweep.dir={tmp_path}/grid reports=false",
        f"make aggregate DIRS={tmp_path}/grid ARGS='--out {tmp_path}/results'",
    ])  # fmt: skip
    # a fresh login's environment: no venv on the PATH, no variables of an enclosing
    # `make test ARGS=...` (make exports them to what it runs)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"),
           "LANG": "C.UTF-8", "PYTHONWARNINGS": "ignore"}  # fmt: skip
    proc = subprocess.run(["bash", "-e", "-c", script], capture_output=True, text=True,
                          timeout=900, env=env)  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert f"make tensorboard LOGDIR={tmp_path}/job/tb  |  make predict JOB={tmp_path}/job" in (
        output
    )
    assert json.loads((tmp_path / "results" / "runs.json").read_text())[0]["rank"] == 1
    assert len(list((tmp_path / "grid").glob("*/results.json"))) == 8
    predict = subprocess.run(["bash", "-c", f"cd {REPO} && make predict JOB={tmp_path}/job"],
                             capture_output=True, text=True, timeout=300, env=env)  # fmt: skip
    assert predict.returncode == 0, predict.stdout + predict.stderr


def test_the_last_line_prints_commands_that_work_from_where_the_user_is(tmp_path: Path) -> None:
    os.chdir(REPO)
    assert look_commands(REPO / "outputs/x") == (
        "make tensorboard LOGDIR=outputs/x/tb  |  make predict JOB=outputs/x"
    )
    os.chdir(tmp_path)  # no Makefile here: the venv's own programs, by path
    line = look_commands(tmp_path / "job")
    assert f"{Path(sys.executable).parent / 'tensorboard'} --logdir job/tb" in line
    assert f"{REPO / 'predict.py'} job" in line


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), *args], cwd=cwd, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # Ctrl-C as in a shell
    )  # fmt: skip


def wait_for_epochs(proc: subprocess.Popen, pattern: str, cwd: Path, epochs: int) -> Path:
    deadline = time.time() + 300
    while True:
        for rows in cwd.glob(pattern):
            try:
                if (
                    len(json.loads(rows.read_text())) >= epochs
                    and (rows.parent / "last.pt").exists()
                ):
                    return rows.parent
            except ValueError:
                pass
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline
        time.sleep(0.01)


@pytest.fixture(scope="module")
def small_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_idx_dataset(tmp_path_factory.mktemp("small"), n_train=1500, n_test=200)


@pytest.mark.slow
def test_ctrl_c_is_one_line_and_the_same_command_continues_the_job(
    tmp_path: Path, small_root: Path
) -> None:
    args = [f"data_dir={small_root}", "epochs=5", "batch_size=50", *QUIET]
    proc = start(args, tmp_path)
    job = wait_for_epochs(proc, "outputs/*/*/epochs.json", tmp_path, 2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130
    (line,) = stderr.strip().splitlines()  # one line, no traceback
    rel = job.relative_to(tmp_path)
    assert line.startswith(f"interrupted: {rel} after epoch ")
    assert line.endswith(f"train.py {' '.join(args)}") and "continue it: " in line

    again = start(args, tmp_path)  # the same command
    stdout, stderr = again.communicate(timeout=600)
    assert again.returncode == 0, stdout + stderr
    assert f"continuing the stopped job in {rel}" in stdout + stderr
    row = json.loads((job / "results.json").read_text())
    assert row["status"] == "completed" and row["resumed_from_epoch"] >= 1
    assert [p.parent for p in tmp_path.glob("outputs/*/*/results.json")] == [job]  # no new one
    assert len(list(tmp_path.glob("outputs/*/*"))) == 1


@pytest.mark.slow
def test_ctrl_c_in_a_sweep_is_one_line_naming_its_folder(tmp_path: Path, small_root: Path) -> None:
    args = ["-m", f"data_dir={small_root}", "epochs=5", "batch_size=50", *QUIET, "lr=0.01,0.001"]
    proc = start(args, tmp_path)
    wait_for_epochs(proc, "multirun/*/*/0/epochs.json", tmp_path, 1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130
    (line,) = stderr.strip().splitlines()
    (sweep,) = [p.relative_to(tmp_path) for p in tmp_path.glob("multirun/*/*")]
    assert line.startswith(f"interrupted: {sweep}/0 after epoch ")
    assert line.endswith(f"lr=0.01,0.001 hydra.sweep.dir={sweep}")


@pytest.mark.slow
def test_ctrl_c_in_an_asynchronous_search_stops_both_trials_in_one_line(
    tmp_path: Path, small_root: Path
) -> None:
    # 100 epochs: both trials still run when Ctrl-C comes (5 would let the search finish)
    args = ["-m", "hparams_search=fashion_mnist_optuna", "hydra/sweeper/pruner=nop",
            f"data_dir={small_root}", "epochs=100", "batch_size=50", *QUIET]  # fmt: skip
    proc = start(args, tmp_path)
    wait_for_epochs(proc, "multirun/optuna/*/*/trial_*/epochs.json", tmp_path, 1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130
    line = stderr.strip().splitlines()[-1]  # the last line says what stopped and what next
    assert line.startswith("interrupted") and "continue it: " in line
    rows = [json.loads(p.read_text()) for p in tmp_path.glob("multirun/optuna/*/*/*/results.json")]
    assert len(rows) == 2 and {r["status"] for r in rows} == {"interrupted"}


def test_a_refused_single_run_leaves_no_folder(tmp_path: Path, tiny_root: Path) -> None:
    proc = run_cli([f"data_dir={tiny_root}", "lr=-1"], cwd=tmp_path)
    assert proc.returncode == 2 and "lr=-1 is not allowed" in proc.stderr
    assert not list(tmp_path.rglob(".hydra")) and not list(tmp_path.rglob("*.log"))
    proc = run_cli([f"data_dir={tiny_root}", "data=csv"], cwd=tmp_path)  # no CSV paths
    assert proc.returncode == 2 and not list(tmp_path.rglob(".hydra"))


def test_a_folder_without_a_row_is_never_called_killed(tmp_path: Path) -> None:
    (tmp_path / "outputs/2026-12-02/05-00-00/.hydra").mkdir(parents=True)
    report = aggregate([tmp_path / "outputs"], tmp_path / "res")
    (row,) = report["runs"]
    assert row["status"] == "missing" and "killed before" not in row["error"]
    assert "never started" in row["error"]


def test_threads_auto_shares_the_cores_with_jobs_running_on_this_host(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(runtime, "cpu_count", lambda: 8)
    before = live_jobs()
    assert runtime.resolve_threads("auto") == 8 // max(1, before)
    # two other processes' jobs: their entries, locked as another process would hold them
    others = [liveness._lock(liveness.host_dir() / f"other-{i}.lock") for i in range(2)]
    try:
        assert live_jobs() == before + 2
        assert runtime.resolve_threads("auto") == 8 // (before + 2)
        assert runtime.resolve_threads(3) == 3  # a number is a number
        mine = Alive(tmp_path / "job")  # this process's job counts once, however nested
        liveness.register()
        assert live_jobs() == before + 3
        liveness.unregister()
        mine.release()
    finally:
        for i, handle in enumerate(others):
            (liveness.host_dir() / f"other-{i}.lock").unlink()
            handle.close()
    assert live_jobs() == before


def test_each_dataset_has_its_own_leaderboard_and_picture(tmp_path: Path) -> None:
    from test_aggregate import make_job

    for i, (data, acc) in enumerate([("fashion_mnist", 0.9), ("fashion_mnist", 0.8),
                                     ("image_folder", 0.99), ("image_folder", 0.5)]):  # fmt: skip
        make_job(tmp_path / "sweep" / str(i), job_num=i, data=data, val_acc=acc, test_acc=acc,
                 lr=0.1 * (i + 1))  # fmt: skip
    (tmp_path / "sweep" / "multirun.yaml").write_text("hydra: {}\n")
    report = aggregate([tmp_path / "sweep"], tmp_path / "res", base=tmp_path)
    ranks = {(r["data"], r["val_acc"]): r["rank"] for r in report["runs"]}
    assert ranks == {("fashion_mnist", 0.9): 1, ("fashion_mnist", 0.8): 2,
                     ("image_folder", 0.99): 1, ("image_folder", 0.5): 2}  # fmt: skip
    summary = (tmp_path / "res" / "summary.md").read_text()
    assert "## Dataset `fashion_mnist`" in summary and "## Dataset `image_folder`" in summary
    pictures = sorted(p.name for p in (tmp_path / "res").glob("test_acc*.png"))
    assert pictures == ["test_acc_fashion_mnist.png", "test_acc_image_folder.png"]


def test_hparams_list_the_knobs_given_on_the_command_line_first(compose_cfg, tmp_path) -> None:
    """TensorBoard's HParams tab shows the first knobs: a sweep's varying ones must be there."""
    from cnnsweep.sweep.trial import OptunaTrial
    from cnnsweep.train.record import JobInfo, JobRecord

    cfg = compose_cfg(["lr=0.01", "shuffle=false", "model=bn_cnn"])
    info = JobInfo(tmp_path, overrides=["shuffle=false", "model=bn_cnn", "lr=0.01"])
    record = JobRecord(cfg, info, OptunaTrial())
    try:
        assert list(record._hparams_given_first())[:3] == ["lr", "shuffle", "model"]
    finally:
        record.alive.release()


def test_a_first_run_on_a_new_machine_logs_no_matplotlib_housekeeping(tmp_path: Path) -> None:
    # an empty MPLCONFIGDIR is a machine where matplotlib never ran: it builds its font cache
    code = (
        "import logging; logging.basicConfig(level=logging.INFO); "
        "import cnnsweep.reports; logging.getLogger('cnnsweep').info('job line')"
    )
    env = os.environ | {"MPLCONFIGDIR": str(tmp_path / "mpl")}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "mpl").is_dir()  # the cache was built in this run
    assert proc.stderr.strip() == "INFO:cnnsweep:job line"
