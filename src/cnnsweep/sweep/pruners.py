"""Pruning a multi-objective search: accuracy against a cost known before training.

Optuna's pruners judge one objective (``Trial.report`` and ``should_prune`` raise in a study
with several directions, Optuna RFC #3450). In an accuracy-against-cost search the costs
(``params``, ``flops``; ``latency_ms`` when a budget measured it up front) are fixed before the
first epoch, so only the accuracy is uncertain, and a trial can only reach the Pareto front by
beating every completed trial that costs no more. The rule:

    at epoch e (after ``n_warmup_steps``), stop a trial whose first objective is worse than
    the ``quantile`` of that of the completed trials that cost no more on every cost objective,
    at the same epoch, once there are at least ``n_min_trials`` of them.

The default quantile is 0: worse than every cheaper trial at the same epoch. The median (0.5)
was measured first and pruned a large model that learns slowly early (a one-cycle schedule) but
ended on the front (BENCHMARKS.md). The job stores its per-epoch values and its costs in the
trial's user attributes (``epoch_values``, ``costs``): what this pruner reads, in any process.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna

from cnnsweep.schema import COSTS

EPOCH_VALUES, TRIAL_COSTS = "epoch_values", "costs"


class CheaperMedianPruner(optuna.pruners.BasePruner):
    """The rule above; single-objective studies are never pruned by it."""

    def __init__(
        self, n_warmup_steps: int = 2, n_min_trials: int = 2, quantile: float = 0.0
    ) -> None:
        self.n_warmup_steps = n_warmup_steps
        self.n_min_trials = n_min_trials
        self.quantile = quantile

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        values = trial.user_attrs.get(EPOCH_VALUES) or {}
        costs = trial.user_attrs.get(TRIAL_COSTS) or {}
        names = study.metric_names or []
        cost_names = [n for n in names[1:] if n in COSTS]
        if not values or not cost_names or any(n not in costs for n in cost_names):
            return False
        epoch = max(values, key=int)
        if int(epoch) <= self.n_warmup_steps:
            return False
        peers = [
            t.user_attrs[EPOCH_VALUES][epoch]
            for t in study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE])
            if epoch in (t.user_attrs.get(EPOCH_VALUES) or {})
            and all(t.values[names.index(n)] <= costs[n] for n in cost_names)
        ]
        if len(peers) < self.n_min_trials:
            return False
        maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
        bar = float(np.quantile(peers, self.quantile if maximize else 1 - self.quantile))
        return values[epoch] < bar if maximize else values[epoch] > bar


def several_objectives(study: Any) -> bool:
    return len(study.directions) > 1


def report_several(trial: Any, epoch: int, value: float) -> bool:
    """A multi-objective trial's epoch: its value stored; True when its study's pruner is the
    rule above and says stop (Optuna's own pruners cannot judge such a study)."""
    storage = trial.study._storage
    values = dict(storage.get_trial(trial._trial_id).user_attrs.get(EPOCH_VALUES) or {})
    values[str(epoch)] = float(value)
    trial.set_user_attr(EPOCH_VALUES, values)
    pruner = trial.study.pruner
    if not isinstance(pruner, CheaperMedianPruner):
        return False
    return pruner.prune(trial.study, storage.get_trial(trial._trial_id))
