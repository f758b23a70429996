"""The same seeded Optuna search with and without pruning: epochs trained, wall time, best val acc.

Both arms run ``train.py -m hparams_search=fashion_mnist_optuna`` (seeded TPE, the preset's search
space) in a fresh study of their own; one with ``hydra/sweeper/pruner=nop`` (never prunes), one
with the preset's pruner (``--pruner median``: another of conf/hydra/sweeper/pruner/).
Target: pruning trains at most 60% of the epochs, and its best validation accuracy is within
0.5 points of the unpruned search's.

    python scripts/bench_search.py                # 16 trials x 8 epochs, real Fashion-MNIST
    python scripts/bench_search.py --quick        # 8 trials x 3 epochs on a 6000-image subset
    make bench-search ARGS="--trials 24 --device cuda"
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import optuna
import torch
from omegaconf import OmegaConf

from cnnsweep.data.torchvision_sets import load_torchvision

REPO = Path(__file__).resolve().parents[1]


def write_subset(root: Path, n_train: int, n_test: int) -> Path:
    """The first images of real Fashion-MNIST as IDX files under root (a data_dir)."""
    cfg = OmegaConf.load(REPO / "conf/data/fashion_mnist.yaml")
    (x, y), (xt, yt) = load_torchvision("FashionMNIST", REPO / "data", True, cfg.debian_dir)
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, images, labels in (
        ("train", x[:n_train], y[:n_train]),
        ("t10k", xt[:n_test], yt[:n_test]),
    ):
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            header = bytes([0, 0, 0x08, array.dim()]) + b"".join(
                int(d).to_bytes(4, "big") for d in array.shape
            )
            data = array.to(torch.uint8).numpy().tobytes()
            (raw / f"{prefix}-{kind}-ubyte").write_bytes(header + data)
    return root


def run_arm(name: str, pruner: str | None, args: argparse.Namespace, out: Path, stamp: str) -> dict:
    """One search; ``pruner``: a conf/hydra/sweeper/pruner/ option, None for the preset's."""
    study = f"bench-{pruner or 'pruned'}-{stamp}"
    sweep_dir = out / study
    cmd = [
        sys.executable, str(REPO / "train.py"), "-m", "hparams_search=fashion_mnist_optuna",
        f"hydra.sweeper.n_trials={args.trials}",
        f"hydra.sweeper.sampler.seed={args.seed}", f"hydra.sweeper.study_name={study}",
        f"hydra.sweeper.storage=sqlite:///{out.resolve()}/bench_search.db",
        f"hydra.sweep.dir={sweep_dir}", f"epochs={args.epochs}", f"device={args.device}",
        "progress=false", "reports=false", "tensorboard.histograms=false",
        "tensorboard.graph=false", "tensorboard.images=false", *args.overrides,
    ]  # fmt: skip
    if pruner:
        cmd.append(f"hydra/sweeper/pruner={pruner}")
    if args.data_dir:
        cmd.append(f"data_dir={args.data_dir}")
    print(f"{name}: {' '.join(cmd[2:])}", flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{name} failed:\n{proc.stderr[-4000:]}")
    rows = [json.loads(p.read_text()) for p in sweep_dir.rglob("results.json")]
    s = optuna.load_study(study_name=study, storage=f"sqlite:///{out.resolve()}/bench_search.db")
    states = [t.state for t in s.trials]
    return {
        "arm": name,
        "trials": len(s.trials),
        "pruned": states.count(optuna.trial.TrialState.PRUNED),
        "epochs": sum(r["epochs_run"] for r in rows),
        "wall_s": wall,
        "best_val_acc": s.best_value,
        "best_params": s.best_params,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="8 trials x 3 epochs, 6000 train images"
    )
    parser.add_argument("--trials", type=int, default=None, help="trials per arm (16; quick: 8)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per trial (8; quick: 3)")
    parser.add_argument("--seed", type=int, default=42, help="the TPE sampler's seed, both arms")
    parser.add_argument(
        "--pruner", default=None, help="the pruned arm's hydra/sweeper/pruner (the preset's)"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=REPO / "bench_out" / "search")
    parser.add_argument("--data-dir", default=None, help="data_dir for train.py (default: its own)")
    parser.add_argument("overrides", nargs="*", help="more train.py overrides, e.g. threads=2")
    args = parser.parse_args()
    args.trials = args.trials or (8 if args.quick else 16)
    args.epochs = args.epochs or (3 if args.quick else 8)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")

    with tempfile.TemporaryDirectory(dir=args.out) as tmp:
        if args.quick and not args.data_dir:
            args.data_dir = str(write_subset(Path(tmp), 6000, 1000))
        os.environ.setdefault("PYTHONWARNINGS", "ignore")
        arms = {"no pruning": "nop", f"{args.pruner or 'preset'} pruning": args.pruner}
        results = [run_arm(name, pruner, args, args.out, stamp) for name, pruner in arms.items()]

    data = "Fashion-MNIST subset (6000 train)" if args.quick else "Fashion-MNIST"
    print(f"\n{args.trials} trials x {args.epochs} epochs per arm, TPE seed {args.seed}, {data}")
    print(f"{'arm':<20}{'trials':>7}{'pruned':>7}{'epochs':>8}{'wall s':>9}{'best val acc':>14}")
    for r in results:
        print(
            f"{r['arm']:<20}{r['trials']:>7}{r['pruned']:>7}{r['epochs']:>8}{r['wall_s']:>9.1f}"
            f"{r['best_val_acc']:>14.4f}"
        )
    full, pruned = results
    share = pruned["epochs"] / full["epochs"]
    gap = 100 * (full["best_val_acc"] - pruned["best_val_acc"])
    ok = share <= 0.6 and gap <= 0.5
    print(
        f"pruning trained {share:.0%} of the epochs (target <= 60%) in "
        f"{pruned['wall_s'] / full['wall_s']:.0%} of the time; best val acc "
        f"{-gap:+.2f} points (target >= -0.5): {'target met' if ok else 'target NOT met'}"
        + (" (the target is for the full run)" if args.quick else "")
    )
    for r in results:
        print(f"best of {r['arm']}: {r['best_params']}")


if __name__ == "__main__":
    main()
