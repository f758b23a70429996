"""The data module on IDX and CSV files the tests write themselves."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from conftest import CONF, make_images, write_csv_dataset, write_idx, write_idx_dataset
from omegaconf import OmegaConf

from cnnsweep.data.csv_files import read_csv_split
from cnnsweep.data.load import load_data
from cnnsweep.data.splits import iterate_batches, split_train_val
from cnnsweep.data.torchvision_sets import load_torchvision
from cnnsweep.data.types import DatasetError, Split


def data_cfg(name: str, **over) -> OmegaConf:
    cfg = OmegaConf.load(CONF / "data" / f"{name}.yaml")
    cfg.root = over.pop("root", "unused")
    return OmegaConf.merge(cfg, over)


@pytest.mark.parametrize("dataset", ["FashionMNIST", "KMNIST", "MNIST"])
def test_torchvision_classes_read_idx_files(tiny_root: Path, dataset: str) -> None:
    (x, y), (xt, yt) = load_torchvision(dataset, tiny_root, download=False)
    assert x.shape == (300, 28, 28) and x.dtype == torch.uint8
    assert xt.shape == (100, 28, 28) and yt.dtype == torch.int64
    expected, labels = make_images(300, seed=0)
    assert torch.equal(x, torch.from_numpy(expected)) and torch.equal(
        y, torch.from_numpy(labels).long()
    )


def test_debian_style_gz_folder_is_decompressed_into_root(tmp_path: Path) -> None:
    debian = tmp_path / "debian"
    for prefix, n in (("train", 40), ("t10k", 10)):
        images, labels = make_images(n)
        write_idx(debian / f"{prefix}-images-idx3-ubyte", images, gz=True)
        write_idx(debian / f"{prefix}-labels-idx1-ubyte", labels, gz=True)
    (x, _), (xt, _) = load_torchvision("FashionMNIST", tmp_path / "root", False, debian)
    assert len(x) == 40 and len(xt) == 10
    assert (
        tmp_path / "root/FashionMNIST/raw/train-images-idx3-ubyte"
    ).stat().st_size == 16 + 40 * 784
    assert not list((tmp_path / "root/FashionMNIST/raw").glob("*.tmp*"))


def test_missing_dataset_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(
        DatasetError, match=r"FashionMNIST not found in .*apt-get install -y dataset-fashion-mnist"
    ):
        load_torchvision("FashionMNIST", tmp_path, download=False, local_dir=tmp_path / "nowhere")


def test_truncated_idx_file_is_reported_by_name(tmp_path: Path) -> None:
    root = write_idx_dataset(tmp_path, "KMNIST", n_train=30, n_test=10)
    f = root / "KMNIST/raw/train-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte is truncated or corrupt"):
        load_torchvision("KMNIST", root, download=False)


def test_images_and_labels_must_agree_in_count(tmp_path: Path) -> None:
    root = write_idx_dataset(tmp_path, "MNIST", n_train=30, n_test=10)
    write_idx(root / "MNIST/raw/t10k-labels-idx1-ubyte", make_images(12)[1])
    with pytest.raises(DatasetError, match="t10k has 10 images but 12 labels"):
        load_torchvision("MNIST", root, download=False)


def test_csv_round_trip(tmp_path: Path) -> None:
    write_csv_dataset(tmp_path / "train.csv", n=50)
    write_csv_dataset(tmp_path / "test.csv", n=20, seed=1)
    cfg = data_cfg(
        "csv", train_csv=str(tmp_path / "train.csv"), test_csv=str(tmp_path / "test.csv")
    )
    data = load_data(cfg, seed=0)
    assert (len(data.train), len(data.val), len(data.test)) == (45, 5, 20)
    assert data.train.images.shape[1:] == (1, 28, 28) and data.train.images.dtype == torch.float32
    images, labels = read_csv_split(tmp_path / "train.csv")
    expected, exp_labels = make_images(50)
    assert torch.equal(images[:, 0], torch.from_numpy(expected))
    assert torch.equal(labels, torch.from_numpy(exp_labels).long())


def test_a_csv_is_parsed_once_per_process_and_again_when_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The jobs a worker process runs one after another share the parse (30000 rows: seconds);
    a rewritten file is read again, and no caller can change what the next one gets."""
    import numpy as np

    parses = []
    real = np.loadtxt
    monkeypatch.setattr(np, "loadtxt", lambda *a, **k: parses.append(a[0]) or real(*a, **k))
    path = write_csv_dataset(tmp_path / "train.csv", n=30)
    first, _ = read_csv_split(path)
    first.zero_()  # a caller that normalises in place
    again, labels = read_csv_split(path)
    assert len(parses) == 1 and again.max() > 0 and len(labels) == 30
    write_csv_dataset(path, n=40, seed=3)
    assert len(read_csv_split(path)[1]) == 40 and len(parses) == 2


def test_csv_with_wrong_column_count_names_it(tmp_path: Path) -> None:
    write_csv_dataset(tmp_path / "bad.csv", n=5, columns=700)
    with pytest.raises(DatasetError, match=r"bad.csv has 700 columns; expected 785"):
        read_csv_split(tmp_path / "bad.csv")


def test_labels_outside_the_class_count_are_refused(tiny_root: Path) -> None:
    with pytest.raises(DatasetError, match=r"labels span 0..9, outside 0..4"):
        load_data(data_cfg("mnist", root=str(tiny_root), num_classes=5), seed=0)


def test_validation_split_is_fixed_by_seed_and_disjoint() -> None:
    x = torch.arange(100).float().reshape(100, 1, 1, 1)
    y = torch.arange(100)
    a_train, a_val = split_train_val(x, y, 0.2, seed=3)
    b_train, b_val = split_train_val(x, y, 0.2, seed=3)
    _, c_val = split_train_val(x, y, 0.2, seed=4)
    assert torch.equal(a_val.labels, b_val.labels) and not torch.equal(a_val.labels, c_val.labels)
    assert len(a_val) == 20 and set(a_train.labels.tolist()).isdisjoint(a_val.labels.tolist())
    assert split_train_val(x, y, 0.0, seed=3)[1] is None


def test_batches_honour_shuffle() -> None:
    split = Split(torch.arange(10).float().reshape(10, 1, 1, 1), torch.arange(10))
    fixed = [b[1].tolist() for b in iterate_batches(split, 4, shuffle=False)]
    assert fixed == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    g = torch.Generator().manual_seed(0)
    first = torch.cat([b[1] for b in iterate_batches(split, 4, True, g)])
    second = torch.cat([b[1] for b in iterate_batches(split, 4, True, g)])
    assert sorted(first.tolist()) == list(range(10)) and not torch.equal(first, second)
    images, labels = next(iterate_batches(split, 4, True, torch.Generator().manual_seed(1)))
    assert torch.equal(images.flatten().long(), labels)  # images stay paired with their labels


@pytest.mark.slow
def test_real_fashion_mnist_files(tmp_path: Path) -> None:
    src = Path("data/FashionMNIST/raw")
    debian = Path("/usr/share/datasets/fashion-mnist")
    if not debian.is_dir() and not src.is_dir():
        pytest.skip("Fashion-MNIST not installed (apt-get install -y dataset-fashion-mnist)")
    local = debian if debian.is_dir() else None
    if local is None:
        shutil.copytree(src, tmp_path / "FashionMNIST/raw")
    (x, y), (xt, yt) = load_torchvision("FashionMNIST", tmp_path, download=False, local_dir=local)
    assert x.shape == (60000, 28, 28) and xt.shape == (10000, 28, 28)
    assert torch.bincount(y).tolist() == [6000] * 10 and torch.bincount(yt).tolist() == [1000] * 10


def test_csv_with_only_a_header_says_so(tmp_path: Path) -> None:
    write_csv_dataset(tmp_path / "empty.csv", n=0)
    with pytest.raises(DatasetError, match=r"^CSV .*empty.csv has a header but no image rows$"):
        read_csv_split(tmp_path / "empty.csv")


@pytest.mark.parametrize("source", ["mnist", "csv"])
def test_a_subset_is_stratified_fixed_by_its_seed_and_feeds_the_validation_split(
    tiny_root: Path, tmp_path: Path, source: str
) -> None:
    """data.subset=N: N training images of every class (the test split untouched); 0 < x < 1:
    that fraction of every class; data.split_seed draws it, the job's seed does not."""
    over = {"root": str(tiny_root)}
    if source == "csv":
        write_csv_dataset(tmp_path / "train.csv", n=300)
        write_csv_dataset(tmp_path / "test.csv", n=100, seed=1)
        over = {"train_csv": str(tmp_path / "train.csv"), "test_csv": str(tmp_path / "test.csv")}
    full = load_data(data_cfg(source, **over), seed=0)
    every = torch.cat([full.train.labels, full.val.labels])
    data = load_data(data_cfg(source, subset=5, val_fraction=0.2, **over), seed=0)
    labels = torch.cat([data.train.labels, data.val.labels])
    counts = torch.bincount(labels, minlength=10)
    assert counts.tolist() == [min(5, int(c)) for c in torch.bincount(every, minlength=10)]
    assert len(data.val) == round(0.2 * len(labels)) and len(data.test) == len(full.test)
    other_seed = load_data(data_cfg(source, subset=5, val_fraction=0.2, **over), seed=7)
    same_subset = torch.cat([other_seed.train.labels, other_seed.val.labels])
    assert sorted(same_subset.tolist()) == sorted(labels.tolist())  # the job's seed: same subset
    redrawn = load_data(data_cfg(source, subset=5, split_seed=1, **over), seed=0)
    assert not torch.equal(redrawn.train.images[:5], data.train.images[:5])
    half = load_data(data_cfg(source, subset=0.5, val_fraction=0.0, **over), seed=0)
    assert abs(len(half.train) - len(every) / 2) <= 10


@pytest.mark.parametrize("bad", ["0", "-3", "2.5", "1.0001", "true", "all"])
def test_a_bad_subset_is_one_line_naming_it(tiny_root: Path, tmp_path: Path, bad: str) -> None:
    from conftest import run_cli

    proc = run_cli([f"data.subset={bad}", f"data_dir={tiny_root}", "epochs=1"], tmp_path)
    assert proc.returncode == 2
    assert (
        proc.stderr.strip().startswith("error: data.subset=")
        and bad.strip("-") in proc.stderr.lower()
    )
    assert "is not allowed: use images per class" in proc.stderr
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # nothing written


def test_a_subset_larger_than_a_class_is_one_line_naming_the_class(
    tiny_root: Path, tmp_path: Path
) -> None:
    from conftest import run_cli

    (_, labels), _ = load_torchvision("FashionMNIST", tiny_root, download=False)
    counts = torch.bincount(labels)
    name = data_cfg("fashion_mnist").class_names[int(counts.argmin())]
    proc = run_cli(["data.subset=1000", f"data_dir={tiny_root}", "epochs=1"], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: data.subset=1000 is more than the {int(counts.min())} training images of class "
        f"{name!r}: use at most {int(counts.min())} per class, or a fraction (0 < x < 1)"
    )
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # nothing written
