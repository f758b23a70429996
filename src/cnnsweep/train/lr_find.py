"""The learning-rate range test (``lr_find=true``): a first learning rate that is not a guess.

The configured model, optimizer, augmentation and data train for at most one epoch
(``LR_FIND_STEPS`` batches) while the learning rate grows exponentially from ``MIN_LR`` to
``MAX_LR``; the test stops early once the loss has clearly diverged. The loss is smoothed (an
exponential moving average, debiased) and the suggestion is the rule fastai's ``lr_min`` uses:
**the learning rate at the smoothed loss's minimum, divided by 10**, a rate where the loss
still falls fast but is an order of magnitude away from where training blows up. The steepest
descent (Lightning's rule) is written beside it. Nothing is trained beyond the test, and no row
is written: ``lr_find.png`` and ``lr_find.json`` go to the job folder.
"""

from __future__ import annotations

import io
import json
import logging
import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from cnnsweep.data.load import complete_config, load_data
from cnnsweep.data.splits import iterate_batches
from cnnsweep.data.types import DatasetError
from cnnsweep.files import LR_FIND_JSON, atomic_write
from cnnsweep.train.loop import train_step
from cnnsweep.train.record import job_info
from cnnsweep.train.rerun import remove_fresh_folder
from cnnsweep.train.runtime import ConfigError, job_device, set_cpu_runtime
from cnnsweep.train.validation import validate

log = logging.getLogger(__name__)

MIN_LR, MAX_LR = 1e-7, 10.0  # the range: wide enough for Adam (~1e-3) and SGD (~0.1) alike
LR_FIND_STEPS = 100  # or one epoch's batches, if fewer
SMOOTHING = 0.9  # EMA of the loss: ~10 steps (under a decade of lr) of memory
DIVERGED = 4.0  # stop once the smoothed loss is this many times its minimum


def find_lr(cfg: DictConfig, output_dir: str | Path | None = None) -> float:
    """Run the range test for ``cfg``; write ``lr_find.json`` and ``lr_find.png``, print the
    suggestion and the command that uses it; returns the suggested learning rate."""
    from cnnsweep.train.job import prepare  # the job's own model, optimizer and recipe

    info = job_info(output_dir)
    try:
        validate(cfg)
        data = load_data(cfg.data, cfg.seed)
        complete_config(cfg.data, data)
    except (ConfigError, DatasetError):
        remove_fresh_folder(info)  # a refused run leaves nothing, as a refused job
        raise
    device = job_device(cfg.device)
    set_cpu_runtime(cfg)
    state, recipe, splits = prepare(cfg, data, device)
    lrs, losses = range_test(state, recipe, splits["train"])
    result = {**suggest(lrs, losses), "model": cfg.model.name, "optimizer": cfg.optimizer.name,
              "batch_size": cfg.batch_size, "steps": len(lrs)}  # fmt: skip
    out = info.output_dir
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / LR_FIND_JSON, json.dumps(result, indent=1))
    plot_range_test(result, out / "lr_find.png")
    command = " ".join(
        ["python train.py"]
        + [o for o in info.overrides if o.split("=")[0].lstrip("+~") not in ("lr", "lr_find")]
        + [f"lr={result['suggested_lr']:.2g}"]
    )
    print(
        f"suggested lr {result['suggested_lr']:.2g} (the smoothed loss is lowest at "
        f"{result['loss_min_lr']:.2g}; a tenth of that), {len(lrs)} steps from {MIN_LR:g} to "
        f"{lrs[-1]:.2g}\n  {out / 'lr_find.png'}\n  train with it: {command}"
    )
    return result["suggested_lr"]


def range_test(state: Any, recipe: Any, train: Any) -> tuple[list[float], list[float]]:
    """Learning rates and the loss of each step, stopped where the loss diverged."""
    steps = min(LR_FIND_STEPS, -(-len(train) // recipe.batch_size))
    grow = (MAX_LR / MIN_LR) ** (1 / max(1, steps - 1))
    lrs: list[float] = []
    losses: list[float] = []
    avg, lowest = 0.0, math.inf  # the smoothed loss as it goes (``smoothed`` is its record)
    state.model.train()
    batches = iterate_batches(train, recipe.batch_size, recipe.shuffle, state.batch_gen)
    for step, (images, labels) in zip(range(steps), batches, strict=False):
        lr = MIN_LR * grow**step
        for group in state.optimizer.param_groups:
            group["lr"] = lr
        loss, _ = train_step(state, recipe, images, labels)
        lrs.append(lr)
        losses.append(float(loss))
        if not math.isfinite(losses[-1]):
            break
        avg = SMOOTHING * avg + (1 - SMOOTHING) * losses[-1]
        now = avg / (1 - SMOOTHING ** len(losses))
        lowest = min(lowest, now)
        if now > DIVERGED * lowest:
            break
    return lrs, losses


def smoothed(losses: list[float]) -> list[float]:
    """The debiased exponential moving average of ``losses`` (non-finite values end it)."""
    out, avg = [], 0.0
    for i, loss in enumerate(losses, 1):
        if not math.isfinite(loss):
            break
        avg = SMOOTHING * avg + (1 - SMOOTHING) * loss
        out.append(avg / (1 - SMOOTHING**i))
    return out


def suggest(lrs: list[float], losses: list[float]) -> dict[str, Any]:
    """The suggestion (the minimum of the smoothed loss, divided by 10), the steepest descent,
    and the curve."""
    smooth = smoothed(losses)
    low = min(range(len(smooth)), key=smooth.__getitem__)
    logs = [math.log10(lr) for lr in lrs[: len(smooth)]]
    slopes = [(smooth[i + 1] - smooth[i]) / (logs[i + 1] - logs[i]) for i in range(low)]
    steep = min(range(len(slopes)), key=slopes.__getitem__) if slopes else low
    return {
        "suggested_lr": lrs[low] / 10,
        "rule": "lr at the smoothed loss's minimum / 10",
        "loss_min_lr": lrs[low],
        "steepest_lr": lrs[steep],
        "min_lr": lrs[0],
        "max_lr": lrs[-1],
        "smoothing": SMOOTHING,
        "lr": lrs,
        "loss": losses,
        "smoothed_loss": smooth,
    }


def plot_range_test(result: dict[str, Any], path: Path) -> None:
    """Smoothed loss against learning rate (log axis), the suggestion marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lrs, smooth = result["lr"][: len(result["smoothed_loss"])], result["smoothed_loss"]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(result["lr"], result["loss"], color="0.8", lw=0.8, label="loss per step")
    ax.plot(lrs, smooth, color="C0", label=f"smoothed (EMA {result['smoothing']})")
    ax.axvline(result["suggested_lr"], color="C3", ls="--",
               label=f"suggested lr {result['suggested_lr']:.2g}")  # fmt: skip
    ax.axvline(result["loss_min_lr"], color="0.5", ls=":", label="lowest smoothed loss")
    top = max(smooth[0] * 1.5, min(smooth) * 2)
    ax.set(xscale="log", xlabel="learning rate", ylabel="training loss", ylim=(0, top),
           title=f"lr range test: {result['model']}, {result['optimizer']}, "
                 f"batch {result['batch_size']}")  # fmt: skip
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write(path, buffer.getvalue())
