"""``summary.md``: the leaderboard as Markdown a person can paste into a report."""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from cnnsweep.results.stats import (
    ci_method,
    dataset_of,
    datasets,
    is_better,
    seeds_text,
    varying,
    why_unranked,
)
from cnnsweep.schema import KNOBS

LABELS = {"epoch_duration": "s/epoch", "best_epoch": "best epoch", "batch_size": "batch size",
          "job_dir": "job dir"}  # fmt: skip


def cell_text(value: Any, column: str = "") -> str:
    """A value as a Markdown table cell ("–" when missing; a knob as given, a metric to 4
    decimals, a duration to 2)."""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    if value is None or value is pd.NA or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        if column in KNOBS:  # a knob as it was given: 0.001, 0.1, 0
            return f"{value:g}"
        return f"{value:.2f}" if column in ("epoch_duration", "run_duration") else f"{value:.4f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _cells(rows: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """``columns`` of ``rows`` formatted for a table ("–" for a column no row has)."""
    return pd.DataFrame({
        c: rows[c].astype(object).map(lambda v, c=c: cell_text(v, c)) if c in rows else "–"
        for c in columns
    }, index=rows.index)  # fmt: skip


def _markdown(table: pd.DataFrame) -> str:
    """A table of strings as Markdown (``to_markdown`` would pad every cell to its column's
    width: longer lines, and a diff for every change of the widest cell)."""
    header = [LABELS.get(c, c) for c in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in table.itertuples(index=False)])


def summary_markdown(
    runs: pd.DataFrame,
    objective: str,
    groups: pd.DataFrame,
    duplicates: int = 0,
    studies: Sequence[str] = (),
) -> str:
    """The leaderboard a person can paste into a report."""
    rest = runs[runs["rank"].isna()]
    sweeps = sorted(runs["sweep"].unique())
    counts = runs["status"].value_counts(sort=False)
    better = "higher" if is_better(objective) == "max" else "lower"
    lines = [
        "# Leaderboard",
        "",
        f"{len(runs)} job(s) in {len(sweeps)} sweep(s): "
        + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        + f". Ranked by `{objective}` ({better} is better); only completed jobs are ranked.",
        "",
    ]
    hp_cols = varying(runs, KNOBS) or ["model", "optimizer", "lr", "batch_size"]
    sweep = ["sweep"] if len(sweeps) > 1 else []
    names = datasets(runs)
    if len(names) > 1:  # accuracies of two datasets are not comparable: a board for each
        lines += [f"Ranked within each dataset: {', '.join(f'`{d}`' for d in names)}.", ""]
        for name in names:
            mine = dataset_of(runs) == name
            lines += [f"## Dataset `{name}`", ""]
            lines += _board(runs[mine], groups[dataset_of(groups) == name], objective, sweep, "###")
    else:
        lines += _board(runs, groups, objective, sweep, "##")
    if duplicates:
        lines += [
            f"{duplicates} duplicate job(s) of a configuration and seed (the same job in two "
            "sweeps?) left out of the statistics over seeds: the one that finished last counts.",
            "",
        ]
    if len(rest):
        columns = [*sweep, "job", "status", *hp_cols, "why", "job_dir"]
        rest = rest.assign(why=why_unranked(runs, objective)[rest.index])
        lines += ["## Not ranked", "", _markdown(_cells(rest, columns)), ""]
    if studies:
        lines += ["## Optuna studies", "", *studies, ""]
    lines += ["Sweeps: " + ", ".join(f"`{s}`" for s in sweeps) + ".", ""]
    return "\n".join(lines)


def _board(
    runs: pd.DataFrame, groups: pd.DataFrame, objective: str, sweep: list[str], level: str
) -> list[str]:
    """One dataset's leaderboard: what its jobs share, the ranked jobs, the means over seeds."""
    ranked = runs[runs["rank"].notna()]
    hp_cols = varying(runs, KNOBS) or ["model", "optimizer", "lr", "batch_size"]
    lines: list[str] = []
    # a knob some job's model lacks (network has no width) is not the same in every job;
    # a job whose row is unreadable knows no value and does not count
    known = runs[~runs["status"].isin(("corrupt", "missing"))]
    constant = [
        c for c in KNOBS
        if c not in hp_cols and c in runs and runs[c].notna().any() and known[c].notna().all()
    ]  # fmt: skip
    if constant:
        same = ", ".join(f"{c}={cell_text(runs[c].dropna().iloc[0], c)}" for c in constant)
        lines += [f"Same in every job: {same}.", ""]
    metrics = list(dict.fromkeys((objective, "val_acc", "val_loss", "test_acc")))
    if len(ranked):
        columns = ["rank", *sweep, "job", *hp_cols, *metrics, "best_epoch", "epoch_duration"]
        lines += [_markdown(_cells(ranked, columns)), ""]
    else:
        lines += ["No completed job to rank.", ""]

    # shown where a mean is over several seeds, or some seed of a configuration did not complete
    if ((groups["n"] > 1) | (groups["not_completed"] != "")).any():
        g_metrics = list(dict.fromkeys((objective, "val_acc", "test_acc")))
        table = _cells(groups, [c for c in hp_cols if c not in ("seed", "fold")] or ["model"])
        table.insert(0, "rank", [str(i) for i in range(1, len(groups) + 1)])
        table["seeds"] = seeds_text(groups)
        for m in g_metrics:
            mean, std = _cells(groups, [f"{m}_mean", f"{m}_std"]).T.to_numpy()
            table[m] = [a if b == "–" else f"{a} ± {b}" for a, b in zip(mean, std)]
        low, high = _cells(groups, ["ci_low", "ci_high"]).T.to_numpy()
        table[f"95% CI of {objective}"] = [
            "–" if a == "–" else f"[{a}, {b}]" for a, b in zip(low, high)
        ]
        folds_note = (" The folds of a k-fold cross-validation (`fold`) count as seeds: "
                      "each (seed, fold) is one repeat.")  # fmt: skip
        lines += [
            f"{level} Over seeds",
            "",
            "Mean ± standard deviation over the distinct completed seeds of each configuration. "
            "A seed that failed, diverged or was pruned is left out of them, and `seeds` says "
            "so: `2 of 3 (1 failed)` is a mean over 2 of the 3 seeds run. The 95% confidence "
            f"interval of the mean `{objective}` is {ci_method(objective)}."
            + (folds_note if "fold" in runs and runs["fold"].notna().any() else ""),
            "",
            _markdown(table),
            "",
        ]
    return lines
