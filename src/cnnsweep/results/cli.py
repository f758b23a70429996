"""``make aggregate``: the rows of every job merged into one leaderboard.

``python -m cnnsweep.aggregate [DIR ...] [--out results] [--objective M]`` reads the jobs under
the folders (default: ``multirun/`` and ``outputs/``) with ``cnnsweep.results`` and writes
``runs.csv``/``.json`` (one row per job, ranked best first), ``epochs.csv``/``.json`` (every
epoch), ``summary.md`` (the leaderboard, statistics over seeds, the jobs not ranked, the
studies), ``val_acc.png``, ``test_acc.png``, and for each Optuna study the trials belong to,
``<study name>/`` with Optuna's plots and trials table. The same job folders give the same bytes.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from cnnsweep.files import atomic_write
from cnnsweep.results.load import (
    DEFAULT_ROOTS,
    STATUSES,
    find_job_dirs,
    load_epochs,
    load_runs,
)
from cnnsweep.results.markdown import cell_text, summary_markdown
from cnnsweep.results.plots import plot_pareto, plot_test_acc, plot_val_curves
from cnnsweep.results.stats import (
    dataset_of,
    datasets,
    pareto_front,
    rank_runs,
    seed_stats,
    varying,
    why_unranked,
)
from cnnsweep.results.studies import study_reports
from cnnsweep.results.tables import is_container, write_table
from cnnsweep.schema import (
    COSTS,
    EPOCH_KNOBS,
    EPOCH_LEAD,
    EPOCH_METRICS,
    KNOBS,
    LAST_METRICS,
    METRICS,
    ROW_INFERENCE,
)

DEFAULT_OUT = "results"


def run_columns() -> tuple[str, ...]:
    """``runs.csv``'s columns: where the job is and how it ranks, its knobs, its metrics, how it
    ran (other keys a row has follow, sorted)."""
    return (
        "rank", "sweep", "job", "status", "objective", "score", "pareto", "objective_value",
        "objective_from", *KNOBS, *METRICS, *LAST_METRICS, "best_epoch", "metrics_epoch",
        "epochs_run", "stopped_early_at", "resumed_from_epoch", "params", "flops",
        *ROW_INFERENCE, "epoch_duration", "run_duration", "run_name", "config_id", "overrides",
        "study_name",
        "trial_number", "study_storage", "device", "threads", "started_at", "finished_at",
        "skipped_files", "class_names", "error", "job_dir",
    )  # fmt: skip


NOT_IN_RUNS = {"job_num", "sweep_dir", "config", "versions"}  # the row's own, or not scalar
# the seed's RunManager columns, then validation, test and where the epoch comes from
EPOCH_COLUMNS = (*EPOCH_LEAD, *EPOCH_KNOBS, *EPOCH_METRICS, "sweep", "status", "job_dir")


def aggregate(
    roots: Sequence[str | Path] = DEFAULT_ROOTS,
    out: str | Path = DEFAULT_OUT,
    objective: str | None = None,
    base: Path | None = None,
    cost: str = "flops",
) -> dict[str, Any]:
    """Write runs/epochs CSV+JSON, ``summary.md``, the plots and the study reports into
    ``out``; returns the rows written, the objective, the paths and the notes."""
    runs = load_runs(*roots, base=base)
    epochs = load_epochs(base=base, runs=runs)
    runs, objective = rank_runs(runs, objective)
    runs = runs.assign(pareto=pareto_front(runs, objective, cost))
    groups, duplicates = seed_stats(runs, objective)
    columns = run_columns()
    extra = sorted(
        c for c in runs.columns
        if c not in columns and c not in NOT_IN_RUNS
        and not (runs[c].dtype == object and runs[c].map(is_container).any())
    )  # fmt: skip
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = ("runs.csv", "runs.json", "epochs.csv", "epochs.json", "summary.md", "val_acc.png",
             "test_acc.png", "pareto.png")  # fmt: skip
    paths = {name: out / name for name in names}
    table = write_table(
        runs.reindex(columns=[*columns, *extra]), paths["runs.csv"], paths["runs.json"]
    )
    epoch_rows = write_table(
        epochs.reindex(columns=EPOCH_COLUMNS), paths["epochs.csv"], paths["epochs.json"]
    )
    plot_val_curves(runs, epochs, paths["val_acc.png"])
    plot_pareto(runs, objective, cost, paths["pareto.png"])
    names = datasets(runs)
    if len(names) > 1:  # one picture per dataset: their accuracies are not comparable
        del paths["test_acc.png"]
        for name in names:
            paths[f"test_acc_{name}.png"] = out / f"test_acc_{safe_name(name)}.png"
            plot_test_acc(groups[dataset_of(groups) == name], paths[f"test_acc_{name}.png"], name)
    else:
        plot_test_acc(groups, paths["test_acc.png"])
    studies, study_files, notes = study_reports(runs, out)
    atomic_write(
        paths["summary.md"], summary_markdown(runs, objective, groups, duplicates, studies)
    )
    why = why_unranked(runs, objective).dropna()
    return {"runs": table, "epochs": epoch_rows, "objective": objective, "paths": paths,
            "study_files": study_files, "notes": notes,
            "why_unranked": dict(zip(runs.loc[why.index, "job_dir"], why))}  # fmt: skip


def safe_name(name: str) -> str:
    """A name as a file name: letters, digits and ``._=+-`` kept, the rest ``_``."""
    return re.sub(r"[^\w.=+-]", "_", name) or "_"


def _print_top(runs: list[dict[str, Any]], objective: str, top: int) -> None:
    ranked = [r for r in runs if r["rank"] is not None][:top]
    hp_cols = varying(pd.DataFrame(runs), KNOBS) or ["model", "lr"]
    header = ["rank", "sweep", "job", *hp_cols, *dict.fromkeys((objective, "test_acc"))]
    rows = [[cell_text(r.get(c), c) for c in header] for r in ranked]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    for row in (header, *rows):
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cnnsweep.aggregate",
        description="Merge the results rows of every job into one leaderboard.",
    )
    parser.add_argument("dirs", nargs="*", help="sweep, job or parent folders "
                        f"(default: {' and '.join(d + '/' for d in DEFAULT_ROOTS)})")  # fmt: skip
    parser.add_argument("--out", default=DEFAULT_OUT, help="output folder (default: %(default)s/)")
    parser.add_argument(
        "--objective", default=None, help="metric to rank by (default: the one the jobs used)"
    )
    parser.add_argument(
        "--cost", default="flops", choices=COSTS,
        help="what the Pareto front weighs the objective against (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument("--top", type=int, default=5, help="rows to print (default: %(default)s)")
    args = parser.parse_args(argv)

    missing = [d for d in args.dirs if not Path(d).is_dir()]
    if missing:
        print(f"error: not a folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    roots = args.dirs or [d for d in DEFAULT_ROOTS if Path(d).is_dir()]
    if not roots or not find_job_dirs(roots):
        where = ", ".join(args.dirs or [d + "/" for d in DEFAULT_ROOTS])
        print(f"no jobs found under {where}: run `python train.py -m ...` first", file=sys.stderr)
        return 1
    report = aggregate(roots, args.out, args.objective, cost=args.cost)
    runs = report["runs"]
    counts = {s: sum(r["status"] == s for r in runs) for s in STATUSES}
    print(f"{len(runs)} job(s): " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    print(f"wrote {', '.join(str(p) for p in report['paths'].values())}")
    folders = sorted({str(p.parent) for p in report["study_files"]})
    if folders:
        print(f"wrote study reports: {', '.join(f + '/' for f in folders)}")
    for note in report["notes"]:
        print(f"warning: {note}", file=sys.stderr)
    if counts["completed"]:
        print(f"top {min(args.top, counts['completed'])} by {report['objective']}:")
        _print_top(runs, report["objective"], args.top)
        front = [r for r in runs if r.get("pareto")]
        print(f"Pareto front ({report['objective']} against {args.cost}, pareto.png): "
              + ", ".join(f"#{r['rank']} ({cell_text(r.get(args.cost), args.cost)})"
                          for r in front))  # fmt: skip
    for r in runs:
        if r["rank"] is None:
            why = report["why_unranked"].get(r["job_dir"])
            print(f"{r['status']}: {r['job_dir']}" + (f": {why}" if why else ""))
    return 0
