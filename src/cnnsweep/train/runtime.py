"""Where and how fast a job runs: device, CPU threads, numeric precision, compilation."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig

from cnnsweep.train.liveness import live_jobs

PRECISIONS = ("fp32", "bf16", "fp16")


class ConfigError(ValueError):
    """A config value that is not allowed; the message names the value and what is allowed."""


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


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


def job_device(name: str) -> torch.device:
    """The job's device; with several GPUs, parallel jobs of a sweep spread over them.

    ``auto`` and a bare ``cuda`` give job ``n`` of a joblib/submitit sweep GPU ``n % count``.
    """
    device = resolve_device(name)
    if device.type == "cuda" and device.index is None and name in ("auto", "cuda"):
        count = torch.cuda.device_count()
        num = int(HydraConfig.get().job.get("num") or 0) if HydraConfig.initialized() else 0
        device = torch.device("cuda", num % count if count > 1 else 0)
    return device


def _sweep_size() -> int | None:
    """How many jobs the sweep launches together, when Hydra's config tells it."""
    hc = HydraConfig.get()
    sweeper = hc.sweeper
    if sweeper.get("n_jobs"):  # the Optuna sweeper: trials asked and launched together
        return int(sweeper.n_jobs)
    try:  # the basic sweeper: the product of the swept value lists in multirun.yaml
        from hydra.core.override_parser.overrides_parser import OverridesParser
        from omegaconf import OmegaConf

        saved = OmegaConf.load(Path(hc.sweep.dir) / "multirun.yaml")
        size = 1
        for override in OverridesParser.create().parse_overrides(list(saved.hydra.overrides.task)):
            if override.is_sweep_override():
                size *= len(list(override.sweep_string_iterator()))
        batch = sweeper.get("max_batch_size")
        return min(size, batch) if batch else size
    except Exception:  # no multirun.yaml (a test), an interval sweep: unknown
        return None


def resolve_threads(threads: int | str) -> int:
    """``auto``: all cores, divided between the jobs a parallel launcher runs at once (the
    launcher's ``n_jobs``, at most the jobs the sweep has); a submitit job gets its
    ``cpus_per_task``. Jobs already running on this host (another worker of the same study,
    another sweep) count too."""
    if threads == "auto":
        parallel = 1
        if HydraConfig.initialized():
            launcher = HydraConfig.get().launcher
            target = str(launcher.get("_target_", ""))
            if "submitit" in target and launcher.get("cpus_per_task"):
                return int(launcher.cpus_per_task)
            if "joblib" in target:
                n_jobs = launcher.get("n_jobs") or 1
                parallel = cpu_count() if n_jobs < 0 else n_jobs
                parallel = min(parallel, _sweep_size() or parallel)
        # and between the jobs running on this host now: other workers, other shells
        return max(1, cpu_count() // max(parallel, live_jobs()))
    if isinstance(threads, int) and not isinstance(threads, bool) and threads > 0:
        return threads
    raise ConfigError(f"threads={threads!r} is not allowed: use auto or an integer > 0")


# glibc's malloc gives a freed block over its mmap threshold (at most 32 MiB by default) back to
# the OS, and the next step's block of the same size is faulted in again, page by page, zeroed.
# The seed network at batch 1000 paid 8,000 page faults a step that way (its first conv's 57 MB
# buffer), a third of the step; kept in the process, the same step is bit for bit the same.
REUSE_BYTES = 1 << 30
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)


def reuse_freed_memory() -> bool:
    """Keep freed blocks of up to 1 GiB in this process for the next allocation instead of
    returning them to the OS (glibc's ``mallopt``); False where the C library has no such knob
    (macOS, musl). A process-wide setting: it stays for the process's later jobs."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # older glibc caps the mmap threshold at 32 MiB: then the largest it takes
    mmap_ok = mallopt(M_MMAP_THRESHOLD, REUSE_BYTES) or mallopt(M_MMAP_THRESHOLD, 32 << 20)
    return bool(mmap_ok) and bool(mallopt(M_TRIM_THRESHOLD, REUSE_BYTES))


def set_cpu_runtime(cfg: Any) -> int:
    """Apply the job config's CPU settings: torch's thread count (``threads``, see
    ``resolve_threads``) and ``reuse_memory`` (``reuse_freed_memory``); returns the count."""
    count = resolve_threads(cfg.threads)
    torch.set_num_threads(count)
    if cfg.get("reuse_memory", True):
        reuse_freed_memory()
    return count


def cpu_has_bf16() -> bool:
    """Native bf16 on this CPU (AVX-512 BF16 or AMX); without it bf16 autocast is slow."""
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def check_precision(precision: Any, device: torch.device) -> None:
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r} is not allowed: use one of {list(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"precision=fp16 is not allowed on {device.type}: it needs a CUDA GPU")
    if precision == "bf16" and device.type == "cpu" and not cpu_has_bf16():
        raise ConfigError(
            "precision=bf16 is not allowed on this CPU: it has no native bf16 (AVX-512 BF16/AMX), "
            "where bf16 autocast is much slower than fp32; use fp32"
        )


def autocast(precision: str, device: torch.device) -> Any:
    """The forward pass's autocast context (a no-op for fp32)."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)
