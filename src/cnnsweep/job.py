"""The training job: config -> data and model -> loop -> TensorBoard, rows and checkpoints.

Read ``run_job`` top to bottom: it checks the config and the data, skips a job that already
completed, continues one that was stopped (``last.pt``) or clears what an earlier attempt left,
trains epoch by epoch (validation, best epoch, checkpoint, pruning, early stopping), then tests
and saves the weights it kept. The state it carries is one ``TrainState``.
"""

from __future__ import annotations

import logging
import math
import os
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

from cnnsweep.augment import build_augment
from cnnsweep.data import (
    Data,
    DatasetError,
    absolute_paths,
    complete_config,
    denormalise,
    load_data,
)
from cnnsweep.ema import EMA
from cnnsweep.identity import hyperparameters, learning_config, run_name
from cnnsweep.loop import Recipe, evaluate, train_one_epoch
from cnnsweep.models import build_model, count_params, forward_flops, model_spec
from cnnsweep.monitor import Monitor
from cnnsweep.pruning import OptunaTrial, reported_metric
from cnnsweep.runtime import ConfigError, job_device, resolve_threads
from cnnsweep.schedule import build_scheduler
from cnnsweep.state import LAST, TrainState, load_last, save_last, save_model
from cnnsweep.tracking import (
    RESULTS_JSON,
    TensorBoardRun,
    clear_job_outputs,
    move_job_outputs,
    package_versions,
    read_results_row,
    write_epoch_rows,
    write_results_row,
)
from cnnsweep.validation import METRICS, validate

log = logging.getLogger(__name__)

__all__ = ["ConfigError", "run_job", "validate", "hyperparameters", "build_optimizer"]

# the hyperparameters every epoch row repeats (the seed's RunManager layout)
EPOCH_HPARAMS = ("lr", "batch_size", "shuffle", "epochs", "seed", "model", "data", "optimizer")
EPOCH_COLUMN = {"val_acc": "val_accuracy", "val_loss": "val_loss"}  # a monitor's epoch-row column


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
        run_name=run_name(hc.overrides.task),
        overrides=list(hc.overrides.task),
        job_num=int(hc.job.get("num") or 0),
        sweep_dir=str(Path(hc.sweep.dir).resolve()) if multirun else None,
        multirun=multirun,
    )


def build_optimizer(cfg: DictConfig, model: torch.nn.Module | Any) -> torch.optim.Optimizer:
    """Any ``torch.optim`` class named by ``_target_``; ``name`` is ours, not the optimizer's.

    Weight decay applies to weights only: biases and BatchNorm parameters (1-d) are not decayed.
    """
    kwargs = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k != "name"}
    params = list(model.parameters()) if isinstance(model, torch.nn.Module) else list(model)
    if kwargs.get("weight_decay"):
        params = [
            {"params": [p for p in params if p.ndim > 1]},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
        ]
    make = instantiate(kwargs, _partial_=True, _execution_whitelist_="torch.optim.*")
    return make(params)  # after instantiate: Hydra would turn the param groups into configs


def new_row(cfg: DictConfig, info: JobInfo, trial: OptunaTrial) -> dict[str, Any]:
    """The results row a job starts with (``running``); later keys are filled as it goes."""
    return {
        "status": "running",
        "error": None,
        **hyperparameters(cfg),
        "objective": cfg.objective,
        "objective_value": None,
        "objective_from": None,
        **{m: None for m in METRICS},
        "best_epoch": None,
        "metrics_epoch": None,
        **{f"last_{m}": None for m in ("train_loss", "train_acc", "val_loss", "val_acc")},
        "epochs_run": 0,
        "stopped_early_at": None,
        "resumed_from_epoch": None,
        "params": None,
        "flops": None,
        "class_names": None,
        "skipped_files": None,
        "epoch_duration": None,
        "run_duration": None,
        "run_name": info.run_name,
        "overrides": info.overrides,
        "job_num": info.job_num,
        "study_name": trial.study_name,
        "trial_number": trial.number,
        "study_storage": trial.storage,
        "job_dir": str(info.output_dir.resolve()),
        "sweep_dir": info.sweep_dir,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "finished_at": None,
        "device": None,
        "threads": None,
        "versions": package_versions(),
        "config": learning_config(cfg),
    }


def run_job(cfg: DictConfig, output_dir: str | Path | None = None) -> float:
    """Train, evaluate and record one configuration; returns ``cfg.objective`` for sweepers."""
    info = job_info(output_dir)
    out = info.output_dir
    trial = OptunaTrial.from_config(cfg)  # this job's Optuna trial; inert outside a search
    try:  # bad knobs and bad data are refused before anything in the job folder changes
        validate(cfg)
        data = load_data(cfg.data, cfg.seed)
        complete_config(cfg.data, data)  # an image folder's classes, a computed mean/std
    except (ConfigError, DatasetError) as e:
        refused(cfg, info, trial, e)
        raise
    config = learning_config(cfg)
    previous = read_results_row(out)
    if previous and learning_config(previous.get("config") or {}) != config:
        # another configuration's results in this folder (a sweep rerun with other values):
        # moved aside inside it, never deleted
        moved = move_job_outputs(out)
        log.warning("%s held the results of another configuration: moved to %s", out, moved)
        previous = None
    if cfg.resume and previous and previous.get("status") == "completed":
        log.info("%s: already completed in %s, skipped (resume=true)", info.run_name, out)
        value = _number(previous.get("objective_value", previous.get(cfg.objective)))
        trial.finish("completed", value)
        return _number(previous.get(cfg.objective))
    trial.start(out)  # heartbeats; a retried Optuna trial brings the dead one's last.pt here
    checkpoint = load_last(out, config) if cfg.resume else None
    clear_job_outputs(out, keep_checkpoint=checkpoint is not None)  # nothing stale survives

    row = new_row(cfg, info, trial)
    started, tb = time.time(), None
    if checkpoint is not None:  # the clock goes on from the time the checkpoint was written
        started -= _elapsed(checkpoint)
        row["started_at"] = checkpoint.get("started_at") or row["started_at"]
    write_results_row(out, row)  # a row from the start: a killed job still shows as "running"
    try:
        device = job_device(cfg.device)
        torch.set_num_threads(resolve_threads(cfg.threads))
        state, recipe, splits = prepare(cfg, data, device)
        row.update(describe(cfg, state, data), device=str(device), threads=torch.get_num_threads())
        if checkpoint is not None:
            state.load_state_dict(checkpoint)
            row.update(resumed_from_epoch=state.epoch)
            summarize(cfg, row, state)
            if state.epoch < cfg.epochs:
                log.info(
                    "resumed at epoch %d of %d from %s", state.epoch + 1, cfg.epochs, out / LAST
                )
            else:  # killed after its last epoch: only the test pass and saving were left
                log.info("resumed after the last epoch (%d) from %s", state.epoch, out / LAST)
        tb = open_tensorboard(cfg, out, info.run_name, state, data, recipe)
        for epoch in range(state.epoch + 1, cfg.epochs + 1):
            run_epoch(cfg, epoch, state, splits, recipe, Sink(out, info, tb, started))
            summarize(cfg, row, state)
            reason = stop_reason(cfg, state, trial, _reported(row, cfg.objective))
            if reason:  # diverged, pruned or stopped early
                end_early(cfg, row, state, trial, reason)
                break
            if cfg.checkpoint.every and epoch % cfg.checkpoint.every == 0:
                save_last(out, state, config, elapsed=time.time() - started,
                          started_at=row["started_at"])  # fmt: skip
        if row["status"] == "running":
            finish(cfg, out, row, state, data, splits, recipe, tb)
    except (KeyboardInterrupt, SystemExit) as e:  # Ctrl-C, a scheduler's signal: continue later
        row.update(
            status="interrupted", error=f"{type(e).__name__} after epoch {row['epochs_run']}"
        )
        raise
    except BaseException as e:  # the row must not stay "running"
        row.update(status="failed", error=f"{type(e).__name__}: {e}".splitlines()[0])
        raise
    finally:
        row.update(run_duration=time.time() - started)
        row.update(finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        returned(cfg, row)
        # the study hears the outcome from the job, while it still beats: a finished trial is
        # never left RUNNING without heartbeats for another worker to fail and rerun
        trial.finish(row["status"], row["objective_value"])
        trial.stop()
        if row["status"] in ("completed", "diverged", "pruned") and not cfg.checkpoint.keep:
            (out / LAST).unlink(missing_ok=True)  # a finished job is never continued
        write_results_row(out, row)
        if tb is not None:
            if row["status"] != "interrupted":  # a continued run writes its own at the end
                tb.log_hparams(hyperparameters(cfg), {f"hparam/{m}": row[m] for m in METRICS})
            tb.close()
        log.info("%s", outcome(row, out))
    return _number(row["objective_value"])


def refused(cfg: DictConfig, info: JobInfo, trial: OptunaTrial, error: Exception) -> None:
    """A job refused by its knobs or its data changes nothing it finds in its folder. In a
    sweep, where the row is what the user sees of a job, it leaves a ``failed`` row, but only
    where there is none yet: an earlier attempt's results are never replaced."""
    trial.finish("failed", None)
    if info.multirun and not (info.output_dir / RESULTS_JSON).exists():
        row = new_row(cfg, info, trial) | {"status": "failed", "objective_from": "failed"}
        write_results_row(info.output_dir, row | {"error": f"{type(error).__name__}: {error}"})


def stop_reason(
    cfg: DictConfig, state: TrainState, trial: OptunaTrial, reported: float | None
) -> str | None:
    """Why the job ends after this epoch, or None: ``diverged`` (its training loss is not
    finite), ``pruned`` (its Optuna trial, told ``reported`` every epoch, is to be stopped;
    never after the last epoch) or ``early`` (the monitor has not improved for ``patience``)."""
    if not math.isfinite(state.epoch_rows[-1]["loss"]):
        return "diverged"
    prune = trial.report(state.epoch, reported)  # every epoch, the last too
    if state.epoch == cfg.epochs:
        return None
    if prune:
        return "pruned"
    return "early" if state.monitor.should_stop else None


def end_early(
    cfg: DictConfig, row: dict[str, Any], state: TrainState, trial: OptunaTrial, reason: str
) -> None:
    """Record why the job stopped before its last epoch; a pruned trial ends PRUNED."""
    epoch, loss = state.epoch, state.epoch_rows[-1]["loss"]
    if reason == "diverged":
        row.update(status="diverged", error=f"training loss became {loss} in epoch {epoch}")
        log.warning("diverged (loss %s) in epoch %d, stopped", loss, epoch)
    elif reason == "pruned":  # a pruned run: no test pass, no model.pt
        trial.prune()
        row.update(status="pruned")
        log.info("pruned after epoch %d (trial %d)", epoch, trial.number)
    else:
        row.update(stopped_early_at=epoch)
        log.info("early stopping after epoch %d: no better %s for %d epochs",
                 epoch, cfg.monitor, state.monitor.bad_epochs)  # fmt: skip


def outcome(row: dict[str, Any], out: Path) -> str:
    """One line a person can act on: what happened, where, and what to run next."""
    out = Path(os.path.relpath(out)) if out.resolve().is_relative_to(Path.cwd()) else out
    if row["status"] == "completed":
        return (f"completed: test acc {row['test_acc']:.4f} in {out}; look at it: "
                f"tensorboard --logdir {out / 'tb'}  |  python predict.py {out}")  # fmt: skip
    return (
        f"{row['status']}: {row['error'] or row['objective_from']}; row in {out / 'results.json'}"
    )


def prepare(cfg: DictConfig, data: Data, device: torch.device) -> tuple[TrainState, Recipe, dict]:
    """Splits on the device, the model, optimizer, schedule, EMA and generators."""
    # channels_last makes these small convolutions markedly faster on the CPU
    memory_format = torch.channels_last if device.type == "cpu" else torch.contiguous_format
    named = {"train": data.train, "val": data.val, "test": data.test}
    splits = {name: split.to(device) for name, split in named.items() if split is not None}
    torch.manual_seed(cfg.seed)
    model = build_model(**model_spec(cfg.model)).to(device, memory_format=memory_format)
    optimizer = build_optimizer(cfg.optimizer, model)
    steps = -(-len(data.train) // cfg.batch_size)
    state = TrainState(
        model=model,
        optimizer=optimizer,
        scheduler=build_scheduler(cfg.scheduler, optimizer, cfg.epochs, steps),
        monitor=Monitor(cfg.monitor, cfg.early_stopping.patience),
        # on the CPU: the same batches and draws on any device
        batch_gen=torch.Generator().manual_seed(cfg.seed),
        aug_gen=torch.Generator().manual_seed(cfg.seed + 1),
        ema=EMA(model, cfg.ema.decay, cfg.ema.every) if cfg.ema.enabled else None,
        scaler=torch.amp.GradScaler(device.type) if cfg.precision == "fp16" else None,
    )
    # the normalised value of a black pixel, per channel: what shifted-in borders show
    mean = torch.tensor(data.mean).float().reshape(-1)
    std = torch.tensor(data.std).float().reshape(-1)
    fill = (-mean / std).to(device)
    recipe = Recipe(
        batch_size=cfg.batch_size,
        shuffle=cfg.shuffle,
        label_smoothing=cfg.label_smoothing,
        augment=build_augment(cfg.augment, fill),
        precision=cfg.precision,
        memory_format=memory_format,
        forward=compile_model(model, device) if cfg.compile else None,
    )
    return state, recipe, splits


def describe(cfg: DictConfig, state: TrainState, data: Data) -> dict[str, Any]:
    """What the row says of the model and data: size, cost per image, classes, skipped files."""
    return {
        "params": count_params(state.model),
        "flops": forward_flops(state.model, cfg.data.in_channels, cfg.data.image_size),
        "class_names": data.class_names,
        "skipped_files": len(data.skipped),
    }


def compile_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``torch.compile``; on CUDA with CUDA graphs (``reduce-overhead``): one graph replay per
    step instead of dozens of kernel launches (each batch shape is captured once)."""
    mode = "reduce-overhead" if device.type == "cuda" else None
    return torch.compile(model, mode=mode, dynamic=False)


def open_tensorboard(
    cfg: DictConfig, out: Path, name: str, state: TrainState, data: Data, recipe: Recipe
) -> TensorBoardRun:
    """The job's TensorBoard run; a resumed job drops events after its checkpoint's epoch."""
    tb = TensorBoardRun(out / "tb" / name, purge_step=state.epoch + 1 if state.epoch else None)
    if state.epoch == 0:
        if cfg.tensorboard.images:
            tb.log_images("images", denormalise(data.train.images[:64], data.mean, data.std))
        if cfg.tensorboard.graph:
            example = data.train.images[:2].to(next(state.model.parameters()).device)
            tb.log_graph(state.model, example.contiguous(memory_format=recipe.memory_format))
    return tb


def evaluate_epoch(cfg: DictConfig, state: TrainState, splits: dict, recipe: Recipe) -> dict:
    """Validation (and, for benchmarks, test) loss and accuracy of the weights being kept."""
    metrics = {}
    for name in ("val", "test") if cfg.test_every_epoch else ("val",):
        if name in splits:  # the test pass as the job's final one would be (TTA too)
            tta = cfg.tta and name == "test"
            loss, acc, _ = evaluate(state.eval_model, splits[name], 1000, recipe.memory_format, tta)
            metrics |= {f"{name}_loss": loss, f"{name}_accuracy": acc}
    return metrics


@dataclass
class Sink:
    """Where an epoch's numbers go: the job folder's epoch rows, TensorBoard and the log."""

    out: Path
    info: JobInfo
    tb: TensorBoardRun
    started: float


def run_epoch(
    cfg: DictConfig, epoch: int, state: TrainState, splits: dict, recipe: Recipe, sink: Sink
) -> None:
    """Train one epoch, validate the kept weights, note the best epoch, record everything."""
    t0 = time.time()
    loss, acc = train_one_epoch(
        state, splits["train"], recipe, f"epoch {epoch}/{cfg.epochs}", cfg.progress
    )
    metrics = {"loss": loss, "accuracy": acc, "lr_now": _lr(state)}
    if math.isfinite(loss):
        metrics |= evaluate_epoch(cfg, state, splits, recipe)
    improved = state.monitor.update(epoch, metrics.get(EPOCH_COLUMN[cfg.monitor]))
    state.keep_if_best(improved, cfg.keep_best)
    state.epoch = epoch
    hp = hyperparameters(cfg)
    state.epoch_rows.append({
        "run": sink.info.job_num, "epoch": epoch, "loss": loss, "accuracy": acc,
        "epoch duration": time.time() - t0, "run duration": time.time() - sink.started,
        **{k: hp[k] for k in EPOCH_HPARAMS}, "val_loss": None, "val_accuracy": None,
        **{k: v for k, v in metrics.items() if k not in ("loss", "accuracy")},
    })  # fmt: skip
    write_epoch_rows(sink.out, state.epoch_rows)
    sink.tb.log_epoch(epoch, {"Loss/train": loss, "Accuracy/train": acc,
                              "Loss/val": metrics.get("val_loss"),
                              "Accuracy/val": metrics.get("val_accuracy"),
                              "Loss/test_epoch": metrics.get("test_loss"),
                              "Accuracy/test_epoch": metrics.get("test_accuracy"),
                              "LearningRate": metrics["lr_now"]})  # fmt: skip
    if cfg.tensorboard.histograms and math.isfinite(loss):
        sink.tb.log_histograms(epoch, state.model)
    log.info("epoch %d/%d  train loss %.4f acc %.4f  val loss %s acc %s  lr %.3g  %.1fs",
             epoch, cfg.epochs, loss, acc, _fmt(metrics.get("val_loss")),
             _fmt(metrics.get("val_accuracy")), metrics["lr_now"], time.time() - t0)  # fmt: skip


def summarize(cfg: DictConfig, row: dict[str, Any], state: TrainState) -> None:
    """The row's metrics: ``train_*``/``val_*`` of the epoch whose weights are kept (the best
    one with keep_best, else the last), ``last_*`` of the last epoch, and which epochs those are."""
    rows = state.epoch_rows
    best = state.monitor.best_epoch
    kept = best if cfg.keep_best and best is not None else len(rows)
    for prefix, epoch_row in (("", rows[kept - 1]), ("last_", rows[-1])):
        for metric, column in (("train_loss", "loss"), ("train_acc", "accuracy"),
                               ("val_loss", "val_loss"), ("val_acc", "val_accuracy")):  # fmt: skip
            row[prefix + metric] = epoch_row[column]
    best_acc = [r["val_accuracy"] for r in rows if r["val_accuracy"] is not None]
    row["epoch_duration"] = sum(r["epoch duration"] for r in rows) / len(rows)
    row.update(metrics_epoch=kept, best_epoch=best, epochs_run=len(rows),
               best_val_acc=max(best_acc) if best_acc else None)  # fmt: skip


def finish(
    cfg: DictConfig,
    out: Path,
    row: dict[str, Any],
    state: TrainState,
    data: Data,
    splits: dict,
    recipe: Recipe,
    tb: TensorBoardRun,
) -> None:
    """Test the kept weights once, save them (``model.pt``) and draw the job's pictures."""
    model = state.eval_model
    if state.best_weights is not None and cfg.keep_best:
        model.load_state_dict(state.best_weights)
    test_loss, test_acc, test_preds = evaluate(
        model, splits["test"], memory_format=recipe.memory_format, tta=cfg.tta
    )
    row.update(test_loss=test_loss, test_acc=test_acc, status="completed")
    tb.log_epoch(state.epoch, {"Loss/test": test_loss, "Accuracy/test": test_acc})
    log.info("test loss %.4f acc %.4f%s", test_loss, test_acc, " (flip TTA)" if cfg.tta else "")
    extra = {
        "data": data_config(cfg),  # predict rebuilds the test split
        "hyperparameters": hyperparameters(cfg),
        "metrics": {m: row[m] for m in METRICS},
        "class_names": data.class_names,
    }
    save_model(out, model, model_spec(cfg.model), extra)
    if cfg.reports:
        # matplotlib and scikit-learn take seconds to import: only when pictures are on
        from cnnsweep.reports import write_job_reports

        order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(cfg.seed))
        pick = order[:20]
        write_job_reports(
            out, model, state.epoch_rows, data.train.images[pick], data.train.labels[pick],
            splits["test"].labels, test_preds, data.class_names, tb, data.mean, data.std,
        )  # fmt: skip


def data_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved data config, its ``root`` made absolute: predict finds the data from
    anywhere, never in (or downloading into) the folder it happens to run in."""
    return absolute_paths(OmegaConf.to_container(cfg.data, resolve=True))


def returned(cfg: DictConfig, row: dict[str, Any]) -> None:
    """What the job hands its sweeper, and where that number comes from, into the row."""
    status = row["status"]
    if status == "completed":
        value = row.get(cfg.objective)
        source = (f"test pass of epoch {row['metrics_epoch']}" if cfg.objective.startswith("test")
                  else f"{'best' if cfg.keep_best and row['best_epoch'] else 'last'} epoch "
                       f"{row['metrics_epoch']}")  # fmt: skip
    elif status == "pruned":
        value = _reported(row, cfg.objective)
        source = f"pruned after epoch {row['epochs_run']} (last reported value)"
    else:
        value, source = None, f"{status}: NaN"
    row.update(objective_value=value, objective_from=source)


def _reported(row: dict[str, Any], objective: str) -> float | None:
    """The per-epoch value a trial reports: the last epoch's (validation twin of a test metric)."""
    metric = reported_metric(objective)
    return row.get(f"last_{metric}", row.get(metric))


def _lr(state: TrainState) -> float:
    return float(state.optimizer.param_groups[0]["lr"])


def _elapsed(checkpoint: dict[str, Any]) -> float:
    """Seconds a checkpointed job had run when its ``last.pt`` was written (older checkpoints:
    the run duration of its last epoch row)."""
    if isinstance(checkpoint.get("elapsed"), (int, float)):
        return float(checkpoint["elapsed"])
    rows = checkpoint.get("epoch_rows") or []
    return float(rows[-1].get("run duration", 0.0)) if rows else 0.0


def _number(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _fmt(value: float | None) -> str:
    """A metric in a log line (``-`` when the epoch has none)."""
    return "-" if value is None else f"{value:.4f}"
