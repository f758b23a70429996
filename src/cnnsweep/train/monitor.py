"""Which epoch is best, and when to stop: the validation metric a job watches.

``keep_best`` tests and saves the weights of the best epoch; ``early_stopping.patience`` stops
a job whose metric has not improved for that many epochs. Both follow ``monitor`` (``val_acc``
by default: higher is better; a ``*_loss`` metric: lower is better).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

MONITORS = ("val_acc", "val_loss")


@dataclass
class Monitor:
    metric: str = "val_acc"
    patience: int | None = None
    best: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0

    def update(self, epoch: int, value: float | None) -> bool:
        """Record the epoch's value; True when it is the best so far (ties keep the earlier).

        A non-finite value (a NaN loss) is never best: it counts as an epoch without progress.
        """
        if value is None:
            return False
        better = math.isfinite(value) and (
            self.best is None
            or (value < self.best if self.metric.endswith("loss") else value > self.best)
        )
        if better:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
        return better

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.bad_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)
