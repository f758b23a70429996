"""The shapes data takes: uint8 as read, normalised splits, a dataset's errors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch


class DatasetError(RuntimeError):
    """A dataset that is missing, corrupt or malformed; the message says what to do."""


@dataclass
class Split:
    images: torch.Tensor  # float32 [N, C, H, W], normalised
    labels: torch.Tensor  # int64 [N]

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device | str) -> Split:
        return Split(self.images.to(device), self.labels.to(device))


@dataclass
class Data:
    train: Split
    val: Split | None
    test: Split
    class_names: list[str]
    skipped: list[str] = field(default_factory=list)  # files that could not be read
    mean: float | list[float] | None = None  # the normalisation used (the config's or computed)
    std: float | list[float] | None = None


@dataclass
class Raw:
    """What a source read: uint8 splits by name, the class names, the files it skipped."""

    splits: dict[str, tuple[torch.Tensor, torch.Tensor]]
    class_names: list[str]
    skipped: list[str] = field(default_factory=list)


Stat = float | Sequence[float]
