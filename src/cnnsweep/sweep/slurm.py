"""``hydra/launcher=slurm``: the submitit launcher, with a watch on the jobs it submitted.

The plugin submits the sweep as a Slurm job array and waits for the results in silence. A job
that can never start (it asks for more CPUs or memory than any node of the partition has: Slurm
says ``PartitionConfig``) then waits forever. This launcher looks at the array with ``squeue``
while it waits: a job pending for a reason that means it can never run is cancelled with one
line saying why and what to change (exit code 2). Ctrl-C cancels what the sweep submitted.
submitit's warning on every failed ``sacct`` call (a cluster without accounting) is said once.
"""

from __future__ import annotations

import _thread
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

log = logging.getLogger(__name__)

# squeue reasons of a pending job that no waiting resolves
NEVER = {
    "PartitionConfig": "it asks for more CPUs, memory or GPUs than the partition's nodes have",
    "PartitionNodeLimit": "it asks for more nodes than the partition allows",
    "PartitionTimeLimit": "its time limit is above the partition's",
    "BadConstraints": "no node has the features it asks for",
    "InvalidAccount": "the account does not exist",
    "InvalidQOS": "the QOS does not exist",
    "ReqNodeNotAvail": "the nodes it needs are down or drained",
}
FIRST_LOOK_S = 5
LOOK_EVERY_S = 10


class NeverStarts(Exception):
    """Raised in the launcher's thread once the watch has cancelled jobs that can never run."""


def _woken(signum: int, frame: Any) -> None:
    raise NeverStarts


class OnceFilter(logging.Filter):
    """Let submitit's "Bypassing sacct error" warning through once per process."""

    seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        if "Bypassing sacct error" not in record.getMessage():
            return True
        if OnceFilter.seen:
            return False
        OnceFilter.seen = True
        record.msg = ("sacct does not answer (no accounting on this cluster?); submitit goes on "
                      "without it; said once")  # fmt: skip
        record.args = ()
        return True


class PendingWatch(threading.Thread):
    """Looks at the jobs submitted under ``folder`` since ``since``; cancels those that can
    never run and keeps why."""

    def __init__(self, folder: Path, since: float, params: dict[str, Any]) -> None:
        super().__init__(daemon=True, name="slurm-pending-watch")
        self.folder, self.since, self.params = folder, since, params
        self.stopped = threading.Event()
        self.why: str | None = None

    def job_ids(self) -> list[str]:
        found = []
        for pickle in self.folder.glob("*/*_submitted.pkl"):
            try:
                if pickle.stat().st_mtime >= self.since - 1:
                    found.append(pickle.name.removesuffix("_submitted.pkl"))
            except OSError:
                pass
        return sorted(found)

    def run(self) -> None:
        wait = FIRST_LOOK_S
        while not self.stopped.wait(wait):
            wait = LOOK_EVERY_S
            ids = self.job_ids()
            if not ids:
                continue
            for job_id, reason in pending_reasons(ids).items():
                if reason in NEVER:
                    keys = ("partition", "cpus_per_task", "mem_gb", "gpus_per_node", "timeout_min")
                    asks = ", ".join(f"{k}={self.params[k]}" for k in keys
                                     if self.params.get(k) is not None)  # fmt: skip
                    self.why = (
                        f"Slurm job {job_id} can never start ({reason}: {NEVER[reason]}; it "
                        f"asks {asks}); cancelled: lower hydra.launcher.cpus_per_task/mem_gb or "
                        "pick another hydra.launcher.partition (sinfo -o '%P %c %m %G' shows "
                        "what the nodes have)"
                    )
                    cancel(ids)
                    # the launcher waits on submitit, which without sacct never sees a
                    # cancelled job end: wake it with a signal of its own (SIGINT may be
                    # ignored, as under nohup), which launch turns into the error line
                    _thread.interrupt_main(signal.SIGUSR1)
                    return


def pending_reasons(ids: Sequence[str]) -> dict[str, str]:
    """Job id -> squeue's reason, for the jobs among ``ids`` that are pending."""
    try:
        out = subprocess.run(["squeue", "-h", "-t", "PENDING", "-o", "%i %r", "-j",
                              ",".join(sorted({i.split("_")[0] for i in ids}))],
                             capture_output=True, text=True, timeout=30).stdout  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return {}
    reasons = {}
    for line in out.splitlines():
        job_id, _, reason = line.strip().partition(" ")
        reasons[job_id] = reason.strip()
    return reasons


def cancel(ids: Sequence[str]) -> None:
    arrays = sorted({i.split("_")[0] for i in ids})
    try:
        subprocess.run(["scancel", *arrays], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        log.warning("could not cancel Slurm job(s) %s: scancel %s", arrays, " ".join(arrays))


def quiet_sacct() -> None:
    """sacct's own error line (``Slurm accounting storage is disabled``) went to the terminal at
    every poll of submitit's watcher; it now goes nowhere (submitit's warning says it once)."""
    from submitit.slurm.slurm import SlurmInfoWatcher

    make = SlurmInfoWatcher._make_command
    if getattr(make, "quiet", False):
        return

    def quiet(self: Any) -> list[str] | None:
        command = make(self)
        return None if command is None else ["sh", "-c", '"$0" "$@" 2>/dev/null', *command]

    quiet.quiet = True  # type: ignore[attr-defined]
    SlurmInfoWatcher._make_command = quiet


class WatchedSlurmLauncher(SlurmLauncher):
    """The plugin's ``SlurmLauncher`` with the watch described in the module docstring."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Any:
        submitit_log = logging.getLogger("submitit")
        if not any(isinstance(f, OnceFilter) for f in submitit_log.filters):
            submitit_log.addFilter(OnceFilter())
        quiet_sacct()
        folder = Path(str(self.params["submitit_folder"])).parent  # .../.submitit/%j
        watch = PendingWatch(folder, time.time(), self.params)
        previous = signal.signal(signal.SIGUSR1, _woken)
        watch.start()
        try:
            return super().launch(job_overrides, initial_job_idx)
        except NeverStarts:  # the watch cancelled the sweep: its line, exit code 2
            print(f"error: {watch.why}", file=sys.stderr)
            raise SystemExit(2) from None
        except KeyboardInterrupt:
            ids = watch.job_ids()
            if ids:
                cancel(ids)
                log.warning("cancelled the Slurm job(s) this sweep submitted: %s", ", ".join(ids))
            raise
        except Exception:
            if watch.why:  # cancelled by the watch: its line, not submitit's traceback
                print(f"error: {watch.why}", file=sys.stderr)
                raise SystemExit(2) from None
            raise
        finally:
            watch.stopped.set()
            signal.signal(signal.SIGUSR1, previous)
