"""``data.fold=all``: one job trains the K folds of a k-fold cross-validation in turn.

Each fold is an ordinary job (``data.fold=i``) in its own folder, ``fold_<i>/`` of this job's,
with its own row, checkpoint and TensorBoard events: the aggregate groups the K rows like seeds.
The job returns the mean of their objective, so an Optuna trial is a cross-validated score. In
a search, the trial is told the mean of the folds done so far after each fold (step = folds
done) and stops when its pruner says so; the folds themselves report nothing.
``cross_validation.json`` (written as the folds end) says how far it got, the values and their
mean; the aggregate reads the fold rows, not this folder.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from cnnsweep.files import CV_JSON, atomic_write
from cnnsweep.sweep.trial import OptunaTrial
from cnnsweep.train.record import job_info
from cnnsweep.train.validation import validate

log = logging.getLogger("cnnsweep.train.job")


def cross_validate(
    cfg: DictConfig, output_dir: str | Path | None, run_job: Callable[[DictConfig, Path], float]
) -> float:
    """Train fold 0..K-1 of ``cfg`` one after another, each by ``run_job`` (the training job);
    returns the mean objective (NaN when a fold ends without one)."""
    validate(cfg)  # bad knobs: refused before anything is written
    out = job_info(output_dir).output_dir
    folds = int(cfg.data.folds)
    trial = OptunaTrial.from_config(cfg)  # told after each fold; the folds' own are inert
    trial.start(out)
    summary = {"folds": folds, "objective": cfg.objective, "status": "running", "values": []}
    _write(out, summary)  # from the start: the aggregate looks for the rows in fold_<i>/
    try:
        for fold in range(folds):
            value = run_job(fold_config(cfg, fold), out / f"fold_{fold}")
            summary["values"].append(value)
            mean = _mean(summary["values"])
            summary |= {"mean": mean, "std": _std(summary["values"])}
            if not math.isfinite(value):
                summary["status"] = "failed"
                break
            if trial.report(fold + 1, mean) and fold + 1 < folds:
                summary["status"] = "pruned"
                trial.prune()
                break
            _write(out, summary)
        else:
            summary["status"] = "completed"
    except KeyboardInterrupt:  # the fold's row says interrupted; the same command continues
        summary["status"] = "interrupted"
        raise
    except Exception:
        summary["status"] = "failed"
        raise
    finally:
        _write(out, summary)
        trial.finish(summary["status"], summary.get("mean"))
        trial.stop()
    log.info("cross-validated %s %.4f ± %.4f over %d of %d folds (%s): %s",
             cfg.objective, summary.get("mean", math.nan), summary.get("std", math.nan),
             len(summary["values"]), folds, summary["status"], out / CV_JSON)  # fmt: skip
    return summary["mean"] if summary["status"] != "failed" else math.nan


def fold_config(cfg: DictConfig, fold: int) -> DictConfig:
    """The job config of one fold: ``data.fold=fold``, and no Optuna trial of its own."""
    one = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    with open_dict(one):
        one.data.fold = fold
        if one.get("optuna"):
            one.optuna.trial = None  # the cross-validating job reports for the K folds
    return one


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else math.nan


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else math.nan


def _write(out: Path, summary: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / CV_JSON, json.dumps(summary, indent=1, allow_nan=True))
