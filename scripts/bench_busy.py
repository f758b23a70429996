"""Are both slots of a 2-at-a-time search busy? Asynchronous trials against the plugin's batches.

Each run is ``train.py -m hydra/sweeper=optuna hydra/launcher=joblib hydra.sweeper.n_jobs=2``
(8 trials, seeded TPE over lr and batch size, the sweeper's default pruner) on 30000 rows of a
Fashion-MNIST CSV file (seed 003's format), with 1 and with 8 epochs per trial; once with
asynchronous trials (the default) and once with ``hydra.sweeper.asynchronous=false``.

Busy fraction, from the jobs' rows: the summed ``run_duration`` over 2 x (the last job's
``finished_at`` minus the first job's ``started_at``). Target: at least 0.85 asynchronous.

    python scripts/bench_busy.py            # make bench-busy
    python scripts/bench_busy.py --epochs 1
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from cnnsweep.data.torchvision_sets import load_torchvision
from cnnsweep.results.stats import busy_fraction

REPO = Path(__file__).resolve().parents[1]


def write_csv(path: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    """``label,pixel1..pixel784`` rows under a header, as seed 003's Kaggle files."""
    table = np.concatenate([labels.reshape(-1, 1), images.reshape(len(images), -1)], axis=1)
    header = "label," + ",".join(f"pixel{i + 1}" for i in range(images[0].size))
    np.savetxt(path, table, fmt="%d", delimiter=",", header=header, comments="")
    return path


def search(out: Path, name: str, epochs: int, extra: list[str], data: dict[str, Path]) -> dict:
    sweep_dir = out / name
    cmd = [
        sys.executable, str(REPO / "train.py"), "-m", "hydra/sweeper=optuna",
        "hydra/launcher=joblib", "hydra.sweeper.n_jobs=2", "hydra.sweeper.n_trials=8",
        "hydra.sweeper.sampler.seed=42", f"hydra.sweeper.study_name={name}",
        f"hydra.sweeper.storage=sqlite:///{out.resolve()}/busy.db", f"hydra.sweep.dir={sweep_dir}",
        "lr=tag(log,interval(1e-4,1e-1))", "batch_size=choice(32,100,256)", "data=csv",
        f"data.train_csv={data['train']}", f"data.test_csv={data['test']}", f"epochs={epochs}",
        "progress=false", *extra,
    ]  # fmt: skip
    start = time.time()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.time() - start
    if proc.returncode != 0:
        sys.exit(f"{name} failed:\n{proc.stderr[-3000:]}")
    rows = [json.loads(p.read_text()) for p in sweep_dir.rglob("results.json")]
    return {"name": name, "wall": wall, "rows": rows, "busy": busy_fraction(rows, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--epochs", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--out", type=Path, default=REPO / "bench_out" / "busy")
    args = parser.parse_args()
    out = args.out / datetime.now().strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True)
    cfg = OmegaConf.load(REPO / "conf/data/fashion_mnist.yaml")
    (x, y), (xt, yt) = load_torchvision("FashionMNIST", REPO / "data", True, cfg.debian_dir)
    data = {
        "train": write_csv(out / "train.csv", x[:30000].numpy(), y[:30000].numpy()),
        "test": write_csv(out / "test.csv", xt[:5000].numpy(), yt[:5000].numpy()),
    }
    print("8 trials, 2 at a time (joblib, 1 thread each), 30000 CSV rows, 2 cores")
    print("| epochs per trial | trials | wall s | slots busy | jobs' seconds |")
    print("|---|---|---|---|---|")
    for epochs in args.epochs:
        for mode, extra in (
            ("asynchronous", []),
            ("batches", ["hydra.sweeper.asynchronous=false"]),
        ):
            r = search(out, f"e{epochs}-{mode}", epochs, extra, data)
            busy = sum(row["run_duration"] for row in r["rows"])
            print(f"| {epochs}, {mode} | {len(r['rows'])} | {r['wall']:.0f} | {r['busy']:.2f} | "
                  f"{busy:.0f} |", flush=True)  # fmt: skip
    print("target: asynchronous at least 0.85")


if __name__ == "__main__":
    main()
