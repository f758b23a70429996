"""The aggregate marks the jobs no other beats on both the objective and a cost (``pareto``)
and draws them (``pareto.png``), for any set of jobs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from cnnsweep.results import cli as aggregate
from cnnsweep.results.stats import pareto_front


def rows(*specs: tuple) -> pd.DataFrame:
    """(rank, data, score, flops) per job."""
    return pd.DataFrame(
        [{"rank": r, "data": d, "score": s, "flops": f} for r, d, s, f in specs]
    ).astype({"rank": "Int64"})


def test_the_front_is_the_jobs_no_other_beats_on_both() -> None:
    runs = rows(
        (1, "fmnist", 0.90, 100),   # best accuracy
        (2, "fmnist", 0.90, 100),   # a tie with it: neither beats the other
        (3, "fmnist", 0.85, 50),    # cheaper: on the front
        (4, "fmnist", 0.85, 100),   # as costly as the first two, less accurate: beaten
        (5, "fmnist", 0.80, 60),    # beaten by the 50-flop job on both
        (None, "fmnist", 0.99, 1),  # not ranked (failed, pruned): not judged
        (6, "fmnist", 0.70, None),  # no cost known: not judged
        (1, "kmnist", 0.50, 1000),  # another dataset: its own front
    )  # fmt: skip
    front = pareto_front(runs, "val_acc", "flops")
    assert front.tolist() == [True, True, True, False, False, pd.NA, pd.NA, True]


def test_for_a_loss_lower_is_better() -> None:
    runs = rows((1, "d", 0.30, 100), (2, "d", 0.40, 100), (3, "d", 0.50, 10))
    assert pareto_front(runs, "val_loss", "flops").tolist() == [True, False, True]


@pytest.mark.slow
def test_aggregate_writes_the_pareto_column_and_picture(tiny_job: Path, tmp_path: Path) -> None:
    report = aggregate.aggregate([tiny_job], tmp_path / "res", base=tmp_path, cost="params")
    (row,) = report["runs"]
    assert row["pareto"] is True  # alone, nothing beats it
    assert (tmp_path / "res" / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((tmp_path / "res" / "runs.json").read_text())
    assert saved[0]["pareto"] is True
    assert "pareto" in (tmp_path / "res" / "runs.csv").read_text().splitlines()[0].split(",")
