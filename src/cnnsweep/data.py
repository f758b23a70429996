"""Datasets held in memory as tensors, cut into batches by index.

The seed tutorials run every image through PIL and ``ToTensor`` on each step; here a split is
converted once (uint8 -> normalised float) and a batch is one tensor index, which is what makes
small CNNs fast on a CPU.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import shutil
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
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
CIFAR = {"CIFAR10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"}
# config keys that hold paths; relative ones are relative to the folder the job was started in
PATH_KEYS = ("root", "train_dir", "test_dir", "cache_dir", "train_csv", "test_csv")


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
    skipped: list[str] = field(default_factory=list)  # files that could not be read
    mean: float | list[float] | None = None  # the normalisation used (the config's or computed)
    std: float | list[float] | None = None


@dataclass
class Raw:
    """What a source read: uint8 splits by name, the class names, the files it skipped."""

    splits: dict[str, tuple[torch.Tensor, torch.Tensor]]
    class_names: list[str]
    skipped: list[str] = field(default_factory=list)


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
    if dataset in CIFAR:
        return load_cifar(dataset, root, download)
    if dataset not in DATASETS:
        known = sorted(DATASETS | set(CIFAR))
        raise DatasetError(f"unknown torchvision dataset {dataset!r}; known: {known}")
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


def dataset_folder(dataset: str) -> str:
    """The folder torchvision keeps a dataset in, below its root."""
    if dataset in CIFAR:
        return getattr(torchvision.datasets, dataset).base_folder
    return dataset


def load_cifar(
    dataset: str, root: str | Path, download: bool = True
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """(train, test) as uint8 [N, 3, 32, 32] and int64 labels, through torchvision's CIFAR class
    (its download, md5 checks and pickle reading)."""
    cls = getattr(torchvision.datasets, dataset)
    root = Path(root)
    folder = root / cls.base_folder
    hint = f"download {CIFAR[dataset]} and unpack it in {root} (it holds {cls.base_folder}/)"
    try:
        return _read_cifar(dataset, str(root.resolve()), download)
    except Exception as e:  # no network, a mirror down, a corrupt archive or batch file
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        what = "the download failed" if download else "data.download=false"
        raise DatasetError(
            f"{dataset} is missing or corrupt in {folder} and {what} ({msg}); {hint}"
        ) from None


@functools.lru_cache(maxsize=2)
def _read_cifar(dataset: str, root: str, download: bool) -> tuple:
    """Read once per process, like the IDX datasets; torchvision checks the md5 of every batch
    file and downloads when they are missing or wrong (and ``download``)."""
    cls = getattr(torchvision.datasets, dataset)
    out = []
    for train in (True, False):
        ds = cls(root=root, train=train, download=download and train)
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
        out.append((images, torch.tensor(ds.targets, dtype=torch.int64)))
    return out[0], out[1]


def read_csv_split(path: str | Path, image_size: int = 28, in_channels: int = 1) -> tuple:
    """Seed 003's Kaggle CSV: a header, then `label,pixel1..pixelN` rows of 0-255 values."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"CSV file {path} does not exist")
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


Stat = float | Sequence[float]


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


def read_raw(cfg: Any, splits: tuple[str, ...]) -> Raw:
    """The named splits ("train", "test") of a ``data`` config as uint8 images and labels, with
    the class names (an image folder's come from its folders) and the files skipped."""
    if cfg.source == "image_folder":
        from cnnsweep.image_folder import read_image_folders  # imports this module

        return read_image_folders(cfg, splits)
    if cfg.source == "torchvision":  # torchvision reads both splits at once (cached)
        both = load_torchvision(cfg.dataset, cfg.root, cfg.download, cfg.get("debian_dir"))
        raw = dict(zip(("train", "test"), both, strict=True))
    elif cfg.source == "csv":
        raw = {n: read_csv_split(cfg[f"{n}_csv"], cfg.image_size, cfg.in_channels) for n in splits}
    else:
        raise DatasetError(
            f"data.source={cfg.source!r} is not supported; use torchvision, csv or image_folder"
        )
    for name in splits:
        y = raw[name][1]
        if len(y) and (y.min() < 0 or y.max() >= cfg.num_classes):
            raise DatasetError(
                f"{cfg.name} {name} labels span {int(y.min())}..{int(y.max())}, "
                f"outside 0..{cfg.num_classes - 1} (data.num_classes={cfg.num_classes})"
            )
    return Raw({name: raw[name] for name in splits}, list(cfg.class_names))


def _read_uint8(cfg: Any, splits: tuple[str, ...]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The named splits ("train", "test") of a ``data`` config as uint8 images and labels."""
    return read_raw(cfg, splits).splits


def load_data(cfg: Any, seed: int) -> Data:
    """Build the train/val/test splits described by a ``data`` config group.

    A torchvision dataset's splits are built once per process for each (config, seed): the jobs
    of a sweep share them (no job modifies them in place), instead of normalising and
    splitting the same 60000 images again for every job.
    """
    if cfg.source == "torchvision":
        return _shared_data(json.dumps(_plain(cfg), sort_keys=True), seed)
    return _build_data(cfg, seed)


@functools.lru_cache(maxsize=1)
def _shared_data(cfg_json: str, seed: int) -> Data:
    from omegaconf import OmegaConf

    return _build_data(OmegaConf.create(json.loads(cfg_json)), seed)


def _plain(cfg: Any) -> dict:
    from omegaconf import DictConfig, OmegaConf

    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def _build_data(cfg: Any, seed: int) -> Data:
    raw = read_raw(cfg, ("train", "test"))
    x, y = raw.splits["train"]
    mean, std = normalisation(cfg, x)
    # split the uint8 images, then convert each part: the float copy is made once
    train_u8, val_u8 = split_train_val(x, y, cfg.val_fraction, seed)
    train = Split(to_float(train_u8.images, mean, std, cfg.in_channels), train_u8.labels)
    val = None
    if val_u8 is not None:
        val = Split(to_float(val_u8.images, mean, std, cfg.in_channels), val_u8.labels)
    test = load_test_split(cfg, raw.splits, (mean, std))
    return Data(train, val, test, raw.class_names, raw.skipped, mean, std)


def load_test_split(
    cfg: Any, raw: dict | None = None, stats: tuple[Stat, Stat] | None = None
) -> Split:
    """The test split alone, normalised (predict needs no training images, unless the mean/std
    are to be computed on them)."""
    if raw is None:
        computed = stats is None and (cfg.get("mean") is None or cfg.get("std") is None)
        raw = _read_uint8(cfg, ("train", "test") if computed else ("test",))
    if stats is None:
        stats = normalisation(cfg, raw["train"][0] if "train" in raw else None)
    x, y = raw["test"]
    return Split(to_float(x, *stats, cfg.in_channels), y)


def complete_config(cfg: Any, data: Data) -> None:
    """Fill the job's data config with what reading the data decided, where the config left it
    null: the class names and count of an image folder, and a computed mean/std. The model's
    ``num_classes`` interpolates ``data.num_classes``, and the checkpoint stores this config."""
    from omegaconf import open_dict

    with open_dict(cfg):
        if cfg.get("class_names") is None:
            cfg.class_names = list(data.class_names)
        if cfg.get("num_classes") is None:
            cfg.num_classes = len(data.class_names)
        if cfg.get("mean") is None or cfg.get("std") is None:
            cfg.mean, cfg.std = data.mean, data.std


def absolute_paths(data: dict[str, Any], base: str | Path | None = None) -> dict[str, Any]:
    """A data config (plain dict) with its relative paths made absolute against ``base`` (the
    current folder by default), so that a checkpoint finds its data from anywhere."""
    base = Path(base or os.getcwd())
    out = dict(data)
    for key in PATH_KEYS:
        value = out.get(key)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            out[key] = str((base / value).resolve())
    return out


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
