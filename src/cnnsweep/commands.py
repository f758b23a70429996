"""The commands this repo prints, written so that they work as printed: whether or not the
venv is active, from the folder the user is in."""

from __future__ import annotations

import atexit
import os
import shlex
import shutil
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn


def python_command() -> str:
    """``python`` when that is this interpreter (its venv is active), else its path."""
    found = shutil.which("python")
    if found and Path(found).absolute() == Path(sys.executable).absolute():
        return "python"
    return shown_path(Path(sys.executable))


def continue_command(argv: list[str], sweep_dir: str | None) -> str:
    """The command that continues what was interrupted: the same one (a sweep's with its
    folder, so its finished jobs are skipped; a search continues its study by itself)."""
    args = list(argv)
    multirun = any(a in ("-m", "--multirun") for a in args)
    search = any(a.startswith(("hparams_search=", "hydra/sweeper=")) for a in args)
    if multirun and not search and sweep_dir:
        if not any(a.startswith("hydra.sweep.dir=") for a in args):
            args.append(f"hydra.sweep.dir={shown_path(Path(sweep_dir))}")
    script = shown_path(Path(sys.argv[0])) if sys.argv and sys.argv[0] else "train.py"
    return shlex.join([python_command(), script, *args])


def interrupted_line(error: BaseException, argv: list[str], sweep_dir: str | None) -> str:
    """One line for Ctrl-C: what was interrupted, after which epoch, how to continue it."""
    job = getattr(error, "cnnsweep_job", None) or {}
    sweep_dir = job.get("sweep_dir") or sweep_dir
    command = continue_command(argv, sweep_dir)
    if job:
        where = shown_path(Path(job["job_dir"]))
        return (f"interrupted: {where} after epoch {job['epochs_run']} of {job['epochs']} "
                f"(its last.pt is kept); continue it: {command}")  # fmt: skip
    where = f" the sweep in {shown_path(Path(sweep_dir))}" if sweep_dir else ""
    return f"interrupted{where}; continue it: {command}"


def shown_path(path: Path) -> str:
    """A path relative to the current folder when it lies under it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def look_commands(out: Path) -> str:
    """What opens a finished job, working whether or not the venv is active: the Makefile's
    targets from the folder that holds it, else the venv's own programs."""
    shown = shown_path(out)
    if Path("Makefile").is_file():
        return f"make tensorboard LOGDIR={shown}/tb  |  make predict JOB={shown}"
    tensorboard = Path(sys.executable).parent / "tensorboard"
    predict = Path(__file__).resolve().parents[2] / "predict.py"
    return (f"{shown_path(tensorboard)} --logdir {shown}/tb  |  "
            f"{python_command()} {shown_path(predict)} {shown}")  # fmt: skip


def outcome(row: dict[str, Any], out: Path) -> str:
    """One line a person can act on: what happened, where, and what to run next."""
    out = Path(shown_path(out))
    if row["status"] == "completed":
        return f"completed: test acc {row['test_acc']:.4f} in {out}; look at it: " + (
            look_commands(out)
        )
    return (
        f"{row['status']}: {row['error'] or row['objective_from']}; row in {out / 'results.json'}"
    )


def exit_without_teardown(code: int = 0) -> NoReturn:
    """End a finished command as Python's own exit does, without its teardown of the modules.

    Python waits for the program's threads and runs the ``atexit`` handlers (logging, MLflow,
    W&B, joblib's workers), then frees every module object one by one: 1.5-2.3 s after a job
    here, for nothing the user keeps (torch and its CUDA libraries). This does the first two
    the same way, flushes the standard streams and leaves. Under a profiler, a debugger or a
    coverage tracer (they write after the program returns), or where this Python lacks the
    hooks it needs, it exits the usual way.
    """
    watched = sys.gettrace() is not None or sys.getprofile() is not None
    hooks = hasattr(threading, "_shutdown") and hasattr(atexit, "_run_exitfuncs")
    if watched or not hooks:
        sys.exit(code)
    threading._shutdown()  # the program's threads end first, as at a normal exit
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):  # closed, or not a real stream
            pass
    os._exit(code)
