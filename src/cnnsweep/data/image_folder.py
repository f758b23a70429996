"""Your own images in torchvision's ImageFolder layout (``root/<class name>/<image>``).

Every image is converted once (``cnnsweep.data.images``) to uint8 ``[C, H, W]`` and the whole
folder is held in memory like the other datasets. The converted folder is cached on disk as one
``.npz`` file whose name is a hash of the folder's file list (paths, sizes, mtimes) and of the
conversion settings, so the next job of a sweep reads it in a second; a changed, added or
removed file gives a new hash and a fresh conversion.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from cnnsweep.data.images import (
    Conversion,
    ImageReadError,
    conversion_for,
    describe_conversion,
    read_image,
)
from cnnsweep.data.splits import hold_out
from cnnsweep.data.types import DatasetError, Raw

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the conversion or the file layout changes: old caches are not used
# Peak memory of loading a folder, in multiples of its uint8 size (files x C x S x S bytes): the
# converted images (1x), the uint8 copies that the train/test and train/validation splits index
# out of them (about 1x) and the float32 copies of those splits (4x).
PEAK_MEMORY_FACTOR = 6
GIB = 2**30


@dataclass
class Folder:
    """One converted folder: images uint8 [N, C, S, S], labels, and what was skipped."""

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    skipped: list[str]  # the files that could not be read (relative to the folder in the cache)
    reasons: list[str]  # why, one per skipped file


def _visible(name: str) -> bool:
    return not name.startswith(".")  # .DS_Store, ._AppleDouble, .ipynb_checkpoints ...


def scan(root: Path, key: str) -> dict[str, list[Path]]:
    """Class name -> its files (any depth below the class folder), both sorted by name.

    Symbolic links are followed, but every real folder is walked once and every real file kept
    once (the first in sorted order): a loop such as ``cat/again -> .`` would otherwise repeat
    a class's images dozens of times, with copies on both sides of the train/test hold-out.
    """
    if not root.is_dir():
        what = "does not exist" if not root.exists() else "is not a folder"
        raise DatasetError(
            f"data.{key}={root} {what}; give a folder laid out as <folder>/<class name>/<image>"
        )
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and _visible(p.name))
    if not classes:
        raise DatasetError(
            f"data.{key}={root} has no class folders; expected {root}/<class name>/<image files>"
        )
    # the root and the class folders count as visited: a link to them is a loop, or would
    # take another class's images
    seen_dirs = {os.path.realpath(root), *(os.path.realpath(root / name) for name in classes)}
    seen_files: set[str] = set()
    files = {}
    for name in classes:
        found = []
        for dirpath, dirnames, filenames in os.walk(root / name, followlinks=True):
            keep = []
            for d in sorted(d for d in dirnames if _visible(d)):
                real = os.path.realpath(os.path.join(dirpath, d))
                if real not in seen_dirs:
                    seen_dirs.add(real)
                    keep.append(d)
            dirnames[:] = keep  # os.walk descends only into these
            for f in sorted(f for f in filenames if _visible(f)):
                real = os.path.realpath(os.path.join(dirpath, f))
                if real not in seen_files:
                    seen_files.add(real)
                    found.append(Path(dirpath, f))
        files[name] = found
    return files


def _stat(path: Path) -> list[int | None]:
    """Size and mtime for the cache key; a broken link's own (it is skipped when converted)."""
    for stat in (path.stat, path.lstat):
        try:
            st = stat()
            return [st.st_size, st.st_mtime_ns]
        except OSError:
            pass
    return [None, None]  # removed since the scan


def fingerprint(root: Path, files: dict[str, list[Path]], conv: Conversion) -> str:
    """Hash of what the cached conversion depends on: the files as they are now, and how."""
    listing = []
    for name, paths in files.items():
        for p in paths:
            listing.append([name, p.relative_to(root).as_posix(), *_stat(p)])
    key = {
        "format": CACHE_FORMAT,
        "folder": str(root.resolve()),
        "conversion": asdict(conv),
        "files": listing,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def available_memory() -> int | None:
    """Bytes of memory this machine can give without swapping, or None when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # given in kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):  # no sysconf (Windows) or no such name
        return None
    return free if free > 0 else None


def _check_memory(root: Path, n: int, conv: Conversion, key: str) -> None:
    """Refuse a folder whose conversion cannot fit in memory: a clear error now rather than
    the machine swapping for an hour or the job being killed without a word."""
    need = PEAK_MEMORY_FACTOR * n * conv.channels * conv.size * conv.size
    available = available_memory()
    if available is not None and need > available:
        mode = "grayscale" if conv.channels == 1 else "RGB"
        raise DatasetError(
            f"data.{key}={root}: converting {n:,} images to {mode} {conv.size}x{conv.size} "
            f"needs about {need / GIB:.1f} GiB of memory at its peak, and this machine has "
            f"{available / GIB:.1f} GiB available; use a smaller data.image_size or a subset "
            "of the folder"
        )


def _convert_folder(root: Path, files: dict[str, list[Path]], conv: Conversion) -> Folder:
    n = sum(len(paths) for paths in files.values())
    # filled in place: a list of arrays stacked at the end would need twice the memory
    images = np.empty((n, conv.channels, conv.size, conv.size), dtype=np.uint8)
    labels, skipped, reasons = [], [], []
    for label, paths in enumerate(files.values()):
        for path in paths:
            try:
                images[len(labels)] = read_image(path, conv)
                labels.append(label)
            except ImageReadError as e:
                skipped.append(path.relative_to(root).as_posix())
                reasons.append(str(e))
    kept = images[: len(labels)]
    return Folder(kept, np.array(labels, dtype=np.int64), list(files), skipped, reasons)


def _write_cache(path: Path, folder: Folder) -> None:
    """Write to a unique temporary name, then rename: a job starting meanwhile sees either no
    cache or a whole one. os.open with mode 0o666 gives the permissions the umask allows
    (mkstemp would make the file private to this user)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(
                f,
                images=folder.images,
                labels=folder.labels,
                class_names=np.array(folder.class_names, dtype=str),
                skipped=np.array(folder.skipped, dtype=str),
                reasons=np.array(folder.reasons, dtype=str),
            )
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _read_cache(path: Path, conv: Conversion) -> Folder | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            folder = Folder(
                z["images"],
                z["labels"],
                [str(s) for s in z["class_names"]],
                [str(s) for s in z["skipped"]],
                [str(s) for s in z["reasons"]],
            )
    except FileNotFoundError:
        return None
    except Exception as e:  # damaged by hand or by a full disk: convert again
        log.warning("image cache %s is unreadable (%s); converting again", path, e)
        return None
    if folder.images.shape[1:] != (conv.channels, conv.size, conv.size):
        return None
    return folder


def read_folder(
    root: str | Path, conv: Conversion, cache_dir: str | Path | None, key: str
) -> Folder:
    """Convert a class-per-folder tree (or read its cached conversion)."""
    root = Path(root)
    files = scan(root, key)
    if len(files) < 2:
        raise DatasetError(
            f"data.{key}={root} has 1 class folder ({', '.join(files)}); "
            "a classifier needs at least 2"
        )
    cache = None
    if cache_dir:
        digest = fingerprint(root, files, conv)
        cache = Path(cache_dir) / f"{root.resolve().name or 'root'}-{digest[:20]}.npz"
    folder = _read_cache(cache, conv) if cache else None
    if folder is not None:
        log.info("%s: %d images read from the cache %s", root, len(folder.labels), cache)
    else:
        started = time.time()
        n = sum(len(p) for p in files.values())
        _check_memory(root, n, conv, key)
        log.info("%s: converting %d files to %s", root, n, describe_conversion(conv))
        folder = _convert_folder(root, files, conv)
        log.info("%s: converted in %.1fs", root, time.time() - started)
        if cache:
            try:
                _write_cache(cache, folder)
            except OSError as e:  # a read-only data dir: train anyway, convert again next time
                log.warning("cannot write the image cache %s (%s); not cached", cache, e)
    for rel, reason in zip(folder.skipped, folder.reasons):
        log.warning("skipped %s: %s", root / rel, reason)
    counts = np.bincount(folder.labels, minlength=len(folder.class_names))
    for name, count in zip(folder.class_names, counts):
        if count == 0:
            bad = sum(1 for rel in folder.skipped if rel.split("/", 1)[0] == name)
            why = f"{bad} file(s) skipped as unreadable" if bad else "it is empty"
            raise DatasetError(f"class folder {root / name} holds no readable images ({why})")
    folder.skipped = [str(root / rel) for rel in folder.skipped]
    return folder


def _check_names(cfg: Any, names: list[str], where: str) -> None:
    """A config that names its classes (a checkpoint's does) must match the folders."""
    given = cfg.get("class_names")
    if given is not None and list(given) != names:
        raise DatasetError(
            f"the class folders of {where} are {names}, but data.class_names is {list(given)}"
        )
    n = cfg.get("num_classes")
    if n is not None and n != len(names):
        raise DatasetError(
            f"{where} has {len(names)} class folders but data.num_classes={n}; "
            "leave data.num_classes null to take the count from the folders"
        )


def read_image_folders(cfg: Any, splits: tuple[str, ...]) -> Raw:
    """The named splits of a ``data=image_folder`` config as uint8 tensors (a ``Raw``)."""
    conv = conversion_for(cfg)
    if _missing(cfg, "train_dir"):
        raise DatasetError(
            "data.train_dir is not set: give data.train_dir=<folder>, laid out as "
            "<folder>/<class name>/<image>"
        )
    cache_dir = cfg.get("cache_dir")
    seed = int(cfg.get("split_seed", 0))
    test_dir = cfg.get("test_dir")
    fraction = cfg.get("test_fraction")
    if not test_dir and (
        isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1
    ):
        raise DatasetError(
            f"data.test_fraction={fraction!r} is not allowed: it must be in (0, 1) "
            "when data.test_dir is null"
        )
    want_train = "train" in splits or not test_dir
    out, skipped = {}, []
    train = test = None
    if want_train:
        train = read_folder(cfg.train_dir, conv, cache_dir, "train_dir")
        _check_names(cfg, train.class_names, f"data.train_dir={cfg.train_dir}")
        skipped += train.skipped
    if test_dir and "test" in splits:
        test = read_folder(test_dir, conv, cache_dir, "test_dir")
        if train is not None and test.class_names != train.class_names:
            missing = sorted(set(train.class_names) - set(test.class_names))
            extra = sorted(set(test.class_names) - set(train.class_names))
            raise DatasetError(
                f"data.test_dir={test_dir} has other classes than data.train_dir={cfg.train_dir}"
                f" (missing: {', '.join(missing) or '-'}; extra: {', '.join(extra) or '-'}); "
                "both need the same class folders"
            )
        _check_names(cfg, test.class_names, f"data.test_dir={test_dir}")
        skipped += test.skipped
    if train is not None:
        if test_dir:
            train_idx = np.random.default_rng(seed).permutation(len(train.labels))
        else:
            train_idx, test_idx = hold_out(train.labels, fraction, seed)
            if len(test_idx) == 0:
                raise DatasetError(
                    f"data.train_dir={cfg.train_dir} has too few images to hold out a test "
                    "split (a class needs 2 or more); give data.test_dir"
                )
            out["test"] = _tensors(train, test_idx)
        out["train"] = _tensors(train, train_idx)
    if test is not None:
        out["test"] = _tensors(test, np.arange(len(test.labels)))
    names = (train or test).class_names
    return Raw({name: out[name] for name in splits}, names, skipped)


def _missing(cfg: Any, key: str) -> bool:
    """Unset (null, or Hydra's ``???``), without tripping over OmegaConf's missing-value error."""
    if isinstance(cfg, DictConfig):
        return OmegaConf.is_missing(cfg, key) or cfg.get(key) is None
    return cfg.get(key) in (None, "???")


def _tensors(folder: Folder, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(folder.images[idx]), torch.from_numpy(folder.labels[idx])
