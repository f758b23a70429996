"""Debug presets and data subsets: a smoke test in seconds, a model that must learn a few
batches by heart, a fraction of every split; all under debug/, away from the leaderboard."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli


def cwd(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def only_job(root: Path) -> Path:
    (row,) = root.rglob("results.json")
    return row.parent


@pytest.mark.slow
def test_debug_fast_runs_every_path_on_two_batches_under_debug(
    tiny_root: Path, tmp_path: Path
) -> None:
    args = ["debug=fast", f"data_dir={tiny_root}", "progress=false", "batch_size=25"]
    proc = run_cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not (tmp_path / "outputs").exists()  # the leaderboard's roots stay clean
    job = only_job(tmp_path / "debug")
    row = json.loads((job / "results.json").read_text())
    assert row["status"] == "completed" and row["epochs_run"] == 1 and row["limit_batches"] == 2
    for name in ("model.pt", "plot.png", "confusion_matrix.png", "epochs.csv", "train.log"):
        assert (job / name).is_file(), name
    assert list((job / "tb").rglob("events.out.tfevents.*"))
    report = json.loads((job / "classification_report.json").read_text())
    assert report["macro avg"]["support"] == 50  # 2 test batches of batch_size 25


@pytest.mark.slow
def test_debug_overfit_learns_four_batches_or_says_it_did_not(
    tiny_root: Path, tmp_path: Path
) -> None:
    args = ["debug=overfit", f"data_dir={tiny_root}", "progress=false", "batch_size=25"]
    proc = run_cli([*args, "lr=0.01"], cwd(tmp_path / "learns"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = json.loads((only_job(tmp_path / "learns" / "debug") / "results.json").read_text())
    assert row["train_acc"] == 1.0 and row["stopped_early_at"] == row["epochs_run"] < 200
    assert "overfit: 100% training accuracy on 4 fixed batches after epoch" in proc.stdout

    stuck = run_cli([*args, "lr=1e-9", "epochs=3"], cwd(tmp_path / "stuck"))
    assert stuck.returncode == 0, stuck.stderr[-2000:]
    assert "did not overfit:" in stuck.stdout and "training accuracy on 4 fixed batches" in (
        stuck.stdout
    )


@pytest.mark.slow
def test_limit_batches_takes_a_fraction_of_every_split(tiny_root: Path, tmp_path: Path) -> None:
    proc = run_cli(["-m", "debug=limit", "limit_batches=0.5", "lr=0.01,0.001",
                    f"data_dir={tiny_root}", "progress=false", "epochs=1"], tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(p.read_text()) for p in (tmp_path / "debug").rglob("results.json")]
    assert len(rows) == 2 and {r["limit_batches"] for r in rows} == {0.5}
    report = json.loads(next((tmp_path / "debug").rglob("classification_report.json")).read_text())
    assert report["macro avg"]["support"] == 50  # half of the 100 test images


@pytest.mark.parametrize(
    "knob,value", [("limit_batches", "0"), ("limit_batches", "1.5"), ("overfit_batches", "0"),
                   ("overfit_batches", "0.5")],
)  # fmt: skip
def test_bad_debug_knobs_are_one_line(tiny_root: Path, tmp_path: Path, knob: str, value: str):
    proc = run_cli([f"{knob}={value}", f"data_dir={tiny_root}"], tmp_path)
    assert proc.returncode == 2
    assert (
        proc.stderr.strip().splitlines()
        == [line for line in proc.stderr.strip().splitlines() if line.startswith(f"error: {knob}=")]
        and len(proc.stderr.strip().splitlines()) == 1
    )


@pytest.mark.slow
def test_debug_profile_writes_a_trace_and_a_table(tiny_root: Path, tmp_path: Path) -> None:
    args = ["debug=profile", f"data_dir={tiny_root}", "progress=false", "batch_size=10"]
    proc = run_cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    job = only_job(tmp_path / "debug")
    trace = json.loads((job / "profile.json").read_text())
    assert trace["traceEvents"] and any("conv" in e.get("name", "") for e in trace["traceEvents"])
    table = (job / "profile.txt").read_text()
    assert "Self CPU" in table and "aten::" in table
    assert "profile of 5 training steps" in proc.stdout

    few = run_cli([*args, "limit_batches=2"], cwd(tmp_path / "few"))  # 2 steps: none recorded
    assert few.returncode == 0, few.stderr[-2000:]
    assert "no profile: the job ran 2 training step(s); the profile starts at step 4" in few.stdout
    assert not list((tmp_path / "few").rglob("profile.*"))
