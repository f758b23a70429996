"""The training job, as a story: config -> data and model -> epochs -> test -> saved weights.

Read ``run_job`` top to bottom: it checks the config and the data, skips a job that already
completed, continues one that was stopped (``last.pt``) or clears what an earlier attempt left,
trains epoch by epoch (validation, best epoch, checkpoint, pruning, early stopping), then tests
and saves the weights it kept. The state it carries is one ``TrainState``; everything it says
about itself (rows, TensorBoard, log lines, its status) goes through its ``JobRecord``.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from cnnsweep.data.load import absolute_paths, complete_config, load_data
from cnnsweep.data.types import Data, DatasetError, Split
from cnnsweep.files import (
    RESULTS_JSON,
    clear_job_outputs,
    move_job_outputs,
    read_results_row,
    write_results_row,
)
from cnnsweep.models import build_model, count_params, forward_flops, model_spec
from cnnsweep.schema import EPOCH_COLUMN, hyperparameters, learning_config, objectives
from cnnsweep.sweep.trial import OptunaTrial
from cnnsweep.train.augment import build_augment
from cnnsweep.train.budget import within_budgets
from cnnsweep.train.debug import limited, overfit_verdict, profiling
from cnnsweep.train.ema import EMA
from cnnsweep.train.folds import cross_validate
from cnnsweep.train.latency import inference_speed
from cnnsweep.train.loop import Recipe, evaluate, train_one_epoch
from cnnsweep.train.monitor import Monitor
from cnnsweep.train.record import JobInfo, JobRecord, job_info, refused_row
from cnnsweep.train.rerun import continued, remove_fresh_folder
from cnnsweep.train.runtime import ConfigError, job_device, set_cpu_runtime
from cnnsweep.train.schedule import build_scheduler
from cnnsweep.train.state import LAST, TrainState, load_last, save_model
from cnnsweep.train.validation import validate
from cnnsweep.train.whitening import whiten_first_conv

log = logging.getLogger(__name__)

__all__ = ["ConfigError", "run_job", "validate", "hyperparameters", "build_optimizer"]

FINISHED = ("completed", "diverged", "pruned")  # a finished job is never continued


def run_job(cfg: DictConfig, output_dir: str | Path | None = None) -> float | list[float]:
    """Train, evaluate and record one configuration; returns ``cfg.objective`` for sweepers."""
    if cfg.data.get("fold") == "all":  # k-fold cross-validation: K jobs, their mean returned
        return cross_validate(cfg, output_dir, run_job)
    info = job_info(output_dir)
    trial = OptunaTrial.from_config(cfg)  # this job's Optuna trial; inert outside a search
    try:  # bad knobs and bad data are refused before anything in the job folder changes
        validate(cfg)
        data = load_data(cfg.data, cfg.seed)
        complete_config(cfg.data, data)  # an image folder's classes, a computed mean/std
    except (ConfigError, DatasetError) as e:
        refused(cfg, info, trial, e)
        raise
    config = learning_config(cfg)
    info = continued(cfg, info, config)  # the same command again continues a stopped job
    out = info.output_dir
    done = completed_here(cfg, info, config)  # another configuration's results: moved aside
    if done is not None:  # resume=true and this configuration completed here: skipped
        trial.finish("completed", _number(done.get("objective_value")))
        return returned(cfg, done)
    trial.start(out)  # heartbeats; a retried Optuna trial brings the dead one's last.pt here
    checkpoint = load_last(out, config) if cfg.resume else None
    clear_job_outputs(out, keep_checkpoint=checkpoint is not None)  # nothing stale survives

    record = JobRecord(cfg, info, trial, checkpoint)  # its row says "running" from now on
    with record.running():  # a failure or an interrupt leaves a row that says so
        device = job_device(cfg.device)
        set_cpu_runtime(cfg)
        state, recipe, splits = prepare(cfg, data, device)
        if checkpoint is not None:
            state.load_state_dict(checkpoint)
        record.started(state, data, recipe, describe(cfg, state, data, device))
        if not within_budgets(cfg, record, lambda: inference(cfg, state.model, recipe, device)):
            return math.nan  # over a budget: infeasible, nothing trained
        with profiling(cfg.get("profile", False), recipe, out):  # debug=profile
            for epoch in range(state.epoch + 1, cfg.epochs + 1):
                metrics = train_epoch(cfg, epoch, state, splits, recipe)
                record.epoch_done(state, metrics)
                reason = stop_reason(cfg, state, trial, record.reported())
                if reason:  # diverged, pruned or stopped early
                    record.ended_early(reason, state)
                    break
                if cfg.checkpoint.every and epoch % cfg.checkpoint.every == 0:
                    record.checkpoint(state, config)
        if record.status == "running":  # test the weights it kept, save them, draw them
            model, (test_loss, test_acc, predictions) = test_kept_weights(
                cfg, state, splits, recipe
            )
            record.tested(state, test_loss, test_acc, inference(cfg, model, recipe, device))
            save_outputs(cfg, record, model, state, data, splits["test"], predictions)
    if record.status in FINISHED and not cfg.checkpoint.keep:
        (out / LAST).unlink(missing_ok=True)
    return returned(cfg, record.row)


def returned(cfg: DictConfig, row: dict[str, Any]) -> float | list[float]:
    """What the job hands its sweeper: the objective's value (a pruned job's last reported
    one), or with several objectives one value each (NaN for a job that did not complete)."""
    names = objectives(cfg.objective)
    if row.get("status") == "completed":
        values = [_number(row.get(name)) for name in names]
    else:
        values = [_number(row.get("objective_value"))] + [math.nan] * (len(names) - 1)
    return values[0] if len(names) == 1 else values


def refused(cfg: DictConfig, info: JobInfo, trial: OptunaTrial, error: Exception) -> None:
    """A job refused by its knobs or its data changes nothing it finds in its folder. In a
    sweep, where the row is what the user sees of a job, it leaves a ``failed`` row, but only
    where there is none yet: an earlier attempt's results are never replaced."""
    trial.finish("failed", None)
    if info.multirun and not (info.output_dir / RESULTS_JSON).exists():
        write_results_row(info.output_dir, refused_row(cfg, info, trial, error))
    remove_fresh_folder(info)  # a single run: the folder Hydra made for it, if only Hydra's


def completed_here(cfg: DictConfig, info: JobInfo, config: dict) -> dict[str, Any] | None:
    """The folder's row when this configuration completed in it already and ``resume`` is on.
    Another configuration's results found there are moved aside, never deleted."""
    out, previous = info.output_dir, read_results_row(info.output_dir)
    if previous and learning_config(previous.get("config") or {}) != config:
        moved = move_job_outputs(out)  # a sweep rerun with other values in the same folder
        log.warning("%s held the results of another configuration: moved to %s", out, moved)
        return None
    if cfg.resume and previous and previous.get("status") == "completed":
        log.info("%s: already completed in %s, skipped (resume=true)", info.run_name, out)
        return previous
    return None


def train_epoch(
    cfg: DictConfig, epoch: int, state: TrainState, splits: dict[str, Split], recipe: Recipe
) -> dict[str, float]:
    """Train one epoch, validate the weights being kept, note the best epoch; returns the
    epoch's numbers (``seconds`` it took among them) and writes nothing."""
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
    return metrics | {"seconds": time.time() - t0}


def stop_reason(
    cfg: DictConfig, state: TrainState, trial: OptunaTrial, reported: float | None
) -> str | None:
    """Why the job ends after this epoch, or None: ``diverged`` (its training loss is not
    finite), ``overfit`` (``overfit_batches`` learnt), ``pruned`` (its Optuna trial, told
    ``reported`` every epoch, is to be stopped; never after the last epoch) or ``early`` (the
    monitor has not improved for ``patience``)."""
    if not math.isfinite(state.epoch_rows[-1]["loss"]):
        return "diverged"
    if overfit_verdict(cfg, state.epoch, state.epoch_rows[-1]["accuracy"]):
        return "overfit"  # debug=overfit: the fixed batches are learnt
    prune = trial.report(state.epoch, reported)  # every epoch, the last too
    if state.epoch == cfg.epochs:
        return None
    if prune:
        return "pruned"
    return "early" if state.monitor.should_stop else None


def evaluate_epoch(cfg: DictConfig, state: TrainState, splits: dict, recipe: Recipe) -> dict:
    """Validation (and, for benchmarks, test) loss and accuracy of the weights being kept."""
    metrics = {}
    for name in ("val", "test") if cfg.test_every_epoch else ("val",):
        if name in splits:  # the test pass as the job's final one would be (TTA too)
            views = tta_args(cfg) if name == "test" else {}
            loss, acc, _ = evaluate(
                state.eval_model, splits[name], memory_format=recipe.memory_format, **views
            )
            metrics |= {f"{name}_loss": loss, f"{name}_accuracy": acc}
    return metrics


def test_kept_weights(
    cfg: DictConfig, state: TrainState, splits: dict[str, Split], recipe: Recipe
) -> tuple[torch.nn.Module, tuple[float, float, torch.Tensor]]:
    """The weights the job keeps (the best epoch's with keep_best; EMA's when on), and their one
    test pass: loss, accuracy, predictions."""
    model = state.eval_model
    if state.best_weights is not None and cfg.keep_best:
        model.load_state_dict(state.best_weights)
    views = tta_args(cfg)
    return model, evaluate(model, splits["test"], memory_format=recipe.memory_format, **views)


def tta_args(cfg: DictConfig) -> dict[str, Any]:
    """``evaluate``'s TTA arguments for a test pass (validation passes take none)."""
    return {"tta": cfg.tta, "tta_shift": cfg.tta_shift}


def inference(
    cfg: DictConfig, model: torch.nn.Module, recipe: Recipe, device: torch.device
) -> dict[str, Any]:
    """The kept model's latency and throughput columns (none with ``latency=false``, unless a
    latency budget or objective needs them)."""
    needed = cfg.get("max_latency_ms") is not None or "latency_ms" in objectives(cfg.objective)
    if not cfg.get("latency", True) and not needed:
        return {}
    shape = (cfg.data.in_channels, cfg.data.image_size, cfg.data.image_size)
    return inference_speed(model, shape, device, recipe.memory_format)


def save_outputs(
    cfg: DictConfig,
    record: JobRecord,
    model: torch.nn.Module,
    state: TrainState,
    data: Data,
    test: Split,
    predictions: torch.Tensor,
) -> None:
    """``model.pt`` (the kept weights and what rebuilds them) and the job's pictures."""
    extra = {
        "data": data_config(cfg),  # predict rebuilds the test split
        "hyperparameters": hyperparameters(cfg),
        "metrics": record.metrics(),
        "class_names": data.class_names,
    }
    save_model(record.out, model, model_spec(cfg.model), extra)
    if cfg.reports:
        # matplotlib and scikit-learn take seconds to import: only when pictures are on
        from cnnsweep.reports import write_job_reports

        order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(cfg.seed))
        pick = order[:20]
        write_job_reports(
            record.out, model, state.epoch_rows, data.train.images[pick],
            data.train.labels[pick], test.labels, predictions, data.class_names, record.tb,
            data.mean, data.std,
        )  # fmt: skip


def prepare(cfg: DictConfig, data: Data, device: torch.device) -> tuple[TrainState, Recipe, dict]:
    """Splits on the device, the model, optimizer, schedule, EMA and generators."""
    # channels_last makes these small convolutions markedly faster on the CPU
    memory_format = torch.channels_last if device.type == "cpu" else torch.contiguous_format
    named = {"train": data.train, "val": data.val, "test": data.test}
    splits = {name: split.to(device) for name, split in named.items() if split is not None}
    splits = limited(cfg, splits)  # debug runs: a few batches
    torch.manual_seed(cfg.seed)
    model = build_model(**model_spec(cfg.model)).to(device, memory_format=memory_format)
    if cfg.model.get("first_conv", "trained") == "whitened":  # fixed, never trained
        whiten_first_conv(model, splits["train"].images)
    optimizer = build_optimizer(cfg.optimizer, model)
    steps = -(-len(splits["train"]) // cfg.batch_size)
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


def describe(
    cfg: DictConfig, state: TrainState, data: Data, device: torch.device
) -> dict[str, Any]:
    """What the row says of the model, data and machine: size, cost per image, classes, skipped
    files, device and threads."""
    return {
        "params": count_params(state.model),
        "flops": forward_flops(state.model, cfg.data.in_channels, cfg.data.image_size),
        "class_names": data.class_names,
        "skipped_files": len(data.skipped),
        "device": str(device),
        "threads": torch.get_num_threads(),
    }


def compile_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``torch.compile``; on CUDA with CUDA graphs (``reduce-overhead``): one graph replay per
    step instead of dozens of kernel launches (each batch shape is captured once)."""
    mode = "reduce-overhead" if device.type == "cuda" else None
    return torch.compile(model, mode=mode, dynamic=False)


def data_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved data config, its ``root`` made absolute: predict finds the data from
    anywhere, never in (or downloading into) the folder it happens to run in."""
    return absolute_paths(OmegaConf.to_container(cfg.data, resolve=True))


def _lr(state: TrainState) -> float:
    return float(state.optimizer.param_groups[0]["lr"])


def _number(value: Any) -> float:
    return float("nan") if value is None else float(value)
