"""Against a real Slurm cluster and a real PostgreSQL server (`make slurm-up postgres-up`, which
.ci/run does): sweeps as Slurm jobs, a preempted job requeued and continued, an Optuna search
on Slurm with pruning, workers sharing a PostgreSQL study, the dashboard on it, and a password
kept out of every file. Each test skips, saying why, where its service cannot be reached."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from conftest import (
    REPO,
    TRIAL_STATE,
    free_port,
    get_json,
    reported_epochs,
    run_cli,
    wait_for_studies,
    write_idx_dataset,
)
from test_optuna_retry import kill_and_retry

from cnnsweep.sweep.storage import storage_url

pytestmark = pytest.mark.cluster

QUIET = ["progress=false", "reports=false", "tensorboard.histograms=false",
         "tensorboard.graph=false"]  # fmt: skip
# this one-node cluster has 2 cores: one per job, so two jobs run at once
SLURM = ["hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1",
         "hydra.launcher.timeout_min=20", "threads=1"]  # fmt: skip
PRESET = "hparams_search=fashion_mnist_optuna"
PG_URL = os.environ.get("CNNSWEEP_TEST_PG", "postgresql://cnnsweep@127.0.0.1:5432/optuna")


# --- what is reachable --------------------------------------------------------------------


def _slurm_problem() -> str | None:
    if shutil.which("sinfo") is None:
        return "no Slurm here (no sinfo): `sudo make slurm-up` starts a one-node cluster"
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                              timeout=30)  # fmt: skip
    except subprocess.TimeoutExpired:
        return "sinfo did not answer in 30 s: is slurmctld running? (`sudo make slurm-up`)"
    if proc.returncode != 0:
        return f"sinfo fails ({proc.stderr.strip()[:200]}): `sudo make slurm-up`"
    if not any(s.startswith(("idle", "mix", "alloc")) for s in proc.stdout.split()):
        return f"no Slurm node is up (sinfo: {proc.stdout.split()}): `sudo make slurm-up`"
    return None


def _postgres_problem() -> str | None:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "no PostgreSQL driver: pip install -c constraints.txt -e '.[postgres]'"
    try:
        optuna.storages.RDBStorage(PG_URL).remove_session()
    except Exception as e:
        return f"PostgreSQL not reachable at {PG_URL} ({type(e).__name__}): `sudo make postgres-up`"
    return None


@pytest.fixture(scope="session")
def slurm() -> None:
    problem = _slurm_problem()
    if problem:
        pytest.skip(problem)


@pytest.fixture(scope="session")
def postgres() -> str:
    problem = _postgres_problem()
    if problem:
        pytest.skip(problem)
    return PG_URL


@pytest.fixture(scope="module")
def slow_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1500 training images: epochs long enough to signal a job in the middle of training."""
    return write_idx_dataset(tmp_path_factory.mktemp("slow"), n_train=1500, n_test=200)


# --- helpers ------------------------------------------------------------------------------


def readable(output: str) -> str:
    """A failed run's output without submitit's sacct noise (this cluster has no accounting)."""
    return "\n".join(line for line in output.splitlines() if "sacct" not in line)[-4000:]


def row_of(job_dir: Path) -> dict:
    return json.loads((job_dir / "results.json").read_text())


def rows_by_trial(root: Path) -> dict[int, dict]:
    """trial number -> its results row (a trial with two rows fails the test)."""
    found: dict[int, dict] = {}
    for path in root.rglob("results.json"):
        row = json.loads(path.read_text())
        assert row["trial_number"] not in found, f"two jobs for trial {row['trial_number']}"
        found[row["trial_number"]] = row | {"_dir": path.parent}
    return found


def slurm_logs(sweep_dir: Path) -> dict[str, str]:
    """Slurm job id -> the submitit log of that job (its folder under .submitit/)."""
    return {
        p.name.removesuffix("_submitted.pkl"): "".join(
            f.read_text() for f in sorted(p.parent.glob("*_log.out"))
        )
        for p in (sweep_dir / ".submitit").glob("*/*_submitted.pkl")
    }


def epochs_written(job_dir: Path) -> int:
    try:
        return len(json.loads((job_dir / "epochs.json").read_text()))
    except (OSError, ValueError):
        return 0


# --- Slurm --------------------------------------------------------------------------------


def test_grid_runs_as_slurm_jobs_and_aggregates(slurm, tmp_path: Path, tiny_root: Path) -> None:
    sweep_dir = tmp_path / "grid"
    args = ["-m", *SLURM, f"hydra.sweep.dir={sweep_dir}", f"data_dir={tiny_root}", "epochs=1",
            "batch_size=50", *QUIET, "lr=0.01,0.001", "shuffle=true,false"]  # fmt: skip
    proc = run_cli(args, tmp_path)
    assert proc.returncode == 0, readable(proc.stdout + proc.stderr)
    # said once (Hydra's log and the terminal may both show that line), not at every poll
    said = [x for x in (proc.stdout + proc.stderr).splitlines() if "sacct" in x]
    assert len(said) <= 3 and all("said once" in x for x in said), said  # one per handler
    assert "accounting storage is disabled" not in proc.stdout + proc.stderr

    rows = {int(p.name): row_of(p) for p in sweep_dir.iterdir() if p.name.isdigit()}
    assert sorted(rows) == [0, 1, 2, 3]
    assert all(r["status"] == "completed" and r["threads"] == 1 for r in rows.values())
    assert {(r["lr"], r["shuffle"]) for r in rows.values()} == {
        (lr, s) for lr in (0.01, 0.001) for s in (True, False)
    }
    # every job ran as a task of one Slurm job array, under the repo's Python
    logs = slurm_logs(sweep_dir)
    array = {job_id.split("_")[0] for job_id in logs}
    assert len(logs) == 4 and len(array) == 1, logs.keys()
    for job_id, log in logs.items():
        assert f"JobEnvironment(job_id={job_id}," in log and "Job completed successfully" in log
    script = next((sweep_dir / ".submitit").glob("*/*_submission.sh")).read_text()
    assert "#SBATCH --array=0-3" in script and "#SBATCH --cpus-per-task=1" in script
    assert f"{sys.executable} -u -m submitit.core._submit" in script

    ranked = subprocess.run(
        [sys.executable, "-m", "cnnsweep.aggregate", str(sweep_dir), "--out", "res"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert ranked.returncode == 0, ranked.stderr
    runs = json.loads((tmp_path / "res" / "runs.json").read_text())
    assert [r["rank"] for r in runs] == [1, 2, 3, 4]
    val = [r["val_acc"] for r in runs]
    assert val == sorted(val, reverse=True)


def test_a_job_that_can_never_start_is_cancelled_with_one_line(
    slurm, tmp_path: Path, tiny_root: Path
) -> None:
    """The launcher's defaults (4 CPUs, 16 GB a job) on a smaller node: pending for ever
    (PartitionConfig) unless said and cancelled."""
    sweep_dir = tmp_path / "never"
    args = [
        "-m",
        "hydra/launcher=slurm",
        "hydra.launcher.cpus_per_task=64",
        f"hydra.sweep.dir={sweep_dir}",
        f"data_dir={tiny_root}",
        *QUIET,
        "lr=0.01,0.001",
    ]
    started = time.time()
    proc = run_cli(args, tmp_path, timeout=300)
    assert proc.returncode == 2, readable(proc.stdout + proc.stderr)
    assert time.time() - started < 120  # said within a minute or so, not never
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert "can never start" in line and "cpus_per_task=64" in line
    ids = {job_id.split("_")[0] for job_id in slurm_logs(sweep_dir)}
    queued = subprocess.run(["squeue", "-h", "-j", ",".join(ids), "-o", "%i %T"],
                            capture_output=True, text=True, timeout=30).stdout  # fmt: skip
    assert "PENDING" not in queued and "RUNNING" not in queued


def test_a_preempted_job_is_requeued_and_continues_from_its_checkpoint(
    slurm, tmp_path: Path, slow_root: Path
) -> None:
    """USR2 (what Slurm sends before a time limit or a preemption) in the middle of training:
    submitit requeues the job, which continues from its last.pt in the same folder."""
    sweep_dir, epochs = tmp_path / "pre", 12
    job_dir = sweep_dir / "0"
    args = ["-m", *SLURM, f"hydra.sweep.dir={sweep_dir}", f"data_dir={slow_root}",
            f"epochs={epochs}", "batch_size=50", *QUIET, "lr=0.01"]  # fmt: skip
    sweep = subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), *args], cwd=tmp_path, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while epochs_written(job_dir) < 1 or not (job_dir / "last.pt").exists():
            assert sweep.poll() is None, readable(sweep.stdout.read())
            assert time.monotonic() < deadline, "the Slurm job did not start training in 300 s"
            time.sleep(0.05)
        (job_id,) = slurm_logs(sweep_dir)
        subprocess.run(["scancel", "--signal=USR2", job_id], check=True, timeout=30)
        deadline = time.monotonic() + 60
        while row_of(job_dir)["status"] == "running":  # the attempt's own last word
            assert time.monotonic() < deadline
            time.sleep(0.05)
        stopped = row_of(job_dir)
        output = sweep.communicate(timeout=600)[0]
    finally:
        if sweep.poll() is None:  # a failed test leaves no job behind
            sweep.kill()
            subprocess.run(["scancel", *slurm_logs(sweep_dir)], timeout=30)
    assert sweep.returncode == 0, readable(output)

    assert stopped["status"] == "interrupted", stopped
    assert stopped["error"].startswith("SystemExit after epoch")
    assert 1 <= stopped["epochs_run"] < epochs  # stopped in the middle of training
    final = row_of(job_dir)
    assert final["status"] == "completed" and final["epochs_run"] == epochs
    assert final["resumed_from_epoch"] == stopped["epochs_run"]
    assert [e["epoch"] for e in json.loads((job_dir / "epochs.json").read_text())] == list(
        range(1, epochs + 1)
    )  # no gap, no repeat
    assert (job_dir / "model.pt").exists() and not (job_dir / "last.pt").exists()
    log = slurm_logs(sweep_dir)[job_id]
    assert "Caught signal SIGUSR2" in log and f"Requeued job {job_id}" in log
    assert log.count(f"Starting with JobEnvironment(job_id={job_id},") == 2  # the same job, twice
    assert f"resumed at epoch {stopped['epochs_run'] + 1} of {epochs}" in log


def test_optuna_search_on_slurm_in_batches_of_two_prunes(
    slurm, tmp_path: Path, tiny_root: Path
) -> None:
    """The plugin's batches (hydra.sweeper.asynchronous=false): two trials per batch, each a
    Slurm job; a hopeless trial (lr 1e-5) is pruned by the median of the two good ones, as
    tests/test_optuna.py proves it without Slurm."""
    storage = storage_url("sqlite:///studies/optuna.db", cwd=tmp_path)  # hydra/sweeper=optuna's
    study = optuna.create_study(study_name="slurm", storage=storage, direction="maximize")
    for lr in (3e-3, 2e-3, 1e-5, 2e-5):
        study.enqueue_trial({"lr": lr})
    args = [
        "-m", *SLURM, "hydra/sweeper=optuna", "hydra.sweeper.study_name=slurm",
        "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2", "hydra.sweeper.asynchronous=false",
        "lr=tag(log,interval(1e-5,1e-1))", "hydra.sweeper.pruner.n_startup_trials=2",
        "hydra.sweeper.pruner.n_warmup_steps=1", f"hydra.sweep.dir={tmp_path / 'search'}",
        "hydra.sweep.subdir=trial_${optuna.trial}", "model=network", "batch_size=30",
        "epochs=3", f"data_dir={tiny_root}", *QUIET,
    ]  # fmt: skip
    proc = run_cli(args, tmp_path)
    assert proc.returncode == 0, readable(proc.stdout + proc.stderr)

    trials = optuna.load_study(study_name="slurm", storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "PRUNED", "PRUNED"], [
        t.intermediate_values for t in trials
    ]
    by_trial = rows_by_trial(tmp_path / "search")
    assert [by_trial[n]["status"] for n in range(4)] == [
        "completed", "completed", "pruned", "pruned"
    ]  # fmt: skip
    assert all(by_trial[n]["epochs_run"] < 3 for n in (2, 3))
    # two Slurm job arrays of two tasks: trials 0+1, then 2+3, each trial its own Slurm job
    logs = slurm_logs(tmp_path / "search")
    arrays = sorted({job_id.split("_")[0] for job_id in logs}, key=int)
    assert len(logs) == 4 and len(arrays) == 2, logs.keys()
    for script in (tmp_path / "search" / ".submitit").glob("*/*_submission.sh"):
        assert "#SBATCH --array=0-1" in script.read_text()


def test_asynchronous_search_on_slurm_keeps_two_jobs_queued(
    slurm, tmp_path: Path, tiny_root: Path
) -> None:
    """hydra.sweeper.n_jobs=2, asynchronous (the default): every trial is a Slurm job of its
    own, submitted when a slot frees; while the long trial 0 (300 epochs of tiny data, about
    40 s) runs, the other slot runs the short trials 1, 2 and 3 (1-3 epochs) one after another."""
    args = [
        "-m", *SLURM, "hydra/sweeper=optuna", "hydra.sweeper.study_name=async",
        "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2", "hydra/sweeper/pruner=nop",
        "epochs=choice(1,2,3,300)",  # enqueued points are unique
        "hydra.sweeper.enqueue=[{epochs:300},{epochs:1},{epochs:2},{epochs:3}]",
        f"hydra.sweep.dir={tmp_path / 'search'}", "hydra.sweep.subdir=trial_${optuna.trial}",
        "model=lenet", "batch_size=30", f"data_dir={tiny_root}", *QUIET,
    ]  # fmt: skip
    proc = run_cli(args, tmp_path)
    assert proc.returncode == 0, readable(proc.stdout + proc.stderr)
    by_trial = rows_by_trial(tmp_path / "search")
    assert sorted(by_trial) == [0, 1, 2, 3]
    assert [by_trial[n]["epochs_run"] for n in range(4)] == [300, 1, 2, 3]
    long_end = by_trial[0]["finished_at"]
    assert all(by_trial[n]["started_at"] < long_end for n in (2, 3)), by_trial  # slot 2 went on
    logs = slurm_logs(tmp_path / "search")
    assert len(logs) == 4 and all("_" not in job_id or job_id.endswith("_0") for job_id in logs)
    for script in (tmp_path / "search" / ".submitit").glob("*/*_submission.sh"):
        assert "#SBATCH --array=0-1" not in script.read_text()  # one job per submission


# --- PostgreSQL ---------------------------------------------------------------------------


def dashboard_studies(storage: str) -> tuple[list[dict], dict[str, dict]]:
    """optuna-dashboard on ``storage`` (127.0.0.1): /api/studies' list, and each study's
    /api/studies/<id> by name."""
    exe = Path(sys.executable).with_name("optuna-dashboard")
    port = free_port()
    server = subprocess.Popen(
        [str(exe), storage, "--host", "127.0.0.1", "--port", str(port), "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        studies = wait_for_studies(base, server)
        details = {
            s["study_name"]: get_json(f"{base}/api/studies/{s['study_id']}") for s in studies
        }
        return studies, details
    finally:
        server.terminate()
        server.wait(timeout=30)


def start_workers(n: int, args: list[str], cwd: Path, env: dict | None = None) -> list[str]:
    """``n`` processes of ``train.py args`` started together; their outputs once all ended."""
    command = [sys.executable, str(REPO / "train.py"), *args]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    out = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
    workers = [subprocess.Popen(command, cwd=cwd, env=env, **out) for _ in range(n)]
    try:
        logs = [w.communicate(timeout=900)[0] for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    for w, log in zip(workers, logs):
        assert w.returncode == 0, log[-4000:]
    return logs


@pytest.fixture
def pg_study(postgres: str):
    """A fresh study name in the shared database, deleted afterwards."""
    name = f"test_{uuid.uuid4().hex[:10]}"
    yield name
    try:
        optuna.delete_study(study_name=name, storage=postgres)
    except KeyError:
        pass


def test_three_workers_share_one_postgresql_study(
    postgres: str, pg_study: str, tmp_path: Path, tiny_root: Path
) -> None:
    args = ["-m", PRESET, f"hydra.sweeper.storage={postgres}",
            f"hydra.sweeper.study_name={pg_study}", "hydra.sweeper.n_trials=2",
            f"data_dir={tiny_root}", "epochs=2", "threads=1", *QUIET]  # fmt: skip
    logs = start_workers(3, args, tmp_path)

    ran = [{int(n) for n in re.findall(r"\(trial (\d+)\)", log)} for log in logs]
    assert all(len(r) == 2 for r in ran) and len(set().union(*ran)) == 6  # 2 each, none shared
    trials = optuna.load_study(study_name=pg_study, storage=postgres).trials
    assert sorted(t.number for t in trials) == list(range(6))  # none lost, none twice
    by_trial = rows_by_trial(tmp_path / "multirun")
    assert sorted(by_trial) == list(range(6))
    for t in trials:
        row = by_trial[t.number]
        assert row["_dir"].name == f"trial_{t.number}" and (row["_dir"] / "epochs.json").is_file()
        assert row["study_name"] == pg_study and row["study_storage"] == postgres
        assert t.state.name == TRIAL_STATE[row["status"]], row["status"]  # finished, as its job
        assert {k: row[k] for k in t.params} == t.params
        assert len(t.intermediate_values) == reported_epochs(row)  # the pruner's input
    # each worker has its own sweep folder and multirun.yaml, though all started together
    folders = {row["_dir"].parent for row in by_trial.values()}
    assert len(folders) == 3 and all((f / "multirun.yaml").is_file() for f in folders)

    studies, details = dashboard_studies(postgres)
    assert pg_study in [s["study_name"] for s in studies]
    assert sorted(t["number"] for t in details[pg_study]["trials"]) == list(range(6))


def test_a_killed_workers_postgresql_trial_is_retried_from_its_checkpoint(
    postgres: str, pg_study: str, tmp_path: Path
) -> None:
    """Heartbeats in PostgreSQL: the worker SIGKILLed mid-trial leaves its trial RUNNING; the
    next worker marks it FAIL and runs the retry, which continues from the dead trial's last.pt."""
    kill_and_retry(tmp_path, pg_study, postgres, f"hydra.sweeper.storage={postgres}")


def _pgpass_password(url: str) -> str | None:
    """The password ~/.pgpass (or $PGPASSFILE) holds for the URL's host, port, db and user."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    wanted = [u.host or "localhost", str(u.port or 5432), u.database, u.username]
    path = Path(os.environ.get("PGPASSFILE", Path.home() / ".pgpass"))
    if not path.is_file():
        return None
    for line in path.read_text().splitlines():
        fields = line.split(":", 4)
        if len(fields) == 5 and all(f in ("*", w) for f, w in zip(fields[:4], wanted)):
            return fields[4]
    return None


def all_text(root: Path) -> str:
    """Every file under root, as text (binary files too: a password is ASCII)."""
    return "\n".join(p.read_bytes().decode("latin-1") for p in root.rglob("*") if p.is_file())


def test_a_password_reaches_no_file(
    postgres: str, pg_study: str, tmp_path: Path, tiny_root: Path
) -> None:
    """In the URL it is refused before anything is written; from PGPASSWORD the search runs,
    and no row, log, Hydra record, TensorBoard file or leaderboard contains it."""
    password = _pgpass_password(postgres)
    if not password:
        pytest.skip(f"no password for {postgres} in ~/.pgpass (`sudo make postgres-up` writes one)")
    user, _, rest = postgres.partition("://")[2].partition("@")
    with_password = f"postgresql://{user}:{password}@{rest}"
    common = [PRESET, f"hydra.sweeper.study_name={pg_study}", f"data_dir={tiny_root}",
              "epochs=1", "threads=1", *QUIET]  # fmt: skip

    refused_dir = tmp_path / "refused"
    refused_dir.mkdir()
    proc = run_cli(["-m", *common, f"hydra.sweeper.storage={with_password}"], refused_dir)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: the storage URL carries a password") and "PGPASSWORD" in line
    assert password not in line
    assert list(refused_dir.iterdir()) == []  # no folder, no file
    with pytest.raises(KeyError):
        optuna.load_study(study_name=pg_study, storage=postgres)  # no study either

    # the safe way: the URL without it, the password from libpq's PGPASSWORD only
    safe_dir = tmp_path / "safe"
    safe_dir.mkdir()
    env = {"PGPASSWORD": password, "PGPASSFILE": str(tmp_path / "no-pgpass")}
    logs = start_workers(1, ["-m", *common, "hydra.sweeper.n_trials=2",
                             f"hydra.sweeper.storage={postgres}"], safe_dir, env)  # fmt: skip
    ranked = subprocess.run(
        [sys.executable, "-m", "cnnsweep.aggregate", "multirun", "--out", "results"],
        cwd=safe_dir, capture_output=True, text=True, timeout=300,
        env={**os.environ, **env, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    assert ranked.returncode == 0, ranked.stderr
    assert (safe_dir / "results" / "runs.csv").is_file()
    assert sorted(rows_by_trial(safe_dir / "multirun")) == [0, 1]
    written = all_text(safe_dir)
    assert postgres in written  # the URL is recorded, without the password
    assert password not in written and password not in logs[0] + ranked.stdout + ranked.stderr
