"""Hydra's Optuna sweeper, extended so that each job knows its trial and a trial can be pruned.

The plugin (``hydra_plugins.hydra_optuna_sweeper``) asks the study for a batch of trials, turns
their params into overrides (``_configure_trials``), launches the jobs and tells every trial
COMPLETE with the job's return value (FAIL on an exception). Its jobs never see their trial, so
nothing can be pruned. This subclass keeps that loop as it is and changes two things through the
one hook the plugin offers between ``ask`` and ``launch``, ``_configure_trials``:

1. Every job gets its trial identity as overrides: ``++optuna.study_name``, ``++optuna.storage``,
   ``++optuna.trial`` (the trial number) and ``++optuna.pruner=${hydra:sweeper.pruner}``. The
   job (``cnnsweep.sweep.trial.OptunaTrial``) reports its validation accuracy per epoch to that
   trial and, when the pruner says so, stops and tells the study the trial is PRUNED itself.
2. A job tells its trial how it ended (COMPLETE, PRUNED, FAIL) itself, before its heartbeat stops:
   the plugin tells a batch's trials only when the whole batch has ended, and meanwhile another
   worker would see a finished job's silent trial as stale, fail it and run it again. The
   study's ``tell`` in the plugin's loop skips trials that are already finished.

And three things a shared, resumable study needs:

- A relative sqlite path is made absolute (jobs may run elsewhere: submitit, another cwd), its
  folder is created, and sqlite waits for a lock (``?timeout=60``) instead of failing when two
  workers write at the same moment.
- The storage's tables are created with retries: two workers starting together both try.
- A seeded sampler draws the same proposals in every process, so a resumed study or a second
  worker would replay the first run's trials. The sampler is re-seeded with ``seed + n`` where
  ``n`` is the number of the first trial this process gets: a fresh single-worker search is
  exactly the plugin's, the others draw their own proposals.

Hydra only instantiates registered plugin classes: ``hydra_plugins/cnnsweep_optuna_sweeper``
(under ``src/``) exposes this one to Hydra's plugin scan.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
from omegaconf import DictConfig, OmegaConf

from cnnsweep.schema import COSTS, objectives
from cnnsweep.sweep import asynchronous
from cnnsweep.sweep.resolvers import register_resolvers, worker_id
from cnnsweep.sweep.storage import (
    JOURNAL,
    PASSWORD_HELP,
    create_tables,
    fail_stale_trials,
    has_password,
    heartbeat_storage,
    hide_password,
    is_rdb,
    open_storage,
    storage_error,
    storage_url,
)
from cnnsweep.sweep.warm_start import create_with_warm_start, plain

log = logging.getLogger(__name__)

SAMPLER_WHITELIST = ("hydra_plugins.hydra_optuna_sweeper.*", "optuna.samplers.*")


def direction_error(objective: Any, direction: Any) -> str | None:
    """Why ``direction`` contradicts ``objective`` (a loss maximized, an accuracy minimized, a
    cost maximized), or does not give one direction per objective."""
    if objective is None or direction is None:
        return None
    names = objectives(objective if isinstance(objective, str) else list(objective))
    directions = [direction] if isinstance(direction, str) else [str(d) for d in direction]
    wanted = f"[{','.join(_wanted(n) or 'maximize' for n in names)}]"
    if len(directions) != len(names):
        return (
            f"objective=[{','.join(names)}] has {len(names)} objective(s) but "
            f"hydra.sweeper.direction=[{','.join(directions)}] has {len(directions)}: give one "
            f"each, e.g. hydra.sweeper.direction={wanted}"
        )
    for name, given in zip(names, directions, strict=True):
        want = _wanted(name)
        if want is None or given.lower() == want:
            continue
        kind = {"minimize": "a loss (lower is better)", "maximize": "an accuracy (higher is "
                "better)", "cost": "a cost (lower is better)"}[_kind(name)]  # fmt: skip
        fix = want if len(names) == 1 else wanted
        shown = name if len(names) == 1 else f"[{','.join(names)}]: {name}"
        given_shown = direction if len(names) == 1 else f"[{','.join(directions)}]"
        return (f"objective={shown} is {kind} but hydra.sweeper.direction={given_shown}: "
                f"pass hydra.sweeper.direction={fix}")  # fmt: skip
    return None


def _kind(name: str) -> str | None:
    if name in COSTS:
        return "cost"
    if name.endswith("_loss"):
        return "minimize"
    return "maximize" if re.search(r"(^|_)acc(uracy)?$", name) else None


def _wanted(name: str) -> str | None:
    """The direction an objective must have: accuracies up, losses and costs down."""
    kind = _kind(name)
    return None if kind is None else "maximize" if kind == "maximize" else "minimize"


def refuse(message: str) -> None:
    """One ``error:`` line and exit code 2, as train.py does for a bad knob (no traceback)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


register_resolvers()  # Hydra may build this sweeper without train.py (another entry point)


def _quote(value: Any) -> str:
    """A value as a quoted Hydra override string."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def trial_overrides(study_name: str, storage: str | None, number: int) -> tuple[str, ...]:
    """The overrides that tell a job which trial of which study it is."""
    return (
        f"++optuna.study_name={_quote(study_name)}",
        f"++optuna.storage={_quote(storage) if storage else 'null'}",
        f"++optuna.trial={number}",
        "++optuna.pruner=${hydra:sweeper.pruner}",
        "++optuna.heartbeat_interval=${hydra:sweeper.heartbeat_interval}",
    )


def _tell_unless_finished(tell: Any) -> Any:
    """``study.tell`` for the plugin's loop: a trial its job already told (COMPLETE, PRUNED,
    FAIL) is left as it is, without Optuna's info line for every such trial."""
    import optuna

    @functools.wraps(tell)
    def tell_once(*args: Any, **kwargs: Any) -> Any:
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(max(verbosity, optuna.logging.WARNING))
        try:
            return tell(*args, **{**kwargs, "skip_if_finished": True})
        finally:
            optuna.logging.set_verbosity(verbosity)

    tell_once.skips_finished = True  # type: ignore[attr-defined]
    return tell_once


# the loggers of the lines a search prints about its storage and every job it launches
LAUNCH_LOGGERS = (
    "hydra_plugins.hydra_optuna_sweeper._impl",
    "hydra._internal.core_plugins.basic_launcher",
    "hydra_plugins.hydra_joblib_launcher._core",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher",
    "cnnsweep.sweep.asynchronous",
)


# a launcher's lines about a batch (its size, the sweep folder)
BATCH_LINES = ("Joblib.Parallel(", "Launching jobs, sweep output dir")


class ReadableLaunchLines(logging.Filter):
    """The storage by its URL (not an object's repr, never a password), and each job's launch
    line with its trial number in place of the ``++optuna.*`` overrides every trial carries
    (about 400 characters)."""

    def __init__(self, url: str | None) -> None:
        super().__init__()
        self.url = url

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if asynchronous.in_worker and message.startswith(BATCH_LINES):
            return False  # said for every trial of an asynchronous search: said once, above
        if message.startswith("Storage: "):
            record.msg = f"Storage: {hide_password(self.url) if self.url else 'in memory'}"
            record.args = ()
        elif "++optuna." in message:
            trial = re.search(r"\+\+optuna\.trial=(\d+)", message)
            short = re.sub(r"\s*\+\+optuna\.\S+", "", message)
            if asynchronous.in_worker:  # one job per launch: its batch index says nothing
                short = re.sub(r"^\s*#\d+ : ", "launching ", short)
            record.msg = short + (f" (trial {trial.group(1)})" if trial else "")
            record.args = ()
        return True


def readable_launch_lines(url: str | None) -> None:
    """Install (once per process) the filter on the launchers' and the plugin's loggers."""
    for name in LAUNCH_LOGGERS:
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, ReadableLaunchLines)]:
            logger.removeFilter(old)
        logger.addFilter(ReadableLaunchLines(url))


class PruningOptunaSweeper(OptunaSweeper):
    """``hydra/sweeper=optuna`` in this project: the plugin's sweeper plus trial identity,
    PRUNED trials and a study that several workers can share (see the module docstring)."""

    def __init__(
        self,
        sampler: DictConfig,
        storage: str | None,
        pruner: Any = None,
        heartbeat_interval: int | None = None,
        grace_period: int | None = None,
        max_retry: int | None = None,
        objective: str | None = None,
        enqueue: Any = None,
        warm_start: Any = None,
        asynchronous: bool = True,
        **kwargs: Any,
    ) -> None:
        # refused before the storage is opened, and before any job, row or log is written
        if has_password(storage):
            refuse(PASSWORD_HELP)
        if storage_error(storage):
            refuse(storage_error(storage))
        error = direction_error(objective, kwargs.get("direction"))
        if error:  # a study maximizing a loss would prune and rank backwards
            refuse(error)
        self.storage_url = storage_url(storage)
        readable_launch_lines(self.storage_url)
        super().__init__(sampler=sampler, storage=self.storage_url, **kwargs)
        if str(self.storage_url).startswith(JOURNAL):
            self.sweeper.storage = open_storage(self.storage_url)  # Optuna takes RDB URLs only
        self.sampler_config = sampler
        self.enqueue = list(plain(enqueue) or [])  # warm starts: added once, at creation
        self.warm_start = plain(warm_start) or None
        self.asynchronous = asynchronous  # false: the plugin's synchronous batches of n_jobs
        self.objectives = objectives(
            objective if isinstance(objective, str) else list(objective or [])
        )
        self.pruner = pruner  # reaches the jobs through the `${hydra:sweeper.pruner}` override
        self.heartbeat = (heartbeat_interval, grace_period, max_retry)
        self._reseeded = False
        self._plugin_configure_trials = self.sweeper._configure_trials
        self.sweeper._configure_trials = self._configure_trials  # the plugin's hook, extended

    def sweep(self, arguments: list[str]) -> None:
        self._record_sweep()
        if self.enqueue or self.warm_start:  # before the plugin creates (or loads) the study
            name = create_with_warm_start(
                self.sweeper.study_name, self.sweeper.storage, self.sweeper._get_directions(),
                self.enqueue, self.warm_start,
            )  # fmt: skip
            self.sweeper.study_name = self.sweeper.study_name or name
        fail_stale_trials(self.sweeper.storage, self.sweeper.study_name)  # before the 1st ask
        if self.asynchronous and self.sweeper.n_jobs > 1:
            return asynchronous.sweep(
                self.sweeper, arguments, self._configure_trials, self.storage_url
            )
        return super().sweep(arguments)

    def setup(self, *args: Any, **kwargs: Any) -> None:
        super().setup(*args, **kwargs)
        n_jobs = self.sweeper.n_jobs
        if n_jobs > 1 and type(self.sweeper.launcher).__name__ == "BasicLauncher":
            refuse(
                f"hydra.sweeper.n_jobs={n_jobs} runs {n_jobs} trials at once, but the basic "
                "launcher runs one job at a time: add hydra/launcher=joblib (this machine) or "
                "hydra/launcher=slurm, or pass hydra.sweeper.n_jobs=1"
            )
        # the tables first, with retries: workers started together collide creating them, and
        # the heartbeat storage below opens (and would create) them at once
        create_tables(self.storage_url)
        if self.heartbeat[0] and is_rdb(self.storage_url):
            # Optuna expects heartbeats from Study.optimize; here each job beats for its trial
            warnings.filterwarnings("ignore", "Heartbeat of storage is supposed", UserWarning)
            self.sweeper.storage = heartbeat_storage(self.storage_url, *self.heartbeat)

    def _record_sweep(self) -> None:
        """``<sweep dir>/multirun.yaml``, as Hydra's basic sweeper writes it (``make
        tensorboard`` and the aggregate find sweeps by it). Never replaced: a worker that
        shares the folder (an explicit ``hydra.sweep.dir``) keeps the first one's."""
        config = self.sweeper.config
        folder = Path(str(config.hydra.sweep.dir))
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".multirun.yaml.{worker_id()}"
        tmp.write_text(OmegaConf.to_yaml(config))
        try:
            os.link(tmp, folder / "multirun.yaml")  # atomic, and fails if one exists
        except FileExistsError:
            log.info("%s has a multirun.yaml already: kept", folder)
        finally:
            tmp.unlink()

    def _configure_trials(self, trials: list[Any], *args: Any) -> Sequence[Sequence[str]]:
        study = trials[0].study
        fail_stale_trials(study._storage, study.study_name)  # a retry joins the next batch
        if len(self.objectives) > 1 and not study.metric_names:  # the dashboard's and reports'
            with warnings.catch_warnings():  # "experimental" since Optuna 3.2
                warnings.simplefilter("ignore")
                study.set_metric_names(self.objectives)
        if not getattr(study.tell, "skips_finished", False):
            study.tell = _tell_unless_finished(study.tell)
        self._reseed(trials[0])
        overrides = self._plugin_configure_trials(trials, *args)
        return [
            (*job, *trial_overrides(study.study_name, self.storage_url, trial.number))
            for job, trial in zip(overrides, trials, strict=True)
        ]

    def _reseed(self, first: Any) -> None:
        """Once per process, before the first params are drawn: seed -> seed + trial number."""
        if self._reseeded:
            return
        self._reseeded = True
        import optuna

        seed = self.sampler_config.get("seed")
        if seed is None or first.number == 0:
            return  # unseeded (proposals differ anyway), or a fresh study
        if isinstance(self.sweeper.sampler, optuna.samplers.GridSampler):
            return  # the grid sampler skips visited points by itself
        sampler = instantiate(
            self.sampler_config, seed=seed + first.number, _execution_whitelist_=SAMPLER_WHITELIST
        )
        self.sweeper.sampler = first.study.sampler = sampler
        log.info("Study has %d earlier trials: sampler seed %d", first.number, seed + first.number)
