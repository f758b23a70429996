"""The aggregate's pictures: validation curves per job, test accuracy per configuration."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cnnsweep.reports import save_figure
from cnnsweep.results.markdown import cell_text
from cnnsweep.results.stats import varying
from cnnsweep.schema import KNOBS


def _figure(width: float, height: float) -> tuple[Any, Any]:
    """A figure of its own (not pyplot's global list), saved as PNG by Agg."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    return fig, fig.subplots()


def plot_val_curves(runs: pd.DataFrame, epochs: pd.DataFrame, path: Path) -> None:
    """Validation accuracy per epoch, one line per job (best-ranked first in the legend)."""
    from matplotlib import colormaps
    from matplotlib.ticker import MaxNLocator

    points = epochs.reindex(columns=["job_dir", "epoch", "val_accuracy"]).dropna()
    curves = {d: c.sort_values("epoch") for d, c in points.groupby("job_dir", sort=False)}
    shown = runs[runs["job_dir"].isin(list(curves))]
    cols = varying(shown, KNOBS) if len(shown) > 1 else []
    show_sweep = shown["sweep"].nunique() > 1
    cmap = colormaps["tab20" if len(shown) > 10 else "tab10"]
    fig, ax = _figure(9, 5.5)
    for i, r in enumerate(shown.to_dict("records")):
        curve = curves[r["job_dir"]]
        label = _job_label(r, show_sweep)
        label = " ".join([label, *(f"{c}={cell_text(r[c], c)}" for c in cols)])[:80]
        ax.plot(curve["epoch"].to_numpy(float), curve["val_accuracy"].to_numpy(float),
                "-" if r["status"] == "completed" else ":", marker="o", markersize=3,
                color=cmap(i % cmap.N), label=label)  # fmt: skip
    ax.set(xlabel="epoch", ylabel="validation accuracy", title="Validation accuracy per epoch")
    ax.grid(alpha=0.3)
    if len(shown):
        ax.set_xlim(0.5, float(points["epoch"].max()) + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        if len(shown) <= 20:
            ax.legend(fontsize=7, loc="lower right")
    else:
        ax.text(0.5, 0.5, "no epoch with a validation accuracy", ha="center",
                transform=ax.transAxes)  # fmt: skip
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def _job_label(row: dict, show_sweep: bool) -> str:
    """``<sweep>/<job>`` (or ``#<job>`` within one sweep); a single run by its own folder."""
    if row["sweep"] == row["job_dir"] or row["job"] is None or row["job"] is pd.NA:
        return str(row["job_dir"])
    return f"{row['sweep']}/{cell_text(row['job'])}" if show_sweep else f"#{cell_text(row['job'])}"


def plot_test_acc(groups: pd.DataFrame, path: Path, dataset: str | None = None) -> None:
    """Final test accuracy per configuration (mean over seeds, with their std as error bar);
    ``dataset`` names the one dataset the configurations share, when there are several."""
    groups = groups[groups["test_acc_mean"].notna()]
    groups = groups.assign(_key=-groups["test_acc_mean"]).sort_values(["_key", "config_id"])
    cols = varying(groups, KNOBS) if len(groups) > 1 else []
    labels = [" ".join(f"{c}={cell_text(g[c], c)}" for c in cols) or g["config_id"]
              for g in groups.to_dict("records")]  # fmt: skip
    labels = [
        f"{lab} (n={n} of {total})" if total > n else f"{lab} (n={n})" if n > 1 else lab
        for lab, n, total in zip(labels, groups["n"], groups["seeds_total"])
    ]
    # wrapped, so that a search's many varying knobs stay readable beside their bar
    labels = [textwrap.fill(lab, 48) for lab in labels]
    lines = sum(lab.count("\n") + 1 for lab in labels)
    fig, ax = _figure(9, max(2.5, 0.15 * lines + 0.25 * len(groups) + 1.5))
    if len(groups):
        means, errs = groups["test_acc_mean"].to_numpy(), groups["test_acc_std"].fillna(0.0)
        y = np.arange(len(groups))
        ax.barh(y, means, xerr=errs.to_numpy() if errs.any() else None, color="tab:blue",
                alpha=0.8, capsize=3)  # fmt: skip
        ax.set_yticks(y, labels, fontsize=8)
        ax.invert_yaxis()
        for yi, m in zip(y, means):
            ax.text(m, yi, f" {m:.4f}", va="center", fontsize=8)
        ax.set_xlim(0, 1.08)
    else:
        ax.text(0.5, 0.5, "no completed job with a test accuracy", ha="center",
                transform=ax.transAxes)  # fmt: skip
    title = "Final test accuracy per configuration" + (f" on {dataset}" if dataset else "")
    ax.set(xlabel="test accuracy", title=title)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def plot_pareto(runs: pd.DataFrame, objective: str, cost: str, path: Path) -> None:
    """``objective`` against ``cost`` (log axis) for every ranked job, the Pareto front of
    each dataset drawn through its jobs and labelled with the varying knobs."""
    shown = runs[runs["pareto"].notna()]
    cols = varying(shown, KNOBS) if len(shown) > 1 else []
    fig, ax = _figure(9, 5.5)
    for i, (name, rows) in enumerate(shown.groupby(shown["data"].astype(str), sort=True)):
        colour = f"C{i % 10}"
        x, y = rows[cost].astype(float), rows["score"].astype(float)
        ax.scatter(x, y, s=18, color=colour, alpha=0.45, label=f"{name}: {len(rows)} jobs")
        front = rows[rows["pareto"].astype(bool)].sort_values(cost)
        ax.step(front[cost].astype(float), front["score"].astype(float), where="post",
                color=colour, marker="o", label=f"{name}: Pareto front ({len(front)})")  # fmt: skip
        # one label per point: jobs tied on both (a grid of one model) would overprint
        for _, tied in front.groupby([front[cost].astype(float), front["score"].astype(float)]):
            r = tied.iloc[0]
            text = " ".join(f"{c}={cell_text(r[c], c)}" for c in cols[:4])
            text += f" (+{len(tied) - 1} tied)" if len(tied) > 1 else ""
            ax.annotate(text, (float(r[cost]), float(r["score"])), fontsize=6,
                        xytext=(4, -8), textcoords="offset points")  # fmt: skip
    if len(shown):
        ax.set_xscale("log")
        ax.legend(fontsize=8, loc="lower right")
    else:
        ax.text(0.5, 0.5, f"no completed job with {objective} and {cost}", ha="center",
                transform=ax.transAxes)  # fmt: skip
    ax.set(xlabel=f"{cost} (lower is cheaper)", ylabel=objective,
           title=f"{objective} against {cost}: the jobs no other beats on both")  # fmt: skip
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
