"""Every job's rows as pandas DataFrames, and the aggregate built on them (``make aggregate``).

    from cnnsweep.results import load_runs, load_epochs

    runs = load_runs("multirun/2026-11-22/18-12-29")  # one row per job
    epochs = load_epochs("multirun", "outputs")  # one row per epoch, the job's knobs joined
    runs = load_mlflow_runs("multirun/2026-11-22/18-12-29")  # the same, from MLflow (logger=mlflow)

``load`` reads job folders; ``stats`` ranks and groups seeds; ``markdown``, ``plots``,
``studies`` and ``tables`` write what ``cli`` (``python -m cnnsweep.aggregate``) puts in
``results/``.
"""

from cnnsweep.results.load import load_epochs, load_runs
from cnnsweep.results.mlflow_runs import load_mlflow_runs

__all__ = ["load_epochs", "load_mlflow_runs", "load_runs"]
