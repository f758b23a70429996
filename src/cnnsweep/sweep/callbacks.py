"""Hydra callbacks: one line at the end of a sweep saying how it went and what to run next."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from cnnsweep.files import RESULTS_JSON, read_results_row
from cnnsweep.schema import STATUSES

log = logging.getLogger(__name__)


def sweep_line(sweep_dir: str | Path) -> str:
    """``8 jobs: 7 completed, 1 failed in multirun/...; leaderboard: make aggregate DIRS=...``"""
    folder = Path(sweep_dir)
    rows = [read_results_row(p.parent) for p in folder.rglob(RESULTS_JSON)]
    if not rows:  # refused before any job started (a bad storage, a bad knob of the sweep)
        where = "nothing was written" if not folder.is_dir() else f"{sweep_dir} holds no row"
        return f"no job ran: {where}"
    counts = Counter(row.get("status", "corrupt") if row else "corrupt" for row in rows)
    ranked = sorted(counts, key=lambda s: (STATUSES.index(s) if s in STATUSES else 99, s))
    states = ", ".join(f"{counts[status]} {status}" for status in ranked)
    return (f"{len(rows)} job(s): {states} in {sweep_dir}; "
            f"leaderboard: make aggregate DIRS={sweep_dir}")  # fmt: skip


class SweepSummary(Callback):
    sweep_dir: str | None = None  # the sweep this process runs (for train.py's Ctrl-C line)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        SweepSummary.sweep_dir = str(config.hydra.sweep.dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        log.info("%s", sweep_line(config.hydra.sweep.dir))
