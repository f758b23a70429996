"""A job's handle on its Optuna trial: report each epoch's value, stop when the pruner says so.

The Optuna sweeper (``cnnsweep.sweep.optuna_sweeper``) gives every job its trial identity as
overrides: ``optuna.study_name``, ``optuna.storage``, ``optuna.trial`` (the trial number) and
``optuna.pruner`` (the sweeper's ``hydra.sweeper.pruner`` config). Outside an Optuna search these
are null and :class:`OptunaTrial` does nothing, so the training job needs no special case::

    trial = OptunaTrial.from_config(cfg)
    for epoch in ...:
        ...
        if trial.report(epoch, val_acc):  # True: the pruner wants this trial stopped
            trial.prune()                 # the trial ends as PRUNED in the study
            break
"""

from __future__ import annotations

import functools
import logging
import math
import os
import shutil
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

PRUNER_WHITELIST = ("optuna.pruners.*", "cnnsweep.sweep.pruners.*")


def reported_metric(objective: str) -> str:
    """The per-epoch metric a trial reports: the objective itself, or its validation twin.

    ``test_*`` is only known at the end of a job, so ``test_acc`` reports ``val_acc`` per epoch
    (same direction, so the study's direction fits both).
    """
    return objective.replace("test_", "val_", 1) if objective.startswith("test_") else objective


class OptunaTrial:
    """The running trial a job belongs to, in the study's shared storage (inert if none)."""

    def __init__(
        self,
        study_name: str | None = None,
        storage: str | None = None,
        number: int | None = None,
        pruner: Any = None,
        heartbeat_interval: int | None = None,
    ) -> None:
        self.study_name = study_name
        self.storage = storage
        self.number = number
        self.heartbeat_interval = heartbeat_interval
        self._pruner_cfg = pruner
        self._trial: Any = None  # optuna.trial.Trial, loaded on the first use
        self._beating: threading.Event | None = None

    @classmethod
    def from_config(cls, cfg: DictConfig) -> OptunaTrial:
        """From the job config's ``optuna`` block (missing or all null: an inert trial)."""
        block = cfg.get("optuna") if isinstance(cfg, DictConfig) else None
        if not block:
            return cls()
        pruner = block.get("pruner")
        if isinstance(pruner, DictConfig):
            pruner = OmegaConf.to_container(pruner, resolve=True)
        if isinstance(pruner, dict) and pruner.get("max_resource") == "auto" and cfg.get("epochs"):
            # Hyperband's brackets from the trial's epochs, the same in every job (Optuna's own
            # auto guesses them per process from the trials it has seen: Optuna issue #3083)
            # (data.fold=all reports once per fold: its resource is the folds)
            cv = OmegaConf.select(cfg, "data.fold") == "all"
            resource = OmegaConf.select(cfg, "data.folds") if cv else cfg.epochs
            pruner = {**pruner, "max_resource": int(resource)}
        return cls(
            block.get("study_name"),
            block.get("storage"),
            block.get("trial"),
            pruner,
            block.get("heartbeat_interval"),
        )

    @property
    def active(self) -> bool:
        """True when this job is an Optuna trial whose study lives in a storage we can reach."""
        return self.number is not None and bool(self.storage) and bool(self.study_name)

    def _load(self) -> Any:
        if self._trial is None:
            import optuna

            from cnnsweep.sweep.storage import open_storage

            storage = open_storage(self.storage)  # an RDB URL or a journal file
            trial_id = storage.get_trial_id_from_study_id_trial_number(
                storage.get_study_id_from_name(self.study_name), self.number
            )
            pruner = None
            if self._pruner_cfg:
                pruner = instantiate(self._pruner_cfg, _execution_whitelist_=PRUNER_WHITELIST)
            study = optuna.load_study(
                study_name=self.study_name,
                storage=storage,
                pruner=pruner or optuna.pruners.NopPruner(),
            )
            self._trial = optuna.trial.Trial(study, trial_id)
        return self._trial

    def start(self, job_dir: Path) -> None:
        """The job has begun in ``job_dir``: note the folder in the trial (a retry finds its
        checkpoint there), continue a dead trial's training if this trial retries it, and keep
        the trial's heartbeat while the job runs (a worker killed mid-trial stops it, and the
        next worker marks the trial FAIL and queues its retry)."""
        if not self.active:
            return
        trial = self._load()
        storage = trial.study._storage
        storage.set_trial_user_attr(trial._trial_id, "job_dir", str(Path(job_dir).resolve()))
        self._adopt_checkpoint(trial, Path(job_dir))
        if self.heartbeat_interval and hasattr(storage, "record_heartbeat"):  # RDB only
            self._beating = threading.Event()
            beat = functools.partial(storage.record_heartbeat, trial._trial_id)
            beat()
            threading.Thread(target=_beat, args=(beat, self.heartbeat_interval, self._beating),
                             daemon=True, name="optuna-heartbeat").start()  # fmt: skip

    def stop(self) -> None:
        """The job has ended: no more heartbeats."""
        if self._beating is not None:
            self._beating.set()

    def _adopt_checkpoint(self, trial: Any, job_dir: Path) -> None:
        """A retry of a failed trial (same params) continues from that trial's ``last.pt``: it
        is copied here with the TensorBoard events, and the job's resume finds it. A retry of a
        retry continues from the newest attempt's. The dead attempt's row becomes ``retried``."""
        import optuna

        storage = trial.study._storage
        with warnings.catch_warnings():  # "experimental" since Optuna 2.8, and unchanged
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            history = optuna.storages.RetryHeartbeatStaleTrialCallback.retry_history(
                storage.get_trial(trial._trial_id)
            )
        if not history:
            return
        failed = history[-1]  # the newest dead attempt: it continued the ones before it
        failed_id = storage.get_trial_id_from_study_id_trial_number(trial.study._study_id, failed)
        old = storage.get_trial(failed_id).user_attrs.get("job_dir")
        if old and Path(old).resolve() != job_dir.resolve():
            mark_retried(Path(old), self.number, job_dir)
        if (job_dir / "last.pt").exists():
            return
        if not old or not (Path(old) / "last.pt").is_file():
            log.info("trial %d retries trial %d, which left no checkpoint", self.number, failed)
            return
        job_dir.mkdir(parents=True, exist_ok=True)
        if (Path(old) / "tb").is_dir() and not (job_dir / "tb").exists():
            shutil.copytree(Path(old) / "tb", job_dir / "tb")
        shutil.copyfile(Path(old) / "last.pt", job_dir / ".last.pt.adopted")
        os.replace(job_dir / ".last.pt.adopted", job_dir / "last.pt")
        log.info("trial %d retries trial %d: continuing from %s", self.number, failed, old)

    def report(self, epoch: int, value: float | None) -> bool:
        """Record ``value`` as the trial's intermediate value at step ``epoch``; True: prune it.

        A missing or non-finite value (no validation split, a diverged loss) is not reported.
        """
        if not self.active or value is None or not math.isfinite(value):
            return False
        trial = self._load()
        if len(trial.study.directions) > 1:  # Optuna's report raises: our own bookkeeping
            from cnnsweep.sweep.pruners import report_several

            return report_several(trial, epoch, value)
        trial.report(float(value), step=epoch)
        return bool(trial.should_prune())

    def finish(self, status: str, value: float | None) -> None:
        """Tell the study how the job ended, from the job itself and while its heartbeat still
        runs: ``completed`` with a finite value is COMPLETE, ``failed``/``diverged`` (or no
        finite value) FAIL. ``pruned`` was told by ``prune``; ``interrupted`` is left RUNNING
        for the next worker to fail as stale and retry. The sweeper's own ``tell`` afterwards
        finds the trial finished and leaves it as it is."""
        if not self.active or status in ("pruned", "interrupted", "infeasible"):
            return
        import optuna

        try:
            trial = self._load()
            if len(trial.study.directions) != 1:
                return  # several objectives: the sweeper tells the values the job returns
            ok = status == "completed" and value is not None and math.isfinite(value)
            state = optuna.trial.TrialState.COMPLETE if ok else optuna.trial.TrialState.FAIL
            trial.study.tell(trial.number, float(value) if ok else None, state=state,
                             skip_if_finished=True)  # fmt: skip
        except Exception as e:  # the sweeper tells it too: a storage hiccup costs nothing
            log.warning("trial %d: outcome not told to the study (%s)", self.number, e)

    def record_costs(self, costs: dict[str, float]) -> None:
        """In a multi-objective study, the trial's costs known before training (``params``,
        ``flops``...), which ``CheaperMedianPruner`` compares with the completed trials'."""
        if not self.active:
            return
        trial = self._load()
        if len(trial.study.directions) > 1:
            from cnnsweep.sweep.pruners import TRIAL_COSTS

            trial.set_user_attr(TRIAL_COSTS, costs)

    def constrain(self, excess: dict[str, float], feasible: bool) -> None:
        """Set the trial's constraints (cost minus budget, by budget knob; at most 0: within
        it), which Optuna's samplers read from every COMPLETE or PRUNED trial; an infeasible
        trial ends PRUNED (a FAIL would teach the sampler nothing)."""
        if not self.active:
            return
        import optuna

        trial = self._load()
        for knob, value in excess.items():
            trial.set_constraint(knob, value)
        if not feasible:
            self.stop()
            trial.study.tell(trial.number, state=optuna.trial.TrialState.PRUNED)
            log.info("trial %d of study %r over budget: pruned", self.number, self.study_name)

    def prune(self) -> None:
        """End the trial as PRUNED in the study (its value: the last reported one)."""
        if not self.active:
            return
        import optuna

        trial = self._load()
        self.stop()
        trial.study.tell(trial.number, state=optuna.trial.TrialState.PRUNED)
        log.info("trial %d of study %r pruned", self.number, self.study_name)


def mark_retried(job_dir: Path, number: int | None, new_dir: Path) -> None:
    """The row of a dead trial's folder says which trial took over (status ``retried``): it
    stays neither ``running`` forever nor counts as completed or failed."""
    from cnnsweep.files import read_results_row, write_results_row

    row = read_results_row(job_dir)
    if row is None or row.get("status") not in ("running", "interrupted"):
        return
    row.update(status="retried", error=f"retried by trial {number} in {new_dir.resolve()}")
    write_results_row(job_dir, row)


def _beat(record: Callable[[], None], interval: float, stopped: threading.Event) -> None:
    while not stopped.wait(interval):
        try:
            record()
        except Exception as e:  # a storage hiccup must not kill the training job
            log.warning("heartbeat not recorded: %s", type(e).__name__)
