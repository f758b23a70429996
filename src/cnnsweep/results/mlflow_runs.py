"""An MLflow experiment's runs read back into ``load_runs``' DataFrame.

Every job's MLflow run keeps its results row (``results.json``) as an artifact, so the frame
is the one its job folders give, row for row, even where those folders are gone::

    from cnnsweep.results import load_mlflow_runs

    runs = load_mlflow_runs("multirun/2026-12-02/15-04-05")  # the experiment: sweep or study
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pandas as pd

from cnnsweep.files import RESULTS_JSON
from cnnsweep.results.load import job_record, runs_frame


def load_mlflow_runs(
    experiment: str,
    tracking_uri: str = "sqlite:///mlflow.db",
    base: str | Path | None = None,
) -> pd.DataFrame:
    """One row per MLflow run of ``experiment`` that holds a results row (runs logged by
    other tools are left out), as ``load_runs`` would read the jobs' folders."""
    from mlflow.tracking import MlflowClient

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar a run
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise ValueError(f"no MLflow experiment {experiment!r} in {tracking_uri}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in client.search_runs([found.experiment_id], max_results=50000):
            names = {a.path for a in client.list_artifacts(run.info.run_id)}
            if RESULTS_JSON not in names:
                continue
            path = client.download_artifacts(run.info.run_id, RESULTS_JSON, tmp)
            row = json.loads(Path(path).read_text())
            rows.append(job_record(row["job_dir"], base, row=row))
    return runs_frame(rows)
