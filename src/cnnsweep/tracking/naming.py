"""What a job's tracker runs are called and tagged: the experiment (sweep or study) they go
in, and the tags that tie a run to its job folder, configuration and Optuna trial."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnsweep.schema import config_id


@dataclass
class RunStart:
    """What a tracker opens a job's run with: the job's row so far, the experiment (or group)
    it goes in, the run id a resumed job's checkpoint kept (None: a new run), and the epoch the
    job continues after (0: from the start)."""

    row: dict[str, Any]
    experiment: str | None
    resumed: str | None
    epoch: int


def experiment_name(row: dict[str, Any]) -> str | None:
    """Where a job's run goes: the Optuna study, else the sweep folder (relative to where
    train.py started, when it lies below), else None (the tracker's default)."""
    if row.get("study_name"):
        return str(row["study_name"])
    if row.get("sweep_dir"):
        sweep = Path(row["sweep_dir"])
        try:
            return str(sweep.relative_to(Path(start_dir()).resolve()))
        except ValueError:
            return str(sweep)
    return None


def start_dir() -> str:
    """The folder train.py started in (Hydra may run a job elsewhere)."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.cwd if HydraConfig.initialized() else os.getcwd()


def run_tags(row: dict[str, Any]) -> dict[str, str]:
    """What identifies a job beside its params: overrides, config, versions, study and trial."""
    tags = {
        "status": str(row["status"]),
        "run_name": str(row["run_name"]),
        "overrides": " ".join(row.get("overrides") or []),
        "config_id": config_id(row["config"]),  # the seeds of one configuration share it
        "job_dir": str(row["job_dir"]),
        **{f"version.{k}": str(v) for k, v in (row.get("versions") or {}).items()},
    }
    if row.get("study_name"):
        tags |= {"study_name": str(row["study_name"]), "trial_number": str(row["trial_number"])}
    return tags
