"""Where a short job's fixed cost goes: each piece of a 1-epoch default job, in seconds.

A sweep of short jobs pays these once per job: the data preparation, the model graph trace,
the test pass, the checkpoints, the rows, the pictures. The job runs as ``train.py`` would run
it (defaults on: reports, TensorBoard images, graph and histograms) on real Fashion-MNIST, twice
in one process (a sweep's jobs share the process, so the second job shows what every later job
pays: imports and the dataset's first read are paid once). The pieces are read off Python's
profiler by function name, so the same script measures an older checkout:

    python scripts/bench_overhead.py                      # this checkout
    PYTHONPATH=/path/to/old/src python scripts/bench_overhead.py --conf /path/to/old/conf
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# piece -> the functions (module file suffix, name) whose cumulative time it is
PIECES = {  # today's modules, and the older checkouts' (data.py, tracking.py)
    "data (read + normalise + split)": [("load.py", "load_data"), ("data.py", "load_data")],
    "model graph trace (TensorBoard)": [("tensorboard.py", "log_graph"),
                                        ("tracking.py", "log_graph")],
    "sample images (TensorBoard)": [("tensorboard.py", "log_images"),
                                    ("tracking.py", "log_images")],
    "training epoch (54000 images)": [("loop.py", "train_one_epoch")],
    "evaluation passes (validation + test)": [("loop.py", "evaluate")],
    "weight histograms (TensorBoard)": [("tensorboard.py", "log_histograms"),
                                        ("tracking.py", "log_histograms")],
    "rows (results, epochs)": [("files.py", "write_results_row"),
                               ("files.py", "write_epoch_rows"),
                               ("tracking.py", "write_results_row"),
                               ("tracking.py", "write_epoch_rows")],
    "training checkpoint (last.pt)": [("state.py", "save_last")],
    "model.pt": [("state.py", "save_model"), ("job.py", "save_checkpoint")],
    "pictures + class report": [("reports.py", "write_job_reports")],
    "HParams entry": [("tensorboard.py", "log_hparams"), ("tracking.py", "log_hparams")],
}  # fmt: skip


def cumulative(stats: pstats.Stats, targets: list[tuple[str, str]]) -> float:
    total = 0.0
    for (file, _, name), (_, _, _, cum, _) in stats.stats.items():
        if any(file.endswith(suffix) and name == fn for suffix, fn in targets):
            total += cum
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--conf", default=str(REPO / "conf"), help="the checkout's conf/")
    parser.add_argument("--data-dir", default=str(REPO / "data"))
    parser.add_argument("overrides", nargs="*", help="extra overrides, e.g. reports=false")
    args = parser.parse_args()

    t0 = time.perf_counter()
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    try:
        from cnnsweep.train.job import run_job
    except ImportError:  # an older checkout
        from cnnsweep.job import run_job

    imports = time.perf_counter() - t0
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=args.conf):
        cfg = compose("config", overrides=[f"data_dir={args.data_dir}", "epochs=1",
                                           "progress=false", *args.overrides])  # fmt: skip
    walls, profiles = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(2):
            profile = cProfile.Profile()
            start = time.perf_counter()
            profile.runcall(run_job, cfg, output_dir=Path(tmp) / str(i))
            walls.append(time.perf_counter() - start)
            profiles.append(pstats.Stats(profile))
    print(f"imports (once per process): {imports:.2f} s")
    print("| piece | first job s | later jobs s |\n|---|---|---|")
    for piece, targets in PIECES.items():
        first, later = (cumulative(p, targets) for p in profiles)
        print(f"| {piece} | {first:.2f} | {later:.2f} |")
    print(f"| **whole job (run_job)** | {walls[0]:.2f} | {walls[1]:.2f} |")


if __name__ == "__main__":
    main()
