"""The leaderboard over hand-written job folders: ranking, seeds, broken rows, paths, CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cnnsweep import aggregate
from cnnsweep.tracking import write_epoch_rows, write_results_row


def make_job(job_dir: Path, epochs: int = 2, **row: Any) -> Path:
    """A job folder as run_job leaves it (results row + epoch rows)."""
    full = {"status": "completed", "error": None, "lr": 0.01, "batch_size": 100, "shuffle": True,
            "epochs": epochs, "seed": 42, "model": "network", "data": "fashion_mnist",
            "optimizer": "adam", "weight_decay": 0.0, "val_fraction": 0.1, "objective": "val_acc",
            "train_loss": 0.5, "train_acc": 0.8, "val_loss": 0.5, "val_acc": 0.8,
            "test_loss": 0.5, "test_acc": 0.8, "best_val_acc": 0.8, "best_epoch": epochs,
            "epochs_run": epochs, "epoch_duration": 1.0, "run_duration": 2.0, "run_name": "x",
            "overrides": [], "job_num": int(job_dir.name) if job_dir.name.isdigit() else 0,
            "job_dir": str(job_dir), "sweep_dir": str(job_dir.parent), "threads": 2}  # fmt: skip
    full.update(row)
    full.setdefault(
        "config", {"lr": full["lr"], "seed": full["seed"], "model": {"name": full["model"]}}
    )
    write_results_row(job_dir, full)
    write_epoch_rows(job_dir, [
        {"run": full["job_num"], "epoch": e, "loss": 1.0 / e, "accuracy": 0.5 + e / 10,
         "epoch duration": 1.0, "run duration": float(e), "lr": full["lr"], "val_loss": 1.0 / e,
         "val_accuracy": full["val_acc"] if e == epochs else 0.5}
        for e in range(1, epochs + 1)
    ])  # fmt: skip
    return job_dir


def make_sweep(root: Path, rows: list[dict[str, Any]]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "multirun.yaml").write_text("hydra: {}\n")
    for i, row in enumerate(rows):
        make_job(root / str(i), **row)
    return root


def test_ranks_best_first_by_the_objective(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path / "s", [
        {"lr": 0.1, "objective": "val_loss", "val_loss": 0.9, "val_acc": 0.9},
        {"lr": 0.01, "objective": "val_loss", "val_loss": 0.3, "val_acc": 0.7},
        {"lr": 0.001, "objective": "val_loss", "val_loss": 0.6, "val_acc": 0.8},
    ])  # fmt: skip
    report = aggregate.aggregate([sweep], tmp_path / "out", base=tmp_path)
    assert report["objective"] == "val_loss"  # the jobs' own objective; lower is better
    assert [(r["rank"], r["lr"]) for r in report["runs"]] == [(1, 0.01), (2, 0.001), (3, 0.1)]
    assert [r["score"] for r in report["runs"]] == [0.3, 0.6, 0.9]

    report = aggregate.aggregate([sweep], tmp_path / "out", objective="val_acc", base=tmp_path)
    assert [r["lr"] for r in report["runs"]] == [0.1, 0.001, 0.01]  # higher is better
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "Ranked by `val_acc` (higher is better)" in summary
    assert "| 1 | 0 | 0.1 | 0.9000 |" in summary  # rank, job, lr, val_acc


def test_several_seeds_give_mean_and_std_per_configuration(tmp_path: Path) -> None:
    rows = [{"lr": lr, "seed": seed, "val_acc": acc, "test_acc": acc - 0.1}
            for lr, accs in ((0.01, (0.7, 0.8, 0.9)), (0.001, (0.5, 0.5, 0.5)))
            for seed, acc in zip((1, 2, 3), accs, strict=True)]  # fmt: skip
    sweep = make_sweep(tmp_path / "s", rows)
    report = aggregate.aggregate([sweep], tmp_path / "out", base=tmp_path)
    assert len({r["config_id"] for r in report["runs"]}) == 2  # the seed is not the config
    groups = aggregate.seed_groups(report["runs"], "val_acc")
    assert [(g["lr"], g["n"]) for g in groups] == [(0.01, 3), (0.001, 3)]
    assert groups[0]["val_acc_mean"] == pytest.approx(0.8)
    assert groups[0]["val_acc_std"] == pytest.approx(0.1)  # sample std over the 3 seeds
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "## Over seeds" in summary
    assert "| 1 | 0.01 | 3 | 0.8000 ± 0.1000 | 0.7000 ± 0.1000 |" in summary
    assert "| 2 | 0.001 | 3 | 0.5000 ± 0.0000 | 0.4000 ± 0.0000 |" in summary


def test_broken_jobs_are_listed_with_their_status_never_ranked(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path / "s", [
        {"val_acc": 0.6},
        {"status": "diverged", "error": "training loss became nan in epoch 1", "val_acc": None,
         "train_loss": float("nan")},
        {"status": "failed", "error": "RuntimeError: out of memory", "val_acc": None},
        {"status": "running", "val_acc": 0.99},  # a killed job's last epoch is not a result
    ])  # fmt: skip
    (sweep / "4").mkdir()
    (sweep / "4" / "results.json").write_text('{"status": "completed", "lr": 0.0')  # truncated
    (sweep / "5" / ".hydra").mkdir(parents=True)  # killed before its row was written
    (sweep / "5" / ".hydra" / "config.yaml").write_text("lr: 0.5\nmodel: {name: lenet}\n")
    (sweep / "6").mkdir()
    (sweep / "6" / "results.json").write_text("[]")
    make_job(sweep / "7", status="exploded")  # a status this version does not know
    make_job(sweep / "8", status="pruned", lr=0.3, error="pruned by optuna at epoch 1")

    report = aggregate.aggregate([sweep], tmp_path / "out", base=tmp_path)
    runs = report["runs"]
    assert [(r["job"], r["status"]) for r in runs] == [
        (0, "completed"), (8, "pruned"), (1, "diverged"), (2, "failed"), (3, "running"),
        (4, "corrupt"), (6, "corrupt"), (7, "corrupt"), (5, "missing"),
    ]  # fmt: skip
    assert [r["rank"] for r in runs] == [1] + [None] * 8
    by_job = {r["job"]: r for r in runs}
    assert by_job[2]["error"] == "RuntimeError: out of memory"
    assert "not valid JSON" in by_job[4]["error"] and by_job[4]["job_dir"] == "s/4"
    assert by_job[5]["lr"] == 0.5 and by_job[5]["model"] == "lenet"
    assert "exploded" in by_job[7]["error"]
    summary = (tmp_path / "out" / "summary.md").read_text()
    not_ranked = summary.split("## Not ranked")[1]
    assert all(f"| s/{job} |" in not_ranked for job in range(1, 9))
    assert "Same in every job: batch_size=100" in summary  # unknown values do not count
    assert "| 8 | pruned | 0.3 | network | pruned by optuna at epoch 1 | s/8 |" in not_ranked
    assert "RuntimeError: out of memory" in not_ranked
    # NaN never reaches the JSON files
    assert "NaN" not in (tmp_path / "out" / "runs.json").read_text()
    json.loads((tmp_path / "out" / "epochs.json").read_text())


def test_same_files_when_run_twice(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path / "s", [{"val_acc": 0.7}, {"val_acc": 0.7}, {"status": "failed"}])
    (sweep / "3").mkdir()
    (sweep / "3" / "results.json").write_text("{")
    aggregate.aggregate([sweep], tmp_path / "out", base=tmp_path)
    first = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    assert sorted(first) == ["epochs.csv", "epochs.json", "runs.csv", "runs.json", "summary.md",
                             "test_acc.png", "val_acc.png"]  # fmt: skip
    aggregate.aggregate([sweep], tmp_path / "out", base=tmp_path)
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == first
    runs = json.loads(first["runs.json"])
    assert [(r["rank"], r["job"]) for r in runs[:2]] == [(1, 0), (2, 1)]  # ties: by job number


def test_default_folders_relative_paths_and_printout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    make_sweep(tmp_path / "multirun/2026-01-01/10-00-00", [{"val_acc": 0.6}, {"val_acc": 0.9}])
    make_job(tmp_path / "outputs/2026-01-01/11-00-00", sweep_dir=None, val_acc=0.75)
    make_job(tmp_path / "outputs/2026-01-01/12-00-00", status="running", sweep_dir=None)

    assert aggregate.main([]) == 0
    printed = capsys.readouterr().out
    runs = json.loads((tmp_path / "results" / "runs.json").read_text())
    assert [(r["rank"], r["sweep"], r["job"]) for r in runs] == [
        (1, "multirun/2026-01-01/10-00-00", 1),
        (2, "outputs/2026-01-01/11-00-00", 0),  # a single run is its own sweep
        (3, "multirun/2026-01-01/10-00-00", 0),
        (None, "outputs/2026-01-01/12-00-00", 0),
    ]
    assert "wrote results/runs.csv" in printed and "top 3 by val_acc" in printed
    top = printed.split("top 3 by val_acc:")[1].splitlines()
    assert top[1].startswith("rank") and top[2].startswith("1 ") and "10-00-00" in top[2]
    assert "running: outputs/2026-01-01/12-00-00" in printed
    epochs = json.loads((tmp_path / "results" / "epochs.json").read_text())
    assert len(epochs) == 8 and {e["sweep"] for e in epochs} == {r["sweep"] for r in runs}

    assert aggregate.main(["multirun", "--out", "only_multirun"]) == 0
    assert len(json.loads((tmp_path / "only_multirun" / "runs.json").read_text())) == 2


def test_nothing_to_aggregate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    assert aggregate.main([]) == 1
    assert "no jobs found" in capsys.readouterr().err
    assert aggregate.main(["no_such_dir"]) == 2
    assert "not a folder: no_such_dir" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()
