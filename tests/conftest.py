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


# the Optuna state a search's trial ends in, by its job's row status. The preset's space reaches
# lr=0.1: on tiny data such a draw can send the loss to inf (on one CPU and not another), and a
# diverged job is a FAIL trial, which the search goes on from (no failure: the trial says so)
TRIAL_STATE = {"completed": "COMPLETE", "pruned": "PRUNED", "diverged": "FAIL"}


def reported_epochs(row: dict) -> int:
    """How many intermediate values a search's job reported: every epoch it ran but a
    diverged one (its accuracy means nothing)."""
    return row["epochs_run"] - (row["status"] == "diverged")


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


def refused_line(args: list[str], cwd: Path, env: dict | None = None) -> str:
    """``train.py args`` run from ``cwd`` must be refused as bad input: exit code 2 and not a
    file written. Returns its last stderr line (the one-line error)."""
    proc = run_cli(args, cwd, env=env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert not [p for p in cwd.rglob("*") if p.is_file()]  # nothing written
    return proc.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def tiny_job(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished 2-epoch job on tiny Fashion-MNIST, shared by the tests that only read it."""
    from cnnsweep.train.job import run_job

    out = tmp_path_factory.mktemp("job")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF)):
        cfg = compose("config", overrides=[f"data_dir={tiny_root}", *FAST, "epochs=2"])
    GlobalHydra.instance().clear()
    run_job(cfg, output_dir=out)
    return out


# --- image folders and CIFAR-10 archives written by the tests ---------------------------------

IMAGE_CLASSES = ("apple", "bird", "car")  # class k: a band in colour k at height k (top to bottom)
BAND_COLOURS = ((230, 40, 30), (40, 200, 60), (50, 70, 240))


def band_picture(k: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """uint8 [H, W, 3]: a dark noisy background with class k's coloured band at height k/3."""
    w, h = size
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 50, size=(h, w, 3), dtype=np.uint8)
    top = int(h * k / 3)
    arr[top : top + max(2, h // 4), w // 8 : w - w // 8] = BAND_COLOURS[k]
    return arr


def save_in_mode(arr: np.ndarray, path: Path, mode: str) -> Path:
    """Save an RGB picture as one of the modes people's image files come in."""
    from PIL import Image

    img = Image.fromarray(arr)
    if mode == "rgba":  # opaque band, the rest half transparent
        alpha = np.where(arr.max(axis=2) > 100, 255, 128).astype(np.uint8)
        img.putalpha(Image.fromarray(alpha))
        img.save(path.with_suffix(".png"))
        return path.with_suffix(".png")
    if mode == "palette":
        img = img.quantize(16)
    elif mode == "gray":
        img = img.convert("L")
    elif mode == "gray16":  # 16-bit grayscale PNG
        img = Image.fromarray(np.asarray(img.convert("L")).astype(np.uint16) * 257)
    elif mode == "cmyk":
        img.convert("CMYK").save(path.with_suffix(".jpg"), quality=95)
        return path.with_suffix(".jpg")
    elif mode == "jpeg":
        img.save(path.with_suffix(".jpg"), quality=95)
        return path.with_suffix(".jpg")
    elif mode == "exif":  # the pixels stored rotated, EXIF orientation 6 turns them upright
        stored = Image.fromarray(np.ascontiguousarray(np.rot90(arr, 1)))
        exif = Image.Exif()
        exif[0x0112] = 6
        stored.save(path.with_suffix(".jpg"), quality=95, exif=exif)
        return path.with_suffix(".jpg")
    img.save(path.with_suffix(".png"))
    return path.with_suffix(".png")


IMAGE_MODES = ("rgb", "rgba", "palette", "gray", "gray16", "cmyk", "jpeg", "exif")


def write_image_folder(
    root: Path, per_class: int = 24, classes: tuple[str, ...] = IMAGE_CLASSES, junk: bool = True
) -> Path:
    """``root/<class>/<image>``: ``per_class`` images per class in every mode of IMAGE_MODES and
    sizes from 20 to 64 pixels; with ``junk``, a text file and a truncated JPEG in the first
    class (skipped with a warning when read)."""
    for k, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            size = (20 + (i * 11) % 45, 20 + (i * 7) % 40)
            arr = band_picture(k % len(BAND_COLOURS), size, seed=100 * k + i)
            save_in_mode(arr, folder / f"{name}_{i:03d}", IMAGE_MODES[i % len(IMAGE_MODES)])
    if junk:
        first = root / classes[0]
        (first / "notes.txt").write_text("not a picture\n")
        good = save_in_mode(band_picture(0, (40, 40)), first / "whole", "jpeg")
        (first / "broken.jpg").write_bytes(good.read_bytes()[:200])  # truncated
        good.unlink()
        (first / ".DS_Store").write_bytes(b"\x00\x01")  # hidden: ignored, not counted
    return root


CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
               "truck"]  # fmt: skip


def cifar_images(n: int, seed: int) -> tuple[np.ndarray, list[int]]:
    """[N, 3072] rows as CIFAR-10 stores them (R plane, G plane, B plane of 32x32), learnable:
    class k lights channel k % 3 in a band at height 3k."""
    rng = np.random.default_rng(seed)
    labels = [int(k) for k in np.arange(n) % 10]
    images = rng.integers(0, 60, size=(n, 3, 32, 32), dtype=np.uint8)
    for i, k in enumerate(labels):
        images[i, k % 3, 3 * k : 3 * k + 3, 4:28] = 250
    return images.reshape(n, 3072), labels


def write_cifar_dataset(root: Path, per_batch: int = 20, n_test: int = 30) -> Path:
    """A tiny CIFAR-10 in its own format: ``root/cifar-10-batches-py`` with five pickled
    training batches, the test batch and batches.meta. Their md5s are not torchvision's:
    ``trust_cifar_files`` makes torchvision accept them."""
    import pickle

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    batches = [(f"data_batch_{i}", per_batch, i) for i in range(1, 6)]
    for name, n, seed in [*batches, ("test_batch", n_test, 99)]:
        data, labels = cifar_images(n, seed)
        entry = {"batch_label": name, "labels": labels, "data": data,
                 "filenames": [f"{i}.png" for i in range(n)]}  # fmt: skip
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    meta = {"label_names": CIFAR_NAMES, "num_cases_per_batch": per_batch, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return root


def trust_cifar_files(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    """Point torchvision's CIFAR10 md5 lists at the files under ``root``; everything else
    (integrity check, download-if-missing, unpickling) is torchvision's own code."""
    import hashlib

    import torchvision

    cls = torchvision.datasets.CIFAR10
    folder = root / cls.base_folder

    def md5(name: str) -> str:
        return hashlib.md5((folder / name).read_bytes()).hexdigest()

    monkeypatch.setattr(cls, "train_list", [[n, md5(n)] for n, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[n, md5(n)] for n, _ in cls.test_list])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5(cls.meta["filename"])})


# --- servers the tests start on 127.0.0.1 (optuna-dashboard) -------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, timeout: float = 30) -> dict:
    import json
    import urllib.request

    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def wait_for_studies(base: str, server: subprocess.Popen, seconds: float = 60) -> list[dict]:
    """The dashboard's /api/studies list once it answers; fails if it exits or stays silent."""
    import time

    deadline = time.monotonic() + seconds
    while True:
        try:
            return get_json(f"{base}/api/studies", timeout=5)["study_summaries"]
        except OSError:
            assert server.poll() is None, "optuna-dashboard exited"
            assert time.monotonic() < deadline, f"optuna-dashboard did not answer in {seconds} s"
            time.sleep(0.3)


def chromium_page(page: str, profile: Path, png: Path) -> str:
    """``page`` rendered by headless Chromium: its DOM once scripts ran (returned) and a
    screenshot in ``png``. Skips, saying why, where Chromium is not installed."""
    import shutil

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium here (Debian: apt-get install chromium): API checked, no picture")
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--window-size=1280,800",
        "--virtual-time-budget=10000",  # let the page fetch and draw what it shows
    ]  # fmt: skip
    dom = subprocess.run(
        [browser, *flags, "--dump-dom", page], capture_output=True, text=True, timeout=120
    )
    subprocess.run([browser, *flags, f"--screenshot={png}", page], capture_output=True, timeout=120)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    return dom.stdout
