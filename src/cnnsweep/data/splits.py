"""Held-out splits (validation; an image folder's test split per class) and batches cut by index."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from cnnsweep.data.types import Split


def split_train_val(
    images: torch.Tensor, labels: torch.Tensor, val_fraction: float, seed: int
) -> tuple[Split, Split | None]:
    """Hold out ``val_fraction`` of the training set; the same seed gives the same split."""
    n_val = int(round(len(labels) * val_fraction))
    if n_val == 0:
        return Split(images, labels), None
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = order[:n_val], order[n_val:]
    return Split(images[train_idx], labels[train_idx]), Split(images[val_idx], labels[val_idx])


def stratified_subset(labels: torch.Tensor, size: float, seed: int) -> torch.Tensor:
    """Indices of a class-balanced subset, in their original order: ``size`` images of every
    class (an integer; the caller checks that every class has that many) or that fraction of
    every class (a number below 1; at least one image each), drawn with ``seed``."""
    keep = []
    for idx in _each_class_shuffled(labels.numpy(), np.random.default_rng(seed)):
        keep.append(idx[: int(size) if size >= 1 else max(1, round(len(idx) * size))])
    return torch.from_numpy(np.sort(np.concatenate(keep)))


def fold_split(labels: torch.Tensor, folds: int, fold: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Indices (train, val) of k-fold cross-validation: every class is cut into ``folds``
    near-equal parts (drawn with ``seed``), and part ``fold`` of every class is the validation
    split. The K validation splits are disjoint and together cover every image once."""
    train, val = [], []
    for idx in _each_class_shuffled(labels.numpy(), np.random.default_rng(seed)):
        parts = np.array_split(idx, folds)
        val.append(parts[fold])
        train.extend(p for i, p in enumerate(parts) if i != fold)
    return torch.from_numpy(np.sort(np.concatenate(train))), torch.from_numpy(
        np.sort(np.concatenate(val))
    )


def _each_class_shuffled(labels: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """The indices of every class, in a random order of their own."""
    return [rng.permutation(np.flatnonzero(labels == k)) for k in np.unique(labels)]


def iterate_batches(
    split: Split, batch_size: int, shuffle: bool, generator: torch.Generator | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches cut by index; without shuffle the order is the same every epoch."""
    n = len(split)
    if not shuffle:
        for start in range(0, n, batch_size):
            yield split.images[start : start + batch_size], split.labels[start : start + batch_size]
        return
    order = torch.randperm(n, generator=generator).to(split.labels.device)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        yield split.images[idx], split.labels[idx]


def hold_out(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test): ``fraction`` of every class held out (at least one image of a
    class that has two or more), fixed by ``seed``; the training order is shuffled once so that
    ``shuffle=false`` does not train class after class."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for idx in _each_class_shuffled(labels, rng):
        n = 0 if len(idx) < 2 else min(max(1, round(len(idx) * fraction)), len(idx) - 1)
        test.append(idx[:n])
        train.append(idx[n:])
    return rng.permutation(np.concatenate(train)), np.sort(np.concatenate(test))
