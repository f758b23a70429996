"""Experiment trackers beside TensorBoard: MLflow and Weights & Biases (``logger=[...]``).

A job's ``JobRecord`` hands its trackers what it records (params when it starts, each epoch's
metrics, its final row) through one ``Trackers`` object; see ``trackers.py``.
"""

from cnnsweep.tracking.trackers import Trackers, logger_problem, loggers

__all__ = ["Trackers", "logger_problem", "loggers"]
