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
import json
import math
import numbers
import re
import sys
import textwrap
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cnnsweep.identity import HPARAMS
from cnnsweep.optuna_sweeper import JOURNAL, hide_password, open_storage
from cnnsweep.reports import save_figure
from cnnsweep.results import (
    DEFAULT_ROOTS,
    EPOCH_LEAD,
    STATUSES,
    TIMESTAMPS,
    find_job_dirs,
    load_epochs,
    load_runs,
)
from cnnsweep.tracking import atomic_write, write_json
from cnnsweep.validation import METRICS

DEFAULT_OUT = "results"
RUN_COLUMNS = (
    "rank", "sweep", "job", "status", "objective", "score", "objective_value", "objective_from",
    *HPARAMS, *METRICS, "last_train_loss", "last_train_acc", "last_val_loss", "last_val_acc",
    "best_epoch", "metrics_epoch", "epochs_run", "stopped_early_at", "resumed_from_epoch",
    "params", "flops", "epoch_duration", "run_duration", "run_name", "config_id", "overrides",
    "study_name", "trial_number", "study_storage", "device", "threads", "started_at",
    "finished_at", "skipped_files", "class_names", "error", "job_dir",
)  # fmt: skip
NOT_IN_RUNS = {"job_num", "sweep_dir", "config", "versions"}  # the row's own, or not scalar
# the seed's RunManager columns, then validation, test and where the epoch comes from
EPOCH_COLUMNS = (*EPOCH_LEAD, "lr", "batch_size", "shuffle", "epochs", "seed", "model", "data",
                 "optimizer", "val_loss", "val_accuracy", "lr_now", "test_loss", "test_accuracy",
                 "sweep", "status", "job_dir")  # fmt: skip
LABELS = {"epoch_duration": "s/epoch", "best_epoch": "best epoch", "batch_size": "batch size",
          "job_dir": "job dir"}  # fmt: skip


def is_better(objective: str) -> str:
    """``max`` for accuracies, ``min`` for losses."""
    return "min" if objective.endswith("loss") else "max"


def _numbers(runs: pd.DataFrame, column: str) -> pd.Series:
    """``column`` as finite floats, NaN where missing or not a number."""
    if column not in runs or pd.api.types.is_bool_dtype(runs[column]):
        return pd.Series(np.nan, index=runs.index)
    values = pd.to_numeric(runs[column], errors="coerce").astype("float64")
    return values.where(np.isfinite(values))


def rank_runs(runs: pd.DataFrame, objective: str | None = None) -> tuple[pd.DataFrame, str]:
    """Completed jobs ranked best first by ``objective``, then the others by status.

    ``objective`` defaults to the one most completed jobs were run with (``val_acc`` if none).
    Returns the sorted rows with ``rank`` and ``score`` and the objective used.
    """
    if objective is None:
        counts = runs.loc[runs["status"] == "completed"].get("objective", pd.Series()).dropna()
        counts = counts.value_counts()
        objective = min(counts.index, key=lambda k: (-counts[k], k)) if len(counts) else "val_acc"
    score = _numbers(runs, objective)
    ranked = (runs["status"] == "completed") & score.notna()
    sign = -1.0 if is_better(objective) == "max" else 1.0
    order = pd.DataFrame({
        "unranked": ~ranked,
        "key": np.where(ranked, sign * score, runs["status"].cat.codes),
        "sweep": runs["sweep"], "job": runs["job"].fillna(-1), "job_dir": runs["job_dir"],
    })  # fmt: skip
    runs = runs.assign(score=score).loc[order.sort_values(list(order.columns)).index]
    rank = pd.Series(range(1, len(runs) + 1), index=runs.index, dtype="Int64")
    runs.insert(0, "rank", rank.mask(order["unranked"]))
    return runs.reset_index(drop=True), objective


def ci_bounds(metric: str) -> tuple[float | None, float | None]:
    """The values ``metric`` can take, which its confidence interval is clipped to: [0, 1] for
    an accuracy (a name ending in ``acc`` or ``accuracy``), >= 0 for a loss, else unbounded."""
    if metric.endswith(("acc", "accuracy")):
        return 0.0, 1.0
    return (0.0, None) if metric.endswith("loss") else (None, None)


def _seed_outcomes(runs: pd.DataFrame, ranked: pd.Series, objective: str) -> pd.DataFrame:
    """Per configuration (index ``config_id``): ``seeds_total``, the distinct seeds its jobs ran
    with whatever their status, and ``not_completed``, those of them no ranked job counts,
    by status (``"1 pruned, 1 failed"``; ``""`` when every seed completed). A seed that completed
    in one job and failed in another counts as completed."""
    order = {s: i for i, s in enumerate(STATUSES)}
    code = runs["status"].astype(object).map(order).fillna(len(STATUSES)).astype(int)
    seeds = pd.DataFrame({
        "config_id": runs["config_id"],
        "seed": runs["seed"] if "seed" in runs else pd.Series(pd.NA, index=runs.index),
        "code": code.where(~ranked, -1),  # -1: counted in the statistics
    })  # fmt: skip
    per_seed = seeds.groupby(["config_id", "seed"], dropna=False, sort=False)["code"].min()
    per_seed = per_seed.reset_index()
    names = [f"completed without {objective}", *STATUSES[1:], "of unknown status"]

    def not_completed(codes: pd.Series) -> str:
        counts = codes[codes >= 0].value_counts().sort_index()
        return ", ".join(f"{n} {names[c]}" for c, n in counts.items())

    groups = per_seed.groupby("config_id", sort=False)["code"]
    return pd.DataFrame({"seeds_total": groups.size(), "not_completed": groups.agg(not_completed)})


def seed_stats(runs: pd.DataFrame, objective: str) -> tuple[pd.DataFrame, int]:
    """Ranked jobs grouped by configuration: mean, std (and for ``objective`` a 95% Student t
    interval, clipped to ``ci_bounds``) of the metrics over its distinct seeds; and how many
    duplicate (configuration, seed) jobs were left out: of those only the one that finished
    last counts.

    ``n`` is the number of seeds the statistics are over; ``seeds_total`` the distinct seeds the
    configuration's jobs ran with, any status; ``not_completed`` the difference by status
    (``"1 failed"``, ``""`` when none): a failed, diverged or pruned seed is not in the mean.
    Only configurations with a ranked job are listed."""
    from scipy import stats

    ranked = runs["rank"].notna()
    done = runs[ranked]
    end = pd.to_datetime(done.get("finished_at"), utc=True, errors="coerce", format="ISO8601")
    done = done.assign(_end=end).sort_values(["_end", "job_dir"], na_position="first")
    unique = done.drop_duplicates(["config_id", "seed"], keep="last")
    metrics = list(dict.fromkeys((objective, "val_acc", "test_acc")))
    values = pd.DataFrame({m: _numbers(unique, m) for m in metrics}, index=unique.index)
    groups = values.groupby(unique["config_id"], sort=False)
    table = groups.agg(["mean", "std"])
    table.columns = [f"{m}_{s}" for m, s in table.columns]
    knobs = [c for c in HPARAMS if c != "seed" and c in unique]
    table = unique.groupby("config_id", sort=False)[knobs].first().join(table)
    table["n"] = groups.size()
    table = table.join(_seed_outcomes(runs, ranked, objective))
    table["best_rank"] = unique.groupby("config_id", sort=False)["rank"].min()
    n, std = table["n"].astype("float64"), table[f"{objective}_std"]
    half = stats.t.ppf(0.975, n - 1) * std / np.sqrt(n)  # NaN for a single seed
    low, high = ci_bounds(objective)
    table["ci_low"] = (table[f"{objective}_mean"] - half).clip(low, high)
    table["ci_high"] = (table[f"{objective}_mean"] + half).clip(low, high)
    sign = -1.0 if is_better(objective) == "max" else 1.0
    table = table.reset_index().assign(_key=sign * table[f"{objective}_mean"].to_numpy())
    table = table.sort_values(["_key", "best_rank", "config_id"]).drop(columns="_key")
    return table.reset_index(drop=True), len(done) - len(unique)


def seeds_text(groups: pd.DataFrame) -> list[str]:
    """The ``seeds`` cell of each configuration: ``3``, or ``2 of 3 (1 failed)`` when some of
    its seeds did not complete."""
    return [
        str(n) if not missed else f"{n} of {total} ({missed})"
        for n, total, missed in zip(groups["n"], groups["seeds_total"], groups["not_completed"])
    ]


def ci_method(objective: str) -> str:
    """How the interval of the mean ``objective`` is computed, in words."""
    low, high = ci_bounds(objective)
    clip = (
        "clipped to [0, 1] for an accuracy" if high is not None
        else "cut at 0 for a loss" if low is not None
        else "not clipped"
    )  # fmt: skip
    return f"Student's t over the completed seeds, mean ± t(0.975, n−1) · std / √n, {clip}"


def cell_text(value: Any, column: str = "") -> str:
    """A value as a Markdown table cell ("–" when missing; a knob as given, a metric to 4
    decimals, a duration to 2)."""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    if value is None or value is pd.NA or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        if column in HPARAMS:  # a knob as it was given: 0.001, 0.1, 0
            return f"{value:g}"
        return f"{value:.2f}" if column in ("epoch_duration", "run_duration") else f"{value:.4f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _cells(rows: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """``columns`` of ``rows`` formatted for a table ("–" for a column no row has)."""
    return pd.DataFrame({
        c: rows[c].astype(object).map(lambda v, c=c: cell_text(v, c)) if c in rows else "–"
        for c in columns
    }, index=rows.index)  # fmt: skip


def _markdown(table: pd.DataFrame) -> str:
    """A table of strings as Markdown (``to_markdown`` would pad every cell to its column's
    width: longer lines, and a diff for every change of the widest cell)."""
    header = [LABELS.get(c, c) for c in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in table.itertuples(index=False)])


def _varying(rows: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """The columns with more than one known value among ``rows``."""
    return [c for c in columns if c in rows and rows[c].nunique(dropna=True) > 1]


def summary_markdown(
    runs: pd.DataFrame,
    objective: str,
    groups: pd.DataFrame,
    duplicates: int = 0,
    studies: Sequence[str] = (),
) -> str:
    """The leaderboard a person can paste into a report."""
    ranked, rest = runs[runs["rank"].notna()], runs[runs["rank"].isna()]
    sweeps = sorted(runs["sweep"].unique())
    counts = runs["status"].value_counts(sort=False)
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
    constant = [c for c in HPARAMS if c not in hp_cols and c in runs and runs[c].notna().any()]
    if constant:
        same = ", ".join(f"{c}={cell_text(runs[c].dropna().iloc[0], c)}" for c in constant)
        lines += [f"Same in every job: {same}.", ""]
    sweep = ["sweep"] if len(sweeps) > 1 else []
    metrics = list(dict.fromkeys((objective, "val_acc", "val_loss", "test_acc")))
    if len(ranked):
        columns = ["rank", *sweep, "job", *hp_cols, *metrics, "best_epoch", "epoch_duration"]
        lines += [_markdown(_cells(ranked, columns)), ""]
    else:
        lines += ["No completed job to rank.", ""]

    # shown where a mean is over several seeds, or some seed of a configuration did not complete
    if ((groups["n"] > 1) | (groups["not_completed"] != "")).any():
        g_metrics = list(dict.fromkeys((objective, "val_acc", "test_acc")))
        table = _cells(groups, [c for c in hp_cols if c != "seed"] or ["model"])
        table.insert(0, "rank", [str(i) for i in range(1, len(groups) + 1)])
        table["seeds"] = seeds_text(groups)
        for m in g_metrics:
            mean, std = _cells(groups, [f"{m}_mean", f"{m}_std"]).T.to_numpy()
            table[m] = [a if b == "–" else f"{a} ± {b}" for a, b in zip(mean, std)]
        low, high = _cells(groups, ["ci_low", "ci_high"]).T.to_numpy()
        table[f"95% CI of {objective}"] = [
            "–" if a == "–" else f"[{a}, {b}]" for a, b in zip(low, high)
        ]
        lines += [
            "## Over seeds",
            "",
            "Mean ± standard deviation over the distinct completed seeds of each configuration. "
            "A seed that failed, diverged or was pruned is left out of them, and `seeds` says "
            "so: `2 of 3 (1 failed)` is a mean over 2 of the 3 seeds run. The 95% confidence "
            f"interval of the mean `{objective}` is {ci_method(objective)}.",
            "",
            _markdown(table),
            "",
        ]
    if duplicates:
        lines += [
            f"{duplicates} duplicate job(s) of a configuration and seed (the same job in two "
            "sweeps?) left out of the statistics over seeds: the one that finished last counts.",
            "",
        ]
    if len(rest):
        columns = [*sweep, "job", "status", *hp_cols, "error", "job_dir"]
        lines += ["## Not ranked", "", _markdown(_cells(rest, columns)), ""]
    if studies:
        lines += ["## Optuna studies", "", *studies, ""]
    lines += ["Sweeps: " + ", ".join(f"`{s}`" for s in sweeps) + ".", ""]
    return "\n".join(lines)


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
    cols = _varying(shown, HPARAMS) if len(shown) > 1 else []
    show_sweep = shown["sweep"].nunique() > 1
    cmap = colormaps["tab20" if len(shown) > 10 else "tab10"]
    fig, ax = _figure(9, 5.5)
    for i, r in enumerate(shown.to_dict("records")):
        curve = curves[r["job_dir"]]
        label = f"{r['sweep']}/{cell_text(r['job'])}" if show_sweep else f"#{cell_text(r['job'])}"
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


def plot_test_acc(groups: pd.DataFrame, path: Path) -> None:
    """Final test accuracy per configuration (mean over seeds, with their std as error bar)."""
    groups = groups[groups["test_acc_mean"].notna()]
    groups = groups.assign(_key=-groups["test_acc_mean"]).sort_values(["_key", "config_id"])
    cols = _varying(groups, HPARAMS) if len(groups) > 1 else []
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
    ax.set(xlabel="test accuracy", title="Final test accuracy per configuration")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def open_study(name: str, url: str) -> Any:
    """The study, read from its storage (an RDB URL, or the sweeper's ``journal:///`` file);
    never creates a database, a table or a journal file."""
    import optuna

    if url.startswith(JOURNAL):  # the sweeper's journal file; Optuna would create it
        path = url[len(JOURNAL) :]
        if not Path(path).is_file():
            raise FileNotFoundError(f"no such file {path}")
        return optuna.load_study(study_name=name, storage=open_storage(url))
    if url.startswith("sqlite:///"):  # SQLAlchemy would create a missing file
        path = url[len("sqlite:///") :].partition("?")[0]
        if path not in ("", ":memory:") and not Path(path).is_file():
            raise FileNotFoundError(f"no such file {path}")
    storage = optuna.storages.RDBStorage(url, skip_table_creation=True)
    return optuna.load_study(study_name=name, storage=storage)


def study_report(study: Any, folder: Path) -> tuple[list[Path], list[str]]:
    """Optuna's pictures of ``study`` and its ``trials.csv`` in ``folder``; returns the files
    written and one line per picture that cannot be drawn (yet)."""
    import matplotlib
    import matplotlib.pyplot as plt
    import optuna

    vis = optuna.visualization.matplotlib
    seeded = optuna.importance.FanovaImportanceEvaluator(seed=0)  # the same bars every time
    plots = {  # file: (completed trials it needs, how Optuna draws it)
        "optimization_history.png": (1, vis.plot_optimization_history),
        "param_importances.png": (2, lambda s: vis.plot_param_importances(s, evaluator=seeded)),
        "intermediate_values.png": (0, vis.plot_intermediate_values),
        "parallel_coordinate.png": (2, vis.plot_parallel_coordinate),
    }
    done = len(study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE]))
    curves = any(t.intermediate_values for t in study.get_trials(deepcopy=False))
    folder.mkdir(parents=True, exist_ok=True)
    written, notes = [], []
    verbosity = optuna.logging.get_verbosity()
    # rc_context: Optuna's plots switch pyplot to the ggplot style, keep it from our figures
    with matplotlib.rc_context(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an ExperimentalWarning from every plot function
        for file, (needs, draw) in plots.items():
            before = set(plt.get_fignums())
            try:
                optuna.logging.set_verbosity(optuna.logging.ERROR)  # the notes say what is missing
                if done < needs or (file == "intermediate_values.png" and not curves):
                    why = f"{done} completed trial(s)" if done < needs else "no per-epoch values"
                    raise ValueError(f"{why}, needs {needs or 'a trial with them'}")
                save_figure(np.ravel(draw(study))[0].figure, folder / file)
                written.append(folder / file)
            except Exception as e:  # one picture missing must not cost the others
                notes.append(f"study {study.study_name!r}: no {file}: {e}".splitlines()[0])
            finally:
                for num in set(plt.get_fignums()) - before:
                    plt.close(num)
                optuna.logging.set_verbosity(verbosity)
    trials = study.trials_dataframe().to_csv(index=False, lineterminator="\n")
    atomic_write(folder / "trials.csv", trials)
    return [*written, folder / "trials.csv"], notes


def study_reports(runs: pd.DataFrame, out: Path) -> tuple[list[str], list[Path], list[str]]:
    """A ``study_report`` in ``out/<study name>/`` for every study the rows' trials belong to.
    Returns lines for ``summary.md``, the files written and one line per study or picture
    skipped: a study that cannot be read never stops the aggregate."""
    if not {"study_name", "trial_number"} <= set(runs.columns):
        return [], [], []
    trials = runs[runs["study_name"].notna() & runs["trial_number"].notna()]
    storage = trials.get("study_storage", pd.Series(pd.NA, index=trials.index, dtype=object))
    lines, written, notes, used = [], [], [], set()
    for name in sorted(trials["study_name"].unique()):
        urls = sorted(storage[trials["study_name"] == name].dropna().unique())
        if not urls:
            notes.append(f"study {name!r}: its rows name no study_storage (written by an older "
                         "version): no study report")  # fmt: skip
        for url in urls:
            folder = re.sub(r"[^\w.=+-]", "_", name)
            while folder in used:  # one name in two storages
                folder += "_"
            try:
                study = open_study(name, url)
                files, skipped = study_report(study, out / folder)
            except Exception as e:
                why = f"{type(e).__name__}: {e}".splitlines()[0]
                notes.append(f"study {name!r} in {hide_password(url)} skipped: {why}")
                continue
            used.add(folder)
            written, notes = written + files, notes + skipped
            states = pd.Series([t.state.name.lower() for t in study.trials]).value_counts()
            best = study.best_trial if states.get("complete") else None
            lines.append(
                f"- `{name}`: {len(study.trials)} trial(s) ("
                + ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
                + (f"), best {best.value:.4f} (trial {best.number})" if best else ")")
                + f": `{folder}/`"
            )
    return lines, written, notes


def _is_container(value: Any) -> bool:
    return isinstance(value, (list, dict))


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain Python values (None for missing), timestamps as ISO 8601 strings."""
    df = df.copy()
    for c in TIMESTAMPS:
        if c in df and isinstance(df[c].dtype, pd.DatetimeTZDtype):
            df[c] = df[c].map(lambda t: None if pd.isna(t) else t.isoformat(), na_action=None)
    return df.astype(object).where(df.notna(), None).to_dict("records")


def write_table(df: pd.DataFrame, csv_path: Path, json_path: Path) -> list[dict[str, Any]]:
    """``df`` as CSV (lists JSON-encoded in their cell) and as a JSON list; returns its rows.

    The JSON goes through ``json``, not ``to_json``: that rounds floats to 15 digits and writes
    ``/`` as ``\\/``."""
    records = _records(df)
    cells = [{k: json.dumps(v) if _is_container(v) else v for k, v in r.items()} for r in records]
    cells = pd.DataFrame(cells, columns=df.columns, dtype=object)  # None stays None, 1 stays 1
    atomic_write(csv_path, cells.to_csv(index=False, lineterminator="\n"))
    write_json(json_path, records)
    return records


def aggregate(
    roots: Sequence[str | Path] = DEFAULT_ROOTS,
    out: str | Path = DEFAULT_OUT,
    objective: str | None = None,
    base: Path | None = None,
) -> dict[str, Any]:
    """Write runs/epochs CSV+JSON, ``summary.md``, the plots and the study reports into
    ``out``; returns the rows written, the objective, the paths and the notes."""
    runs = load_runs(*roots, base=base)
    epochs = load_epochs(base=base, runs=runs)
    runs, objective = rank_runs(runs, objective)
    groups, duplicates = seed_stats(runs, objective)
    extra = sorted(
        c for c in runs.columns
        if c not in RUN_COLUMNS and c not in NOT_IN_RUNS
        and not (runs[c].dtype == object and runs[c].map(_is_container).any())
    )  # fmt: skip
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in ("runs.csv", "runs.json", "epochs.csv", "epochs.json",
                                          "summary.md", "val_acc.png", "test_acc.png")}  # fmt: skip
    table = write_table(
        runs.reindex(columns=[*RUN_COLUMNS, *extra]), paths["runs.csv"], paths["runs.json"]
    )
    epoch_rows = write_table(
        epochs.reindex(columns=EPOCH_COLUMNS), paths["epochs.csv"], paths["epochs.json"]
    )
    plot_val_curves(runs, epochs, paths["val_acc.png"])
    plot_test_acc(groups, paths["test_acc.png"])
    studies, study_files, notes = study_reports(runs, out)
    atomic_write(
        paths["summary.md"], summary_markdown(runs, objective, groups, duplicates, studies)
    )
    return {"runs": table, "epochs": epoch_rows, "objective": objective, "paths": paths,
            "study_files": study_files, "notes": notes}  # fmt: skip


def _print_top(runs: list[dict[str, Any]], objective: str, top: int) -> None:
    ranked = [r for r in runs if r["rank"] is not None][:top]
    hp_cols = _varying(pd.DataFrame(runs), HPARAMS) or ["model", "lr"]
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
    report = aggregate(roots, args.out, args.objective)
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
    for r in runs:
        if r["status"] != "completed":
            why = r.get("error") or r.get("objective_from")  # a pruned job has no error
            print(f"{r['status']}: {r['job_dir']}" + (f": {why}" if why else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
