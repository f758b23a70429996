"""The job's trackers (MLflow, W&B) behind one object, and what they all share.

What a tracker gets, and when:

- ``open``: the run (a new one, or the run a resumed job's checkpoint names), its params (the
  row's knobs under the row's names) and tags (overrides, config identity, package versions,
  the Optuna study and trial);
- ``log_epochs``: epochs, under the row's names (``train_loss``, ``val_acc``, ...), the epoch as
  their step. An epoch is handed over only once the checkpoint that holds it is written (or the
  job finished): a tracker cannot take a point back, and a resumed job retrains the epochs after
  its checkpoint, so no epoch is ever logged twice;
- ``finish``: the final metrics, the row's status as a tag, the pictures and ``model.pt``, and
  the run ended as FINISHED, FAILED or KILLED.

A tracker that fails (a server gone, a locked database) is dropped with one warning: the job
trains on and its own rows and files are complete.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from cnnsweep.files import RESULTS_JSON
from cnnsweep.sweep.storage import has_password, hide_password
from cnnsweep.tracking.naming import RunStart, experiment_name

log = logging.getLogger("cnnsweep.train.job")

PACKAGES = {"mlflow": "mlflow", "wandb": "wandb"}  # the extra that installs each
# an epoch row's columns under the results row's names
EPOCH_NAMES = {"loss": "train_loss", "accuracy": "train_acc", "val_loss": "val_loss",
               "val_accuracy": "val_acc", "lr_now": "lr_now", "test_loss": "epoch_test_loss",
               "test_accuracy": "epoch_test_acc", "epoch duration": "epoch_duration"}  # fmt: skip
FINAL_METRICS = ("test_loss", "test_acc", "best_val_acc", "params", "flops", "latency_ms",
                 "throughput_ips", "run_duration")  # fmt: skip
# a run's end by the row's status: interrupted and failed jobs are continued by a rerun
ENDS = {"completed": "FINISHED", "pruned": "FINISHED", "infeasible": "FINISHED",
        "diverged": "FAILED", "failed": "FAILED", "interrupted": "KILLED"}  # fmt: skip
CONTINUED = ("interrupted", "failed")


def loggers(cfg: DictConfig) -> list[str]:
    """The trackers a config chose (``logger=[tensorboard,mlflow]``; ``logger=[]``: none)."""
    chosen = cfg.get("logger")
    return [str(name) for name in chosen] if chosen else []


def logger_problem(cfg: DictConfig) -> str | None:
    """Why the chosen trackers cannot run (checked before anything is written), or None: a
    tracker's package is missing, or a tracking URI carries a password (every job would write
    it into its overrides and logs)."""
    for name in loggers(cfg):
        if name in PACKAGES:
            try:
                importlib.import_module(PACKAGES[name])
            except ImportError:
                extra = f"pip install -e '.[{name}]' (make setup installs it)"
                return f"logger={name} needs the {PACKAGES[name]} package: {extra}"
    uri = cfg.logger.mlflow.get("tracking_uri") if "mlflow" in loggers(cfg) else None
    if uri and has_password(str(uri)):
        return (f"logger.mlflow.tracking_uri={hide_password(str(uri))} carries a password: "
                "remove it and give it in MLFLOW_TRACKING_PASSWORD (an MLflow server) or in "
                "~/.pgpass (a database)")  # fmt: skip
    return None


def epoch_metrics(epoch_row: dict[str, Any]) -> dict[str, float]:
    """One epoch row's numbers under the results row's names (missing ones left out)."""
    return {
        name: float(epoch_row[column])
        for column, name in EPOCH_NAMES.items()
        if isinstance(epoch_row.get(column), (int, float))
    }


class Trackers:
    """The job's trackers, opened together, fed together, each dropped alone if it fails."""

    def __init__(self, cfg: DictConfig, out: Path, resumed: dict[str, str] | None) -> None:
        self.cfg, self.out, self.resumed = cfg, out, resumed or {}
        self.runs: dict[str, Any] = {}
        self.epoch_rows: list[dict[str, Any]] = []
        self.immediate = not cfg.checkpoint.every  # no checkpoint: nothing is ever retrained

    def open(self, row: dict[str, Any], epoch_rows: list[dict[str, Any]]) -> None:
        """Open each chosen tracker's run (a resumed job: after its checkpoint's epochs)."""
        from cnnsweep.tracking.mlflow_run import MlflowRun
        from cnnsweep.tracking.wandb_run import WandbRun

        self.epoch_rows = epoch_rows  # the job's own list: it grows as epochs are done
        epoch = len(epoch_rows)
        kinds = {"mlflow": MlflowRun, "wandb": WandbRun}
        for name in loggers(self.cfg):
            if name in kinds:
                self._safely(name, self._open_one, name, kinds[name], row, epoch)

    def _open_one(self, name: str, kind: Any, row: dict[str, Any], epoch: int) -> None:
        start = RunStart(row, experiment_name(row), self.resumed.get(name), epoch)
        self.runs[name] = kind.open(self.cfg.logger[name], start)

    def ids(self) -> dict[str, str]:
        """Each open run's id: the checkpoint keeps them, so a resumed job finds its runs."""
        return {name: run.id for name, run in self.runs.items()}

    def epoch_done(self) -> None:
        if self.immediate:
            self.checkpointed()

    def checkpointed(self) -> None:
        """The checkpoint holds every epoch so far: each run gets those it has not got."""
        for name, run in list(self.runs.items()):
            new = [(int(r["epoch"]), epoch_metrics(r)) for r in self.epoch_rows
                   if r["epoch"] > run.logged]  # fmt: skip
            if new:
                self._safely(name, run.log_epochs, new)
                run.logged = new[-1][0]

    def finish(self, row: dict[str, Any]) -> None:
        """The job ended: its last epochs (unless a rerun retrains them), final metrics, status
        and files; each run ended."""
        status = str(row["status"])
        if status not in CONTINUED:
            self.checkpointed()
        final = {k: float(row[k]) for k in FINAL_METRICS if isinstance(row.get(k), (int, float))}
        files = [self.out / RESULTS_JSON] + (_artifacts(self.out) if status == "completed" else [])
        for name, run in list(self.runs.items()):
            self._safely(name, run.finish, row, final, files, ENDS.get(status, "FAILED"))
        self.runs.clear()

    def _safely(self, name: str, call: Any, *args: Any) -> None:
        try:
            call(*args)
        except Exception as e:  # a tracker never stops the training it records
            log.warning("logger %s failed (%s: %s); this job goes on without it", name,
                        type(e).__name__, str(e).splitlines()[0] if str(e) else "")  # fmt: skip
            self.runs.pop(name, None)


def _artifacts(out: Path) -> list[Path]:
    """A completed job's pictures and model, as its tracker runs keep them (beside its row,
    which every run keeps: ``load_mlflow_runs`` reads it back)."""
    names = ("model.pt", "classification_report.txt")
    return sorted(out.glob("*.png")) + [out / n for n in names if (out / n).is_file()]
