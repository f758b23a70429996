"""Every job's rows as pandas DataFrames: what ``make aggregate`` reads, and a notebook can too.

    from cnnsweep.results import load_runs, load_epochs

    runs = load_runs("multirun/2026-11-22/18-12-29")  # one row per job
    epochs = load_epochs("multirun", "outputs")  # one row per epoch, the job's knobs joined

With no folder given both read ``multirun/`` and ``outputs/``. A job dir is a folder holding
``results.json`` or Hydra's ``.hydra/``. Nothing here raises for a broken job: a row that is not
valid JSON (half-written) comes back as ``corrupt``, a folder without a row as ``missing``, a job
still running (or killed) as ``running``, each with its ``error``. Paths (``sweep``,
``job_dir``) are relative to the current folder (or ``base``) when they lie under it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from cnnsweep.files import CV_JSON, EPOCHS_JSON, LR_FIND_JSON, RESULTS_JSON
from cnnsweep.schema import (
    EPOCH_LEAD,
    JOB_STATUSES,
    KNOBS,
    LAST_METRICS,
    METRICS,
    STATUSES,
    config_id,
)

DEFAULT_ROOTS = ("multirun", "outputs")
TIMESTAMPS = ("started_at", "finished_at")
# number columns kept numeric even when no job filled them (a sweep where every job failed)
NUMBERS = (*METRICS, "objective_value", *LAST_METRICS, "epoch_duration", "run_duration")
# what an epoch row is told of its job (besides the hyperparameters)
EPOCH_JOB = ("sweep", "status", "job_dir", "config_id", "study_name", "trial_number")
SKIP_DIRS = {"tb", ".submitit", "__pycache__", ".git", ".venv", "node_modules"}


def find_job_dirs(roots: Iterable[str | Path]) -> list[Path]:
    """Every folder under ``roots`` that holds a ``results.json`` or a Hydra ``.hydra/`` (but
    not a ``data.fold=all`` job's own, whose rows are its folds' in the folders below it, nor a
    learning-rate range test's, which trains nothing)."""
    found: set[Path] = set()
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            no_row = RESULTS_JSON not in filenames and bool({CV_JSON, LR_FIND_JSON} & {*filenames})
            if RESULTS_JSON in filenames or ".hydra" in dirnames and not no_row:
                found.add(Path(dirpath).resolve())
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and d != ".hydra")
    return sorted(found)


def display_path(path: str | Path, base: str | Path | None = None) -> str:
    """``path`` relative to ``base`` (the cwd) when it lies under it, else absolute."""
    path = Path(path).resolve()
    try:
        rel = path.relative_to(Path(base or Path.cwd()).resolve())
    except ValueError:
        return str(path)
    return str(rel) if str(rel) != "." else "."


def _read_json(path: Path) -> tuple[Any, str | None]:
    """(object, None), or (None, why) when the file is missing or not valid JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except OSError as e:
        return None, f"cannot read {path.name}: {e.strerror or e}"
    except ValueError:
        return None, f"{path.name} is not valid JSON (half-written or truncated)"


def _hydra_row(job_dir: Path) -> dict[str, Any]:
    """The hyperparameters and overrides ``.hydra/`` recorded (for a job with no usable row)."""
    from omegaconf import OmegaConf  # only needed for broken jobs

    try:
        cfg = OmegaConf.load(job_dir / ".hydra" / "config.yaml")
    except Exception:  # no .hydra, or unreadable: nothing to recover
        return {}
    row: dict[str, Any] = {}
    for name in (*KNOBS, "objective"):
        key = KNOBS.get(name, name)
        try:
            value = OmegaConf.select(cfg, key, throw_on_resolution_failure=False)
        except Exception:
            value = None
        if isinstance(value, (int, float, str, bool)):
            row[name] = value
    if row.get("ema") is not None and OmegaConf.select(cfg, "ema.enabled", default=True) is False:
        del row["ema"]  # a row's ema is the decay, or null when EMA is off
    try:
        row["overrides"] = [str(o) for o in OmegaConf.load(job_dir / ".hydra" / "overrides.yaml")]
    except Exception:
        pass
    return row


def read_row(job_dir: str | Path) -> dict[str, Any]:
    """One job's results row with a status from ``STATUSES``; never raises."""
    job_dir = Path(job_dir)
    raw, why = _read_json(job_dir / RESULTS_JSON)
    if raw is not None and not isinstance(raw, dict):
        raw, why = None, f"{RESULTS_JSON} does not hold a results row"
    if raw is None:
        row = _hydra_row(job_dir)
        if (job_dir / RESULTS_JSON).exists():
            return row | {"status": "corrupt", "error": why}
        why = "no results row: the job never started (refused, or killed while starting)"
        return row | {"status": "missing", "error": why}
    return checked_row(raw)


def checked_row(raw: dict[str, Any]) -> dict[str, Any]:
    """A row as read: an unknown status is ``corrupt``; ``running`` says it may be dead."""
    row = dict(raw)
    if row.get("status") not in JOB_STATUSES:
        row.update(
            status="corrupt", error=f"unknown status {row.get('status')!r} in {RESULTS_JSON}"
        )
    elif row["status"] == "running" and not row.get("error"):
        row["error"] = "no final row yet: still running, or killed"
    return row


def _sweep_of(job_dir: Path, row: dict[str, Any]) -> Path:
    """The sweep a job belongs to: its multirun folder, or the job dir itself for a single run."""
    if (job_dir.parent / "multirun.yaml").exists():
        return job_dir.parent
    if isinstance(row.get("sweep_dir"), str) and row["sweep_dir"]:
        return Path(row["sweep_dir"])
    return job_dir


def _job_number(job_dir: Path, row: dict[str, Any]) -> int | None:
    """An Optuna trial's number (two workers in one folder both count jobs from 0), else the
    job's number in its sweep."""
    for key in ("trial_number", "job_num"):
        if isinstance(row.get(key), int) and not isinstance(row[key], bool):
            return row[key]
    return int(job_dir.name) if job_dir.name.isdigit() else None


def job_record(
    job_dir: str | Path, base: str | Path | None = None, row: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``read_row`` (or ``row``, read elsewhere) plus where the job is (``sweep``, ``job``,
    ``job_dir``) and ``config_id``."""
    job_dir = Path(job_dir).resolve()
    row = read_row(job_dir) if row is None else checked_row(row)
    config = row.get("config")
    # the learning config names the configuration (seed, data location and objective left
    # out); rows without one fall back to their hyperparameter columns
    key = config if isinstance(config, dict) else {k: row.get(k) for k in KNOBS}
    lead = {
        "sweep": display_path(_sweep_of(job_dir, row), base),
        "job": _job_number(job_dir, row),
        "status": row.pop("status"),
    }
    return lead | row | {"job_dir": display_path(job_dir, base), "config_id": config_id(key)}


def _typed(column: pd.Series) -> pd.Series:
    """A column of plain JSON values with the dtype they share (object when they do not)."""
    name = column.name
    if name in TIMESTAMPS:
        return pd.to_datetime(column, utc=True, errors="coerce", format="ISO8601")
    if name == "status":
        return column.astype(pd.CategoricalDtype(STATUSES, ordered=True))
    kind = pd.api.types.infer_dtype(column, skipna=True)
    if kind == "empty" and name in NUMBERS:
        kind = "floating"
    dtype = {"boolean": "boolean", "integer": "Int64", "floating": "float64",
             "mixed-integer-float": "float64", "string": "string"}.get(kind)  # fmt: skip
    return column.astype(dtype) if dtype else column.where(column.notna(), None)


def frame(rows: list[dict[str, Any]], lead: Iterable[str] = ()) -> pd.DataFrame:
    """Rows (dicts) as a DataFrame with typed columns, ``lead`` columns first."""
    df = pd.DataFrame(rows, dtype=object)  # no guessing yet: ints with gaps would turn float
    df = df[[*(c for c in lead if c in df.columns), *(c for c in df.columns if c not in lead)]]
    return pd.DataFrame({c: _typed(df[c]) for c in df.columns}, index=df.index)


def _roots(dirs: tuple[str | Path, ...]) -> list[str | Path]:
    return list(dirs) or [d for d in DEFAULT_ROOTS if Path(d).is_dir()]


def load_runs(*dirs: str | Path, base: str | Path | None = None) -> pd.DataFrame:
    """One row per job under ``dirs`` (default: ``multirun/`` and ``outputs/``).

    Columns: ``sweep, job, status``, the results row's keys as the job wrote them, ``job_dir``,
    ``config_id`` (the seeds of one configuration share it), and every ``KNOBS`` column.
    Numbers are numbers (integers as nullable ``Int64``), booleans ``boolean``, ``started_at``
    and ``finished_at`` UTC datetimes, ``status`` an ordered categorical (``STATUSES``), lists
    and dicts objects.
    """
    return runs_frame([job_record(d, base) for d in find_job_dirs(_roots(dirs))])


def runs_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """``job_record`` rows as ``load_runs`` returns them: typed, every knob a column, sorted."""
    if not rows:  # the columns every frame has, typed
        rows = [{"sweep": "", "job": 0, "status": "missing", "job_dir": "", "config_id": ""}]
        return frame(rows).iloc[:0].reindex(columns=[*rows[0], *KNOBS])
    df = frame(rows, ("sweep", "job", "status"))
    df = df.reindex(columns=[*df.columns, *(c for c in KNOBS if c not in df.columns)])
    return df.sort_values(["sweep", "job", "job_dir"], na_position="first", ignore_index=True)


def load_epochs(
    *dirs: str | Path, base: str | Path | None = None, runs: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per epoch of every job under ``dirs``: the seed's layout (``run, epoch, loss,
    accuracy, epoch duration, run duration``), the job's hyperparameters, the epoch's own
    columns (``val_loss``, ``val_accuracy``, ``lr_now``, ...), then the job's ``sweep``,
    ``status``, ``job_dir``, ``config_id``. ``run`` is the job's number (an Optuna trial's
    number); ``job_dir`` tells jobs apart. ``runs``: ``load_runs``' frame, if already loaded."""
    if runs is None:
        runs = load_runs(*dirs, base=base)
    rows = []
    for job_dir in runs["job_dir"]:
        epochs, _ = _read_json(Path(base or ".") / job_dir / EPOCHS_JSON)
        if isinstance(epochs, list):
            rows += [{**e, "job_dir": job_dir} for e in epochs if isinstance(e, dict)]
    joined = ["job", *(c for c in (*KNOBS, *EPOCH_JOB) if c in runs.columns)]
    job = runs[joined].rename(columns={"job": "run"})
    if not rows:
        return job.iloc[:0]
    df = frame(rows)
    # the job's values win: the run number and the knobs are the job's, whatever a row repeats
    df = df.drop(columns=[c for c in job.columns if c in df.columns and c != "job_dir"])
    df = df.merge(job, on="job_dir", how="left", validate="many_to_one")
    order = [*EPOCH_LEAD, *KNOBS, *(c for c in df.columns if c not in EPOCH_JOB), *EPOCH_JOB]
    df = df[list(dict.fromkeys(c for c in order if c in df.columns))]
    keys = ["sweep", "run", "job_dir", "epoch"]
    return df.sort_values(keys, na_position="first", ignore_index=True)
