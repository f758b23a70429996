"""The learning-rate range test: a suggestion from the configured model and optimizer, a plot
and a JSON of the curve, the command that uses it, and nothing trained beyond it."""

from __future__ import annotations

import json
import math
from pathlib import Path

from conftest import run_cli

from cnnsweep.train.lr_find import MAX_LR, MIN_LR, smoothed, suggest


def test_the_suggestion_is_a_tenth_of_where_the_smoothed_loss_is_lowest() -> None:
    lrs = [10 ** (-6 + k / 10) for k in range(61)]  # 1e-6 .. 1
    # a valley: flat, falling from 1e-4, lowest at 1e-2, blowing up after it
    losses = [2.3 - 2 * max(0.0, min(1.0, (math.log10(lr) + 4) / 2)) for lr in lrs]
    losses = [v if lr <= 1e-2 else v + 20 * (math.log10(lr) + 2) for v, lr in zip(losses, lrs)]
    result = suggest(lrs, losses)
    assert 1e-2 <= result["loss_min_lr"] <= 10**-1.5  # the moving average lags a step or two
    assert result["suggested_lr"] == result["loss_min_lr"] / 10
    assert 1e-4 <= result["steepest_lr"] < result["loss_min_lr"]  # the loss falls fastest there
    assert len(result["smoothed_loss"]) == len(lrs) and result["min_lr"] == lrs[0]


def test_the_smoothed_curve_stops_at_the_first_non_finite_loss() -> None:
    assert len(smoothed([1.0, 0.9, float("nan"), 0.5])) == 2
    assert smoothed([2.0])[0] == 2.0  # debiased: the first value is itself


def test_lr_find_writes_its_curve_prints_the_command_and_trains_nothing_else(
    tiny_root: Path, tmp_path: Path
) -> None:
    args = ["lr_find=true", f"data_dir={tiny_root}", "model=bn_cnn", "batch_size=10",
            "hydra.run.dir=lrf", "progress=false"]  # fmt: skip
    proc = run_cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "lrf"
    result = json.loads((out / "lr_find.json").read_text())
    assert result["steps"] == len(result["lr"]) == len(result["loss"]) <= 30  # one epoch at most
    assert result["min_lr"] == MIN_LR and result["max_lr"] <= MAX_LR
    assert MIN_LR < result["suggested_lr"] < result["max_lr"]
    assert result["model"] == "bn_cnn" and result["optimizer"] == "adam"
    assert (out / "lr_find.png").read_bytes()[:4] == b"\x89PNG"
    lr = f"lr={result['suggested_lr']:.2g}"
    assert f"suggested lr {result['suggested_lr']:.2g}" in proc.stdout
    assert f"python train.py data_dir={tiny_root} model=bn_cnn batch_size=10" in proc.stdout
    assert lr in proc.stdout and "lr_find" not in proc.stdout.split("train with it:")[1]
    for trained in ("results.json", "model.pt", "last.pt", "tb"):
        assert not (out / trained).exists(), trained
    assert not (tmp_path / "outputs").exists()


def test_lr_find_refuses_a_value_that_is_not_a_boolean(tiny_root: Path, tmp_path: Path) -> None:
    proc = run_cli(["lr_find=maybe", f"data_dir={tiny_root}"], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: lr_find='maybe' is not allowed: use true or false"
    )
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # nothing written
