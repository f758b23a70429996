"""Seconds per epoch: this repo's in-memory pipeline vs the seed's per-item DataLoader.

Same model (``network``), same machine, same process, real Fashion-MNIST (training split):
python scripts/bench.py [--batch-sizes 100 1000] [--epochs 1]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
import torchvision
from omegaconf import OmegaConf

from cnnsweep.data import Split, load_torchvision, to_float
from cnnsweep.loop import Recipe, train_one_epoch
from cnnsweep.models import build_model
from cnnsweep.monitor import Monitor
from cnnsweep.state import TrainState

CFG = OmegaConf.load("conf/data/fashion_mnist.yaml")


def seed_epoch(root: str, batch_size: int) -> float:
    """The tutorials' way: torchvision dataset + ToTensor per item, DataLoader batches."""
    train_set = torchvision.datasets.FashionMNIST(
        root, train=True, download=False, transform=torchvision.transforms.ToTensor()
    )
    loader = torch.utils.data.DataLoader(train_set, batch_size=batch_size, shuffle=True)
    model = build_model("network")
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    start = time.perf_counter()
    for images, labels in loader:
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def repo_epoch(split: Split, batch_size: int, memory_format: torch.memory_format) -> float:
    model = build_model("network").to(memory_format=memory_format)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=0.01, fused=True
    )  # as conf/optimizer/adam.yaml
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)  # constant
    gens = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    state = TrainState(model, optimizer, scheduler, Monitor(), *gens)
    recipe = Recipe(batch_size=batch_size, shuffle=True, memory_format=memory_format)
    start = time.perf_counter()
    train_one_epoch(state, split, recipe, progress=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument(
        "--epochs", type=int, default=1, help="epochs timed per pipeline (best taken)"
    )
    parser.add_argument("--root", default="data")
    args = parser.parse_args()

    start = time.perf_counter()
    (x, y), _ = load_torchvision("FashionMNIST", args.root, True, CFG.debian_dir)
    split = Split(to_float(x, CFG.mean, CFG.std), y)
    print(f"load + uint8->float of 60000 images once: {time.perf_counter() - start:.2f}s")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, model=network, 60000 images"
    )
    print(f"{'batch':>6} {'seed DataLoader s/epoch':>24} {'repo contiguous':>16} "
          f"{'repo channels_last':>19} {'speedup':>8}")  # fmt: skip
    for bs in args.batch_sizes:
        seed = min(seed_epoch(args.root, bs) for _ in range(args.epochs))
        plain = min(repo_epoch(split, bs, torch.contiguous_format) for _ in range(args.epochs))
        cl = min(repo_epoch(split, bs, torch.channels_last) for _ in range(args.epochs))
        print(f"{bs:>6} {seed:>24.2f} {plain:>16.2f} {cl:>19.2f} {seed / cl:>7.1f}x")


if __name__ == "__main__":
    main()
