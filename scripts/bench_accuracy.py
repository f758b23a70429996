"""Time to accuracy: how soon a good model exists, seed 003's recipe against the fast preset.

Both run as a user runs them (``python train.py ...``, defaults on) on real Fashion-MNIST, in
this same run, with the benchmark-only switch ``test_every_epoch=true`` (the test split is also
evaluated after every epoch, with the job's TTA setting). For each, the wall time from the
command's start until the end of the first epoch whose test accuracy reached 90%, 91%, 92%, 93%
(or "never"), and the final test accuracy (the job's own test pass of the weights it kept).

    python scripts/bench_accuracy.py                      # the two recipes, one seed
    python scripts/bench_accuracy.py --seeds 1 2 3        # several seeds: mean of each figure
    python scripts/bench_accuracy.py --device cuda        # on a GPU
    python scripts/bench_accuracy.py --quick              # 2 epochs each: checks that it works
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
THRESHOLDS = (0.90, 0.91, 0.92, 0.93)
RECIPES = {
    "seed 003 (bn_cnn, Adam 0.001, batch 100, 25 epochs)": [
        "model=bn_cnn", "lr=0.001", "batch_size=100", "epochs=25",
    ],
    "experiment=fashion_mnist_fast": ["experiment=fashion_mnist_fast"],
}  # fmt: skip


def run(overrides: list[str], out: Path, data_dir: str) -> dict:
    """One job through the command line; its per-epoch wall times and test accuracies."""
    cmd = [sys.executable, str(REPO / "train.py"), *overrides, f"data_dir={data_dir}",
           "test_every_epoch=true", "progress=false", f"hydra.run.dir={out}"]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    row = json.loads((out / "results.json").read_text())
    epochs = json.loads((out / "epochs.json").read_text())
    startup = wall - row["run_duration"]  # imports, data, the job's set-up
    curve = [(startup + e["run duration"], e["test_accuracy"]) for e in epochs]
    reached = {t: next((s for s, acc in curve if acc >= t), None) for t in THRESHOLDS}
    return {"wall": wall, "final": row["test_acc"], "epochs": len(epochs), "reached": reached}


def fmt_seconds(values: list[float | None]) -> str:
    if any(v is None for v in values):
        hits = sum(v is not None for v in values)
        return "never" if not hits else f"{hits}/{len(values)} runs"
    return f"{statistics.fmean(values):.0f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-dir", default=str(REPO / "data"))
    parser.add_argument("--quick", action="store_true", help="2 epochs per recipe")
    args = parser.parse_args()
    results: dict[str, list[dict]] = {name: [] for name in RECIPES}
    with tempfile.TemporaryDirectory(prefix="bench_accuracy_") as tmp:
        for seed in args.seeds:
            for i, (name, overrides) in enumerate(RECIPES.items()):
                extra = [f"seed={seed}", f"device={args.device}"] + (["epochs=2"] * args.quick)
                res = run([*overrides, *extra], Path(tmp) / f"{i}_{seed}", args.data_dir)
                results[name].append(res)
                print(f"{name}, seed {seed}: final test acc {res['final']:.4f} "
                      f"after {res['epochs']} epochs, {res['wall']:.0f} s", flush=True)  # fmt: skip
    header = ["recipe", *(f"{t:.0%}" for t in THRESHOLDS), "final test acc", "wall"]
    print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for name, runs in results.items():
        finals = [r["final"] for r in runs]
        final = f"{statistics.fmean(finals):.2%}"
        if len(finals) > 1:
            final += f" ± {statistics.stdev(finals):.2%}"
        cells = [fmt_seconds([r["reached"][t] for r in runs]) for t in THRESHOLDS]
        wall = f"{statistics.fmean(r['wall'] for r in runs):.0f} s"
        print("| " + " | ".join([name, *cells, final, wall]) + " |")


if __name__ == "__main__":
    main()
