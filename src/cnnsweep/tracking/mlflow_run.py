"""One MLflow run per job, through ``MlflowClient`` (no global "active run" in the process).

The store is a sqlite file where train.py starts (``sqlite:///mlflow.db``, MLflow's default
form) unless ``logger.mlflow.tracking_uri`` names another. Its tables are created by the first
job, under a file lock and with retries: parallel jobs never race on the schema.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from cnnsweep.schema import KNOBS
from cnnsweep.sweep.storage import sqlite_lock, storage_url
from cnnsweep.tracking.naming import RunStart, run_tags, start_dir

log = logging.getLogger("cnnsweep.train.job")
ATTEMPTS = 5
KIND = {"mlflow.experimentKind": "custom_model_development"}


def tracking_uri(uri: str) -> str:
    """``sqlite:///mlflow.db`` made absolute against where train.py started (jobs may run
    elsewhere), with sqlite's lock timeout; other URIs as given."""
    return storage_url(uri, start_dir()) if uri.startswith("sqlite:///") else uri


def client_and_experiment(uri: str, experiment: str | None) -> tuple[Any, str]:
    """The client and the experiment's id (created if new; ``None``: MLflow's Default), with
    retries: another job may be creating the same store or experiment at that moment."""
    from mlflow.exceptions import MlflowException

    for attempt in range(ATTEMPTS - 1):
        try:
            return _connect(uri, experiment)
        except MlflowException:
            time.sleep(0.5 + attempt)
    return _connect(uri, experiment)  # the last attempt's error is the one the job reports


def _connect(uri: str, experiment: str | None) -> tuple[Any, str]:
    from mlflow.tracking import MlflowClient

    with sqlite_lock(uri, ".create.lock"):
        client = MlflowClient(uri)  # a new sqlite file: its tables are created here
        if experiment is None:
            return client, "0"
        found = client.get_experiment_by_name(experiment)
        if found:
            return client, found.experiment_id
        # artifacts: MLflow's default (mlruns/ where the store was created); the UI opens
        # on its training runs, not on its GenAI pages
        return client, client.create_experiment(experiment, tags=KIND)


class MlflowRun:
    """One job's MLflow run: params and tags at the start, epochs as they are checkpointed,
    final metrics, status and artifacts at the end."""

    def __init__(self, client: Any, run_id: str, artifacts: bool, logged: int = 0) -> None:
        self.client, self.id, self.artifacts = client, run_id, artifacts
        self.logged = logged  # the last epoch the run holds

    @classmethod
    def open(cls, settings: DictConfig, start: RunStart) -> MlflowRun:
        """A new run, or the run a resumed job's checkpoint names (reopened as RUNNING)."""
        row, experiment, resumed, epoch = start.row, start.experiment, start.resumed, start.epoch
        from mlflow.entities import Param, RunStatus
        from mlflow.exceptions import MlflowException

        uri = tracking_uri(str(settings.tracking_uri))
        experiment = settings.get("experiment") or experiment
        client, experiment_id = client_and_experiment(uri, experiment)
        if resumed:
            try:
                client.update_run(resumed, status=RunStatus.to_string(RunStatus.RUNNING))
                client.set_tag(resumed, "resumed_from_epoch", str(epoch))
                log.info("mlflow: run %s continues (experiment %s)", resumed, experiment_id)
                # killed between its checkpoint and logging: the run lacks that epoch yet
                history = client.get_metric_history(resumed, "train_loss")
                logged = max((point.step for point in history), default=0)
                return cls(client, resumed, settings.artifacts, logged)
            except MlflowException as e:  # the run was deleted, or the store changed
                log.warning("mlflow: run %s not continued (%s): a new run", resumed, e.message)
        tags = run_tags(row) | {"mlflow.source.name": "train.py"}
        run = client.create_run(experiment_id, run_name=row["run_name"], tags=tags)
        params = [Param(k, str(row.get(k))) for k in KNOBS]
        client.log_batch(run.info.run_id, params=params)
        log.info("mlflow: run %s in experiment %s", run.info.run_id, experiment or "Default")
        return cls(client, run.info.run_id, settings.artifacts)

    def log_epochs(self, epochs: list[tuple[int, dict[str, float]]]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        points = [Metric(k, v, now, step) for step, values in epochs for k, v in values.items()]
        for start in range(0, len(points), 1000):  # MLflow takes at most 1000 per batch
            self.client.log_batch(self.id, metrics=points[start : start + 1000])

    def finish(
        self, row: dict[str, Any], final: dict[str, float], files: list[Path], end: str
    ) -> None:
        from mlflow.entities import Metric, RunTag

        now, step = int(time.time() * 1000), int(row.get("epochs_run") or 0)
        tags = [RunTag("status", str(row["status"]))]
        if row.get("error"):
            tags.append(RunTag("error", str(row["error"])[:5000]))
        metrics = [Metric(k, v, now, step) for k, v in final.items()]
        self.client.log_batch(self.id, metrics=metrics, tags=tags)
        if self.artifacts:
            for file in files:
                self.client.log_artifact(self.id, str(file))
        self.client.set_terminated(self.id, status=end)
