"""Every column of a results row, named once, and what a configuration is.

A job's config mixes two kinds of keys: those that say what the job learns (so what its numbers
mean) and those that only say where or how fast it runs. ``RUNTIME_KEYS`` lists the second kind;
everything else is the first. ``KNOBS`` names the learning knobs a leaderboard shows as columns
and where the config keeps each. The rest of the repo derives from these lists:

- the results row, its HParams entry, the epoch rows;
- resume: a finished job is skipped when its stored ``learning_config`` equals the new one;
- run names: TensorBoard runs are named after the overrides that are not runtime keys;
- the leaderboard: ``config_id`` groups the seeds of one configuration, and its columns.

A new knob is one line in ``KNOBS`` (plus its check in ``cnnsweep.train.validation``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

# budgets (top-level knobs, null: none) and the row column each one caps; see train/budget.py
BUDGETS = {"max_params": "params", "max_flops": "flops", "max_latency_ms": "latency_ms"}

# dotted keys (a key also covers everything below it) that change where or how fast a job runs,
# or what it reports, never what it learns
RUNTIME_KEYS = (
    "device", "threads", "compile", "data_dir", "data.root", "data.download", "data.debian_dir",
    "data.cache_dir", "progress", "resume", "reports", "tensorboard", "checkpoint", "objective",
    "test_every_epoch", "hparams_search", "optuna", "profile", "lr_find", "latency", "logger",
    "reuse_memory",
    *BUDGETS,
)  # fmt: skip

# the learning knobs a leaderboard shows as columns, in this order (the row holds them flat), and
# where the job config keeps each (a dict: consumers iterate it when they run, so a knob added
# here reaches the row, the HParams entry, the aggregate and a job with no usable row alike)
KNOBS = {
    "lr": "lr",
    "batch_size": "batch_size",
    "shuffle": "shuffle",
    "epochs": "epochs",
    "seed": "seed",
    "model": "model.name",
    "width": "model.width",
    "depth": "model.depth",
    "first_depth": "model.first_depth",
    "pool_before_bn": "model.pool_before_bn",
    "first_conv": "model.first_conv",
    "dropout": "model.dropout",
    "data": "data.name",
    "optimizer": "optimizer.name",
    "weight_decay": "optimizer.weight_decay",
    "val_fraction": "data.val_fraction",
    "subset": "data.subset",
    "split_seed": "data.split_seed",
    "folds": "data.folds",
    "fold": "data.fold",  # grouped like seeds: the folds of a configuration are its repeats
    "augment": "augment.name",
    "scheduler": "scheduler.name",
    "label_smoothing": "label_smoothing",
    "ema": "ema.decay",  # null when ema.enabled is false
    "tta": "tta",
    "tta_shift": "tta_shift",
    "patience": "early_stopping.patience",
    "precision": "precision",
    "limit_batches": "limit_batches",
    "overfit_batches": "overfit_batches",
}
DEFAULTS = {"weight_decay": 0.0}  # what a knob a config leaves out means

# what a job measures, and the objectives it may return
METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
           "best_val_acc")  # fmt: skip
# what a model costs (known before training, or measured on the fresh model): a search may
# weigh them against a metric (objective=[val_acc,flops]), and the aggregate's Pareto front does
COSTS = ("flops", "params", "latency_ms")


def objectives(objective: Any) -> list[str]:
    """``objective`` as a list of names: ``val_acc`` -> ``["val_acc"]``; a list stays one. The
    first is the job's own objective (epochs report it, the leaderboard ranks by it)."""
    return [objective] if isinstance(objective, str) else [str(name) for name in list(objective)]


LAST_METRICS = ("last_train_loss", "last_train_acc", "last_val_loss", "last_val_acc")

# the row's columns that start empty and fill as a job runs (the knobs and metrics above too)
ROW_PROGRESS = ("best_epoch", "metrics_epoch", *LAST_METRICS, "epochs_run", "stopped_early_at",
                "resumed_from_epoch")  # fmt: skip
ROW_MODEL = ("params", "flops", "class_names", "skipped_files")
# what the kept model costs at inference on the job's device and threads (latency=true)
ROW_INFERENCE = ("latency_ms", "throughput_ips", "latency_batch", "throughput_batch")


# an epoch row: the seed's RunManager layout, the knobs it repeated, then this repo's columns
EPOCH_LEAD = ("run", "epoch", "loss", "accuracy", "epoch duration", "run duration")
EPOCH_KNOBS = ("lr", "batch_size", "shuffle", "epochs", "seed", "model", "data", "optimizer")
EPOCH_METRICS = ("val_loss", "val_accuracy", "lr_now", "test_loss", "test_accuracy")
# a row metric's epoch-row column (the monitor watches these)
EPOCH_COLUMN = {"train_loss": "loss", "train_acc": "accuracy", "val_loss": "val_loss",
                "val_acc": "val_accuracy"}  # fmt: skip

# what a job's row can say of it, in the order a summary lists them: the job's own statuses
# (``retried``: a dead Optuna trial's folder, continued by another trial; ``infeasible``: over a
# budget, never trained), then the aggregate's
JOB_STATUSES = ("completed", "pruned", "infeasible", "diverged", "failed", "interrupted",
                "retried", "running")  # fmt: skip
STATUSES = (*JOB_STATUSES, "corrupt", "missing")

# a TensorBoard run is a folder named after the run: long enough to read, short enough for any
# file system (a name component may have 255 bytes)
MAX_RUN_NAME = 120


def hyperparameters(config: Any) -> dict[str, Any]:
    """The knobs of a job config (DictConfig or plain dict), as the results row holds them."""
    from omegaconf import OmegaConf

    def select(path: str) -> Any:
        try:
            return OmegaConf.select(config, path, throw_on_resolution_failure=False)
        except Exception:  # an unresolvable interpolation in a stored config
            return None

    if isinstance(config, dict):
        config = OmegaConf.create(config)
    row = {name: select(path) for name, path in KNOBS.items()}
    for name, value in DEFAULTS.items():
        row[name] = value if row[name] is None else row[name]
    if select("ema.enabled") is False:
        row["ema"] = None
    return row


def is_runtime(key: str) -> bool:
    """True for a dotted key that is, or lies under, one of ``RUNTIME_KEYS``."""
    return any(key == r or key.startswith(r + ".") for r in RUNTIME_KEYS)


# knobs added after jobs were run, at the value that means "as before": a configuration that
# leaves them there is the one it was (resume skips its finished job, seeds still group)
NEUTRAL = {
    "data.subset": None,
    "data.split_seed": 0,
    "data.folds": None,
    "data.fold": None,
    "limit_batches": None,
    "overfit_batches": None,
    "model.first_depth": None,
    "model.pool_before_bn": False,
    "model.first_conv": "trained",
    "tta_shift": 0,
}


def _strip(node: Any, prefix: str) -> Any:
    if not isinstance(node, dict):
        return node
    return {
        k: _strip(v, f"{prefix}{k}.")
        for k, v in node.items()
        if not is_runtime(f"{prefix}{k}") and NEUTRAL.get(f"{prefix}{k}", ...) != v
    }


def learning_config(config: Any) -> dict[str, Any]:
    """A job config (DictConfig or plain dict) without its runtime keys, as plain data.

    Two jobs with equal learning configs learn the same thing; a stored row's ``config`` is
    this, and applying it again to a stored config is harmless (older rows kept more keys).
    """
    if not isinstance(config, dict):
        from omegaconf import OmegaConf

        config = OmegaConf.to_container(config, resolve=True)
    return _strip(config, "")


def override_key(override: str) -> str:
    """``++optuna.trial=3`` -> ``optuna.trial``; ``~tta`` -> ``tta``."""
    return override.split("=", 1)[0].lstrip("+~")


def run_name(overrides: Iterable[str]) -> str:
    """The job's name from its command-line overrides: the learning ones, sorted, comma-joined.

    ``batch_size=100,lr=0.01,shuffle=True``-style names as Hydra's ``override_dirname`` makes
    them; ``default`` when only runtime knobs were given.
    """
    kept = sorted(o for o in overrides if not is_runtime(override_key(o)))
    name = ",".join(o.lstrip("+") for o in kept).replace("/", "_") or "default"
    if len(name.encode()) <= MAX_RUN_NAME:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]  # long names stay apart
    head = name.encode()[: MAX_RUN_NAME - 12].decode(errors="ignore")
    return f"{head}...{digest}"


# what tells the repeats of one configuration apart: the seed, and the validation fold
REPEAT_KEYS = ("seed", "data.fold")


def config_id(config: dict[str, Any], without: Iterable[str] = REPEAT_KEYS) -> str:
    """Eight hex digits naming a learning config; ``without`` (dotted) keys left out: by
    default the seed and the fold, so that the repeats of one configuration share an id."""
    key = learning_config(config)
    for name in without:
        *parents, leaf = name.split(".")
        node = key
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    text = json.dumps(key, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:8]
