"""Learning-rate schedules as one ``LambdaLR`` stepped after every batch.

Each schedule is a plain function of the step (batch count) that returns a factor of the
configured ``lr``; epoch-based schedules (``step``) read the epoch off the step. One mechanism
for all of them keeps the loop simple and the state a checkpoint needs to a step count.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

SCHEDULERS = ("constant", "onecycle", "cosine", "step")


def onecycle(step: int, total: int, pct_start: float, div: float, final_div: float) -> float:
    """Linear warm-up from 1/div to 1 over ``pct_start`` of the steps, then cosine down to
    1/final_div."""
    peak = max(1, round(pct_start * total))
    if step < peak:
        return 1 / div + (1 - 1 / div) * step / peak
    t = min(1.0, (step - peak) / max(1, total - peak))
    return 1 / final_div + (1 - 1 / final_div) * 0.5 * (1 + math.cos(math.pi * t))


def cosine(step: int, total: int, warmup: int, min_factor: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine from 1 down to ``min_factor``."""
    if step < warmup:
        return (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * t))


def lr_factor(cfg: Any, epochs: int, steps_per_epoch: int) -> Callable[[int], float]:
    """The ``scheduler`` config group as a function step -> factor of ``lr``."""
    total = epochs * steps_per_epoch
    name = cfg.name
    if name == "constant":
        return lambda step: 1.0
    if name == "onecycle":
        args = (total, float(cfg.pct_start), float(cfg.div_factor), float(cfg.final_div_factor))
        return lambda step: onecycle(step, *args)
    if name == "cosine":
        warmup = round(float(cfg.warmup_epochs) * steps_per_epoch)
        return lambda step: cosine(step, total, warmup, float(cfg.min_lr_factor))
    if name == "step":
        size, gamma = int(cfg.step_size), float(cfg.gamma)
        return lambda step: gamma ** ((step // steps_per_epoch) // size)
    raise ValueError(f"scheduler={name!r} is not allowed: use one of {list(SCHEDULERS)}")


def build_scheduler(
    cfg: Any, optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A scheduler to ``step()`` after every batch; its state is the step count."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, epochs, steps_per_epoch))
