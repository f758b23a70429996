"""Asynchronous trials: K worker processes, each asking a new trial the moment its last one ends.

The plugin's loop asks ``n_jobs`` trials, launches them as one batch and waits for the slowest
(Hydra issue #3091): a trial pruned after three epochs leaves its core idle until the batch ends.
Here the sweeper forks ``n_jobs`` workers after it has created the study. Each worker runs the
plain loop ask -> launch one job -> tell, with its own launcher calls (joblib's executor is not
safe to drive from several threads; a process per worker has its own) and the study's shared
storage as the only thing they share besides a few counters: how many trials were asked (so
the sweep runs exactly ``n_trials``), told and failed (``max_failure_rate`` stops every worker).

Each worker's sampler is re-seeded by the sweeper on its first trial (seed + trial number), so
the workers do not draw the same proposals; enqueued trials are popped from the storage, once.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable, MutableMapping, Sequence
from typing import Any

from cnnsweep.sweep.storage import one_ask_at_a_time

log = logging.getLogger(__name__)

FORWARD_AFTER_S = 3.0  # a worker still running this long after a Ctrl-C gets it passed on
in_worker = False  # True in a worker process (its launch lines are shortened)

Configure = Callable[[list[Any]], Sequence[Sequence[str]]]


def tell_outcome(study: Any, trial: Any, ret: Any, n_objectives: int) -> Exception | None:
    """Tell ``trial`` the value(s) its job returned (a trial its job told already stays as it
    is); a job that raised, or returned no number, is FAIL. Returns that error, or None."""
    import optuna

    try:
        value = ret.return_value  # raises the job's own exception
        values = [float(v) for v in (value if n_objectives > 1 else [value])]
        if len(values) != n_objectives:
            raise ValueError(f"the job returned {len(values)} values for {n_objectives} objectives")
        study.tell(trial, values, skip_if_finished=True)
        return None
    except Exception as e:  # noqa: BLE001 - any job error is a failed trial, as in the plugin
        study.tell(trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        log.warning("Failed experiment: %s", e)
        return e


def _die_with(parent: int) -> None:
    """A worker (and the job it runs) ends when the search's process is killed, as a job run
    by the basic launcher does: no orphan goes on training after ``kill -9`` of the search. Its
    trial stays RUNNING, and the next search fails it as stale and retries it."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # killed before the line above
        os._exit(1)


def _fresh_connections(storage: Any) -> None:
    """A forked worker must not share the parent's open database connections (SQLAlchemy's
    rule for forks): drop the inherited pool, so each worker opens its own."""
    for holder in (storage, getattr(storage, "_backend", None)):
        engine = getattr(holder, "engine", None)
        if engine is not None:
            engine.dispose(close=False)


def _worker(
    study: Any,
    launch: Callable[[Sequence[Sequence[str]], int], Any],
    configure: Configure,
    n_objectives: int,
    shared: dict[str, Any],
) -> int:
    """One worker's loop; returns its exit code (1: the failure rate was exceeded)."""
    import optuna

    asked, told, failed, stop = shared["asked"], shared["told"], shared["failed"], shared["stop"]
    while True:
        with asked.get_lock():
            if stop.value or asked.value >= shared["n_trials"]:
                return 0
            index = asked.value
            asked.value += 1
        with one_ask_at_a_time(shared["storage_url"]):
            trial = study.ask()
        overrides = configure([trial])
        try:
            [ret] = launch(overrides, shared["job_idx"] + index)
            error = tell_outcome(study, trial, ret, n_objectives)
        except Exception as e:  # the launcher itself (a job process killed: out of memory)
            study.tell(trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
            log.warning("Failed experiment: trial %d: %s: %s", trial.number, type(e).__name__, e)
            error = e
        with asked.get_lock():
            told.value += 1
            failed.value += error is not None
            over = failed.value / told.value > shared["max_failure_rate"]
            if over:
                stop.value = 1
        if over:
            log.error(
                "Failed %d of %d trials with max_failure_rate=%s: no new trials",
                failed.value, told.value, shared["max_failure_rate"],
            )  # fmt: skip
            return 1


def run_workers(
    study: Any,
    launch: Callable[[Sequence[Sequence[str]], int], Any],
    configure: Configure,
    n_workers: int,
    n_trials: int,
    job_idx: int,
    max_failure_rate: float,
    storage_url: str | None = None,
) -> None:
    """Run ``n_trials`` trials of ``study`` with ``n_workers`` always busy (the module
    docstring). Raises RuntimeError when too many failed, KeyboardInterrupt on Ctrl-C."""
    context = multiprocessing.get_context("fork")  # workers inherit the launcher and config
    shared = {
        "asked": context.Value("i", 0),
        "told": context.Value("i", 0, lock=False),
        "failed": context.Value("i", 0, lock=False),
        "stop": context.Value("i", 0, lock=False),
        "n_trials": n_trials,
        "job_idx": job_idx,
        "max_failure_rate": max_failure_rate,
        "storage_url": storage_url,
    }
    n_objectives = len(study.directions)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    pids, parent = [], os.getpid()
    for _ in range(min(n_workers, n_trials)):
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the parent's code (os._exit)
            code = 1
            global in_worker
            in_worker = True
            try:
                _die_with(parent)
                _fresh_connections(study._storage)
                code = _worker(study, launch, configure, n_objectives, shared)
            except KeyboardInterrupt:
                code = 130
            except BaseException:  # noqa: BLE001
                log.exception("search worker %d failed", os.getpid())
            finally:
                logging.shutdown()  # flushes the sweep's log file
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        pids.append(pid)
    codes = _wait_all(pids)
    if 130 in codes or -2 in codes:
        raise KeyboardInterrupt
    if any(codes) and shared["failed"].value:
        raise RuntimeError(
            f"{shared['failed'].value} of {shared['told'].value} trials failed "
            f"(max_failure_rate={max_failure_rate}): the log above says why"
        )
    if any(codes):
        raise RuntimeError(f"a search worker ended with exit codes {codes}: the log says why")


def sweep(
    impl: Any, arguments: list[str], configure: Callable[..., Any], storage_url: str | None = None
) -> None:
    """The plugin's ``OptunaSweeperImpl.sweep`` with its batch loop replaced by
    :func:`run_workers`: the same search space, study, grid handling and
    ``optimization_results.yaml``. ``configure(trials, space, fixed, fixed_overrides)`` is the
    sweeper's ``_configure_trials``; ``storage_url`` the study's (a sqlite one is locked around
    each ask)."""
    import optuna
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides
    from omegaconf import OmegaConf

    impl._process_searchspace_config()
    params = [*impl._parse_sweeper_params_config(), *arguments]
    space, fixed, fixed_overrides = create_params_from_overrides(params)
    sampler = impl.sampler
    n_trials = impl.n_trials
    if getattr(sampler, "func", None) is optuna.samplers.GridSampler:  # a partial until now
        grid = {name: impl._to_grid_sampler_choices(d) for name, d in space.items()}
        sampler = impl.sampler = sampler(grid)
        n_trials = min(n_trials, math.prod(len(v) for v in grid.values()))
    for name in fixed:
        space.pop(name, None)
    directions = impl._get_directions()
    study = optuna.create_study(
        study_name=impl.study_name, storage=impl.storage, sampler=sampler,
        directions=directions, load_if_exists=True,
    )  # fmt: skip
    log.info("Study name: %s", study.study_name)
    log.info("Storage: %s", impl.storage)
    log.info("Sampler: %s", type(sampler).__name__)
    log.info("Directions: %s", directions)
    log.info(
        "Asynchronous trials: %d at all times, %d in all, in %s",
        impl.n_jobs, n_trials, impl.config.hydra.sweep.dir,
    )  # fmt: skip

    if isinstance(getattr(impl.launcher, "joblib", None), MutableMapping):
        # one job per launch: joblib runs it in the worker itself (n_jobs=1), which keeps the
        # imports and the data it read for its next job; a pool would start processes that
        # each import torch and read the data again (the jobs' own config keeps the user's
        # n_jobs, so threads=auto still divides the cores between the workers)
        impl.launcher.joblib["n_jobs"] = 1

    def launch(overrides: Sequence[Sequence[str]], job_idx: int) -> Any:
        return impl.launcher.launch(overrides, initial_job_idx=job_idx)

    run_workers(
        study, launch, lambda trials: configure(trials, space, fixed, fixed_overrides),
        impl.n_jobs, n_trials, impl.job_idx, impl.max_failure_rate, storage_url,
    )  # fmt: skip
    impl.job_idx += n_trials
    study = optuna.load_study(study_name=study.study_name, storage=impl.storage)
    if len(directions) > 1:
        front = [{"params": t.params, "values": t.values} for t in study.best_trials]
        results: dict[str, Any] = {"name": "optuna", "solutions": front}
        log.info("Number of Pareto solutions: %d", len(front))
    elif any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        best = study.best_trial
        results = {"name": "optuna", "best_params": best.params, "best_value": best.value}
        log.info("Best parameters: %s", best.params)
        log.info("Best value: %s", best.value)
    else:
        log.warning("No trial of study %r has completed", study.study_name)
        return
    folder = impl.config.hydra.sweep.dir
    OmegaConf.save(OmegaConf.create(results), f"{folder}/optimization_results.yaml")


def _wait_all(pids: list[int]) -> list[int]:
    """Every worker's exit code (negative: killed by that signal); 130 added after a Ctrl-C.

    Ctrl-C in a terminal reaches the workers too (one process group): they stop their jobs,
    which write their rows. A SIGINT sent to the search alone (``kill -INT``) is passed on to
    the workers still running a few seconds later, so they stop the same way."""
    codes: dict[int, int] = {}
    interrupted_at = None
    while len(codes) < len(pids):
        try:
            for pid in pids:
                if pid not in codes:
                    done, status = os.waitpid(pid, os.WNOHANG)
                    if done:
                        codes[pid] = os.waitstatus_to_exitcode(status)
            if interrupted_at is not None and time.monotonic() - interrupted_at > FORWARD_AFTER_S:
                for pid in set(pids) - set(codes):
                    os.kill(pid, signal.SIGINT)
                interrupted_at = float("inf")  # once
            time.sleep(0.2)
        except KeyboardInterrupt:
            interrupted_at = interrupted_at or time.monotonic()
        except ChildProcessError:
            break
    return [*codes.values(), 130] if interrupted_at is not None else list(codes.values())
