"""The training job: config -> data and model -> loop -> TensorBoard and results rows.

Read it top to bottom: ``run_job`` checks the config, prepares the run, trains for ``epochs``
epochs with a validation pass each, evaluates on the test split once, then saves the weights.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from cnnsweep.data import load_data
from cnnsweep.loop import evaluate, train_one_epoch
from cnnsweep.models import MODELS, build_model
from cnnsweep.pruning import OptunaTrial, reported_metric
from cnnsweep.tracking import (
    TensorBoardRun,
    package_versions,
    read_results_row,
    write_epoch_rows,
    write_results_row,
)

log = logging.getLogger(__name__)

METRICS = (
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "test_loss",
    "test_acc",
    "best_val_acc",
)
# keys that change where or how fast a job runs, not what it learns (ignored when resuming)
RUNTIME_KEYS = ("device", "threads", "data_dir", "progress", "resume", "reports", "tensorboard")


class ConfigError(ValueError):
    """A config value that is not allowed; the message names the value and what is allowed."""


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def validate(cfg: DictConfig) -> None:
    """Refuse bad knobs before any data is read or any file is written."""

    def positive(key: str, kind: type) -> None:
        value = OmegaConf.select(cfg, key)
        ok_type = isinstance(value, kind) and not isinstance(value, bool)
        if kind is float:
            ok_type = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok_type or not value > 0 or (kind is float and not math.isfinite(value)):
            what = "an integer" if kind is int else "a number"
            raise ConfigError(f"{key}={value!r} is not allowed: {key} must be {what} > 0")

    positive("lr", float)
    positive("batch_size", int)
    positive("epochs", int)
    vf = cfg.data.val_fraction
    if isinstance(vf, bool) or not isinstance(vf, (int, float)) or not 0 <= vf < 1:
        raise ConfigError(f"data.val_fraction={vf!r} is not allowed: it must be in [0, 1)")
    if not isinstance(cfg.seed, int) or isinstance(cfg.seed, bool):
        raise ConfigError(f"seed={cfg.seed!r} is not allowed: seed must be an integer")
    if not isinstance(cfg.shuffle, bool):
        raise ConfigError(f"shuffle={cfg.shuffle!r} is not allowed: use true or false")
    if cfg.model.name not in MODELS:
        raise ConfigError(
            f"model.name={cfg.model.name!r} is not allowed: use one of {sorted(MODELS)}"
        )
    resolve_device(cfg.device)
    resolve_threads(cfg.threads)
    allowed = [m for m in METRICS if vf > 0 or not m.startswith(("val", "best_val"))]
    if cfg.objective not in allowed:
        raise ConfigError(f"objective={cfg.objective!r} is not allowed: use one of {allowed}")


def resolve_device(name: str) -> torch.device:
    """``auto`` is cuda when present, else cpu; anything torch cannot use is a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device={name!r} is not allowed: use auto, cpu, cuda, cuda:N or mps")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} is not available: no CUDA GPU here; use auto or cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(f"device={name!r} is not available: {torch.cuda.device_count()} GPU(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device={name!r} is not available here; use auto or cpu")
    return device


def resolve_threads(threads: int | str) -> int:
    """``auto``: all cores, divided between the jobs a joblib/submitit launcher runs at once."""
    if threads == "auto":
        parallel = 1
        if HydraConfig.initialized():
            launcher = HydraConfig.get().launcher
            if "joblib" in str(launcher.get("_target_", "")):
                n_jobs = launcher.get("n_jobs") or 1
                parallel = _cpu_count() if n_jobs < 0 else n_jobs
            if "submitit" in str(launcher.get("_target_", "")) and launcher.get("cpus_per_task"):
                return int(launcher.cpus_per_task)
        return max(1, _cpu_count() // parallel)
    if isinstance(threads, int) and not isinstance(threads, bool) and threads > 0:
        return threads
    raise ConfigError(f"threads={threads!r} is not allowed: use auto or an integer > 0")


@dataclass
class JobInfo:
    """Where the job writes and what it is called (Hydra's, or given by a caller/test)."""

    output_dir: Path
    run_name: str = "default"
    overrides: list[str] = field(default_factory=list)
    job_num: int = 0
    sweep_dir: str | None = None
    multirun: bool = False


def job_info(output_dir: str | Path | None = None) -> JobInfo:
    if not HydraConfig.initialized():
        return JobInfo(Path(output_dir or "outputs/job"))
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    return JobInfo(
        output_dir=Path(output_dir or hc.runtime.output_dir),
        run_name=(hc.job.override_dirname or "default").replace("/", "_"),
        overrides=list(hc.overrides.task),
        job_num=int(hc.job.get("num") or 0),
        sweep_dir=str(Path(hc.sweep.dir).resolve()) if multirun else None,
        multirun=multirun,
    )


def hyperparameters(cfg: DictConfig) -> dict[str, Any]:
    """The knobs that define what a job learns: the columns a leaderboard compares."""
    return {
        "lr": cfg.lr,
        "batch_size": cfg.batch_size,
        "shuffle": cfg.shuffle,
        "epochs": cfg.epochs,
        "seed": cfg.seed,
        "model": cfg.model.name,
        "data": cfg.data.name,
        "optimizer": cfg.optimizer.name,
        "weight_decay": cfg.optimizer.get("weight_decay", 0.0),
        "val_fraction": cfg.data.val_fraction,
    }


def learning_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config without runtime-only keys: equal for two runs that learn the same."""
    return {
        k: v
        for k, v in OmegaConf.to_container(cfg, resolve=True).items()
        if k not in RUNTIME_KEYS and k not in ("hparams_search", "optuna")
    }


def build_optimizer(cfg: DictConfig, params: Any) -> torch.optim.Optimizer:
    """Any ``torch.optim`` class named by ``_target_``; ``name`` is ours, not the optimizer's."""
    kwargs = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k != "name"}
    return instantiate(kwargs, params=params, _execution_whitelist_="torch.optim.*")


def run_job(cfg: DictConfig, output_dir: str | Path | None = None) -> float:
    """Train, evaluate and record one configuration; returns ``cfg.objective`` for sweepers."""
    info = job_info(output_dir)
    out = info.output_dir
    try:
        validate(cfg)
    except ConfigError as e:
        if info.multirun:  # in a sweep, the row is where the user sees which job was refused
            write_results_row(out, {
                "status": "failed", "error": f"ConfigError: {e}", **hyperparameters(cfg),
                "objective": cfg.objective, "overrides": info.overrides, "job_num": info.job_num,
                "job_dir": str(out.resolve()), "sweep_dir": info.sweep_dir,
            })  # fmt: skip
        raise
    hp = hyperparameters(cfg)
    config = learning_config(cfg)

    previous = read_results_row(out)
    if cfg.resume and previous and previous.get("status") == "completed":
        if previous.get("config") == config:
            log.info("%s: already completed in %s, skipped (resume=true)", info.run_name, out)
            value = previous.get(cfg.objective)
            return float("nan") if value is None else float(value)

    started = time.time()
    trial = OptunaTrial.from_config(cfg)  # this job's Optuna trial; inert outside an Optuna search
    row: dict[str, Any] = {
        "status": "running",
        "error": None,
        **hp,
        "objective": cfg.objective,
        **{m: None for m in METRICS},
        "best_epoch": None,
        "epochs_run": 0,
        "epoch_duration": None,
        "run_duration": None,
        "run_name": info.run_name,
        "overrides": info.overrides,
        "job_num": info.job_num,
        "study_name": trial.study_name,
        "trial_number": trial.number,
        "job_dir": str(out.resolve()),
        "sweep_dir": info.sweep_dir,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "finished_at": None,
        "device": None,
        "threads": None,
        "versions": package_versions(),
        "config": config,
    }
    write_results_row(out, row)  # a row from the start: a killed job still shows as "running"
    tb = None
    epoch_rows: list[dict[str, Any]] = []
    try:
        device = resolve_device(cfg.device)
        torch.set_num_threads(resolve_threads(cfg.threads))
        row.update(device=str(device), threads=torch.get_num_threads())
        # channels_last makes these small convolutions markedly faster on the CPU
        memory_format = torch.channels_last if device.type == "cpu" else torch.contiguous_format

        torch.manual_seed(cfg.seed)
        data = load_data(cfg.data, cfg.seed)
        train_set = data.train.to(device)
        val_set = data.val.to(device) if data.val is not None else None
        test_set = data.test.to(device)
        model = build_model(
            **{k: cfg.model[k] for k in ("name", "in_channels", "num_classes", "image_size")}
        )
        model = model.to(device, memory_format=memory_format)
        optimizer = build_optimizer(cfg.optimizer, model.parameters())
        generator = torch.Generator().manual_seed(cfg.seed)  # on the CPU: same order on any device

        shutil.rmtree(out / "tb", ignore_errors=True)  # an interrupted attempt's events go
        tb = TensorBoardRun(out / "tb" / info.run_name)
        if cfg.tensorboard.images:
            tb.log_images("images", data.train.images[:64])
        if cfg.tensorboard.graph:
            tb.log_graph(model, train_set.images[:2].contiguous(memory_format=memory_format))

        best_val_acc, best_state = -1.0, None
        for epoch in range(1, cfg.epochs + 1):
            t0 = time.time()
            train_loss, train_acc = train_one_epoch(
                model, optimizer, train_set, cfg.batch_size, cfg.shuffle, generator,
                memory_format, desc=f"epoch {epoch}/{cfg.epochs}", progress=cfg.progress,
            )  # fmt: skip
            val_loss = val_acc = None
            if val_set is not None and math.isfinite(train_loss):
                val_loss, val_acc, _ = evaluate(model, val_set, memory_format=memory_format)
            seconds = time.time() - t0
            row.update(
                train_loss=train_loss, train_acc=train_acc, val_loss=val_loss, val_acc=val_acc
            )
            row.update(epochs_run=epoch)
            if val_acc is not None and val_acc > best_val_acc:
                best_val_acc = val_acc
                row.update(best_val_acc=val_acc, best_epoch=epoch)
                if cfg.keep_best:
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            epoch_rows.append({
                "run": info.job_num, "epoch": epoch, "loss": train_loss, "accuracy": train_acc,
                "epoch duration": seconds, "run duration": time.time() - started,
                **{k: hp[k] for k in ("lr", "batch_size", "shuffle", "epochs", "seed", "model",
                                      "data", "optimizer")},
                "val_loss": val_loss, "val_accuracy": val_acc,
            })  # fmt: skip
            write_epoch_rows(out, epoch_rows)
            tb.log_epoch(epoch, {"Loss/train": train_loss, "Accuracy/train": train_acc,
                                 "Loss/val": val_loss, "Accuracy/val": val_acc})  # fmt: skip
            if cfg.tensorboard.histograms and math.isfinite(train_loss):
                tb.log_histograms(epoch, model)
            log.info(
                "epoch %d/%d  train loss %.4f acc %.4f  val loss %s acc %s  %.1fs",
                epoch, cfg.epochs, train_loss, train_acc, _fmt(val_loss), _fmt(val_acc), seconds,
            )  # fmt: skip
            if not math.isfinite(train_loss):
                row.update(
                    status="diverged", error=f"training loss became {train_loss} in epoch {epoch}"
                )
                log.warning(
                    "%s: diverged (loss %s) in epoch %d, stopped", info.run_name, train_loss, epoch
                )
                break
            # report every epoch, prune before the last (a pruned run: no test pass, no model.pt)
            if trial.report(epoch, row[reported_metric(cfg.objective)]) and epoch < cfg.epochs:
                trial.prune()  # the trial ends as PRUNED in the study
                row.update(status="pruned")
                log.info("%s: pruned after epoch %d (trial %d)", info.run_name, epoch, trial.number)
                break

        if row["status"] == "running":
            if best_state is not None:  # test and save the weights of the best validation epoch
                model.load_state_dict(best_state)
            test_loss, test_acc, test_preds = evaluate(model, test_set, memory_format=memory_format)
            row.update(test_loss=test_loss, test_acc=test_acc, status="completed")
            tb.log_epoch(cfg.epochs, {"Loss/test": test_loss, "Accuracy/test": test_acc})
            log.info("test loss %.4f acc %.4f", test_loss, test_acc)
            save_checkpoint(out / "model.pt", model, cfg, row)
            if cfg.reports:
                # matplotlib and scikit-learn take seconds to import: only when pictures are on
                from cnnsweep.reports import write_job_reports

                pick = torch.randperm(
                    len(data.train), generator=torch.Generator().manual_seed(cfg.seed)
                )[:20]
                write_job_reports(
                    out, model, epoch_rows, data.train.images[pick], data.train.labels[pick],
                    test_set.labels, test_preds, data.class_names, tb,
                )  # fmt: skip
        durations = [r["epoch duration"] for r in epoch_rows]
        row.update(epoch_duration=sum(durations) / len(durations) if durations else None)
        tb.log_hparams(hp, {f"hparam/{m}": row[m] for m in METRICS})
    except BaseException as e:  # KeyboardInterrupt too: the row must not stay "running"
        row.update(status="failed", error=f"{type(e).__name__}: {e}".splitlines()[0])
        raise
    finally:
        row.update(run_duration=time.time() - started)
        row.update(finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        write_results_row(out, row)
        if tb is not None:
            tb.close()
    value = row.get(cfg.objective)
    return float("nan") if value is None else float(value)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def save_checkpoint(path: Path, model: torch.nn.Module, cfg: DictConfig, row: dict) -> None:
    """Weights plus what rebuilds and uses the model, in plain types that weights_only loads."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    payload = {
        "state_dict": state,
        "model": {k: cfg.model[k] for k in ("name", "in_channels", "num_classes", "image_size")},
        "data": OmegaConf.to_container(cfg.data, resolve=True),  # predict rebuilds the test split
        "hyperparameters": hyperparameters(cfg),
        "metrics": {m: row[m] for m in METRICS},
    }
    tmp = path.with_suffix(".pt.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
