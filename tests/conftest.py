"""Shared fixtures: tiny IDX/CSV datasets written by the tests, config composition, the CLI."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
FMNIST_DEBIAN = Path("/usr/share/datasets/fashion-mnist")


def make_images(n: int, n_classes: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Learnable 28x28 uint8 images: class k lights up horizontal band k, plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % n_classes
    rng.shuffle(labels)
    images = rng.integers(0, 60, size=(n, 28, 28), dtype=np.uint8)
    for i, k in enumerate(labels):
        row = 1 + int(k) * 26 // n_classes
        images[i, row : row + 3, 4:24] = 255
    return images, labels.astype(np.uint8)


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> None:
    """An IDX file as torchvision and the original distributions have them."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    data = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def write_idx_dataset(
    root: Path, dataset: str = "FashionMNIST", n_train: int = 300, n_test: int = 100
) -> Path:
    raw = root / dataset / "raw"
    for prefix, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = make_images(n, seed=seed)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root


def write_csv_dataset(path: Path, n: int = 60, seed: int = 0, columns: int = 785) -> Path:
    images, labels = make_images(n, seed=seed)
    header = "label," + ",".join(f"pixel{i}" for i in range(1, columns))
    rows = [
        ",".join(map(str, [int(k), *img.reshape(-1)[: columns - 1].tolist()]))
        for img, k in zip(images, labels)
    ]
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data_dir holding tiny FashionMNIST, KMNIST and MNIST IDX files (300 train, 100 test)."""
    root = tmp_path_factory.mktemp("data")
    for dataset in ("FashionMNIST", "KMNIST", "MNIST"):
        write_idx_dataset(root, dataset)
    return root


# overrides that make a job take a second: tiny data, no progress bar
FAST = ["epochs=1", "batch_size=50", "progress=false", "tensorboard.histograms=true"]


@pytest.fixture
def compose_cfg(tiny_root: Path) -> Iterator:
    """compose(overrides) -> the job's config, as Hydra would build it for `train.py`."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF)):

        def _compose(overrides: list[str] = ()) -> DictConfig:
            return compose("config", overrides=[f"data_dir={tiny_root}", *FAST, *overrides])

        yield _compose
    GlobalHydra.instance().clear()


def run_cli(
    args: list[str],
    cwd: Path,
    script: str = "train.py",
    timeout: int = 600,
    env: dict | None = None,
) -> subprocess.CompletedProcess:
    """Run one of the repo's scripts as a user would, from ``cwd``."""
    return subprocess.run(
        [sys.executable, str(REPO / script), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})},
    )


@pytest.fixture(scope="session")
def tiny_job(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished 2-epoch job on tiny Fashion-MNIST, shared by the tests that only read it."""
    from cnnsweep.job import run_job

    out = tmp_path_factory.mktemp("job")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF)):
        cfg = compose("config", overrides=[f"data_dir={tiny_root}", *FAST, "epochs=2"])
    GlobalHydra.instance().clear()
    run_job(cfg, output_dir=out)
    return out
