"""Seconds per epoch: the seed's DataLoader against this repo's loop, and the repo's speed knobs.

Same machine, same process, real Fashion-MNIST (the 60000 training images):

1. the seed's per-item ``DataLoader`` against this repo's in-memory loop (model ``network``,
   Adam), at each batch size;
2. every model at each batch size, eager fp32 (the default) beside ``precision=bf16`` (where the
   device has it) and ``compile=true`` (timed after its first, compiling epoch);
3. on a GPU only: images per second of N jobs training at once on the one GPU (N = 1, 2, 4),
   as ``hydra/launcher=joblib hydra.launcher.n_jobs=N device=cuda`` runs them.

    python scripts/bench.py                                # CPU or the GPU there is
    python scripts/bench.py --models cnn --batch-sizes 100 --device cuda
    python scripts/bench.py --quick                        # a 6000-image subset: checks it runs
    python scripts/bench.py --system-malloc --variants fp32  # as reuse_memory=false runs it
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from omegaconf import OmegaConf

from cnnsweep.data.normalise import to_float
from cnnsweep.data.torchvision_sets import load_torchvision
from cnnsweep.data.types import Split
from cnnsweep.models import build_model
from cnnsweep.train.job import compile_model
from cnnsweep.train.loop import Recipe, train_one_epoch
from cnnsweep.train.monitor import Monitor
from cnnsweep.train.runtime import ConfigError, check_precision, reuse_freed_memory
from cnnsweep.train.state import TrainState

REPO = Path(__file__).resolve().parents[1]
CFG = OmegaConf.load(REPO / "conf/data/fashion_mnist.yaml")
MODELS = ("network", "bn_cnn", "lenet", "cnn", "resnet")
# --variants name: (column, precision, compile)
VARIANTS = {"fp32": ("fp32 (default)", "fp32", False), "bf16": ("bf16", "bf16", False),
            "compile": ("compile=true", "fp32", True)}  # fmt: skip


def seed_epoch(root: str, batch_size: int, limit: int) -> float:
    """The tutorials' way: torchvision dataset + ToTensor per item, DataLoader batches."""
    train_set = torchvision.datasets.FashionMNIST(
        root, train=True, download=False, transform=torchvision.transforms.ToTensor()
    )
    subset = torch.utils.data.Subset(train_set, range(limit))
    loader = torch.utils.data.DataLoader(subset, batch_size=batch_size, shuffle=True)
    model = build_model("network")
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    start = time.perf_counter()
    for images, labels in loader:
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def repo_epochs(
    split: Split,
    model_name: str,
    batch_size: int,
    device: torch.device,
    epochs: int = 1,
    precision: str = "fp32",
    compile: bool = False,
    memory_format: torch.memory_format | None = None,
) -> float:
    """Seconds of this repo's training epoch (the last of ``epochs``: compiling happens in the
    first), the way a job runs it: fused Adam, channels_last on the CPU."""
    if memory_format is None:
        memory_format = torch.channels_last if device.type == "cpu" else torch.contiguous_format
    model = build_model(model_name).to(device, memory_format=memory_format)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001, fused=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)  # constant
    gens = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    state = TrainState(model, optimizer, scheduler, Monitor(), *gens, scaler=scaler)
    recipe = Recipe(batch_size=batch_size, precision=precision, memory_format=memory_format,
                    forward=compile_model(model, device) if compile else None)  # fmt: skip
    split = split.to(device)
    seconds = 0.0
    for _ in range(epochs):
        _sync(device)
        start = time.perf_counter()
        train_one_epoch(state, split, recipe, progress=False)  # reads the loss: synchronises
        seconds = time.perf_counter() - start
    return seconds


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def parallel_jobs(n: int, model: str, batch_size: int, epochs: int, data_dir: str) -> float:
    """Images per second of ``n`` jobs training at once on one GPU (separate processes)."""
    code = (
        f"import sys, torch; sys.path.insert(0, {str(REPO / 'scripts')!r});"
        "from bench import load_split, repo_epochs;"
        f"s = load_split({data_dir!r}, 60000);"
        f"print(repo_epochs(s, {model!r}, {batch_size}, torch.device('cuda'), epochs={epochs}))"
    )
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
             for _ in range(n)]  # fmt: skip
    for proc in procs:
        proc.communicate()
    return n * epochs * 60000 / (time.perf_counter() - start)


def load_split(root: str, limit: int) -> Split:
    (x, y), _ = load_torchvision("FashionMNIST", root, True, CFG.debian_dir)
    return Split(to_float(x[:limit], CFG.mean, CFG.std), y[:limit])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--root", default=str(REPO / "data"))
    parser.add_argument("--quick", action="store_true", help="6000 images: checks it runs")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument(
        "--system-malloc", action="store_true", help="as reuse_memory=false (default: as a job)"
    )
    args = parser.parse_args()
    reused = not args.system_malloc and reuse_freed_memory()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = device if args.device == "auto" else torch.device(args.device)
    limit = 6000 if args.quick else 60000
    split = load_split(args.root, limit)
    scale = 60000 / limit  # seconds per 60000-image epoch
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"torch {torch.__version__}, {name}, {torch.get_num_threads()} threads, {limit} images, "
          f"freed memory {'kept (reuse_memory)' if reused else 'returned to the OS'}")  # fmt: skip

    print("\n1. seed DataLoader vs this repo (network, Adam), seconds per epoch")
    print("| batch | seed DataLoader (CPU) | repo | speed-up |\n|---|---|---|---|")
    for bs in args.batch_sizes:
        seed = seed_epoch(args.root, bs, limit) * scale
        repo = repo_epochs(split, "network", bs, device, epochs=2) * scale
        print(f"| {bs} | {seed:.2f} | {repo:.2f} | {seed / repo:.1f}x |", flush=True)

    variants = {VARIANTS[k][0]: VARIANTS[k][1:] for k in args.variants}
    print(f"\n2. seconds per epoch on {device.type}, each model and batch size")
    print("| model | batch | " + " | ".join(variants) + " |\n|---|---|" + "---|" * len(variants))
    for model in args.models:
        for bs in args.batch_sizes:
            cells = []
            for precision, compiled in variants.values():
                try:
                    check_precision(precision, device)
                except ConfigError:
                    cells.append("refused")
                    continue
                epochs = 2 if compiled else 1
                seconds = repo_epochs(split, model, bs, device, epochs, precision, compiled)
                cells.append(f"{seconds * scale:.2f}")
            print(f"| {model} | {bs} | " + " | ".join(cells) + " |", flush=True)

    if device.type == "cuda":
        print("\n3. N jobs at once on one GPU (bn_cnn, batch 100): images per second in all")
        print("| jobs | images/s |\n|---|---|")
        for n in (1, 2, 4):
            print(f"| {n} | {parallel_jobs(n, 'bn_cnn', 100, 2, args.root):.0f} |", flush=True)


if __name__ == "__main__":
    main()
