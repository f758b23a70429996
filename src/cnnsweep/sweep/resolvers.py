"""The OmegaConf resolvers this repo's configs use: ``${cnnsweep.worker:}``.

The search presets name their sweep folder ``<time>_${cnnsweep.worker:}``; ``train.py`` registers
the resolver before Hydra reads the config, and so does the Optuna sweeper for other entry points.
"""

from __future__ import annotations

import os
import socket

from omegaconf import OmegaConf


def worker_id() -> str:
    """``<host>-<pid>``: the suffix that gives each worker of a study its own sweep folder, so
    two started in the same second do not share one (nor number their jobs alike in it)."""
    return f"{socket.gethostname().split('.')[0]}-{os.getpid()}"


def register_resolvers() -> None:
    # cached, so a job resolves its sweeper's value (Hydra copies the resolver cache into every
    # job's config), not its own pid
    OmegaConf.register_resolver("cnnsweep.worker", worker_id, use_cache=True, replace=True)
