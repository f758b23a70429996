"""Which jobs are alive on this machine, from locks the running jobs hold.

- ``.running`` in the job folder: a rerun of the same command never continues a job that still
  runs (it only looks like a killed one: its row says ``running`` too).
- one file per running job in a per-user folder of this host: ``threads=auto`` divides the cores
  between the jobs that run at once, whichever launcher, worker or shell started them (two
  workers of one study that each took every core ran 8x slower than one).

The operating system drops a lock when its process dies, however it dies: a killed job never
looks alive.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import tempfile
import time
from pathlib import Path
from typing import IO, Any

RUNNING = ".running"


def host_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"cnnsweep-{os.getuid()}" / "jobs"


def _lock(path: Path) -> IO[str] | None:
    """An open file holding an exclusive lock on ``path``; None when another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a")  # noqa: SIM115 (kept open: the lock lives as long as the file)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


class Alive:
    """Held by a running job: its folder's lock and this process's entry among the host's jobs."""

    def __init__(self, job_dir: Path) -> None:
        self._folder_file = Path(job_dir) / RUNNING
        self._folder = _lock(self._folder_file)
        register()

    def release(self) -> None:
        if self._folder is not None:  # ours: removed, then closed (closing drops the lock)
            self._folder_file.unlink(missing_ok=True)
            self._folder.close()
        unregister()


_entry: dict[str, Any] = {"count": 0, "handle": None, "path": None}


def register() -> None:
    """Count this process among the host's running jobs (nested calls count once). train.py
    registers before the data is read, so that two jobs started together both see the other
    when they choose their threads."""
    if _entry["count"] == 0:
        path = host_dir() / f"{os.getpid()}-{secrets.token_hex(4)}.lock"
        _entry.update(handle=_lock(path), path=path)
    _entry["count"] += 1


def unregister() -> None:
    _entry["count"] = max(0, _entry["count"] - 1)
    if _entry["count"] == 0 and _entry["handle"] is not None:
        _entry["path"].unlink(missing_ok=True)
        _entry["handle"].close()
        _entry.update(handle=None, path=None)


def is_running(job_dir: Path) -> bool:
    """True while a process holds ``job_dir``'s lock."""
    if not (Path(job_dir) / RUNNING).exists():
        return False
    handle = _lock(Path(job_dir) / RUNNING)
    if handle is None:
        return True
    handle.close()
    return False


def live_jobs() -> int:
    """How many jobs run on this host now (entries of dead processes are removed)."""
    count = 0
    for entry in sorted(host_dir().glob("*.lock")) if host_dir().is_dir() else []:
        handle = _lock(entry)
        if handle is None:
            count += 1
            continue
        handle.close()
        try:
            new = time.time() - entry.stat().st_mtime < 2  # made, not yet locked, by its job
        except OSError:
            continue
        if new:
            count += 1
        else:  # its process is gone
            entry.unlink(missing_ok=True)
    return count
