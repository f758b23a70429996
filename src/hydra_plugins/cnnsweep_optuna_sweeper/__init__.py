"""Registers cnnsweep's Optuna sweeper and Slurm launcher with Hydra, which instantiates only the
plugin classes it finds in the ``hydra_plugins`` namespace (or in ``hydra.plugins`` entry
points)."""

from cnnsweep.sweep.optuna_sweeper import PruningOptunaSweeper
from cnnsweep.sweep.slurm import WatchedSlurmLauncher

__all__ = ["PruningOptunaSweeper", "WatchedSlurmLauncher"]
