"""The first conv fixed at a whitening of the training images' patches (airbench's stem).

``model.first_conv=whitened``: the first conv's filters are the eigenvectors of the covariance
of the training images' k x k patches, each divided by the square root of its eigenvalue (plus
``EPS``), the leading ones first; then the same filters negated (a max-pool keeps the largest
value, so each direction needs both signs), repeated until the layer's channels are filled.
The layer is never trained: no gradient flows into the full-resolution stage, which saves its
backward pass, and the next layers start from decorrelated inputs (BENCHMARKS.md, 2026-12-03).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnsweep.models import first_convs

FIRST_CONV = ("trained", "whitened")
EPS = 1e-2  # added to each eigenvalue (of normalised pixels): the faintest directions stay finite
PATCH_IMAGES = 5000  # the first images of the training split, whose patches give the covariance


def whitening_filters(images: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``conv.out_channels`` filters shaped like ``conv.weight``: the whitening of ``images``'
    patches as ``conv`` sees them (its kernel, padding and stride), and their negatives."""
    dims = conv.weight[0].numel()
    total = torch.zeros(dims, dtype=torch.float64)
    outer = torch.zeros(dims, dims, dtype=torch.float64)
    count = 0
    for chunk in images[:PATCH_IMAGES].split(250):  # a few MB of patches at a time
        unfolded = F.unfold(
            chunk.float().cpu(), conv.kernel_size, conv.dilation, conv.padding, conv.stride
        )
        patches = unfolded.transpose(1, 2).reshape(-1, dims).double()
        total += patches.sum(0)
        outer += patches.T @ patches
        count += len(patches)
    mean = total / count
    cov = (outer - count * torch.outer(mean, mean)) / max(count - 1, 1)
    values, vectors = torch.linalg.eigh(cov)  # ascending
    filters = (vectors / (values.clamp(min=0) + EPS).sqrt()).T.flip(0)  # leading first
    signed = torch.cat([filters, -filters])
    repeats = -(-conv.out_channels // len(signed))
    return signed.repeat(repeats, 1)[: conv.out_channels].reshape(conv.weight.shape).float()


def whiten_first_conv(model: nn.Module, images: torch.Tensor) -> None:
    """Set ``model``'s first conv to ``whitening_filters`` of ``images`` (the normalised training
    split), its bias to zero, and freeze it."""
    conv = first_convs(model)[0]
    with torch.no_grad():
        conv.weight.copy_(whitening_filters(images, conv))
        if conv.bias is not None:
            conv.bias.zero_()
    conv.requires_grad_(False)
