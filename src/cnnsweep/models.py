"""The seeds' three CNNs and two stronger families, rebuilt from a plain dict by name.

A checkpoint names its architecture in plain data (``{"name": "cnn", "width": 48, ...}``), so
``build_model(**spec)`` rebuilds it without running anything a file says.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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


class CNN(nn.Module):
    """A VGG-style family: ``stages`` stages of ``depth`` 3x3 conv + BatchNorm + ReLU, a 2x2
    max-pool after each stage, widths doubling from ``width``; global max-pool, dropout, linear.
    ``first_depth`` (None: ``depth``) sets the first stage's convs apart: at full resolution
    they cost 4x a later stage's per channel pair.

    The last conv of a stage runs conv -> BN -> pool -> ReLU, the same function as
    conv -> BN -> ReLU -> pool (ReLU is monotonic) with the ReLU on a quarter of the values.
    ``pool_before_bn`` runs conv -> pool -> BN -> ReLU instead (airbench's order): a different
    function whose BatchNorm, memory-bound on these CPUs, works on a quarter of the values.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 28,
        width: int = 32,
        depth: int = 1,
        stages: int = 3,
        dropout: float = 0.0,
        first_depth: int | None = None,
        pool_before_bn: bool = False,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for stage in range(stages):
            out = width * 2**stage
            convs = first_depth if stage == 0 and first_depth is not None else depth
            for i in range(convs):
                conv, norm = nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out)
                if i < convs - 1:
                    layers += [conv, norm, nn.ReLU()]
                elif pool_before_bn:
                    layers += [conv, nn.MaxPool2d(2), norm, nn.ReLU()]
                else:
                    layers += [conv, norm, nn.MaxPool2d(2), nn.ReLU()]
                channels = out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(channels, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    """Two 3x3 convs with BatchNorm and a shortcut (1x1 conv where the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class ResNet(nn.Module):
    """He et al.'s CIFAR ResNet (depth = 6n + 2: ResNet-20 by default): a 3x3 stem, three stages
    of n basic blocks at ``width``, 2x and 4x channels (stride 2 between), global average pool,
    dropout, linear."""

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 28,
        width: int = 16,
        depth: int = 20,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if (depth - 2) % 6 or depth < 8:
            raise ValueError(f"resnet depth={depth} is not allowed: use 6n+2 (8, 14, 20, 32, ...)")
        blocks: list[nn.Module] = []
        channels = width
        for stage in range(3):
            out = width * 2**stage
            for i in range((depth - 2) // 6):
                blocks.append(BasicBlock(channels, out, 2 if stage and i == 0 else 1))
                channels = out
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            *blocks,
        )
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(channels, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


MODELS: dict[str, Callable[..., nn.Module]] = {
    "network": Network,
    "bn_cnn": BnCNN,
    "lenet": LeNet,
    "cnn": CNN,
    "resnet": ResNet,
}
# the keys of a model config that build_model takes (the rest of the group is documentation)
SPEC_KEYS = ("name", "in_channels", "num_classes", "image_size", "width", "depth", "stages",
             "dropout", "first_depth", "pool_before_bn")  # fmt: skip


def model_spec(cfg: Any) -> dict[str, Any]:
    """The plain dict that rebuilds a model config's model (what a checkpoint stores)."""
    return {k: cfg[k] for k in SPEC_KEYS if k in cfg}


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a model by its config name; an unknown name is a ValueError listing the known ones."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    return MODELS[name](**kwargs)


def min_image_size(spec: dict[str, Any]) -> int:
    """The smallest square input the model takes (its feature map must not shrink to zero)."""
    probe = {**spec}
    for size in (4, 8, 12, 16, 20, 24, 28, 32, 48, 64, 96, 128, 256):
        probe["image_size"] = size
        try:
            model = build_model(**probe)
            with torch.no_grad():
                model.eval()(torch.zeros(1, probe.get("in_channels", 1), size, size))
        except (RuntimeError, ValueError):
            continue
        return size
    return 512


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def forward_flops(model: nn.Module, in_channels: int, image_size: int) -> int:
    """Floating-point operations of one forward pass on one image (torch's own counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    example = torch.zeros(1, in_channels, image_size, image_size, device=_device_of(model))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(example)
    model.train(was_training)
    return int(counter.get_total_flops())


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def first_convs(model: nn.Module) -> list[nn.Conv2d]:
    """The model's conv layers in order (used for the filter pictures)."""
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]
