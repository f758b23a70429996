"""Is the learning-rate finder's suggestion any good? For each model (default: the seeds'
``network`` and ``bn_cnn``, both with Adam), run ``train.py lr_find=true`` as a user would, then
train with the suggested rate and with the seeds' 0.01 and 0.001 (the defaults otherwise:
3 epochs, batch 100, seed 42, real Fashion-MNIST), and print the accuracies side by side.

    python scripts/bench_lr_find.py                    # ~8 minutes on 2 cores
    python scripts/bench_lr_find.py --models network --epochs 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUIET = ["progress=false", "reports=false", "tensorboard.histograms=false",
         "tensorboard.graph=false"]  # fmt: skip


def train_py(args: list[str]) -> float:
    """Run train.py with ``args`` from the repo; its wall time (exit on failure)."""
    start = time.time()
    proc = subprocess.run([sys.executable, str(REPO / "train.py"), *args], cwd=REPO,
                          capture_output=True, text=True)  # fmt: skip
    if proc.returncode != 0:
        sys.exit(f"train.py {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return time.time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)  # fmt: skip
    parser.add_argument("--models", nargs="+", default=["network", "bn_cnn"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "bench_out" / "lr_find")
    args = parser.parse_args()
    out = (args.out / datetime.now().strftime("%Y%m%d-%H%M%S")).resolve()
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    table = []
    for model in args.models:
        find_dir = out / f"{model}-lr_find"
        seconds = train_py(["lr_find=true", f"model={model}", f"hydra.run.dir={find_dir}"])
        found = json.loads((find_dir / "lr_find.json").read_text())
        suggested = float(f"{found['suggested_lr']:.2g}")  # as the printed command has it
        lrs = list(dict.fromkeys([suggested, 0.01, 0.001]))
        grid = out / f"{model}-grid"
        train_py(["-m", f"model={model}", f"lr={','.join(map(str, lrs))}",
                  f"epochs={args.epochs}", f"hydra.sweep.dir={grid}", *QUIET])  # fmt: skip
        for row_file in sorted(grid.rglob("results.json")):
            row = json.loads(row_file.read_text())
            table.append({"model": model, "lr": row["lr"], "suggested": row["lr"] == suggested,
                          "val_acc": row["val_acc"], "test_acc": row["test_acc"],
                          "finder_s": seconds, "steepest": found["steepest_lr"]})  # fmt: skip
    print(f"\n{args.epochs} epochs, batch 100, Adam, seed 42, Fashion-MNIST; finder: "
          "lowest smoothed loss / 10")  # fmt: skip
    print("| model | lr | from | val acc | test acc |")
    print("|---|---|---|---|---|")
    for r in sorted(table, key=lambda r: (r["model"], -r["test_acc"])):
        source = f"finder ({r['finder_s']:.0f} s)" if r["suggested"] else "seeds' grid"
        print(f"| {r['model']} | {r['lr']:g} | {source} | {r['val_acc']:.4f} | "
              f"{r['test_acc']:.4f} |")  # fmt: skip
    print("steepest-descent rule for comparison: "
          + ", ".join(f"{m}: {next(r['steepest'] for r in table if r['model'] == m):.2g}"
                      for m in args.models))  # fmt: skip


if __name__ == "__main__":
    main()
