"""What the kept model costs at inference, measured where the job ran (``latency=true``).

After the test pass, the model the job keeps (the best epoch's, EMA's if kept) runs in eval mode
on random images of the data's shape, on the job's device and threads, in the job's memory
format: milliseconds per image at batch 1 (``latency_ms``) and images per second at batch 256
(``throughput_ips``), each the median of repeated timed runs after warm-up. About a second on
these 2 cores; ``latency=false`` skips it (benchmarks that time jobs).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

LATENCY_BATCH, THROUGHPUT_BATCH = 1, 256
WARMUP, REPEATS = 3, 7  # untimed runs first (allocations, lazy init), then the timed ones
CALLS_PER_REPEAT = {LATENCY_BATCH: 10, THROUGHPUT_BATCH: 1}  # a batch-1 call is ~0.1 ms


@torch.no_grad()
def inference_speed(
    model: torch.nn.Module,
    image_shape: tuple[int, int, int],
    device: torch.device,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> dict[str, Any]:
    """The row's inference columns for ``model`` on images of ``image_shape`` (C, H, W)."""
    model.eval()
    seconds = {}
    for batch in (LATENCY_BATCH, THROUGHPUT_BATCH):
        images = torch.randn(batch, *image_shape, device=device)
        images = images.contiguous(memory_format=memory_format)
        seconds[batch] = seconds_per_call(lambda: model(images), batch, device)  # noqa: B023
    return {
        "latency_ms": 1000 * seconds[LATENCY_BATCH] / LATENCY_BATCH,
        "throughput_ips": THROUGHPUT_BATCH / seconds[THROUGHPUT_BATCH],
        "latency_batch": LATENCY_BATCH,
        "throughput_batch": THROUGHPUT_BATCH,
    }


def seconds_per_call(run: Callable[[], object], batch: int, device: torch.device) -> float:
    """The median seconds ``run()`` takes: ``WARMUP`` untimed calls, then ``REPEATS`` timed
    repeats of ``CALLS_PER_REPEAT`` calls (batch 1: ten, so the clock's resolution is no issue)."""
    calls = CALLS_PER_REPEAT.get(batch, 1)
    for _ in range(WARMUP):
        run()
    timings = []
    for _ in range(REPEATS):
        _sync(device)
        start = time.perf_counter()
        for _ in range(calls):
            run()
        _sync(device)
        timings.append((time.perf_counter() - start) / calls)
    return statistics.median(timings)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
