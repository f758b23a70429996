"""One epoch of training and one pass of evaluation: plain functions over in-memory splits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from cnnsweep.data import Split, iterate_batches


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    split: Split,
    batch_size: int,
    shuffle: bool,
    generator: torch.Generator,
    memory_format: torch.memory_format = torch.contiguous_format,
    desc: str = "",
    progress: bool = True,
) -> tuple[float, float]:
    """Train over ``split`` once; returns (mean loss, accuracy) over the epoch's samples.

    Loss and correct counts are summed on the device and read once at the end, so the step
    never waits on ``.item()``; a NaN/inf loss shows up in the returned mean.
    """
    model.train()
    total_loss = torch.zeros((), device=split.labels.device)
    correct = torch.zeros((), dtype=torch.long, device=split.labels.device)
    n_batches = -(-len(split) // batch_size)
    batches = iterate_batches(split, batch_size, shuffle, generator)
    bar = tqdm(batches, total=n_batches, desc=desc, leave=False, disable=not progress or None)
    for images, labels in bar:
        logits = model(images.contiguous(memory_format=memory_format))
        loss = F.cross_entropy(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total_loss += loss.detach() * len(labels)
        correct += (logits.detach().argmax(1) == labels).sum()
    return total_loss.item() / len(split), correct.item() / len(split)


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    batch_size: int = 1000,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> torch.Tensor:
    """Logits for ``images`` in eval mode, in batches (BatchNorm uses its running stats)."""
    model.eval()
    chunks = [
        model(images[i : i + batch_size].contiguous(memory_format=memory_format))
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(chunks) if chunks else torch.empty(0)


def evaluate(
    model: nn.Module,
    split: Split,
    batch_size: int = 1000,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> tuple[float, float, torch.Tensor]:
    """(mean loss, accuracy, predicted labels) of ``model`` on ``split``."""
    logits = predict_logits(model, split.images, batch_size, memory_format)
    loss = F.cross_entropy(logits, split.labels).item()
    preds = logits.argmax(1)
    return loss, (preds == split.labels).float().mean().item(), preds
