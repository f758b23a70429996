"""The seeds' three CNNs, rebuilt from a plain dict so a checkpoint can name its architecture."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

# Each conv block here pools before its ReLU. max-pool and ReLU commute (ReLU is monotonic), so
# the function is the seeds' conv -> ReLU -> pool, but the ReLU runs on a quarter of the values:
# a large share of a CPU step for these small nets.


def _pooled_size(image_size: int, convs: list[tuple[int, int]]) -> int:
    """Side length after each (kernel, padding) conv followed by a 2x2 max-pool."""
    for kernel, padding in convs:
        image_size = (image_size - kernel + 2 * padding + 1) // 2
    return image_size


class Network(nn.Module):
    """deeplizard's net (seed 000): conv 6 and 12 filters 5x5, max-pool, fc 120 -> 60 -> classes."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28) -> None:
        super().__init__()
        side = _pooled_size(image_size, [(5, 0), (5, 0)])
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Conv2d(6, 12, kernel_size=5),
            nn.MaxPool2d(2),
            nn.ReLU(),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(12 * side * side, 120),
            nn.ReLU(),
            nn.Linear(120, 60),
            nn.ReLU(),
            nn.Linear(60, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class BnCNN(nn.Module):
    """Seed 003: two conv 5x5 (pad 2) + BatchNorm + ReLU + max-pool blocks, then a linear layer."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28) -> None:
        super().__init__()
        side = _pooled_size(image_size, [(5, 2), (5, 2)])
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 16, kernel_size=5, padding=2),
            nn.BatchNorm2d(16),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=5, padding=2),
            nn.BatchNorm2d(32),
            nn.MaxPool2d(2),
            nn.ReLU(),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * side * side, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class LeNet(nn.Module):
    """Seed 004: conv 20 and 50 filters 5x5, each ReLU + max-pool, fc 500, ReLU, fc classes."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28) -> None:
        super().__init__()
        side = _pooled_size(image_size, [(5, 0), (5, 0)])
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 20, kernel_size=5),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Conv2d(20, 50, kernel_size=5),
            nn.MaxPool2d(2),
            nn.ReLU(),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(50 * side * side, 500),
            nn.ReLU(),
            nn.Linear(500, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


MODELS: dict[str, Callable[..., nn.Module]] = {"network": Network, "bn_cnn": BnCNN, "lenet": LeNet}


def build_model(
    name: str, in_channels: int = 1, num_classes: int = 10, image_size: int = 28
) -> nn.Module:
    """Build a model by its config name; an unknown name is a ValueError listing the known ones."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    return MODELS[name](in_channels=in_channels, num_classes=num_classes, image_size=image_size)


def first_convs(model: nn.Module) -> list[nn.Conv2d]:
    """The model's conv layers in order (used for the filter pictures)."""
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]
