"""torchvision's IDX datasets (Fashion-MNIST, KMNIST, MNIST) and CIFAR-10, through
torchvision's own classes (download, checks), read once per process."""

from __future__ import annotations

import functools
import gzip
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import torch
import torchvision

from cnnsweep.data.types import DatasetError

# torchvision's raw file names, with the IDX magic number and item shape each must have
IDX_FILES = {
    "train-images-idx3-ubyte": (2051, 3),
    "train-labels-idx1-ubyte": (2049, 1),
    "t10k-images-idx3-ubyte": (2051, 3),
    "t10k-labels-idx1-ubyte": (2049, 1),
}


DATASETS = {"FashionMNIST", "KMNIST", "MNIST"}
CIFAR = {"CIFAR10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"}


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
