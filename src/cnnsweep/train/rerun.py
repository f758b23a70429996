"""The same command again: it continues a stopped single job, and a refused run leaves nothing.

Hydra gives every single run a new folder, ``outputs/<date>/<time>/``, before the job starts. A
job stopped by Ctrl-C or a kill would then never be continued by the command that started it.
So a single run whose folder Hydra chose (no ``hydra.run.dir`` given) looks for the newest
stopped job of the same configuration among Hydra's run folders (its row ``interrupted`` or
``running``, its ``last.pt`` there, no process holding it) and continues it there; the new
folder, which holds only Hydra's own files, is removed. ``hydra.run.dir=<new folder>`` or
``resume=false`` starts afresh.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from cnnsweep.commands import shown_path
from cnnsweep.files import read_results_row
from cnnsweep.schema import learning_config
from cnnsweep.train.liveness import is_running
from cnnsweep.train.record import JobInfo

log = logging.getLogger("cnnsweep.train.job")

STARTED = time.time()  # imported with the job, before Hydra writes the run's folder
STOPPED = ("interrupted", "running")


def continued(cfg: Any, info: JobInfo, config: dict[str, Any]) -> JobInfo:
    """``info`` moved to the newest stopped job of ``config``, when there is one to continue."""
    if info.multirun or info.runs_root is None or not cfg.resume:
        return info
    if (info.output_dir / "last.pt").exists():
        return info
    found = newest_stopped(info.runs_root, config, info.output_dir)
    if found is None:
        return info
    row = read_results_row(found) or {}
    log.info("continuing the stopped job in %s (after epoch %s): the same command and "
             "configuration; hydra.run.dir=<folder> or resume=false starts afresh",
             shown_path(found), row.get("epochs_run"))  # fmt: skip
    _follow_log(info.output_dir, found)
    remove_fresh_folder(info)
    return dataclasses.replace(info, output_dir=found)


def newest_stopped(root: Path, config: dict[str, Any], exclude: Path) -> Path | None:
    """The most recently checkpointed stopped job of ``config`` in Hydra's run folders."""
    found = []
    for last in Path(root).glob("*/*/last.pt"):
        folder = last.parent
        if folder.resolve() == Path(exclude).resolve():
            continue
        row = read_results_row(folder)
        if not row or row.get("status") not in STOPPED:
            continue
        if learning_config(row.get("config") or {}) != config or is_running(folder):
            continue
        found.append((last.stat().st_mtime, str(folder), folder))
    return max(found)[2] if found else None


def remove_fresh_folder(info: JobInfo) -> None:
    """Remove the run folder Hydra made for this run, if it holds nothing but Hydra's own
    files written by this run (a refused run, or one that continues elsewhere)."""
    folder = info.output_dir
    if info.multirun or info.runs_root is None or not folder.is_dir():
        return
    names = {p.name for p in folder.iterdir()}
    config = folder / ".hydra" / "config.yaml"
    if not names <= {".hydra", *(n for n in names if n.endswith(".log"))}:
        return
    if not config.exists() or config.stat().st_mtime < STARTED - 1:
        return
    shutil.rmtree(folder, ignore_errors=True)
    try:
        folder.parent.rmdir()  # the date folder, if this was its only run
    except OSError:
        pass


def _follow_log(old: Path, new: Path) -> None:
    """Hydra's log file handler moves from the removed folder to the continued job's log."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        name = getattr(handler, "baseFilename", None)
        if name and Path(name).parent.resolve() == Path(old).resolve():
            moved = logging.FileHandler(Path(new) / Path(name).name, mode="a")
            moved.setFormatter(handler.formatter)
            moved.setLevel(handler.level)
            root.removeHandler(handler)
            handler.close()
            root.addHandler(moved)
