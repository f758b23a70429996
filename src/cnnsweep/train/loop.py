"""One epoch of training and one pass of evaluation: plain functions over in-memory splits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from cnnsweep.data.splits import iterate_batches
from cnnsweep.data.types import Split
from cnnsweep.train.augment import Augment
from cnnsweep.train.runtime import autocast

if TYPE_CHECKING:
    from cnnsweep.train.state import TrainState


# evaluation batches: 250 images keep a pass's activations in the CPU's caches; 1000 made the
# fast preset's validation and test passes 2x slower (bn_cnn 2.4x; BENCHMARKS.md, 2026-12-02)
EVAL_BATCH = 250


@dataclass
class Recipe:
    """How each training step runs (the job builds it once from the config)."""

    batch_size: int
    shuffle: bool = True
    label_smoothing: float = 0.0
    augment: Augment | None = None
    precision: str = "fp32"
    memory_format: torch.memory_format = torch.contiguous_format
    forward: nn.Module | None = None  # the compiled model (compile=true); else the model itself
    after_step: Callable[[], object] | None = None  # profile=true: the profiler's step


def train_one_epoch(
    state: TrainState, split: Split, recipe: Recipe, desc: str = "", progress: bool = True
) -> tuple[float, float]:
    """Train over ``split`` once; returns (mean loss, accuracy) over the epoch's samples.

    Nothing in the step waits for the device: loss and correct counts are summed there and read
    once at the end, so a NaN/inf loss shows up in the returned mean, not as a per-step check.
    """
    model = state.model
    device = split.labels.device
    model.train()
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    n_batches = -(-len(split) // recipe.batch_size)
    batches = iterate_batches(split, recipe.batch_size, recipe.shuffle, state.batch_gen)
    bar = tqdm(batches, total=n_batches, desc=desc, leave=False, disable=not progress or None)
    for images, labels in bar:
        loss, logits = train_step(state, recipe, images, labels)
        state.scheduler.step()
        if state.ema is not None:
            state.ema.update(model)
        if recipe.after_step is not None:
            recipe.after_step()
        total_loss += loss.detach().float() * len(labels)
        correct += (logits.detach().argmax(1) == labels).sum()
    return total_loss.item() / len(split), correct.item() / len(split)


def train_step(
    state: TrainState, recipe: Recipe, images: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on a batch (augmented as the recipe says); returns its loss and
    logits, still on the device. The schedule, EMA and profiler are the caller's."""
    forward = recipe.forward if recipe.forward is not None else state.model
    if recipe.augment is not None:
        images = recipe.augment(images, state.aug_gen)
    with autocast(recipe.precision, labels.device):
        logits = forward(images.contiguous(memory_format=recipe.memory_format))
        loss = F.cross_entropy(logits, labels, label_smoothing=recipe.label_smoothing)
    state.optimizer.zero_grad(set_to_none=True)
    if state.scaler is not None:  # fp16: scale the loss so small gradients do not underflow
        state.scaler.scale(loss).backward()
        state.scaler.step(state.optimizer)
        state.scaler.update()
    else:
        loss.backward()
        state.optimizer.step()
    return loss, logits


def tta_views(batch: torch.Tensor, flip: bool, shift: int) -> list[torch.Tensor]:
    """The views test-time augmentation averages: the batch, its mirror image (``flip``), and
    with ``shift`` > 0 each of them moved ``shift`` pixels down and right, and up and left (the
    border pixels repeated where the image moved away)."""
    views = [batch, batch.flip(3)] if flip else [batch]
    if shift <= 0:
        return views
    h, w = batch.shape[-2:]
    moved = []
    for view in views:
        padded = F.pad(view, (shift,) * 4, mode="replicate")
        moved += [padded[..., :h, :w], padded[..., 2 * shift :, 2 * shift :]]
    return views + moved


def tta_label(flip: bool, shift: int) -> str:
    """How a log line names the test pass's views: `` (flip and 1 px shifts TTA)``, or ``""``."""
    views = ["flip"] * flip + [f"{shift} px shifts"] * (shift > 0)
    return f" ({' and '.join(views)} TTA)" if views else ""


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    batch_size: int = EVAL_BATCH,
    memory_format: torch.memory_format = torch.contiguous_format,
    tta: bool = False,
    tta_shift: int = 0,
) -> torch.Tensor:
    """Logits for ``images`` in eval mode, in batches (BatchNorm uses its running stats).

    ``tta``, ``tta_shift``: the mean of the logits of each image's ``tta_views``.
    """
    model.eval()
    chunks = []
    for i in range(0, len(images), batch_size):
        views = tta_views(images[i : i + batch_size], tta, tta_shift)
        logits = [model(v.contiguous(memory_format=memory_format)).float() for v in views]
        chunks.append(torch.stack(logits).mean(0))
    return torch.cat(chunks) if chunks else torch.empty(0)


def evaluate(
    model: nn.Module,
    split: Split,
    batch_size: int = EVAL_BATCH,
    memory_format: torch.memory_format = torch.contiguous_format,
    tta: bool = False,
    tta_shift: int = 0,
) -> tuple[float, float, torch.Tensor]:
    """(mean loss, accuracy, predicted labels) of ``model`` on ``split``."""
    logits = predict_logits(model, split.images, batch_size, memory_format, tta, tta_shift)
    loss = F.cross_entropy(logits, split.labels).item()
    preds = logits.argmax(1)
    return loss, (preds == split.labels).float().mean().item(), preds
