"""A ``data`` config to train/val/test splits: the one entry the job and predict use.

The seed tutorials run every image through PIL and ``ToTensor`` on each step; here a split is
converted once (uint8 -> normalised float) and a batch is one tensor index, which is what makes
small CNNs fast on a CPU.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import torch

from cnnsweep.data.csv_files import read_csv_split
from cnnsweep.data.normalise import normalisation, to_float
from cnnsweep.data.splits import fold_split, split_train_val, stratified_subset
from cnnsweep.data.torchvision_sets import load_torchvision
from cnnsweep.data.types import Data, DatasetError, Raw, Split, Stat

# config keys that hold paths; relative ones are relative to the folder the job was started in
PATH_KEYS = ("root", "train_dir", "test_dir", "cache_dir", "train_csv", "test_csv")


def read_raw(cfg: Any, splits: tuple[str, ...]) -> Raw:
    """The named splits ("train", "test") of a ``data`` config as uint8 images and labels, with
    the class names (an image folder's come from its folders) and the files skipped."""
    if cfg.source == "image_folder":
        from cnnsweep.data.image_folder import read_image_folders  # imports this module

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
    if cfg.get("subset") is not None:  # before the validation split: both come from it
        check_subset(cfg.subset, y, raw.class_names)
        keep = stratified_subset(y, cfg.subset, cfg.get("split_seed") or 0)
        x, y = x[keep], y[keep]
    mean, std = normalisation(cfg, x)
    # split the uint8 images, then convert each part: the float copy is made once
    if cfg.get("folds"):  # k-fold: fold i of the training images is the validation split
        train_idx, val_idx = fold_split(y, cfg.folds, cfg.fold, cfg.get("split_seed") or 0)
        train_u8, val_u8 = Split(x[train_idx], y[train_idx]), Split(x[val_idx], y[val_idx])
    else:
        train_u8, val_u8 = split_train_val(x, y, cfg.val_fraction, seed)
    train = Split(to_float(train_u8.images, mean, std, cfg.in_channels), train_u8.labels)
    val = None
    if val_u8 is not None:
        val = Split(to_float(val_u8.images, mean, std, cfg.in_channels), val_u8.labels)
    test = load_test_split(cfg, raw.splits, (mean, std))
    return Data(train, val, test, raw.class_names, raw.skipped, mean, std)


def check_subset(subset: float, labels: torch.Tensor, class_names: list[str]) -> None:
    """Images per class (an integer subset) must not ask more of a class than it has."""
    counts = torch.bincount(labels, minlength=len(class_names))
    smallest = int(counts.argmin())
    if subset >= 1 and subset > counts[smallest]:
        name = class_names[smallest] if smallest < len(class_names) else str(smallest)
        raise DatasetError(
            f"data.subset={subset:g} is more than the {int(counts[smallest])} training images "
            f"of class {name!r}: use at most {int(counts[smallest])} per class, or a fraction "
            "(0 < x < 1)"
        )


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
