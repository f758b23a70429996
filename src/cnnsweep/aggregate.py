"""Merge the results rows of every job into one leaderboard: ``make aggregate``.

``python -m cnnsweep.aggregate [DIR ...] [--out results]`` walks the given folders (default:
``multirun/`` and ``outputs/``), reads each job's ``results.json`` and ``epochs.json`` and writes:

- ``runs.csv`` / ``runs.json``: one row per job, ranked best first by the objective, with its
  sweep, status, hyperparameters and final metrics; jobs that did not complete come last;
- ``epochs.csv`` / ``epochs.json``: every epoch of every job (the seed's column layout, plus
  validation and sweep columns);
- ``summary.md``: the leaderboard as a Markdown table (mean ± std where a configuration ran with
  several seeds) and the jobs that failed, diverged, are still running or left a broken row;
- ``val_acc.png`` (validation accuracy per epoch of each run) and ``test_acc.png`` (final test
  accuracy per configuration).

A job dir is a folder holding ``results.json`` or Hydra's ``.hydra/``. A job with no row (killed
before it started) is listed as ``missing``; a row that is not valid JSON as ``corrupt``. Output
depends only on the job folders, so running it twice gives the same files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import statistics
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cnnsweep.reports import save_figure
from cnnsweep.tracking import EPOCHS_JSON, RESULTS_JSON, atomic_write, write_csv, write_json

DEFAULT_ROOTS = ("multirun", "outputs")
DEFAULT_OUT = "results"

HPARAMS = ("lr", "batch_size", "shuffle", "epochs", "seed", "model", "data", "optimizer",
           "weight_decay", "val_fraction")  # fmt: skip
METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
           "best_val_acc")  # fmt: skip
RUN_COLUMNS = (
    "rank", "sweep", "job", "status", "objective", "score", *HPARAMS, *METRICS, "best_epoch",
    "epochs_run", "epoch_duration", "run_duration", "run_name", "config_id", "overrides",
    "device", "threads", "started_at", "finished_at", "error", "job_dir",
)  # fmt: skip
# the seed's RunManager columns, then validation and where the epoch comes from
EPOCH_COLUMNS = (
    "run", "epoch", "loss", "accuracy", "epoch duration", "run duration", "lr", "batch_size",
    "shuffle", "epochs", "seed", "model", "data", "optimizer", "val_loss", "val_accuracy",
    "sweep", "status",
)  # fmt: skip
# statuses in the order they are listed after the ranked rows
STATUS_ORDER = ("completed", "pruned", "diverged", "failed", "running", "corrupt", "missing")
SKIP_DIRS = {"tb", ".submitit", "__pycache__", ".git", ".venv", "node_modules"}
# config keys that say where the data lives, not what is learnt (ignored when grouping seeds)
LOCATION_KEYS = (("data", "root"), ("data", "download"), ("data", "debian_dir"))


# ---------------------------------------------------------------------------------- reading


def find_job_dirs(roots: Iterable[str | Path]) -> list[Path]:
    """Every folder under ``roots`` that holds a ``results.json`` or a Hydra ``.hydra/``."""
    found: set[Path] = set()
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            if RESULTS_JSON in filenames or ".hydra" in dirnames:
                found.add(Path(dirpath).resolve())
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and d != ".hydra")
    return sorted(found)


def is_better(objective: str) -> str:
    """``max`` for accuracies, ``min`` for losses."""
    return "min" if objective.endswith("loss") else "max"


def display_path(path: str | Path, base: Path | None = None) -> str:
    """``path`` relative to ``base`` (the cwd) when it lies under it, else absolute."""
    path = Path(path).resolve()
    base = (base or Path.cwd()).resolve()
    try:
        rel = path.relative_to(base)
    except ValueError:
        return str(path)
    return str(rel) if str(rel) != "." else "."


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _read_json(path: Path) -> tuple[Any, str | None]:
    """(object, None), or (None, why) when the file is missing or not valid JSON."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        return None, f"cannot read {path.name}: {e.strerror or e}"
    try:
        return json.loads(text), None
    except ValueError:
        return None, f"{path.name} is not valid JSON (half-written or truncated)"


def _hydra_config(job_dir: Path) -> dict[str, Any]:
    """Hyperparameters and overrides from ``.hydra/`` (for jobs that left no usable row)."""
    from omegaconf import OmegaConf  # only needed for broken jobs

    info: dict[str, Any] = {}
    try:
        cfg = OmegaConf.load(job_dir / ".hydra" / "config.yaml")
    except Exception:  # no .hydra, or unreadable: nothing to recover
        return info
    keys = {"lr": "lr", "batch_size": "batch_size", "shuffle": "shuffle", "epochs": "epochs",
            "seed": "seed", "model": "model.name", "data": "data.name",
            "optimizer": "optimizer.name", "weight_decay": "optimizer.weight_decay",
            "val_fraction": "data.val_fraction", "objective": "objective"}  # fmt: skip
    for name, key in keys.items():
        try:
            value = OmegaConf.select(cfg, key, throw_on_resolution_failure=False)
        except Exception:
            value = None
        if isinstance(value, (int, float, str, bool)):
            info[name] = value
    try:
        overrides = OmegaConf.load(job_dir / ".hydra" / "overrides.yaml")
        info["overrides"] = [str(o) for o in overrides]
    except Exception:
        pass
    return info


def _sweep_of(job_dir: Path, row: dict[str, Any]) -> Path:
    """The sweep a job belongs to: its multirun folder, or the job dir itself for a single run."""
    if (job_dir.parent / "multirun.yaml").exists():
        return job_dir.parent
    if row.get("sweep_dir"):
        return Path(row["sweep_dir"])
    return job_dir


def config_id(row: dict[str, Any]) -> str:
    """Eight hex digits naming what a job learns, seed and data location left out."""
    config = row.get("config")
    if isinstance(config, dict):
        key = {k: v for k, v in config.items() if k != "seed"}
        for group, name in LOCATION_KEYS:
            if isinstance(key.get(group), dict):
                key[group] = {k: v for k, v in key[group].items() if k != name}
    else:
        key = {k: row.get(k) for k in HPARAMS if k != "seed"}
    text = json.dumps(key, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def read_job(job_dir: str | Path, base: Path | None = None) -> dict[str, Any]:
    """One job's row for the leaderboard; never raises for a broken or missing row."""
    job_dir = Path(job_dir).resolve()
    raw, why = _read_json(job_dir / RESULTS_JSON)
    if raw is not None and not isinstance(raw, dict):
        raw, why = None, f"{RESULTS_JSON} does not hold a results row"
    if raw is None:
        row: dict[str, Any] = _hydra_config(job_dir)
        if (job_dir / RESULTS_JSON).exists():
            row.update(status="corrupt", error=why)
        else:
            row.update(status="missing", error="no results row (killed before it started?)")
    else:
        row = dict(raw)
        status = row.get("status")
        row["status"] = status if status in STATUS_ORDER else "corrupt"
        if row["status"] == "corrupt":
            row["error"] = f"unknown status {status!r} in {RESULTS_JSON}"
        elif row["status"] == "running" and not row.get("error"):
            row["error"] = "no final row yet: still running, or killed"
    if row.get("job_num") is None and job_dir.name.isdigit():
        row["job_num"] = int(job_dir.name)
    row["job"] = row.get("job_num")
    row["sweep"] = display_path(_sweep_of(job_dir, row), base)
    row["job_dir"] = display_path(job_dir, base)
    row["config_id"] = config_id(row)
    objective = row.get("objective")
    row["score"] = _number(row.get(objective)) if isinstance(objective, str) else None
    return row


def read_epochs(job_dir: str | Path, run: dict[str, Any]) -> list[dict[str, Any]]:
    """The job's epoch rows in the seed's layout (none when missing or unreadable)."""
    rows, _ = _read_json(Path(job_dir) / EPOCHS_JSON)
    if not isinstance(rows, list):
        return []
    out = []
    for row in rows:
        if isinstance(row, dict):
            merged = {c: row.get(c) for c in EPOCH_COLUMNS}
            merged.update(sweep=run["sweep"], status=run["status"])
            if run.get("job") is not None:  # the job number: (sweep, run) names the job
                merged["run"] = run["job"]
            out.append(merged)
    return out


# ---------------------------------------------------------------------------------- ranking


def _sort_key_tail(row: dict[str, Any]) -> tuple:
    job = row.get("job")
    return (row["sweep"], job if isinstance(job, int) else -1, row["job_dir"])


def rank_runs(runs: list[dict[str, Any]], objective: str | None = None) -> tuple[list, str]:
    """Completed rows ranked best first by ``objective``; then the others by status.

    ``objective`` defaults to the one most completed rows were optimised for (``val_acc``).
    Returns the sorted rows (with ``rank``/``score`` filled in) and the objective used.
    """
    if objective is None:
        counts: dict[str, int] = {}
        for r in runs:
            if r["status"] == "completed" and isinstance(r.get("objective"), str):
                counts[r["objective"]] = counts.get(r["objective"], 0) + 1
        objective = min(counts, key=lambda k: (-counts[k], k)) if counts else "val_acc"
    sign = -1.0 if is_better(objective) == "max" else 1.0
    for r in runs:
        r["score"] = _number(r.get(objective))
    ranked = sorted(
        (r for r in runs if r["status"] == "completed" and r["score"] is not None),
        key=lambda r: (sign * r["score"], *_sort_key_tail(r)),
    )
    rest = sorted(
        (r for r in runs if not (r["status"] == "completed" and r["score"] is not None)),
        key=lambda r: (STATUS_ORDER.index(r["status"]), *_sort_key_tail(r)),
    )
    for i, r in enumerate(ranked, 1):
        r["rank"] = i
    for r in rest:
        r["rank"] = None
    return ranked + rest, objective


def seed_groups(runs: list[dict[str, Any]], objective: str) -> list[dict[str, Any]]:
    """Completed runs grouped by configuration (all but the seed): mean and std of the metrics."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        if r["status"] == "completed" and r.get("rank") is not None:
            groups.setdefault(r["config_id"], []).append(r)
    out = []
    for cid, rows in groups.items():
        g: dict[str, Any] = {
            "config_id": cid,
            **{k: rows[0].get(k) for k in HPARAMS if k != "seed"},
        }
        g["seeds"] = sorted({r.get("seed") for r in rows}, key=str)
        g["n"] = len(rows)
        for metric in dict.fromkeys((objective, "val_acc", "test_acc")):
            values = [v for v in (_number(r.get(metric)) for r in rows) if v is not None]
            g[f"{metric}_mean"] = statistics.fmean(values) if values else None
            g[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else None
        g["best_rank"] = min(r["rank"] for r in rows)
        out.append(g)
    sign = -1.0 if is_better(objective) == "max" else 1.0
    out.sort(key=lambda g: (sign * g[f"{objective}_mean"], g["best_rank"], g["config_id"]))
    return out


# ---------------------------------------------------------------------------------- markdown


def _fmt(value: Any, column: str = "") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if column in ("lr", "weight_decay"):
            return f"{value:g}"
        if column in ("epoch_duration", "run_duration"):
            return f"{value:.2f}"
        if column == "val_fraction":
            return f"{value:g}"
        return f"{value:.4f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _varying(rows: list[dict[str, Any]], columns: Sequence[str]) -> list[str]:
    """The columns with more than one known value among ``rows``."""

    def values(c: str) -> set[str]:
        return {json.dumps(r.get(c), default=str) for r in rows if r.get(c) is not None}

    return [c for c in columns if len(values(c)) > 1]


def _table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


LABELS = {"epoch_duration": "s/epoch", "best_epoch": "best epoch", "batch_size": "batch size"}


def summary_markdown(runs: list[dict[str, Any]], objective: str) -> str:
    """The leaderboard a person can paste into a report."""
    ranked = [r for r in runs if r.get("rank") is not None]
    rest = [r for r in runs if r.get("rank") is None]
    sweeps = sorted({r["sweep"] for r in runs})
    counts = {s: sum(r["status"] == s for r in runs) for s in STATUS_ORDER}
    better = "higher" if is_better(objective) == "max" else "lower"
    lines = [
        "# Leaderboard",
        "",
        f"{len(runs)} job(s) in {len(sweeps)} sweep(s): "
        + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        + f". Ranked by `{objective}` ({better} is better); only completed jobs are ranked.",
        "",
    ]
    hp_cols = _varying(runs, HPARAMS) or ["model", "optimizer", "lr", "batch_size"]
    known = {c: next((r[c] for r in runs if r.get(c) is not None), None) for c in HPARAMS}
    constant = [c for c in HPARAMS if c not in hp_cols and known[c] is not None]
    if constant:
        same = ", ".join(f"{c}={_fmt(known[c], c)}" for c in constant)
        lines += [f"Same in every job: {same}.", ""]
    show_sweep = len(sweeps) > 1
    metrics = list(dict.fromkeys((objective, "val_acc", "val_loss", "test_acc")))
    if ranked:
        header = ["rank", *(["sweep"] if show_sweep else []), "job", *hp_cols, *metrics,
                  "best epoch", "s/epoch"]  # fmt: skip
        body = [
            [str(r["rank"]), *([_fmt(r["sweep"])] if show_sweep else []), _fmt(r.get("job")),
             *(_fmt(r.get(c), c) for c in hp_cols), *(_fmt(r.get(m), m) for m in metrics),
             _fmt(r.get("best_epoch")), _fmt(r.get("epoch_duration"), "epoch_duration")]
            for r in ranked
        ]  # fmt: skip
        lines += [_table([LABELS.get(h, h) for h in header], body), ""]
    else:
        lines += ["No completed job to rank.", ""]

    groups = seed_groups(runs, objective)
    if any(g["n"] > 1 for g in groups):
        g_cols = [c for c in hp_cols if c != "seed"] or ["model"]
        g_metrics = list(dict.fromkeys((objective, "val_acc", "test_acc")))
        lines += [
            "## Over seeds",
            "",
            "Mean ± standard deviation over the seeds of each configuration.",
        ]
        lines += [""]

        def pm(g: dict[str, Any], m: str) -> str:
            mean, std = g[f"{m}_mean"], g[f"{m}_std"]
            return _fmt(mean, m) if std is None else f"{_fmt(mean, m)} ± {_fmt(std, m)}"

        header = ["rank", *g_cols, "seeds", *g_metrics]
        body = [
            [
                str(i),
                *(_fmt(g.get(c), c) for c in g_cols),
                str(g["n"]),
                *(pm(g, m) for m in g_metrics),
            ]
            for i, g in enumerate(groups, 1)
        ]
        lines += [_table([LABELS.get(h, h) for h in header], body), ""]

    if rest:
        lines += ["## Not ranked", ""]
        header = [*(["sweep"] if show_sweep else []), "job", "status", *hp_cols, "error", "job dir"]
        body = [
            [*([_fmt(r["sweep"])] if show_sweep else []), _fmt(r.get("job")), r["status"],
             *(_fmt(r.get(c), c) for c in hp_cols), _fmt(r.get("error")), _fmt(r["job_dir"])]
            for r in rest
        ]  # fmt: skip
        lines += [_table([LABELS.get(h, h) for h in header], body), ""]
    lines += ["Sweeps: " + ", ".join(f"`{s}`" for s in sweeps) + ".", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- plots


def _label(row: dict[str, Any], columns: list[str], show_sweep: bool) -> str:
    parts = [f"{c}={_fmt(row.get(c), c)}" for c in columns]
    prefix = f"{row['sweep']}/{row.get('job')}" if show_sweep else f"#{row.get('job')}"
    return f"{prefix} " + " ".join(parts) if parts else prefix


def _figure(width: float, height: float) -> tuple[Any, Any]:
    """A figure of its own (not pyplot's global list), saved as PNG by Agg."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    return fig, fig.subplots()


def plot_val_curves(runs: list[dict[str, Any]], epochs: list[dict[str, Any]], path: Path) -> None:
    """Validation accuracy per epoch, one line per job (best-ranked first in the legend)."""
    by_run: dict[tuple, list[tuple[int, float]]] = {}
    for e in epochs:
        acc = _number(e.get("val_accuracy"))
        if acc is not None and isinstance(e.get("epoch"), int):
            by_run.setdefault((e["sweep"], e.get("run")), []).append((e["epoch"], acc))
    shown = [r for r in runs if (r["sweep"], r.get("job")) in by_run]
    fig, ax = _figure(9, 5.5)
    cols = _varying(shown, [c for c in HPARAMS]) if len(shown) > 1 else []
    show_sweep = len({r["sweep"] for r in shown}) > 1
    from matplotlib import colormaps

    cmap = colormaps["tab20" if len(shown) > 10 else "tab10"]
    for i, r in enumerate(shown):
        points = sorted(by_run[(r["sweep"], r.get("job"))])
        style = "-" if r["status"] == "completed" else ":"
        ax.plot([p[0] for p in points], [p[1] for p in points], style, marker="o", markersize=3,
                color=cmap(i % cmap.N), label=_label(r, cols, show_sweep)[:80])  # fmt: skip
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    ax.set_title("Validation accuracy per epoch")
    ax.grid(alpha=0.3)
    if shown:
        from matplotlib.ticker import MaxNLocator

        last = max(p[0] for points in by_run.values() for p in points)
        ax.set_xlim(0.5, last + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        if len(shown) <= 20:
            ax.legend(fontsize=7, loc="lower right")
    else:
        ax.text(
            0.5, 0.5, "no epoch with a validation accuracy", ha="center", transform=ax.transAxes
        )
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def plot_test_acc(runs: list[dict[str, Any]], objective: str, path: Path) -> None:
    """Final test accuracy per configuration (mean over seeds, with their std as error bar)."""
    groups = [g for g in seed_groups(runs, objective) if g["test_acc_mean"] is not None]
    groups.sort(key=lambda g: (-g["test_acc_mean"], g["config_id"]))
    cols = _varying(groups, [c for c in HPARAMS if c != "seed"]) if len(groups) > 1 else []
    fig, ax = _figure(9, max(2.5, 0.4 * len(groups) + 1.5))
    if groups:
        labels = [
            " ".join(f"{c}={_fmt(g.get(c), c)}" for c in cols) or g["config_id"] for g in groups
        ]
        labels = [
            f"{lab} (n={g['n']})" if g["n"] > 1 else lab
            for lab, g in zip(labels, groups, strict=True)
        ]
        means = [g["test_acc_mean"] for g in groups]
        errs = [g["test_acc_std"] or 0.0 for g in groups]
        y = list(range(len(groups)))
        xerr = errs if any(errs) else None
        ax.barh(y, means, xerr=xerr, color="tab:blue", alpha=0.8, capsize=3)
        ax.set_yticks(y, labels, fontsize=8)
        ax.invert_yaxis()
        for yi, m in zip(y, means, strict=True):
            ax.text(m, yi, f" {m:.4f}", va="center", fontsize=8)
        ax.set_xlim(0, 1.08)
    else:
        ax.text(
            0.5, 0.5, "no completed job with a test accuracy", ha="center", transform=ax.transAxes
        )
    ax.set_xlabel("test accuracy")
    ax.set_title("Final test accuracy per configuration")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


# ---------------------------------------------------------------------------------- main


def collect(roots: Iterable[str | Path], base: Path | None = None) -> tuple[list, list]:
    """(runs, epochs) of every job under ``roots``, unranked."""
    runs, epochs = [], []
    for job_dir in find_job_dirs(roots):
        run = read_job(job_dir, base)
        runs.append(run)
        epochs += read_epochs(job_dir, run)
    epochs.sort(key=lambda e: (e["sweep"], e["run"] if isinstance(e["run"], int) else -1,
                               e["epoch"] if isinstance(e["epoch"], int) else -1))  # fmt: skip
    return runs, epochs


def _extra_columns(runs: list[dict[str, Any]]) -> list[str]:
    """Scalar keys a newer job writes that the fixed columns do not know (sorted)."""
    known = set(RUN_COLUMNS) | {"job_num", "sweep_dir", "config", "versions"}
    extra = {
        k for r in runs for k, v in r.items()
        if k not in known and (v is None or isinstance(v, (int, float, str, bool)))
    }  # fmt: skip
    return sorted(extra)


def aggregate(
    roots: Sequence[str | Path] = DEFAULT_ROOTS,
    out: str | Path = DEFAULT_OUT,
    objective: str | None = None,
    base: Path | None = None,
) -> dict[str, Any]:
    """Write runs/epochs CSV+JSON, ``summary.md`` and the plots into ``out``; returns a report."""
    runs, epochs = collect(roots, base)
    runs, objective = rank_runs(runs, objective)
    columns = [*RUN_COLUMNS, *_extra_columns(runs)]
    table = [{c: r.get(c) for c in columns} for r in runs]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in ("runs.csv", "runs.json", "epochs.csv", "epochs.json",
                                          "summary.md", "val_acc.png", "test_acc.png")}  # fmt: skip
    if table:
        write_csv(paths["runs.csv"], table)
    else:
        atomic_write(paths["runs.csv"], ",".join(columns) + "\n")
    write_json(paths["runs.json"], table)
    if epochs:
        write_csv(paths["epochs.csv"], epochs)
    else:
        atomic_write(
            paths["epochs.csv"], ",".join(f'"{c}"' if " " in c else c for c in EPOCH_COLUMNS) + "\n"
        )
    write_json(paths["epochs.json"], epochs)
    atomic_write(paths["summary.md"], summary_markdown(runs, objective))
    plot_val_curves(runs, epochs, paths["val_acc.png"])
    plot_test_acc(runs, objective, paths["test_acc.png"])
    return {"runs": table, "epochs": epochs, "objective": objective, "paths": paths}


def _print_top(runs: list[dict[str, Any]], objective: str, top: int) -> None:
    ranked = [r for r in runs if r.get("rank") is not None][:top]
    hp_cols = _varying(runs, HPARAMS) or ["model", "lr"]
    metrics = list(dict.fromkeys((objective, "test_acc")))
    header = ["rank", "sweep", "job", *hp_cols, *metrics]
    rows = [[str(r["rank"]), r["sweep"], _fmt(r.get("job")), *(_fmt(r.get(c), c) for c in hp_cols),
             *(_fmt(r.get(m), m) for m in metrics)] for r in ranked]  # fmt: skip
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


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
    parser.add_argument("--top", type=int, default=5, help="rows to print (default: %(default)s)")
    args = parser.parse_args(argv)

    missing = [d for d in args.dirs if not Path(d).is_dir()]
    if missing:
        print(f"error: not a folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    roots = args.dirs or [d for d in DEFAULT_ROOTS if Path(d).is_dir()]
    if not find_job_dirs(roots):
        where = ", ".join(args.dirs or [d + "/" for d in DEFAULT_ROOTS])
        print(f"no jobs found under {where}: run `python train.py -m ...` first", file=sys.stderr)
        return 1
    report = aggregate(roots, args.out, args.objective)
    runs = report["runs"]
    counts = {s: sum(r["status"] == s for r in runs) for s in STATUS_ORDER}
    print(f"{len(runs)} job(s): " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    print(f"wrote {', '.join(str(p) for p in report['paths'].values())}")
    if counts["completed"]:
        print(f"top {min(args.top, counts['completed'])} by {report['objective']}:")
        _print_top(runs, report["objective"], args.top)
    for r in runs:
        if r["status"] != "completed":
            print(f"{r['status']}: {r['job_dir']}: {r.get('error')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
