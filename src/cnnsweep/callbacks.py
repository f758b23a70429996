"""Hydra callbacks: one line at the end of a sweep saying how it went and what to run next."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from cnnsweep.tracking import RESULTS_JSON, read_results_row

log = logging.getLogger(__name__)


def sweep_line(sweep_dir: str | Path) -> str:
    """``8 jobs: 7 completed, 1 failed in multirun/...; leaderboard: make aggregate DIRS=...``"""
    rows = [read_results_row(p.parent) for p in Path(sweep_dir).rglob(RESULTS_JSON)]
    counts = Counter(row.get("status", "corrupt") if row else "corrupt" for row in rows)
    order = ("completed", "pruned", "diverged", "failed", "interrupted", "running")
    ranked = sorted(counts, key=lambda s: (order.index(s) if s in order else len(order), s))
    states = ", ".join(f"{counts[status]} {status}" for status in ranked)
    return (f"{len(rows)} job(s): {states or 'none ran'} in {sweep_dir}; "
            f"leaderboard: make aggregate DIRS={sweep_dir}")  # fmt: skip


class SweepSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        log.info("%s", sweep_line(config.hydra.sweep.dir))
