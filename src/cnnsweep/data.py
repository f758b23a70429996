"""Datasets held in memory as tensors, cut into batches by index.

The seed tutorials run every image through PIL and ``ToTensor`` on each step; here a split is
converted once (uint8 -> normalised float) and a batch is one tensor index, which is what makes
small CNNs fast on a CPU.
"""

from __future__ import annotations

import functools
import gzip
import os
import shutil
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision

# torchvision's raw file names, with the IDX magic number and item shape each must have
IDX_FILES = {
    "train-images-idx3-ubyte": (2051, 3),
    "train-labels-idx1-ubyte": (2049, 1),
    "t10k-images-idx3-ubyte": (2051, 3),
    "t10k-labels-idx1-ubyte": (2049, 1),
}
DATASETS = {"FashionMNIST", "KMNIST", "MNIST"}


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


def idx_shape(path: Path) -> tuple[int, ...]:
    """Read an IDX header and check the file holds exactly the bytes it announces."""
    with open(path, "rb") as f:
        head = f.read(4)
        if len(head) < 4 or head[:2] != b"\x00\x00" or head[2] != 0x08:
            raise DatasetError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
        ndim = head[3]
        dims = struct.unpack(f">{ndim}I", f.read(4 * ndim))
    expected = 4 + 4 * ndim + int(np.prod(dims))
    size = path.stat().st_size
    if size != expected:
        raise DatasetError(f"{path} is truncated or corrupt: {size} bytes, header says {expected}")
    return tuple(dims)


def check_raw_folder(raw: Path) -> None:
    """Every IDX file present, well-formed, and images and labels of each split agree in count."""
    shapes = {}
    for name, (_, ndim) in IDX_FILES.items():
        shape = idx_shape(raw / name)
        if len(shape) != ndim:
            raise DatasetError(f"{raw / name} has {len(shape)} dimensions, expected {ndim}")
        shapes[name] = shape
    for split in ("train", "t10k"):
        n_img, n_lab = (
            shapes[f"{split}-images-idx3-ubyte"][0],
            shapes[f"{split}-labels-idx1-ubyte"][0],
        )
        if n_img != n_lab:
            raise DatasetError(f"{raw}: {split} has {n_img} images but {n_lab} labels")


def install_from_folder(src: Path, raw: Path) -> None:
    """Copy (decompressing .gz) the four IDX files from e.g. Debian's package into ``raw``.

    Debian recompresses the .gz files, so their md5 differs from torchvision's list; the content
    is checked instead (IDX headers and sizes) by ``check_raw_folder`` afterwards.
    """
    raw.mkdir(parents=True, exist_ok=True)
    for name in IDX_FILES:
        target = raw / name
        if target.exists():
            continue
        gz, plain = src / f"{name}.gz", src / name
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        if gz.exists():
            with gzip.open(gz, "rb") as fin, open(tmp, "wb") as fout:
                shutil.copyfileobj(fin, fout)
        elif plain.exists():
            shutil.copyfile(plain, tmp)
        else:
            raise DatasetError(f"{src} lacks {name}.gz")
        os.replace(tmp, target)  # atomic: parallel jobs never see half a file


def load_torchvision(
    dataset: str, root: str | Path, download: bool = True, local_dir: str | Path | None = None
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """(train, test) as uint8 images [N, H, W] and int64 labels, from torchvision's own classes."""
    if dataset not in DATASETS:
        raise DatasetError(f"unknown torchvision dataset {dataset!r}; known: {sorted(DATASETS)}")
    cls = getattr(torchvision.datasets, dataset)
    root = Path(root)
    raw = root / dataset / "raw"
    if not all((raw / n).exists() for n in IDX_FILES) and local_dir and Path(local_dir).is_dir():
        install_from_folder(Path(local_dir), raw)
    if not all((raw / n).exists() for n in IDX_FILES):
        hint = (
            f"put the four *-ubyte files in {raw}"
            if not local_dir
            else f"install Debian's package (apt-get install -y dataset-fashion-mnist) to get "
            f"{local_dir}, or put the four *-ubyte files in {raw}"
        )
        if not download:
            raise DatasetError(f"{dataset} not found in {raw}; {hint}")
        try:
            cls(root=str(root), train=True, download=True)
        except Exception as e:  # no network, a mirror down, a bad archive
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise DatasetError(
                f"{dataset} not found in {raw} and download failed ({msg}); {hint}"
            ) from None
    check_raw_folder(raw)
    return _read_splits(dataset, str(root.resolve()))


@functools.lru_cache(maxsize=2)
def _read_splits(dataset: str, root: str) -> tuple:
    """Read once per process: the jobs of a sweep run one after another in the same process."""
    cls = getattr(torchvision.datasets, dataset)
    out = []
    for train in (True, False):
        ds = cls(root=root, train=train, download=False)
        out.append((ds.data, ds.targets.long()))
    return out[0], out[1]


def read_csv_split(path: str | Path, image_size: int = 28, in_channels: int = 1) -> tuple:
    """Seed 003's Kaggle CSV: a header, then `label,pixel1..pixelN` rows of 0-255 values."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"CSV file {path} does not exist")
    n_pixels = in_channels * image_size * image_size
    with open(path) as f:
        header = f.readline().strip().split(",")
    if len(header) != n_pixels + 1:
        raise DatasetError(
            f"CSV {path} has {len(header)} columns; expected {n_pixels + 1} "
            f"(label + {in_channels}x{image_size}x{image_size} pixels)"
        )
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


def to_float(images: torch.Tensor, mean: float, std: float, in_channels: int = 1) -> torch.Tensor:
    """uint8 [N, H, W] or [N, C, H, W] -> normalised float32 [N, C, H, W], done once per split."""
    if images.dim() == 3:
        images = images.unsqueeze(1)
    if images.shape[1] != in_channels:
        raise DatasetError(f"images have {images.shape[1]} channels, config says {in_channels}")
    # (x / 255 - mean) / std, in place on the one new tensor: these splits are hundreds of MB
    return images.float().sub_(255.0 * mean).div_(255.0 * std)


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


def _read_uint8(cfg: Any, splits: tuple[str, ...]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The named splits ("train", "test") of a ``data`` config as uint8 images and labels."""
    if cfg.source == "torchvision":  # torchvision reads both splits at once (cached)
        both = load_torchvision(cfg.dataset, cfg.root, cfg.download, cfg.get("debian_dir"))
        raw = dict(zip(("train", "test"), both, strict=True))
    elif cfg.source == "csv":
        raw = {n: read_csv_split(cfg[f"{n}_csv"], cfg.image_size, cfg.in_channels) for n in splits}
    else:
        raise DatasetError(f"data.source={cfg.source!r} is not supported; use torchvision or csv")
    for name in splits:
        y = raw[name][1]
        if len(y) and (y.min() < 0 or y.max() >= cfg.num_classes):
            raise DatasetError(
                f"{cfg.name} {name} labels span {int(y.min())}..{int(y.max())}, "
                f"outside 0..{cfg.num_classes - 1} (data.num_classes={cfg.num_classes})"
            )
    return {name: raw[name] for name in splits}


def load_data(cfg: Any, seed: int) -> Data:
    """Build the train/val/test splits described by a ``data`` config group."""
    raw = _read_uint8(cfg, ("train", "test"))
    x_train = to_float(raw["train"][0], cfg.mean, cfg.std, cfg.in_channels)
    train, val = split_train_val(x_train, raw["train"][1], cfg.val_fraction, seed)
    return Data(train, val, load_test_split(cfg, raw), list(cfg.class_names))


def load_test_split(cfg: Any, raw: dict | None = None) -> Split:
    """The test split alone, normalised (predict needs no training images)."""
    x, y = (raw or _read_uint8(cfg, ("test",)))["test"]
    return Split(to_float(x, cfg.mean, cfg.std, cfg.in_channels), y)


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
