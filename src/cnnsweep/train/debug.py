"""Debug runs: every split cut to a few batches (``limit_batches``), a few fixed training
batches learnt by heart (``overfit_batches``), a profile of training steps (``profile``): the
knobs behind ``debug=fast|limit|overfit|profile``.

``limit_batches``: an integer keeps that many batches (``batch_size`` images) of every split; a
number below 1 keeps that fraction of every split's images. ``overfit_batches``: the training
split is its first N batches, the same every epoch, and the job stops once its training accuracy
on them is 100%, or says at its last epoch that it never got there: a model or recipe that
cannot learn a few hundred images will not learn sixty thousand. ``profile``: ``torch.profiler``
over training steps 4-8 (one to skip, two to warm up, five recorded) writes ``profile.json`` (a
Chrome trace: chrome://tracing or https://ui.perfetto.dev) and ``profile.txt`` (the operators
that took the most time) to the job folder.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from cnnsweep.data.types import Split
from cnnsweep.files import atomic_path, atomic_write

log = logging.getLogger(__name__)


def _head(split: Split, n: int) -> Split:
    return Split(split.images[:n], split.labels[:n])


def limited(cfg: Any, splits: dict[str, Split]) -> dict[str, Split]:
    """``splits`` cut as ``limit_batches`` and ``overfit_batches`` say (unchanged when null)."""
    out = dict(splits)
    limit = cfg.get("limit_batches")
    if limit is not None:
        for name, split in splits.items():
            n = int(limit) * cfg.batch_size if limit >= 1 else max(1, round(len(split) * limit))
            out[name] = _head(split, n)
    if cfg.get("overfit_batches"):
        out["train"] = _head(splits["train"], int(cfg.overfit_batches) * cfg.batch_size)
    return out


def overfit_verdict(cfg: Any, epoch: int, train_acc: float) -> str | None:
    """``overfit`` once the fixed batches are learnt (the job stops there); at the last epoch
    without that, a warning that says so."""
    if not cfg.get("overfit_batches"):
        return None
    if train_acc >= 1.0:
        return "overfit"
    if epoch == cfg.epochs:
        log.warning(
            "did not overfit: %.1f%% training accuracy on %d fixed batches after %d epochs; "
            "a model and recipe that learn reach 100%% (try more epochs, another lr, or look "
            "for a bug)", 100 * train_acc, cfg.overfit_batches, epoch,
        )  # fmt: skip
    return None


PROFILE_STEPS = {"wait": 1, "warmup": 2, "active": 5}


@contextmanager
def profiling(enabled: bool, recipe: Any, out: Path) -> Iterator[None]:
    """Profile the training steps run inside (the recipe calls the profiler after each)."""
    if not enabled:
        yield
        return
    from torch.profiler import ProfilerActivity, profile, schedule

    skipped = PROFILE_STEPS["wait"] + PROFILE_STEPS["warmup"]

    def write(prof: Any) -> None:  # at the end of the recorded steps, or at exit if sooner
        recorded = min(prof.step_num - skipped, PROFILE_STEPS["active"])
        if recorded <= 0:
            return
        tmp = atomic_path(out / "profile.json")
        prof.export_chrome_trace(str(tmp))
        tmp.replace(out / "profile.json")
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
        atomic_write(out / "profile.txt", table + "\n")
        log.info("profile of %d training steps: %s, %s", recorded, out / "profile.txt",
                 out / "profile.json")  # fmt: skip

    activities = [ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(ProfilerActivity.CUDA)
    steps = schedule(**PROFILE_STEPS, repeat=1)
    with profile(activities=activities, schedule=steps, on_trace_ready=write) as prof:
        recipe.after_step = prof.step
        try:
            yield
        finally:
            recipe.after_step = None
    if prof.step_num <= skipped:
        log.warning("no profile: the job ran %d training step(s); the profile starts at step %d",
                    prof.step_num, skipped + 1)  # fmt: skip
