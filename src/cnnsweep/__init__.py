"""Hydra-configured PyTorch image classifiers: train, sweep, aggregate, predict."""

import logging

# matplotlib's first run on a machine logs "generated new fontManager" at INFO, which Hydra's
# job log would print between a job's test line and its last line: housekeeping, not news
logging.getLogger("matplotlib").setLevel(logging.WARNING)

__version__ = "0.1.0"
