"""How fast a search finds good models: searches run as train.py runs them, in fresh studies.

Default: three searches of the recipe space (``hparams_search=fashion_mnist_recipe``, no warm
start) at an equal wall budget, one after another: (a) the plugin's behaviour (TPE, no pruning,
synchronous batches of 2), (b) random search, no pruning (2 at a time), (c) this repo's default
(the preset: asynchronous, 2 at a time, its pruner). Each is stopped (Ctrl-C) at the budget;
trials completed by then count. Prints best validation and test accuracy at the budget, the
minutes each took to reach (a)'s final best, how busy the 2 slots were, and writes
``best_so_far.png``. Goal: (c) reaches (a)'s final best in at most half of (a)'s time.

``--pareto``: ``hparams_search=fashion_mnist_pareto`` (val_acc against FLOPs) twice on the
subset, same seed, with its pruner (cheaper_median) and without: epochs trained, wall time, and
the two Pareto fronts side by side.

``--pruners``: the same seeded search (the recipe space, 2 at a time, asynchronous) with each
pruner of conf/hydra/sweeper/pruner/ on a Fashion-MNIST subset: epochs trained, best val acc.

    python scripts/bench_search.py                      # 3 x 15 minutes, real Fashion-MNIST
    python scripts/bench_search.py --budget 30
    python scripts/bench_search.py --quick --budget 6   # 6000 images, 8 epochs a trial
    python scripts/bench_search.py --pruners            # 5 pruners, 6000 images, 10 x 8 epochs
    python scripts/bench_search.py --pareto             # the Pareto preset, pruned or not
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import optuna
import pandas as pd
import torch
from omegaconf import OmegaConf

from cnnsweep.data.torchvision_sets import load_torchvision
from cnnsweep.results.stats import busy_fraction, pareto_front
from cnnsweep.results.studies import best_so_far

REPO = Path(__file__).resolve().parents[1]
QUIET = ["progress=false", "tensorboard.histograms=false", "tensorboard.graph=false"]
ARMS = {  # the comparison's three searches: overrides on top of the preset
    "(a) plugin: TPE, no pruning, batches": ["hydra.sweeper.asynchronous=false"],
    # TPE whose random start never ends: random search (the preset's TPE keys stay valid)
    "(b) random, no pruning": ["hydra.sweeper.sampler.n_startup_trials=100000"],
    "(c) default: async + pruner": [],
}  # fmt: skip
PRUNERS = ("nop", "median", "percentile", "successive_halving", "hyperband")


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
            (raw / f"{prefix}-{kind}-ubyte").write_bytes(
                header + array.to(torch.uint8).numpy().tobytes()
            )
    return root


def run_search(
    name: str,
    extra: list[str],
    out: Path,
    budget_s: float | None,
    preset: str = "fashion_mnist_recipe",
) -> dict:
    """``train.py -m hparams_search=fashion_mnist_recipe`` in a fresh study; Ctrl-C (SIGINT to
    its process group) at ``budget_s``. Returns the study, the rows and the wall time."""
    study = "bench-" + "".join(c if c.isalnum() else "-" for c in name).strip("-")
    storage = f"sqlite:///{out.resolve()}/{study}.db"
    sweep_dir = out / study
    cmd = [
        sys.executable, str(REPO / "train.py"), "-m", f"hparams_search={preset}",
        f"hydra.sweeper.study_name={study}", f"hydra.sweeper.storage={storage}",
        f"hydra.sweep.dir={sweep_dir}", "hydra.sweeper.enqueue=[]", *QUIET, *extra,
    ]  # fmt: skip
    print(f"{name}: {' '.join(cmd[2:])}", flush=True)
    start = time.time()
    log = open(out / f"{study}.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    try:
        proc.wait(timeout=budget_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C: running jobs write their rows
        proc.wait()
    wall = time.time() - start
    log.close()
    if proc.returncode not in (0, 130):  # 130: stopped at the budget
        tail = (out / f"{study}.log").read_text()[-3000:]
        sys.exit(f"{name} failed (exit code {proc.returncode}):\n{tail}")
    rows = [json.loads(p.read_text()) for p in sweep_dir.rglob("results.json")]
    trials = optuna.load_study(study_name=study, storage=storage).trials
    return {"arm": name, "start": start, "wall": wall, "rows": rows, "trials": trials}


def curve(result: dict, budget_s: float | None = None) -> list[tuple[float, float, int]]:
    """(minute, best val acc so far, its trial) at each completed trial, within the budget."""
    points = best_so_far(result["trials"], result["start"])
    return [p for p in points if budget_s is None or p[0] * 60 <= budget_s]


def summary(result: dict, budget_s: float | None, slots: int = 2) -> dict:
    points = curve(result, budget_s)
    test = {r.get("trial_number"): r.get("test_acc") for r in result["rows"]}
    ended = [r for r in result["rows"] if r.get("finished_at") and r.get("run_duration")]
    wall = budget_s or result["wall"]
    busy = sum(r["run_duration"] for r in ended) / (slots * wall) if ended else 0.0
    best = points[-1] if points else (None, float("nan"), None)
    states = [t.state.name for t in result["trials"]]
    return {
        "arm": result["arm"], "curve": points, "best_val": best[1], "best_trial": best[2],
        "test": test.get(best[2]), "completed": states.count("COMPLETE"),
        "pruned": states.count("PRUNED"), "busy": busy,
        "epochs": sum(r.get("epochs_run") or 0 for r in result["rows"]),
    }  # fmt: skip


def minutes_to(curve: list[tuple[float, float, int]], target: float) -> float | None:
    return next((minute for minute, value, _ in curve if value >= target), None)


def plot(summaries: list[dict], budget_min: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for s in summaries:
        if s["curve"]:  # held flat from the last completed trial to the budget
            xs = [m for m, _, _ in s["curve"]] + [budget_min]
            ys = [100 * v for _, v, _ in s["curve"]] + [100 * s["curve"][-1][1]]
            ax.step(xs, ys, where="post", label=s["arm"], marker="o", markevery=slice(0, -1))
    ax.set(xlabel="minutes since the search started", ylabel="best validation accuracy so far (%)",
           title="Recipe search at an equal budget (2 cores)", xlim=(0, budget_min))  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def compare(args: argparse.Namespace, out: Path) -> None:
    budget = args.budget * 60
    nop = ["hydra/sweeper/pruner=nop"]
    common = ["hydra.sweeper.n_trials=1000"]  # the budget ends each search, not a trial count
    if args.quick:  # the pruners' setting: a subset, 8 epochs a trial
        data = write_subset(out / "data", 6000, 1000)
        common += [f"data_dir={data}", f"epochs={args.epochs}"]
    results = [run_search(name, [*common, *extra, *(nop if name[1] in "ab" else [])], out, budget)
               for name, extra in ARMS.items()]  # fmt: skip
    summaries = [summary(r, budget) for r in results]
    target = summaries[0]["best_val"]
    data = "6000-image subset, 8 epochs a trial" if args.quick else "Fashion-MNIST"
    print(f"\nbudget {args.budget:g} min per search, recipe space, 2 slots, {data}")
    print("| search | completed | pruned | best val | its test | min to (a)'s best | slots busy |")
    print("|---|---|---|---|---|---|---|")
    for s in summaries:
        reach = minutes_to(s["curve"], target)
        print(f"| {s['arm']} | {s['completed']} | {s['pruned']} | {s['best_val']:.4f} | "
              f"{s['test'] if s['test'] is not None else float('nan'):.4f} | "
              f"{'-' if reach is None else f'{reach:.1f}'} | {s['busy']:.2f} |")  # fmt: skip
    a, c = (minutes_to(s["curve"], target) for s in (summaries[0], summaries[2]))
    if a is not None and c is not None:
        print(f"(c) reached (a)'s final best in {c / a:.0%} of (a)'s time (goal: at most 50%)")
    else:
        print("(c) did not reach (a)'s final best within the budget (goal: in half the time)")
    plot(summaries, args.budget, out / "best_so_far.png")
    print(f"picture: {out / 'best_so_far.png'}")


def pruners(args: argparse.Namespace, out: Path) -> None:
    data = write_subset(out / "data", 6000, 1000)
    common = [f"data_dir={data}", f"epochs={args.epochs}", f"hydra.sweeper.n_trials={args.trials}"]
    results = [run_search(f"pruner {p}", [*common, f"hydra/sweeper/pruner={p}"], out, None)
               for p in PRUNERS]  # fmt: skip
    print(f"\n{args.trials} trials x {args.epochs} epochs, recipe space, 2 at a time, TPE seed 42, "
          "Fashion-MNIST subset (6000 train, 1000 test)")  # fmt: skip
    print("| pruner | pruned | epochs trained | wall s | best val | its test | slots busy |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        s = summary(r, None)
        print(f"| {r['arm'][7:]} | {s['pruned']} | {s['epochs']} | {r['wall']:.0f} | "
              f"{s['best_val']:.4f} | {s['test'] or float('nan'):.4f} | "
              f"{busy_fraction(r['rows'], 2):.2f} |")  # fmt: skip


def pareto(args: argparse.Namespace, out: Path) -> None:
    data = write_subset(out / "data", 6000, 1000)
    common = [f"data_dir={data}", f"hydra.sweeper.n_trials={args.trials}"]
    arms = {"pruned (cheaper_median)": [], "not pruned": ["hydra/sweeper/pruner=nop"]}
    results = [run_search(name, [*common, *extra], out, None, "fashion_mnist_pareto")
               for name, extra in arms.items()]  # fmt: skip
    print(f"\n{args.trials} trials x 6 epochs, val_acc against FLOPs, 2 at a time, TPE seed 42, "
          "Fashion-MNIST subset (6000 train, 1000 test)")  # fmt: skip
    print("| search | completed | pruned | epochs trained | wall s | front (val acc, MFLOPs) |")
    print("|---|---|---|---|---|---|")
    for r in results:
        done = [t for t in r["trials"] if t.state.name == "COMPLETE"]
        table = pd.DataFrame({
            "rank": pd.array(range(1, len(done) + 1), dtype="Int64"), "data": "fmnist",
            "score": [t.values[0] for t in done], "flops": [t.values[1] for t in done],
        })  # fmt: skip
        on_front = table[pareto_front(table, "val_acc", "flops").fillna(False).astype(bool)]
        front = sorted(zip(on_front["flops"], on_front["score"], strict=True))
        states = [t.state.name for t in r["trials"]]
        text = ", ".join(f"{100 * acc:.1f}% {flops / 1e6:.1f}" for flops, acc in front)
        print(
            f"| {r['arm']} | {states.count('COMPLETE')} | {states.count('PRUNED')} | "
            f"{sum(x.get('epochs_run') or 0 for x in r['rows'])} | {r['wall']:.0f} | {text} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--budget", type=float, default=15, help="minutes per search (15)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the comparison on a 6000-image subset, 8 epochs a trial",
    )
    parser.add_argument("--pruners", action="store_true", help="compare the pruners instead")
    parser.add_argument("--pareto", action="store_true", help="the Pareto preset, pruned or not")
    parser.add_argument(
        "--trials", type=int, default=10, help="--pruners, --pareto: trials per search"
    )
    parser.add_argument("--epochs", type=int, default=8, help="--pruners: epochs per trial")
    parser.add_argument("--out", type=Path, default=REPO / "bench_out" / "search")
    args = parser.parse_args()
    out = args.out / datetime.now().strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True)
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    (pareto if args.pareto else pruners if args.pruners else compare)(args, out)


if __name__ == "__main__":
    main()
