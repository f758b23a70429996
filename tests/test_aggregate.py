"""The leaderboard over hand-written job folders: ranking, seeds, broken rows, paths, CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cnnsweep.files import write_epoch_rows, write_results_row
from cnnsweep.results import cli as aggregate
from cnnsweep.results.load import frame
from cnnsweep.results.stats import seed_stats


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


def over_seeds(runs: list[dict[str, Any]], objective: str = "val_acc") -> list[dict[str, Any]]:
    """``seed_stats`` of ``runs.json``'s rows, as dicts."""
    return seed_stats(frame(runs), objective)[0].to_dict("records")


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
    groups = over_seeds(report["runs"])
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
    assert sorted(first) == ["epochs.csv", "epochs.json", "pareto.png", "runs.csv", "runs.json",
                             "summary.md", "test_acc.png", "val_acc.png"]  # fmt: skip
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


def test_confidence_interval_of_the_objective_over_seeds(tmp_path: Path) -> None:
    # 0.7, 0.8, 0.9: mean 0.8, std 0.1; t(0.975, 2 dof) = 4.302653 -> half width
    # 4.302653 * 0.1 / sqrt(3) = 0.248414 -> [0.551586, 1.048414]
    rows = [
        {"lr": 0.01, "seed": seed, "val_acc": acc} for seed, acc in ((1, 0.7), (2, 0.8), (3, 0.9))
    ]
    sweep = make_sweep(tmp_path / "s", [*rows, {"lr": 0.1, "val_acc": 0.5}])
    report = aggregate.aggregate([sweep], tmp_path / "out", base=tmp_path)
    groups = over_seeds(report["runs"])
    assert (groups[0]["ci_low"], groups[0]["ci_high"]) == (
        pytest.approx(0.551586, abs=1e-6),
        1.0,  # 1.048414: an accuracy's interval is clipped to [0, 1]
    )
    assert groups[1]["n"] == 1 and pd.isna(groups[1]["ci_low"])  # one seed: no interval
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "| rank | lr | seeds | val_acc | test_acc | 95% CI of val_acc |" in summary
    assert "| 1 | 0.01 | 3 | 0.8000 ± 0.1000 | 0.8000 ± 0.0000 | [0.5516, 1.0000] |" in summary
    assert "| 2 | 0.1 | 1 | 0.5000 | 0.8000 | – |" in summary


def test_over_seeds_counts_distinct_seeds_once(tmp_path: Path) -> None:
    """The same (configuration, seed) in two sweeps: the one that finished last counts; moving
    the data or changing the objective does not make it another configuration."""

    def config(seed: int, root: str, objective: str = "val_acc") -> dict[str, Any]:
        data = {"name": "fashion_mnist", "root": root, "download": True}
        return {"lr": 0.01, "seed": seed, "data": data, "objective": objective}

    first = make_sweep(tmp_path / "a", [
        {"seed": 1, "val_acc": 0.6, "finished_at": "2026-01-01T10:00:00+00:00",
         "config": config(1, "/data")},
        {"seed": 2, "val_acc": 0.8, "finished_at": "2026-01-01T10:00:00+00:00",
         "config": config(2, "/data")},
        {"seed": 1, "val_acc": 0.6, "finished_at": None, "objective": "val_loss",
         "config": config(1, "/data", "val_loss")},
    ])  # fmt: skip
    again = make_sweep(tmp_path / "b", [  # seed 1 again, later, after the data moved
        {"seed": 1, "val_acc": 0.7, "finished_at": "2026-01-02T10:00:00+00:00",
         "config": config(1, "/elsewhere")},
    ])  # fmt: skip
    report = aggregate.aggregate([first, again], tmp_path / "out", objective="val_acc",
                                 base=tmp_path)  # fmt: skip
    runs = report["runs"]
    assert len(runs) == 4 and len({r["config_id"] for r in runs}) == 1
    (group,) = over_seeds(runs)
    assert group["n"] == 2  # seeds 1 and 2, not four jobs
    assert group["val_acc_mean"] == pytest.approx((0.7 + 0.8) / 2)  # b/0 finished last
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "| 1 | network | 2 | 0.7500 ± 0.0707 |" in summary
    assert "2 duplicate job(s) of a configuration and seed" in summary
    assert sum(r["rank"] is not None for r in runs) == 4  # the leaderboard still lists each


def test_two_jobs_with_one_number_keep_their_curves_apart(tmp_path: Path) -> None:
    """Two Optuna workers share a sweep folder and both number their jobs from 0."""
    sweep = make_sweep(tmp_path / "s", [])
    make_job(sweep / "trial_0", job_num=0, val_acc=0.7, epochs=3)
    make_job(sweep / "trial_1", job_num=0, val_acc=0.9, epochs=3)
    aggregate.aggregate([sweep], tmp_path / "out", base=tmp_path)
    epochs = json.loads((tmp_path / "out" / "epochs.json").read_text())
    curves: dict[str, list] = {}
    for e in epochs:
        curves.setdefault(e["job_dir"], []).append((e["epoch"], e["val_accuracy"]))
    assert curves == {"s/trial_0": [(1, 0.5), (2, 0.5), (3, 0.7)],
                      "s/trial_1": [(1, 0.5), (2, 0.5), (3, 0.9)]}  # fmt: skip
    # an Optuna trial's number is its job number
    make_job(sweep / "trial_0", job_num=0, trial_number=5, val_acc=0.7)
    report = aggregate.aggregate([sweep], tmp_path / "out", base=tmp_path)
    assert {r["job_dir"]: r["job"] for r in report["runs"]} == {"s/trial_0": 5, "s/trial_1": 0}
    assert {e["run"] for e in report["epochs"] if e["job_dir"] == "s/trial_0"} == {5}


def test_new_row_keys_statuses_and_extra_columns(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path / "s", [
        {"val_acc": 0.8, "objective_value": 0.8, "objective_from": "best epoch 2", "width": 16,
         "class_names": ["cat", "dog"], "tta": True, "flops": 1000, "a_new_key": 3},
        {"status": "interrupted", "error": "KeyboardInterrupt after epoch 1"},
        {"status": "failed", "error": "boom"},
    ])  # fmt: skip
    report = aggregate.aggregate([sweep], tmp_path / "out", base=tmp_path)
    assert [r["status"] for r in report["runs"]] == ["completed", "failed", "interrupted"]
    top = report["runs"][0]
    assert (top["width"], top["tta"], top["flops"], top["a_new_key"]) == (16, True, 1000, 3)
    header = (tmp_path / "out" / "runs.csv").read_text().splitlines()[0].split(",")
    assert {"objective_value", "class_names", "study_storage", "a_new_key"} <= set(header)
    assert header[-1] == "a_new_key"  # unknown keys after the known columns
    assert '"[""cat"", ""dog""]"' in (tmp_path / "out" / "runs.csv").read_text()
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "1 completed, 1 failed, 1 interrupted" in summary
    assert (
        "| 1 | interrupted | network | adam | 0.01 | 100 | KeyboardInterrupt after epoch 1 |"
        in summary
    )


def test_the_printout_says_why_each_job_is_not_ranked(tmp_path: Path, capsys, monkeypatch) -> None:
    pruned = "pruned after epoch 1 (last reported value)"
    sweep = make_sweep(tmp_path / "sweep", [
        {},
        {"status": "pruned", "val_acc": 0.6, "objective_from": pruned},
        {"status": "failed", "error": "ConfigError: lr=-1 is not allowed"},
    ])  # fmt: skip
    monkeypatch.chdir(tmp_path)
    assert aggregate.main([str(sweep), "--out", "res"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert f"pruned: sweep/1: {pruned}" in out
    assert "failed: sweep/2: ConfigError: lr=-1 is not allowed" in out
    assert not any(line.endswith(": None") for line in out)


def test_a_completed_job_without_the_objective_says_what_to_rank_it_by(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    # the seed grid beside experiment=fashion_mnist_fast: a fixed recipe keeps no validation
    # split, so it has no val_acc, and only it has the cnn model's width
    sweep = make_sweep(tmp_path / "sweep", [
        {}, {"lr": 0.001},
        {"model": "cnn", "width": 24, "val_fraction": 0, "objective": "test_acc",
         "val_acc": None, "val_loss": None, "best_val_acc": None, "test_acc": 0.93},
    ])  # fmt: skip
    monkeypatch.chdir(tmp_path)
    assert aggregate.main([str(sweep), "--out", "res"]) == 0
    hint = "no val_acc to rank by; rank by its objective: "
    hint += 'make aggregate ARGS="--objective test_acc"'
    assert f"completed: sweep/2: {hint}" in capsys.readouterr().out.splitlines()
    summary = (tmp_path / "res" / "summary.md").read_text()
    assert f"| {hint} | sweep/2 |" in summary.split("## Not ranked")[1]
    same = next(line for line in summary.splitlines() if line.startswith("Same in every job"))
    assert "seed=42" in same and "width" not in same  # the network jobs have no width

    assert aggregate.main([str(sweep), "--out", "res", "--objective", "test_acc"]) == 0
    out = capsys.readouterr().out
    assert "3 job(s): 3 completed" in out and "sweep/2" not in out.split("Pareto front")[1]
    assert "## Not ranked" not in (tmp_path / "res" / "summary.md").read_text()


def test_test_acc_picture_keeps_long_labels_readable(tmp_path: Path) -> None:
    """A search varies many knobs: each bar's label is wrapped, not cut off by the figure edge."""
    knobs = {"lr": 0.0333866, "batch_size": 128, "epochs": 12, "width": 24, "depth": 2,
             "dropout": 0.177724, "weight_decay": 0.000405084,
             "label_smoothing": 0.0755786}  # fmt: skip
    rows = [{k: v * (1 + i) if isinstance(v, float) else v + i for k, v in knobs.items()}
            | {"test_acc": 0.9 + i / 100} for i in range(4)]  # fmt: skip
    sweep = make_sweep(tmp_path / "s", rows)
    aggregate.aggregate([sweep], tmp_path / "out", base=tmp_path)
    with Image.open(tmp_path / "out" / "test_acc.png") as png:
        pixels = np.asarray(png.convert("L"))
    # nothing drawn at either edge: no label or title runs off the picture
    assert pixels[:, :3].min() == 255 and pixels[:, -3:].min() == 255


def test_over_seeds_says_how_many_seeds_did_not_complete(tmp_path: Path) -> None:
    """A failed, diverged or pruned seed is left out of the mean, and the seeds cell says so."""
    sweep = make_sweep(tmp_path / "s", [
        {"lr": 0.01, "seed": 1, "val_acc": 0.8},
        {"lr": 0.01, "seed": 2, "val_acc": 1.0},
        {"lr": 0.01, "seed": 3, "status": "failed", "error": "boom", "val_acc": None},
        {"lr": 0.01, "seed": 2, "status": "failed", "error": "boom", "val_acc": None},  # rerun
        {"lr": 0.1, "seed": 1, "val_acc": 0.6},
        {"lr": 0.1, "seed": 2, "val_acc": 0.7},
        {"lr": 0.1, "seed": 3, "status": "pruned", "val_acc": 0.3},
        {"lr": 0.1, "seed": 4, "status": "diverged", "val_acc": None},
        {"lr": 0.1, "seed": 4, "status": "failed", "val_acc": None},
        {"lr": 0.5, "seed": 1, "val_acc": 0.5},
        {"lr": 0.5, "seed": 2, "val_acc": 0.5},
    ])  # fmt: skip
    report = aggregate.aggregate([sweep], tmp_path / "out", base=tmp_path)
    groups = {g["lr"]: g for g in over_seeds(report["runs"])}
    assert {lr: (g["n"], g["seeds_total"], g["not_completed"]) for lr, g in groups.items()} == {
        0.01: (2, 3, "1 failed"),  # seed 2 completed once: it counts as completed
        0.1: (2, 4, "1 pruned, 1 diverged"),
        0.5: (2, 2, ""),
    }
    summary = (tmp_path / "out" / "summary.md").read_text()
    over = summary.split("## Over seeds")[1].split("##")[0]
    assert "| 1 | 0.01 | 2 of 3 (1 failed) | 0.9000 ± 0.1414 |" in over
    assert "| 2 | 0.1 | 2 of 4 (1 pruned, 1 diverged) | 0.6500 ± 0.0707 |" in over
    assert "| 3 | 0.5 | 2 | 0.5000 ± 0.0000 |" in over
    assert "`2 of 3 (1 failed)` is a mean over 2 of the 3 seeds run" in over


def test_over_seeds_is_shown_for_one_completed_seed_of_several(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path / "s", [
        {"seed": 1, "val_acc": 0.8},
        {"seed": 2, "status": "failed", "error": "boom", "val_acc": None},
        {"seed": 3, "status": "pruned", "val_acc": 0.2},
    ])  # fmt: skip
    aggregate.aggregate([sweep], tmp_path / "out", base=tmp_path)
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "## Over seeds" in summary
    assert "| 1 | network | 1 of 3 (1 pruned, 1 failed) | 0.8000 | 0.8000 | – |" in summary


def test_confidence_interval_stays_inside_the_values_a_metric_can_take(tmp_path: Path) -> None:
    # 0.1 and 0.99: mean 0.545, t(0.975, 1 dof) = 12.706 -> half width 5.65, far outside [0, 1]
    sweep = make_sweep(tmp_path / "s", [
        {"seed": 1, "val_acc": 0.1, "val_loss": 0.1},
        {"seed": 2, "val_acc": 0.99, "val_loss": 2.0},
    ])  # fmt: skip
    aggregate.aggregate([sweep], tmp_path / "out", base=tmp_path)
    runs = json.loads((tmp_path / "out" / "runs.json").read_text())
    (group,) = over_seeds(runs)
    assert group["val_acc_mean"] == pytest.approx(0.545)
    assert (group["ci_low"], group["ci_high"]) == (0.0, 1.0)
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "| 1 | network | 2 | 0.5450 ± 0.6293 | 0.8000 ± 0.0000 | [0.0000, 1.0000] |" in summary
    assert "Student's t over the completed seeds" in summary
    assert "clipped to [0, 1] for an accuracy" in summary

    (group,) = over_seeds(runs, "val_loss")  # a loss is never below 0, but has no upper bound
    assert group["ci_low"] == 0.0 and group["ci_high"] == pytest.approx(1.05 + 12.7062 * 0.95, 1e-4)
