"""An exponential moving average of the weights, evaluated and saved instead of the raw ones."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class EMA:
    """A copy of the model whose parameters and BatchNorm statistics follow the trained model's
    with ``decay`` per update. Early on the decay is capped at (1 + n) / (10 + n) (n updates),
    so the average does not drag the random initial weights along for thousands of steps."""

    def __init__(self, model: nn.Module, decay: float, every: int = 1) -> None:
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay
        self.every = every
        self.updates = 0
        self._steps = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Call after every optimizer step; averages every ``every`` steps."""
        self._steps += 1
        if self._steps % self.every:
            return
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        ema, live = self.model.state_dict(), model.state_dict()
        floats = [k for k, v in ema.items() if v.is_floating_point()]
        torch._foreach_lerp_([ema[k] for k in floats], [live[k] for k in floats], 1 - decay)
        for k, v in ema.items():
            if not v.is_floating_point():
                v.copy_(live[k])  # BatchNorm's batch counter

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "updates": self.updates, "steps": self._steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.updates, self._steps = int(state["updates"]), int(state["steps"])
