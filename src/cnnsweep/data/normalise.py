"""uint8 images to normalised floats once per split, and back for pictures."""

from __future__ import annotations

from typing import Any

import torch

from cnnsweep.data.types import DatasetError, Stat


def _per_channel(value: Stat, channels: int, key: str) -> list[float]:
    values = [float(value)] if isinstance(value, (int, float)) else [float(v) for v in value]
    if len(values) == 1:
        values = values * channels
    if len(values) != channels:
        raise DatasetError(
            f"data.{key}={list(values)} has {len(values)} values for {channels} channels; "
            f"give one number, {channels} numbers, or null (computed on the training split)"
        )
    return values


def to_float(images: torch.Tensor, mean: Stat, std: Stat, in_channels: int = 1) -> torch.Tensor:
    """uint8 [N, H, W] or [N, C, H, W] -> normalised float32 [N, C, H, W], done once per split.

    ``mean``/``std`` (0-1 scale): one number for every channel, or one per channel."""
    if images.dim() == 3:
        images = images.unsqueeze(1)
    if images.shape[1] != in_channels:
        raise DatasetError(f"images have {images.shape[1]} channels, config says {in_channels}")
    x = images.float()
    if isinstance(mean, (int, float)) and isinstance(std, (int, float)):
        # (x / 255 - mean) / std, in place on the one new tensor: these splits are hundreds of MB
        return x.sub_(255.0 * mean).div_(255.0 * std)
    means = _per_channel(mean, in_channels, "mean")
    stds = _per_channel(std, in_channels, "std")
    shape = (1, in_channels, 1, 1)
    # the products in double, as the scalar path does, so [m] and m give the same float32s
    sub = torch.tensor([255.0 * m for m in means], dtype=torch.float32).view(shape)
    div = torch.tensor([255.0 * s for s in stds], dtype=torch.float32).view(shape)
    return x.sub_(sub).div_(div)


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std (0-1 scale) of uint8 [N, H, W] or [N, C, H, W] images."""
    if images.dim() == 3:
        images = images.unsqueeze(1)
    channels = images.shape[1]
    total = torch.zeros(channels, dtype=torch.float64)
    squares = torch.zeros(channels, dtype=torch.float64)
    for start in range(0, len(images), 4096):  # in chunks: a float64 copy of a split is large
        chunk = images[start : start + 4096].to(torch.float64).div_(255.0)
        total += chunk.sum(dim=(0, 2, 3))
        squares += chunk.square_().sum(dim=(0, 2, 3))
    count = max(1, images.numel() // channels)
    mean = total / count
    std = (squares / count - mean.square()).clamp_(min=0).sqrt_()
    # a constant channel would divide by zero; leave it unscaled
    return mean.tolist(), [s if s > 1e-6 else 1.0 for s in std.tolist()]


def normalisation(cfg: Any, train_images: torch.Tensor | None) -> tuple[Stat, Stat]:
    """The config's mean/std, or with ``null`` the per-channel values of the training images
    (the whole training split before validation is held out: the same for every seed)."""
    mean, std = cfg.get("mean"), cfg.get("std")
    if mean is not None and std is not None:
        if not isinstance(mean, (int, float)):
            mean = _per_channel(mean, cfg.in_channels, "mean")
        if not isinstance(std, (int, float)):
            std = _per_channel(std, cfg.in_channels, "std")
        return mean, std
    if train_images is None:
        raise DatasetError("data.mean/std are null and no training images were read")
    return channel_stats(train_images)


def denormalise(images: torch.Tensor, mean: Stat, std: Stat) -> torch.Tensor:
    """Normalised float [N, C, H, W] -> the pictures' own 0-1 values, for showing them in colour
    (a min/max stretch of normalised colour images shifts their hues)."""
    channels = images.shape[1]
    shape = (1, channels, 1, 1)
    m = torch.tensor(_per_channel(mean, channels, "mean"), dtype=images.dtype).view(shape)
    s = torch.tensor(_per_channel(std, channels, "std"), dtype=images.dtype).view(shape)
    return (images.detach() * s.to(images.device) + m.to(images.device)).clamp_(0, 1)
