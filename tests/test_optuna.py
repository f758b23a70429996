"""Optuna search through train.py: trials as ordinary jobs, resume, pruning, dashboard, workers."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from conftest import (
    REPO,
    TRIAL_STATE,
    chromium_page,
    free_port,
    get_json,
    reported_epochs,
    run_cli,
    wait_for_studies,
)

from cnnsweep.sweep.optuna_sweeper import direction_error
from cnnsweep.sweep.storage import has_password, hide_password, open_storage, storage_url
from cnnsweep.sweep.trial import OptunaTrial, reported_metric

PRESET = "hparams_search=fashion_mnist_optuna"
STUDY = "fashion_mnist"  # the preset's study_name; storage studies/fashion_mnist.db under the cwd
QUIET = [
    "progress=false",
    "reports=false",
    "tensorboard.histograms=false",
    "tensorboard.graph=false",
]
SPACE = ("lr", "batch_size", "optimizer", "model", "shuffle")  # the preset's search space


def load(cwd: Path, study: str = STUDY, db: str = STUDY) -> optuna.Study:
    return optuna.load_study(study_name=study, storage=f"sqlite:///{cwd}/studies/{db}.db")


def rows(cwd: Path) -> dict[int, dict]:
    """trial number -> the results row its job wrote."""
    found = {}
    for path in (cwd / "multirun").rglob("results.json"):
        row = json.loads(path.read_text())
        assert row["trial_number"] not in found, f"two jobs for trial {row['trial_number']}"
        found[row["trial_number"]] = row | {"_dir": path.parent}
    return found


def search(tiny_root: Path, n_trials: int, epochs: int = 2) -> list[str]:
    """The preset's search, on tiny data."""
    trials = f"hydra.sweeper.n_trials={n_trials}"
    return [PRESET, trials, f"data_dir={tiny_root}", f"epochs={epochs}", *QUIET]


@pytest.fixture(scope="module")
def first_search(tmp_path_factory: pytest.TempPathFactory, tiny_root: Path) -> Path:
    """A 4-trial run of the preset on tiny data, from a fresh directory (read-only for tests)."""
    cwd = tmp_path_factory.mktemp("search")
    proc = run_cli(["-m", *search(tiny_root, 4)], cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cwd


# --- fast: the pieces -----------------------------------------------------------------------


def test_relative_sqlite_storage_becomes_absolute_with_a_lock_timeout(tmp_path: Path) -> None:
    url = storage_url("sqlite:///studies/s.db", cwd=tmp_path)
    assert url == f"sqlite:///{tmp_path.resolve()}/studies/s.db?timeout=60"
    assert (tmp_path / "studies").is_dir()  # sqlite does not create folders
    assert storage_url("sqlite:////abs/s.db?timeout=5") == "sqlite:////abs/s.db?timeout=5"
    pg = "postgresql://user:pw@db.example/optuna"
    assert storage_url(pg) == pg and storage_url(None) is None


def test_a_relative_journal_file_becomes_absolute(tmp_path: Path) -> None:
    url = storage_url("journal:///studies/s.log", cwd=tmp_path)
    assert url == f"journal:///{tmp_path.resolve()}/studies/s.log"  # journal:////abs/...
    assert (tmp_path / "studies").is_dir()
    assert storage_url(url) == url  # absolute stays
    storage = open_storage(url)
    assert isinstance(storage, optuna.storages.JournalStorage)
    assert isinstance(
        open_storage(storage_url("sqlite:///s.db", tmp_path)), optuna.storages.RDBStorage
    )


def test_passwords_in_storage_urls_are_found() -> None:
    assert has_password("postgresql://me:secret@db.example/optuna")
    assert has_password("postgresql+psycopg://me:@db.example:5433/optuna")
    assert has_password("postgresql://me@db.example/optuna?sslmode=require&password=secret")
    assert not has_password("postgresql://me@db.example/optuna?sslmode=require")
    assert not has_password("sqlite:////abs/studies/x.db?timeout=60")
    assert not has_password("journal:////abs/studies/x.log") and not has_password(None)
    # read as SQLAlchemy reads them: a "?" inside the password, a MySQL driver's passwd key
    assert has_password("postgresql://alice:pa?ss@db/optuna")
    assert has_password("mysql+pymysql://alice@db/optuna?passwd=s3cret")
    assert not has_password("sqlite:////data/a:b@c/x.db")  # a path, not a user and password


def test_a_password_is_hidden_wherever_a_url_is_shown() -> None:
    assert hide_password("postgresql://alice:pa?ss@db/optuna") == "postgresql://alice:***@db/optuna"
    shown = hide_password("mysql+pymysql://alice@db/optuna?passwd=s3cret&charset=utf8")
    assert "s3cret" not in shown and "passwd=***" in shown and "charset=utf8" in shown
    assert hide_password("sqlite:////data/a:b@c/x.db") == "sqlite:////data/a:b@c/x.db"
    assert hide_password("journal:////abs/x.log") == "journal:////abs/x.log"


def test_a_direction_that_contradicts_the_objective_is_named() -> None:
    assert "pass hydra.sweeper.direction=minimize" in direction_error("val_loss", "maximize")
    assert "pass hydra.sweeper.direction=maximize" in direction_error("test_acc", "minimize")
    assert direction_error("val_loss", "minimize") is None
    assert direction_error("val_acc", "maximize") is None
    assert direction_error("val_acc", ["maximize", "minimize"]).startswith(  # one each
        "objective=[val_acc] has 1 objective(s) but hydra.sweeper.direction=[maximize,minimize]"
    )
    assert direction_error("custom_metric", "minimize") is None  # unknown: not judged


def test_a_job_outside_a_search_reports_nothing(compose_cfg) -> None:
    trial = OptunaTrial.from_config(compose_cfg([]))
    assert not trial.active and trial.report(1, 0.5) is False
    trial.prune()  # a no-op, not an error
    assert reported_metric("val_acc") == "val_acc" and reported_metric("test_loss") == "val_loss"


# --- slow: real sweeps through the command line ---------------------------------------------


@pytest.mark.slow
def test_every_trial_is_a_job_with_the_params_the_study_recorded(first_search: Path) -> None:
    cwd = first_search
    assert (cwd / "studies" / f"{STUDY}.db").is_file()  # a stable place, not a time-stamped dir
    study = load(cwd)
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    trials = study.get_trials()
    assert [t.number for t in trials] == [0, 1, 2, 3]
    by_trial = rows(cwd)
    assert sorted(by_trial) == [0, 1, 2, 3]
    for t in trials:
        row = by_trial[t.number]
        assert t.state.name == TRIAL_STATE[row["status"]], row["status"]
        assert row["study_name"] == STUDY
        assert {k: row[k] for k in SPACE} == t.params  # what the job trained with
        returned = None if t.state.name == "FAIL" else pytest.approx(row["val_acc"])
        assert t.value == returned  # what the job returned (a FAIL trial has no value)
        epochs = json.loads((row["_dir"] / "epochs.json").read_text())
        assert t.intermediate_values == {
            e["epoch"]: pytest.approx(e["val_accuracy"]) for e in epochs[: reported_epochs(row)]
        }
        assert "optuna" not in row["run_name"] and f"model={t.params['model']}" in row["run_name"]
        assert list((row["_dir"] / "tb" / row["run_name"]).glob("events.out.tfevents.*"))
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 4


@pytest.mark.slow
def test_running_the_search_again_continues_the_same_study(
    first_search: Path, tiny_root: Path, tmp_path: Path
) -> None:
    cwd = tmp_path / "resume"
    shutil.copytree(first_search, cwd)  # the first search stays as it was for the other tests
    before = {t.number: t.params for t in load(cwd).trials}
    proc = run_cli(["-m", *search(tiny_root, 2)], cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = load(cwd).trials
    assert [t.number for t in after] == [0, 1, 2, 3, 4, 5]
    assert {t.number: t.params for t in after[:4]} == before
    # the seeded sampler does not replay the first run's proposals
    assert after[4].params != before[0] and after[5].params != before[1]
    assert sorted(rows(cwd)) == [0, 1, 2, 3, 4, 5]


@pytest.mark.slow
def test_pruning_stops_a_clearly_worse_trial(tiny_root: Path, tmp_path: Path) -> None:
    """Ad hoc search (the issue's command line); the study is seeded with two good trials and a
    hopeless one (lr 1e-5), which the median pruner stops as soon as it may."""
    storage = storage_url("sqlite:///studies/optuna.db", cwd=tmp_path)  # hydra/sweeper=optuna's
    study = optuna.create_study(study_name="prune", storage=storage, direction="maximize")
    for lr in (3e-3, 2e-3, 1e-5):
        study.enqueue_trial({"lr": lr})
    args = [
        "-m", "hydra/sweeper=optuna", "hydra.sweeper.study_name=prune", "hydra.sweeper.n_trials=3",
        "lr=tag(log,interval(1e-5,1e-1))", "hydra.sweeper.pruner.n_startup_trials=2",
        "hydra.sweeper.pruner.n_warmup_steps=1", "model=network", "batch_size=30", "epochs=3",
        f"data_dir={tiny_root}", *QUIET,
    ]  # fmt: skip
    proc = run_cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = load(tmp_path, "prune", "optuna").trials
    states = [t.state.name for t in trials]
    assert states == ["COMPLETE", "COMPLETE", "PRUNED"], [t.intermediate_values for t in trials]
    by_trial = rows(tmp_path)
    assert [by_trial[n]["status"] for n in (0, 1, 2)] == ["completed", "completed", "pruned"]
    pruned = by_trial[2]
    assert pruned["lr"] == 1e-5 and pruned["epochs_run"] < 3 and pruned["test_acc"] is None
    assert len(trials[2].intermediate_values) == pruned["epochs_run"]
    assert not (pruned["_dir"] / "model.pt").exists()


@pytest.mark.slow
def test_dashboard_serves_the_study_and_its_page_renders(
    first_search: Path, tmp_path: Path
) -> None:
    exe = Path(sys.executable).with_name("optuna-dashboard")
    if not exe.exists():
        exe = Path(shutil.which("optuna-dashboard") or "optuna-dashboard")
    port = free_port()
    storage = f"sqlite:///{first_search}/studies/{STUDY}.db"
    server = subprocess.Popen(
        [str(exe), storage, "--host", "127.0.0.1", "--port", str(port), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        studies = wait_for_studies(base, server)
        assert [(s["study_name"], s["directions"]) for s in studies] == [(STUDY, ["maximize"])]
        study_id = studies[0]["study_id"]
        detail = get_json(f"{base}/api/studies/{study_id}")
        assert [t["number"] for t in detail["trials"]] == [0, 1, 2, 3]
        assert all(t["state"] in ("Complete", "Pruned") for t in detail["trials"])
        assert all(t["intermediate_values"] for t in detail["trials"])  # the per-epoch curves
        assert {p["name"] for p in detail["trials"][0]["params"]} == set(SPACE)

        page = f"{base}/dashboard/studies/{study_id}"
        dom = chromium_page(page, tmp_path / "chromium", tmp_path / "dashboard.png")
        assert STUDY in dom  # the page rendered the study, not just the app shell
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.mark.slow
def test_two_workers_share_one_study(tiny_root: Path, tmp_path: Path) -> None:
    args = [
        sys.executable,
        str(REPO / "train.py"),
        "-m",
        *search(tiny_root, 2, epochs=1),
        "threads=1",
    ]
    workers = [
        subprocess.Popen(
            args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(2)
    ]  # started together, same storage and study
    logs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], logs[0][-2000:] + logs[1][-2000:]
    ran = [{int(n) for n in re.findall(r"\(trial (\d+)\)", log)} for log in logs]
    assert all(len(r) == 2 for r in ran) and not ran[0] & ran[1]  # each ran its own 2 trials
    trials = load(tmp_path).trials
    assert [t.number for t in trials] == [0, 1, 2, 3]
    by_trial = rows(tmp_path)  # one results row per trial, none lost, none twice
    assert sorted(by_trial) == [0, 1, 2, 3]
    for t in trials:  # all finished, as their jobs did
        assert t.state.name == TRIAL_STATE[by_trial[t.number]["status"]]
    assert all({k: by_trial[t.number][k] for k in SPACE} == t.params for t in trials)
    assert (
        len({tuple(sorted(t.params.items())) for t in trials}) == 4
    )  # no worker replays the other
    # started in the same second, yet each worker has its own sweep folder (<time>_<host>-<pid>)
    # with its own multirun.yaml, and its job numbers 0, 1 count only its own jobs
    folders = {by_trial[t.number]["_dir"].parent for t in trials}
    assert len(folders) == 2 and all((f / "multirun.yaml").is_file() for f in folders)
    assert all(re.fullmatch(r"[\d-]+_[\d-]+_.+-\d+", f.name) for f in folders), folders
    for folder in folders:
        nums = sorted(r["job_num"] for r in by_trial.values() if r["_dir"].parent == folder)
        assert nums == [0, 1]


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, says",
    [
        (["hydra/sweeper=optuna", "objective=val_loss"], "hydra.sweeper.direction=minimize"),
        ([PRESET, "hydra.sweeper.direction=minimize"], "hydra.sweeper.direction=maximize"),
        ([PRESET, "hydra.sweeper.storage=postgresql://me:s3cr3t-pw@127.0.0.1:9/optuna"],
         "~/.pgpass"),
    ],
    ids=["loss-maximized", "accuracy-minimized", "password-in-url"],
)  # fmt: skip
def test_a_contradicting_direction_or_a_password_is_refused_before_anything_is_written(
    tmp_path: Path, tiny_root: Path, args: list[str], says: str
) -> None:
    proc = run_cli(["-m", *args, f"data_dir={tiny_root}", *QUIET], tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (line,) = proc.stderr.strip().splitlines()  # one line, no traceback
    assert line.startswith("error: ") and says in line, line
    assert "s3cr3t-pw" not in proc.stdout + proc.stderr
    assert list(tmp_path.iterdir()) == []  # no study, no sweep folder, no row


@pytest.mark.slow
def test_two_workers_share_a_journal_file(tiny_root: Path, tmp_path: Path) -> None:
    """Optuna's journal file, for clusters without a database server: the sweeper, the jobs'
    pruning and `make dashboard` all take journal:///<relative or absolute path>."""
    args = ["-m", *search(tiny_root, 2, epochs=2), "threads=1",
            "hydra.sweeper.storage=journal:///studies/fashion_mnist.log"]  # fmt: skip
    command = [sys.executable, str(REPO / "train.py"), *args]
    out = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
    workers = [subprocess.Popen(command, cwd=tmp_path, **out) for _ in range(2)]
    logs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], logs[0][-2000:] + logs[1][-2000:]

    url = f"journal:///{tmp_path.resolve()}/studies/fashion_mnist.log"  # made absolute
    trials = optuna.load_study(study_name=STUDY, storage=open_storage(url)).trials
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    by_trial = rows(tmp_path)
    assert sorted(by_trial) == [0, 1, 2, 3]
    for t in trials:  # each job told its trial its epochs and its end through the journal
        row = by_trial[t.number]
        assert row["study_storage"] == url and row["epochs_run"] >= 1
        assert t.state.name == TRIAL_STATE[row["status"]], row["status"]
        assert len(t.intermediate_values) == reported_epochs(row)

    port = free_port()
    dashboard = subprocess.Popen(
        ["make", "--no-print-directory", "-f", str(REPO / "Makefile"), "dashboard",
         f"VENV={REPO / '.venv'}", "STORAGE=journal:///studies/fashion_mnist.log",
         f"PORT={port}"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        studies = wait_for_studies(f"http://127.0.0.1:{port}", dashboard)
        assert [s["study_name"] for s in studies] == [STUDY]
    finally:
        os.killpg(dashboard.pid, signal.SIGTERM)  # make and the dashboard it started
        dashboard.wait(timeout=30)
