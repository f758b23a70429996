"""Training-batch augmentation on whole batches, on the job's device, from a seeded generator.

No per-image PIL and no DataLoader: each transform is a few tensor ops over the batch, so it
costs a few percent of a step. Random numbers come from a CPU ``torch.Generator`` (the same
draws on any device) and are moved to the batch's device. Validation and test batches are
never augmented: only ``train_one_epoch`` calls these.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

AUGMENTS = ("none", "shift_flip", "shift_flip_erase")
Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def shift(
    images: torch.Tensor, pixels: int, fill: torch.Tensor, g: torch.Generator
) -> torch.Tensor:
    """Translate each image by its own random (dy, dx) in [-pixels, pixels], padding with
    ``fill`` (per channel: the background value) where the image moved away."""
    if pixels <= 0:
        return images
    n, c, h, w = images.shape
    padded = fill.view(1, c, 1, 1).expand(n, c, h + 2 * pixels, w + 2 * pixels).clone()
    padded[:, :, pixels : pixels + h, pixels : pixels + w] = images
    dy, dx = torch.randint(0, 2 * pixels + 1, (2, n, 1), generator=g).to(images.device)
    rows = (dy + torch.arange(h, device=images.device)).view(n, 1, h, 1)
    cols = (dx + torch.arange(w, device=images.device)).view(n, 1, 1, w)
    batch = torch.arange(n, device=images.device).view(n, 1, 1, 1)
    channel = torch.arange(c, device=images.device).view(1, c, 1, 1)
    return padded[batch, channel, rows, cols]


def hflip(images: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability ``p``."""
    if p <= 0:
        return images
    flip = (torch.rand(len(images), generator=g) < p).to(images.device).view(-1, 1, 1, 1)
    return torch.where(flip, images.flip(3), images)


def erase(
    images: torch.Tensor, p: float, size: int, fill: torch.Tensor, g: torch.Generator
) -> torch.Tensor:
    """Cutout: with probability ``p`` fill a ``size`` x ``size`` square at a random centre
    (clipped at the borders) with ``fill``."""
    if p <= 0 or size <= 0:
        return images
    n, c, h, w = images.shape
    cy = torch.randint(0, h, (n, 1), generator=g)
    cx = torch.randint(0, w, (n, 1), generator=g)
    on = (torch.rand(n, 1, generator=g) < p).view(n, 1, 1)
    top, left = cy - size // 2, cx - size // 2
    ys, xs = torch.arange(h).view(1, h), torch.arange(w).view(1, w)
    in_rows = ((ys >= top) & (ys < top + size)).view(n, h, 1)
    in_cols = ((xs >= left) & (xs < left + size)).view(n, 1, w)
    mask = (in_rows & in_cols & on).unsqueeze(1).to(images.device)
    return torch.where(mask, fill.view(1, c, 1, 1), images)


def build_augment(cfg: Any, fill: torch.Tensor) -> Augment | None:
    """The ``augment`` config group as one function of (batch, generator); None for ``none``.

    ``fill`` is the normalised value of a background (zero) pixel, per channel, on the device.
    """
    name = cfg.name
    if name == "none":
        return None
    if name not in AUGMENTS:
        raise ValueError(f"augment={name!r} is not allowed: use one of {list(AUGMENTS)}")
    pixels, flip_p = int(cfg.shift), float(cfg.flip)
    erase_p, erase_size = float(cfg.get("erase", 0.0)), int(cfg.get("erase_size", 0))
    with_erase = name == "shift_flip_erase"

    def augment(images: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        images = hflip(shift(images, pixels, fill, g), flip_p, g)
        return erase(images, erase_p, erase_size, fill, g) if with_erase else images

    return augment
