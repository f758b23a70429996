"""How a job runs on the CPU: freed memory kept in the process for the next step."""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

import cnnsweep.train.runtime as runtime
from cnnsweep.train.job import run_job

# a 64 MiB buffer allocated, filled and freed again and again, as a step's largest buffer is;
# the faults of each round printed
PROBE = """
import resource, sys, torch
from cnnsweep.train.runtime import reuse_freed_memory
if sys.argv[1] == "on":
    assert reuse_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):  # the heap settles around the first blocks
    torch.empty(16 << 20).fill_(1)
counts = []
for _ in range(9):
    before = faults()
    torch.empty(16 << 20).fill_(1)
    counts.append(faults() - before)
print(*counts)
"""


def page_faults(mode: str) -> float:
    """The median round's page faults: a round where the heap still grows now and then (the
    small blocks around the big one land elsewhere) does not count."""
    proc = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return statistics.median(int(n) for n in proc.stdout.split())


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_freed_buffers_are_reused_without_page_faults() -> None:
    """Without it glibc hands a freed 64 MiB block back to the OS and faults the next one in
    page by page; with it the next allocation takes the same memory again."""
    system, kept = page_faults("off"), page_faults("on")
    assert system >= 30  # at least one fault per 2 MiB page, every round
    assert kept * 10 < system


@pytest.mark.parametrize("reuse", [True, False])
def test_the_job_applies_reuse_memory(compose_cfg, tmp_path: Path, monkeypatch, reuse) -> None:
    calls = []
    monkeypatch.setattr(runtime, "reuse_freed_memory", lambda: calls.append(1) or True)
    cfg = compose_cfg([f"reuse_memory={str(reuse).lower()}", "reports=false", "epochs=1"])
    run_job(cfg, output_dir=tmp_path)
    assert len(calls) == int(reuse)
    row = json.loads((tmp_path / "results.json").read_text())
    assert row["status"] == "completed" and "reuse_memory" not in row  # how, not what, it learns
