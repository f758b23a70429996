"""Seed 003's Kaggle CSV files: a header, then ``label,pixel1..pixelN`` rows."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from cnnsweep.data.types import DatasetError


def read_csv_split(path: str | Path, image_size: int = 28, in_channels: int = 1) -> tuple:
    """Seed 003's Kaggle CSV: a header, then `label,pixel1..pixelN` rows of 0-255 values.

    Parsed once per process and file version (path, size, mtime): the jobs a joblib worker or
    a search worker runs one after another reuse it (30000 rows take seconds to parse)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"CSV file {path} does not exist")
    stat = path.stat()
    version = (path.resolve(), stat.st_size, stat.st_mtime_ns)
    images, labels = _parsed(*version, image_size, in_channels)
    return images.clone(), labels.clone()  # callers may change theirs in place


@functools.lru_cache(maxsize=4)
def _parsed(path: Path, size: int, mtime_ns: int, image_size: int, in_channels: int) -> tuple:
    n_pixels = in_channels * image_size * image_size
    with open(path) as f:
        header = f.readline().strip().split(",")
        has_rows = any(line.strip() for line in f)  # stops at the first row: cheap
    if len(header) != n_pixels + 1:
        raise DatasetError(
            f"CSV {path} has {len(header)} columns; expected {n_pixels + 1} "
            f"(label + {in_channels}x{image_size}x{image_size} pixels)"
        )
    if not has_rows:
        raise DatasetError(f"CSV {path} has a header but no image rows")
    try:
        table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.int64, ndmin=2)
    except ValueError as e:
        raise DatasetError(f"CSV {path} has a malformed row: {str(e).splitlines()[0]}") from None
    if table.shape[1] != n_pixels + 1:
        raise DatasetError(
            f"CSV {path} has rows of {table.shape[1]} columns; expected {n_pixels + 1}"
        )
    if table.size and (table[:, 1:].min() < 0 or table[:, 1:].max() > 255):
        raise DatasetError(f"CSV {path} has pixel values outside 0..255")
    images = torch.from_numpy(table[:, 1:].astype(np.uint8)).reshape(
        -1, in_channels, image_size, image_size
    )
    return images, torch.from_numpy(table[:, 0]).long()
