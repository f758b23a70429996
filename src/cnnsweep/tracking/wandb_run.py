"""One Weights & Biases run per job, offline unless the user is logged in.

Offline runs land in ``wandb/offline-run-*`` where train.py starts; ``wandb sync`` uploads them
later. W&B cannot continue a run in offline mode (wandb issue #2423), so a resumed job starts a
new run in the same group, named "<run> (continued from epoch N)", holding the epochs after its
checkpoint; online, the same run continues.
"""

from __future__ import annotations

import logging
import netrc
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from cnnsweep.schema import KNOBS
from cnnsweep.tracking.naming import RunStart, run_tags, start_dir

log = logging.getLogger("cnnsweep.train.job")
EXIT_CODES = {"FINISHED": 0, "FAILED": 1, "KILLED": 130}


def wandb_mode(mode: str | None) -> str:
    """``logger.wandb.mode``, else ``$WANDB_MODE``, else online only for a user logged in."""
    if mode or os.environ.get("WANDB_MODE"):
        return str(mode or os.environ["WANDB_MODE"])
    return "online" if os.environ.get("WANDB_API_KEY") or _netrc_login() else "offline"


def _netrc_login() -> bool:
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


class WandbRun:
    """One job's W&B run (see the module docstring for resumed jobs)."""

    def __init__(self, run: Any, artifacts: bool, logged: int) -> None:
        self.run, self.id, self.artifacts = run, run.id, artifacts
        self.logged = logged  # a continued run holds the epochs after its checkpoint

    @classmethod
    def open(cls, settings: DictConfig, start: RunStart) -> WandbRun:
        """A new run (online, a resumed job's run continues; offline, a continuation run)."""
        row, experiment, resumed, epoch = start.row, start.experiment, start.resumed, start.epoch
        import wandb

        mode = wandb_mode(settings.get("mode"))
        name, resume_id = row["run_name"], None
        if resumed and mode == "online":
            resume_id = resumed  # online: the same run goes on
        elif resumed or epoch:
            name = f"{name} (continued from epoch {epoch})"
        folder = Path(settings.get("dir") or start_dir())
        folder.mkdir(parents=True, exist_ok=True)
        tags = run_tags(row)
        run = wandb.init(
            project=str(settings.project),
            group=experiment,
            name=name,
            id=resume_id,
            resume="allow" if resume_id else None,
            config={k: row.get(k) for k in KNOBS} | {"continues": resumed},
            notes=tags["overrides"],
            dir=str(folder),
            mode=mode,
            settings=wandb.Settings(silent=True, console="off", x_disable_stats=True),
        )
        run.summary.update({k: v for k, v in tags.items() if k != "status"})
        log.info("wandb: run %s (%s) in %s", run.id, mode, run.dir)
        return cls(run, bool(settings.get("artifacts")), epoch)

    def log_epochs(self, epochs: list[tuple[int, dict[str, float]]]) -> None:
        for epoch, values in epochs:
            self.run.log(values, step=epoch)

    def finish(
        self, row: dict[str, Any], final: dict[str, float], files: list[Path], end: str
    ) -> None:
        self.run.summary.update(final | {"status": row["status"], "error": row.get("error")})
        self.run.tags = (str(row["status"]),)
        if self.artifacts and files:
            import wandb

            artifact = wandb.Artifact(f"job-{self.id}", type="job")
            for file in files:
                artifact.add_file(str(file))
            self.run.log_artifact(artifact)
        self.run.finish(exit_code=EXIT_CODES[end])
