"""Two jobs started together on one machine (two shells, two workers of one study) against one
alone: ``python scripts/bench_host_jobs.py [--epochs N] [--model M]`` (``make bench-host``).

Each job is ``train.py`` as typed (defaults, ``threads=auto``), one epoch of ``bn_cnn`` on real
Fashion-MNIST by default, in three settings measured in the same run: both with ``threads=auto``
(each job counts the jobs running on the host), both with every core (``threads=<cores>``:
what ``threads=auto`` gave each of them before), and one alone. It prints the wall time of each
setting and each job's threads and seconds per epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_together(args: list[str], folders: list[Path]) -> float:
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen([sys.executable, str(REPO / "train.py"), *args, f"hydra.run.dir={d}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for d in folders
    ]  # fmt: skip
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"a job failed: {err.strip().splitlines()[-1:]}")
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--model", default="bn_cnn")
    parser.add_argument("--data-dir", default=os.environ.get("CNNSWEEP_DATA_DIR", "data"))
    opts = parser.parse_args()
    cores = os.cpu_count() or 1
    common = [f"data_dir={Path(opts.data_dir).resolve()}", f"model={opts.model}",
              f"epochs={opts.epochs}", "progress=false", "reports=false"]  # fmt: skip
    settings = {
        "two together, threads=auto": (common, 2),
        f"two together, threads={cores} (auto before)": ([*common, f"threads={cores}"], 2),
        "one alone, threads=auto": (common, 1),
    }
    print(f"{cores} cores; {opts.model}, {opts.epochs} epoch(s) of Fashion-MNIST per job")
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, (args, n)) in enumerate(settings.items()):
            folders = [Path(tmp) / f"{i}_{j}" for j in range(n)]
            wall = run_together(args, folders)
            rows = [json.loads((d / "results.json").read_text()) for d in folders]
            jobs = ", ".join(f"{r['threads']} thread(s) {r['epoch_duration']:.1f} s/epoch"
                             for r in rows)  # fmt: skip
            print(f"{name:<40} wall {wall:6.1f} s   {jobs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
