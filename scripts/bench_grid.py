"""Wall time of the seed's hyperparameter grid: this repo's Hydra sweep vs the seed's own loop.

The grid is the seed's RunBuilder product lr=[0.01, 0.001] x batch_size=[100, 1000] x
shuffle=[true, false], 3 epochs each, on real Fashion-MNIST, both measured in this same run:

- repo: ``python train.py -m lr=0.01,0.001 batch_size=100,1000 shuffle=true,false`` exactly as
  a user types it (defaults on: validation every epoch, the test pass, the pictures, TensorBoard
  images, graph and histograms, checkpoints and rows), then beside it ``reuse_memory=false``
  (glibc's own malloc thresholds: freed buffers go back to the OS), ``reports=false`` and
  ``hydra/launcher=joblib hydra.launcher.n_jobs=2`` (two jobs at once, one torch thread each);
- seed: a torchvision dataset with ``ToTensor`` per item, ``DataLoader(batch_size, shuffle)``,
  the seed's network as the tutorial writes it (conv -> ReLU -> max-pool; this repo's ``network``
  pools first, the same function computed faster) and plain Adam, a ``SummaryWriter`` with
  images, graph, scalars and weight and gradient histograms every epoch, the runs one after the
  other, no validation, no test.

    python scripts/bench_grid.py            # the full grid (several minutes on 2 cores)
    python scripts/bench_grid.py --quick    # 1 epoch, 2 runs: checks that it works
    python scripts/bench_grid.py --pairs 3  # as typed and the seed loop in turn, 3 times:
                                            # the median ratio survives the machine's drift
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter

from cnnsweep.data.torchvision_sets import load_torchvision

REPO = Path(__file__).resolve().parents[1]
DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
TARGET = 0.3  # the repo's grid may take at most this fraction of the seed loop's time
GRID = {"lr": [0.01, 0.001], "batch_size": [100, 1000], "shuffle": [True, False]}
QUICK = {"lr": [0.01, 0.001], "batch_size": [1000], "shuffle": [True]}
# the headline is the command as the README shows it (defaults on: pictures, TensorBoard images,
# graph and histograms, checkpoints); the variants beside it, in the same run
VARIANTS = {
    "train.py -m (as typed)": [],
    "train.py -m reuse_memory=false": ["reuse_memory=false"],
    "train.py -m reports=false": ["reports=false"],
    "train.py -m, joblib n_jobs=2": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
}


def runs_of(grid: dict[str, list]) -> list[dict]:
    """The seed's RunBuilder: the product of the value lists, in the same order as Hydra's."""
    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


def repo_grid(
    grid: dict[str, list], epochs: int, root: str, out: Path, name: str, extra: list[str]
) -> tuple[float, list]:
    """`train.py -m` over the grid in a subprocess; (wall seconds, the jobs' results rows)."""

    def values(v: list) -> str:
        return ",".join(str(x).lower() if isinstance(x, bool) else str(x) for x in v)

    sweep_dir = out / re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")  # a Hydra-safe path
    cmd = [
        sys.executable,
        str(REPO / "train.py"),
        "-m",
        *(f"{k}={values(v)}" for k, v in grid.items()),
        *([f"epochs={epochs}"] if epochs != 3 else []),  # 3 is the default: as typed
        f"data_dir={Path(root).resolve()}",  # where the data is, and where the sweep writes
        f"hydra.sweep.dir={sweep_dir.resolve()}",
        *extra,
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=out, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"train.py -m failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    rows = []
    for job in sorted(sweep_dir.glob("*/results.json"), key=lambda p: int(p.parent.name)):
        rows.append(json.loads(job.read_text()))
    return seconds, rows


def seed_network() -> nn.Module:
    """deeplizard's Network in the tutorial's layer order: each conv, then ReLU, then max-pool."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 12, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(192, 120), nn.ReLU(), nn.Linear(120, 60), nn.ReLU(),
        nn.Linear(60, 10),
    )  # fmt: skip


def seed_grid(runs: list[dict], epochs: int, root: str, out: Path) -> tuple[float, list]:
    """The seed's loop, timed from building the dataset to the last run's saved results."""
    start = time.perf_counter()
    train_set = torchvision.datasets.FashionMNIST(
        root, train=True, download=False, transform=torchvision.transforms.ToTensor()
    )
    results = []
    for number, run in enumerate(runs, 1):
        model = seed_network()
        loader = DataLoader(train_set, batch_size=run["batch_size"], shuffle=run["shuffle"])
        optimizer = torch.optim.Adam(model.parameters(), lr=run["lr"])
        name = "-".join(f"{k}={v}" for k, v in run.items())
        tb = SummaryWriter(log_dir=str(out / "seed_tb" / f"{number}-{name}"))
        images, _ = next(iter(loader))
        tb.add_image("images", torchvision.utils.make_grid(images))
        with warnings.catch_warnings():  # add_graph traces with the deprecated torch.jit
            warnings.simplefilter("ignore", FutureWarning)
            tb.add_graph(model, images)
        run_start = time.perf_counter()
        for epoch in range(1, epochs + 1):
            epoch_start = time.perf_counter()
            total_loss, total_correct = 0.0, 0
            for images, labels in loader:
                preds = model(images)
                loss = F.cross_entropy(preds, labels)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total_loss += loss.item() * images.shape[0]
                total_correct += preds.argmax(dim=1).eq(labels).sum().item()
            loss_avg, accuracy = total_loss / len(train_set), total_correct / len(train_set)
            tb.add_scalar("Loss", loss_avg, epoch)
            tb.add_scalar("Number Correct", total_correct, epoch)
            tb.add_scalar("Accuracy", accuracy, epoch)
            for pname, param in model.named_parameters():
                tb.add_histogram(pname, param, epoch)
                tb.add_histogram(f"{pname}.grad", param.grad, epoch)
            results.append(
                {
                    "run": number,
                    "epoch": epoch,
                    "loss": loss_avg,
                    "accuracy": accuracy,
                    "epoch duration": time.perf_counter() - epoch_start,
                    "run duration": time.perf_counter() - run_start,
                    **run,
                }
            )
        tb.close()
    (out / "seed_results.json").write_text(json.dumps(results, indent=2))
    return time.perf_counter() - start, results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1 epoch, 2 runs (a smoke test)")
    parser.add_argument("--epochs", type=int, default=None, help="default: 3 (1 with --quick)")
    parser.add_argument("--root", default="data", help="data_dir holding FashionMNIST/raw")
    parser.add_argument("--out", default="bench_out/grid", help="where both write their logs")
    parser.add_argument(
        "--pairs", type=int, default=1,
        help="times the command as typed and the seed loop run in turn (A B A B): the headline\n"
        "is the median of their pair-by-pair ratios; the variants run once, after the first",
    )  # fmt: skip
    args = parser.parse_args()
    if args.pairs < 1:
        parser.error(f"--pairs {args.pairs}: give 1 or more")
    grid = QUICK if args.quick else GRID
    epochs = args.epochs or (1 if args.quick else 3)
    runs = runs_of(grid)
    out = Path(args.out).resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    load_torchvision("FashionMNIST", args.root, True, DEBIAN_DIR)  # install once, not timed

    axes = " x ".join(f"{k}={v}" for k, v in grid.items())
    print(f"grid: {len(runs)} runs x {epochs} epoch(s), {axes}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; logs in {out}")
    typed, *variants = VARIANTS.items()
    timed: dict[str, float] = {}
    first_accs: list = []
    pairs = []  # (as typed, seed loop) seconds
    for pair in range(1, args.pairs + 1):
        # the command as typed right before the seed loop: the machine's drift between them is
        # what a pair leaves in its ratio
        name, extra = typed
        suffix = f" #{pair}" if args.pairs > 1 else ""
        repo_s = run_variant(grid, epochs, args, out, name + suffix, extra, len(runs), first_accs)
        seed_s = run_seed(runs, epochs, args.root, out)
        pairs.append((repo_s, seed_s))
        if args.pairs > 1:
            print(f"pair {pair}: {repo_s:.1f} s / {seed_s:.1f} s = {repo_s / seed_s:.3f}")
        if pair == 1:  # the variants beside the first pair
            for name, extra in variants:
                timed[name] = run_variant(
                    grid, epochs, args, out, name, extra, len(runs), first_accs
                )
    seed_s = statistics.median(s for _, s in pairs)
    ratios = [repo_s / s for repo_s, s in pairs]
    ratio = statistics.median(ratios)
    spread = (
        f", {min(ratios):.3f}-{max(ratios):.3f} over {len(ratios)} pairs" if len(ratios) > 1 else ""
    )
    print(f"ratio {typed[0]}/seed: {ratio:.3f}{spread} ({verdict(ratio)}; {1 / ratio:.1f}x faster)")
    for name, repo_s in timed.items():
        ratio = repo_s / seed_s
        print(f"ratio {name}/seed: {ratio:.3f} ({verdict(ratio)}; {1 / ratio:.1f}x faster)")


def verdict(ratio: float) -> str:
    return f"{'meets' if ratio <= TARGET else 'misses'} the target <= {TARGET}"


def run_variant(
    grid: dict,
    epochs: int,
    args: argparse.Namespace,
    out: Path,
    name: str,
    extra: list[str],
    n_runs: int,
    first_accs: list,
) -> float:
    """One variant of the grid through train.py -m; prints its time and test accuracies (the
    same numbers as the command as typed, or other ones), and where its time went."""
    repo_s, rows = repo_grid(grid, epochs, args.root, out, name, extra)
    bad = [r for r in rows if r.get("status") != "completed"]
    if len(rows) != n_runs or bad:
        sys.exit(f"{name}: {len(rows)} rows, not completed: {[r.get('error') for r in bad]}")
    test_accs = [r["test_acc"] for r in rows]
    if not first_accs:
        first_accs.extend(test_accs)  # the numbers of the command as typed
    same = "the same" if test_accs == first_accs else "other"
    print(
        f"repo  {name + ':':<45}{repo_s:8.1f} s   "
        f"test acc {min(test_accs):.4f}-{max(test_accs):.4f} "
        f"({same} {len(rows)} numbers as typed)   threads/job {rows[0]['threads']}"
    )
    if not any("launcher" in e for e in extra):  # one process, jobs in turn
        in_epochs = sum(r["epoch_duration"] * r["epochs_run"] for r in rows)
        in_jobs = sum(r["run_duration"] for r in rows)
        print(
            f"      of which epochs (train + val) {in_epochs:.1f} s, the rest of the jobs "
            f"(test, checkpoints, rows, TensorBoard, pictures) {in_jobs - in_epochs:.1f} s, "
            f"start and data {repo_s - in_jobs:.1f} s"
        )
    return repo_s


def run_seed(runs: list[dict], epochs: int, root: str, out: Path) -> float:
    """The seed loop once; prints its time and last-epoch train accuracies."""
    seed_s, results = seed_grid(runs, epochs, root, out)
    last = [r["accuracy"] for r in results if r["epoch"] == epochs]
    print(
        f"seed  {'DataLoader loop (train only):':<45}{seed_s:8.1f} s   "
        f"train acc {min(last):.4f}-{max(last):.4f}"
    )
    return seed_s


if __name__ == "__main__":
    main()
