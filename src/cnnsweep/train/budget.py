"""Budgets: ``max_params``, ``max_flops``, ``max_latency_ms`` (null: none).

A configuration's size, FLOPs and latency are known before it trains (latency is measured on
the freshly built model: training changes the weights, not the cost). Over a budget, the job
ends there with row status ``infeasible``, costing seconds, not a training run. In an Optuna
search, every trial sets its constraints (``Trial.set_constraint``: cost minus budget, at most 0
within budget), which Optuna's samplers read, and an infeasible trial ends PRUNED, not FAIL:
they learn constraints only from COMPLETE and PRUNED trials, so the sampler learns the boundary.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from cnnsweep.schema import BUDGETS, COSTS, objectives

log = logging.getLogger("cnnsweep.train.job")


def budgets(cfg: Any) -> dict[str, float]:
    """The budgets a config sets, by knob."""
    return {knob: cfg.get(knob) for knob in BUDGETS if cfg.get(knob) is not None}


def within_budgets(cfg: Any, record: Any, measure: Callable[[], dict[str, Any]]) -> bool:
    """Check the job's row (``params``, ``flops``; ``measure()`` adds the latency columns when a
    latency budget or objective needs them) against its budgets; tell the trial its costs and
    constraints. False: the row says ``infeasible`` and why, and the job must not train."""
    limits = budgets(cfg)
    if "max_latency_ms" in limits or "latency_ms" in objectives(cfg.objective)[1:]:
        record.row.update(measure())  # the cost is the fresh model's: known before training
    record.trial.record_costs({c: record.row[c] for c in COSTS if record.row.get(c) is not None})
    if not limits:
        return True
    excess = {knob: float(record.row[BUDGETS[knob]]) - limit for knob, limit in limits.items()}
    over = [f"{BUDGETS[k]} {record.row[BUDGETS[k]]:g} > {k}={limits[k]:g}"
            for k, e in excess.items() if e > 0]  # fmt: skip
    record.trial.constrain(excess, feasible=not over)
    if not over:
        return True
    record.row.update(status="infeasible", error="over budget: " + ", ".join(over))
    return False
