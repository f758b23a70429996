"""The state a training job carries from epoch to epoch, and its checkpoints.

``TrainState`` is everything the rest of a run depends on: the model and optimizer, the
learning-rate schedule, the EMA weights, the best epoch so far (and its weights), the epoch rows,
and every random generator. ``last.pt`` holds all of it after an epoch, so a killed job continues
exactly where it stopped; ``model.pt`` holds only the weights a finished job kept and what
rebuilds the model. Both are plain tensors and Python values: ``torch.load(...,
weights_only=True)`` reads them without running anything a file says.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnsweep.train.ema import EMA
from cnnsweep.train.monitor import Monitor

log = logging.getLogger(__name__)

LAST = "last.pt"
MODEL = "model.pt"
FORMAT = 1  # of last.pt; a newer one is set aside, not misread


@dataclass
class TrainState:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    monitor: Monitor
    batch_gen: torch.Generator  # the order of the training batches
    aug_gen: torch.Generator  # the augmentation's draws
    ema: EMA | None = None
    scaler: torch.amp.GradScaler | None = None  # fp16 only
    epoch: int = 0  # epochs completed
    best_weights: dict[str, torch.Tensor] | None = None  # keep_best: the best epoch's weights
    epoch_rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are validated, tested and saved: the EMA's when it is on."""
        return self.ema.model if self.ema is not None else self.model

    def keep_if_best(self, improved: bool, keep_best: bool) -> None:
        if improved and keep_best:
            self.best_weights = {
                k: v.detach().clone() for k, v in self.eval_model.state_dict().items()
            }

    def state_dict(self) -> dict[str, Any]:
        cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
        return {
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "monitor": self.monitor.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "best_weights": self.best_weights,
            "epoch_rows": self.epoch_rows,
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if cuda else None,
                "batches": self.batch_gen.get_state(),
                "augment": self.aug_gen.get_state(),
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.monitor.load_state_dict(state["monitor"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.epoch = int(state["epoch"])
        self.best_weights = state["best_weights"]
        self.epoch_rows = list(state["epoch_rows"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        if rng.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.batch_gen.set_state(rng["batches"])
        self.aug_gen.set_state(rng["augment"])


def save_atomic(payload: dict[str, Any], path: Path) -> None:
    """``torch.save`` to a temporary name, then rename: never half a checkpoint."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_last(job_dir: Path, state: TrainState, config: dict[str, Any], **extra: Any) -> None:
    """``last.pt``: the state, the learning config it belongs to, and ``extra`` plain values
    (the job's clock: ``elapsed`` seconds and ``started_at``)."""
    payload = {"format": FORMAT, "config": config, **extra, **state.state_dict()}
    save_atomic(payload, job_dir / LAST)


def set_aside(path: Path, reason: str) -> None:
    """Rename a checkpoint that cannot be used (kept for a look, never read again)."""
    target = path.with_name(f"{path.name}.unusable")
    os.replace(path, target)
    log.warning("%s not resumed (%s); moved to %s, starting over", path, reason, target.name)


def load_last(job_dir: Path, config: dict[str, Any]) -> dict[str, Any] | None:
    """The job's ``last.pt`` when it belongs to ``config``; else None (a bad one set aside)."""
    path = job_dir / LAST
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, foreign, not a torch file at all
        set_aside(path, f"unreadable: {type(e).__name__}")
        return None
    if not isinstance(payload, dict) or "format" not in payload or "epoch" not in payload:
        set_aside(path, "not a cnnsweep training checkpoint")
        return None
    if payload["format"] != FORMAT:
        set_aside(path, f"format {payload['format']!r}, this version reads {FORMAT}")
        return None
    if payload.get("config") != config:
        set_aside(path, "written for another config")
        return None
    return payload


def save_model(
    job_dir: Path, model: nn.Module, spec: dict[str, Any], extra: dict[str, Any]
) -> None:
    """``model.pt``: the kept weights (on the CPU, contiguous), the model spec that rebuilds
    them, and ``extra`` plain data (the data config predict needs, hyperparameters, metrics)."""
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_atomic({"state_dict": weights, "model": spec, **extra}, job_dir / MODEL)
