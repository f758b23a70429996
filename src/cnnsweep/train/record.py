"""What a job records about itself as it runs, in one place: ``JobRecord``.

The training code returns numbers; the record turns them into the job's results row
(``results.json``/``.csv``), its epoch rows, its TensorBoard run and its log lines, and decides
the row's status: ``running`` from the start (a killed job still shows as running), then
``completed``, ``diverged``, ``pruned``, ``failed`` or ``interrupted``. The job calls it in this
order::

    record = JobRecord(cfg, info, trial, checkpoint)
    with record.running():           # a failure or an interrupt leaves a row that says so
        record.started(state, data, recipe, description)
        for epoch in ...:
            record.epoch_done(state, metrics)
            ... record.ended_early(reason, state)
        record.tested(state, test_loss, test_acc, speed)
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from cnnsweep.commands import outcome
from cnnsweep.data.types import Data
from cnnsweep.files import package_versions, write_epoch_rows, write_results_row
from cnnsweep.schema import (
    EPOCH_COLUMN,
    EPOCH_KNOBS,
    KNOBS,
    METRICS,
    ROW_INFERENCE,
    ROW_MODEL,
    ROW_PROGRESS,
    hyperparameters,
    learning_config,
    objectives,
    override_key,
    run_name,
)
from cnnsweep.sweep.trial import OptunaTrial, reported_metric
from cnnsweep.tracking import Trackers
from cnnsweep.train.liveness import Alive
from cnnsweep.train.loop import Recipe, tta_label
from cnnsweep.train.state import TrainState, save_last
from cnnsweep.train.tensorboard import TensorBoardRun, open_job_run

log = logging.getLogger("cnnsweep.train.job")  # the job's lines, whichever module writes them


@dataclass
class JobInfo:
    """Where the job writes and what it is called (Hydra's, or given by a caller/test)."""

    output_dir: Path
    run_name: str = "default"
    overrides: list[str] = field(default_factory=list)
    job_num: int = 0
    sweep_dir: str | None = None
    multirun: bool = False
    runs_root: Path | None = None  # where Hydra puts single runs, when it chose the folder


def job_info(output_dir: str | Path | None = None) -> JobInfo:
    """The running Hydra job's folder, name and overrides (a plain folder outside Hydra)."""
    if not HydraConfig.initialized():
        return JobInfo(Path(output_dir or "outputs/job"))
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    chosen = not multirun and not any(o.startswith("hydra.run.dir=") for o in hc.overrides.hydra)
    run_dir = Path(hc.run.dir)  # outputs/<date>/<time> by default
    return JobInfo(
        output_dir=Path(output_dir or hc.runtime.output_dir),
        run_name=run_name(hc.overrides.task),
        overrides=list(hc.overrides.task),
        job_num=int(hc.job.get("num") or 0),
        sweep_dir=str(Path(hc.sweep.dir).resolve()) if multirun else None,
        multirun=multirun,
        runs_root=run_dir.parents[1] if chosen and len(run_dir.parts) >= 3 else None,
    )


def new_row(cfg: DictConfig, info: JobInfo, trial: OptunaTrial) -> dict[str, Any]:
    """The results row a job starts with (``running``); the record fills the rest as it goes."""
    return {
        "status": "running",
        "error": None,
        **hyperparameters(cfg),
        "objective": objectives(cfg.objective)[0],
        "objective_value": None,
        "objective_from": None,
        **dict.fromkeys((*METRICS, *ROW_PROGRESS, *ROW_MODEL, *ROW_INFERENCE)),
        "epochs_run": 0,
        "epoch_duration": None,
        "run_duration": None,
        "run_name": info.run_name,
        "overrides": info.overrides,
        "job_num": info.job_num,
        "study_name": trial.study_name,
        "trial_number": trial.number,
        "study_storage": trial.storage,
        "job_dir": str(info.output_dir.resolve()),
        "sweep_dir": info.sweep_dir,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        "finished_at": None,
        "device": None,
        "threads": None,
        "versions": package_versions(),
        "config": learning_config(cfg),
    }


def refused_row(cfg: DictConfig, info: JobInfo, trial: OptunaTrial, error: Exception) -> dict:
    """The row of a job refused by its knobs or its data, before it started."""
    error_line = f"{type(error).__name__}: {error}"
    return new_row(cfg, info, trial) | {"status": "failed", "objective_from": "failed",
                                        "error": error_line}  # fmt: skip


class JobRecord:
    """The job's row, epoch rows, TensorBoard run and log lines (see the module docstring)."""

    def __init__(
        self,
        cfg: DictConfig,
        info: JobInfo,
        trial: OptunaTrial,
        checkpoint: dict[str, Any] | None = None,
    ) -> None:
        self.cfg, self.info, self.trial = cfg, info, trial
        self.row = new_row(cfg, info, trial)
        self.tb: TensorBoardRun | None = None
        self.trackers = Trackers(cfg, self.out, (checkpoint or {}).get("trackers"))
        self.alive = Alive(self.out)  # a rerun leaves it alone; threads=auto counts it
        self.t0 = time.time()
        if checkpoint is not None:  # the clock goes on from the time the checkpoint was written
            self.t0 -= _elapsed(checkpoint)
            self.row["started_at"] = checkpoint.get("started_at") or self.row["started_at"]
        write_results_row(self.out, self.row)  # from the start: a killed job shows as running

    @property
    def out(self) -> Path:
        return self.info.output_dir

    @property
    def status(self) -> str:
        return self.row["status"]

    @property
    def objective_value(self) -> float:
        value = self.row["objective_value"]
        return float("nan") if value is None else float(value)

    def checkpoint(self, state: TrainState, config: dict[str, Any]) -> None:
        """``last.pt``, with the clock (seconds run, start time) and the tracker runs' ids; then
        the trackers log the epochs it holds (a resumed job never logs one twice)."""
        clock = {"elapsed": time.time() - self.t0, "started_at": self.row["started_at"]}
        save_last(self.out, state, config, **clock, trackers=self.trackers.ids())
        self.trackers.checkpointed()

    @contextmanager
    def running(self) -> Iterator[JobRecord]:
        """Ctrl-C or a scheduler's signal: ``interrupted`` (continued later); any other error:
        ``failed``. The final row, the trial's outcome and the last log line in every case."""
        try:
            yield self
        except (KeyboardInterrupt, SystemExit) as e:
            epochs = self.row["epochs_run"]
            self.row.update(status="interrupted", error=f"{type(e).__name__} after epoch {epochs}")
            e.cnnsweep_job = {  # what train.py's one line for Ctrl-C says
                "job_dir": str(self.out), "epochs_run": epochs, "epochs": self.cfg.epochs,
                "sweep_dir": self.info.sweep_dir,
            }  # fmt: skip
            raise
        except BaseException as e:  # the row must not stay "running"
            self.row.update(status="failed", error=f"{type(e).__name__}: {e}".splitlines()[0])
            raise
        finally:
            self._close()

    def started(self, state: TrainState, data: Data, recipe: Recipe, facts: dict) -> None:
        """The model and data are ready (``facts``: size, cost, device); a resumed job says
        where it continues; the TensorBoard run opens."""
        self.row.update(facts)
        if state.epoch:
            self.row.update(resumed_from_epoch=state.epoch)
            self._summarize(state)
            last = self.out / "last.pt"
            if state.epoch < self.cfg.epochs:
                log.info(
                    "resumed at epoch %d of %d from %s", state.epoch + 1, self.cfg.epochs, last
                )
            else:  # killed after its last epoch: only the test pass and saving were left
                log.info("resumed after the last epoch (%d) from %s", state.epoch, last)
        self.tb = open_job_run(self.cfg, self.out, self.info.run_name, state, data, recipe)
        self.trackers.open(self.row, state.epoch_rows)  # MLflow, W&B (logger=[...])

    def epoch_done(self, state: TrainState, metrics: dict[str, float]) -> None:
        """Epoch ``state.epoch`` trained and validated: its row (kept in the state, so that a
        resumed job continues them), the files, TensorBoard, one log line, the results row."""
        cfg, epoch, loss, acc = self.cfg, state.epoch, metrics["loss"], metrics["accuracy"]
        hp = hyperparameters(cfg)
        state.epoch_rows.append({
            "run": self.info.job_num, "epoch": epoch, "loss": loss, "accuracy": acc,
            "epoch duration": metrics["seconds"], "run duration": time.time() - self.t0,
            **{k: hp[k] for k in EPOCH_KNOBS}, "val_loss": None, "val_accuracy": None,
            **{k: v for k, v in metrics.items() if k not in ("loss", "accuracy", "seconds")},
        })  # fmt: skip
        write_epoch_rows(self.out, state.epoch_rows)
        self.trackers.epoch_done()
        self.tb.log_epoch(epoch, {"Loss/train": loss, "Accuracy/train": acc,
                                  "Loss/val": metrics.get("val_loss"),
                                  "Accuracy/val": metrics.get("val_accuracy"),
                                  "Loss/test_epoch": metrics.get("test_loss"),
                                  "Accuracy/test_epoch": metrics.get("test_accuracy"),
                                  "LearningRate": metrics["lr_now"]})  # fmt: skip
        if cfg.tensorboard.histograms and math.isfinite(loss):
            self.tb.log_histograms(epoch, state.model)
        # the learning rate at the epoch's end (a one-cycle schedule ends far below lr)
        log.info("epoch %d/%d  train loss %.4f acc %.4f  val loss %s acc %s  end lr %.3g  %.1fs",
                 epoch, cfg.epochs, loss, acc, _metric(metrics.get("val_loss")),
                 _metric(metrics.get("val_accuracy")), metrics["lr_now"],
                 metrics["seconds"])  # fmt: skip
        self._summarize(state)

    def reported(self) -> float | None:
        """The value the trial is told this epoch: the last epoch's (a test objective's
        validation twin)."""
        metric = reported_metric(objectives(self.cfg.objective)[0])
        return self.row.get(f"last_{metric}", self.row.get(metric))

    def ended_early(self, reason: str, state: TrainState) -> None:
        """The job stops before its last epoch: ``diverged``, ``pruned`` (the trial is told)
        or ``early`` (early stopping; the job still tests and saves its kept weights)."""
        epoch, loss = state.epoch, state.epoch_rows[-1]["loss"]
        if reason == "diverged":
            error = f"training loss became {loss} in epoch {epoch}"
            self.row.update(status="diverged", error=error)
            log.warning("diverged (loss %s) in epoch %d, stopped", loss, epoch)
        elif reason == "pruned":  # a pruned run: no test pass, no model.pt
            self.trial.prune()
            self.row.update(status="pruned")
            log.info("pruned after epoch %d (trial %d)", epoch, self.trial.number)
        elif reason == "overfit":
            self.row.update(stopped_early_at=epoch)
            log.info("overfit: 100%% training accuracy on %d fixed batches after epoch %d: the "
                     "model and recipe learn", self.cfg.overfit_batches, epoch)  # fmt: skip
        else:
            self.row.update(stopped_early_at=epoch)
            log.info("early stopping after epoch %d: no better %s for %d epochs",
                     epoch, self.cfg.monitor, state.monitor.bad_epochs)  # fmt: skip

    def tested(self, state: TrainState, test_loss: float, test_acc: float, speed: dict) -> None:
        """The kept weights' test pass and inference speed: the job has completed."""
        self.row.update(test_loss=test_loss, test_acc=test_acc, status="completed", **speed)
        self.tb.log_epoch(state.epoch, {"Loss/test": test_loss, "Accuracy/test": test_acc})
        tta = tta_label(self.cfg.tta, self.cfg.tta_shift)
        log.info("test loss %.4f acc %.4f%s", test_loss, test_acc, tta)
        if speed:
            log.info("inference: %.3f ms per image at batch 1, %.0f images/s at batch %d",
                     speed["latency_ms"], speed["throughput_ips"],
                     speed["throughput_batch"])  # fmt: skip

    def metrics(self) -> dict[str, float | None]:
        return {m: self.row[m] for m in METRICS}

    def _summarize(self, state: TrainState) -> None:
        """The row's metrics: ``train_*``/``val_*`` of the epoch whose weights are kept (the
        best one with keep_best, else the last), ``last_*`` of the last epoch, and which
        epochs those are."""
        rows, best = state.epoch_rows, state.monitor.best_epoch
        kept = best if self.cfg.keep_best and best is not None else len(rows)
        for prefix, epoch_row in (("", rows[kept - 1]), ("last_", rows[-1])):
            for metric in ("train_loss", "train_acc", "val_loss", "val_acc"):
                self.row[prefix + metric] = epoch_row[EPOCH_COLUMN[metric]]
        best_acc = [r["val_accuracy"] for r in rows if r["val_accuracy"] is not None]
        self.row.update(
            metrics_epoch=kept, best_epoch=best, epochs_run=len(rows),
            best_val_acc=max(best_acc) if best_acc else None,
            epoch_duration=sum(r["epoch duration"] for r in rows) / len(rows),
        )  # fmt: skip

    def _hparams_given_first(self) -> dict[str, Any]:
        """The knobs, those given on the command line first: TensorBoard's HParams tab shows
        the first ones, and a sweep's varying knobs are among those given."""
        hp = hyperparameters(self.cfg)
        given = {override_key(o) for o in self.info.overrides}
        first = [k for k, path in KNOBS.items() if path in given or k in given]
        return {k: hp[k] for k in first} | {k: v for k, v in hp.items() if k not in first}

    def _returned(self) -> None:
        """What the job hands its sweeper, and where that number comes from, into the row."""
        row, cfg, status = self.row, self.cfg, self.row["status"]
        objective = objectives(cfg.objective)[0]
        if status == "completed":
            value = row.get(objective)
            kind = "best" if cfg.keep_best and row["best_epoch"] else "last"
            source = (f"test pass of epoch {row['metrics_epoch']}"
                      if objective.startswith("test")
                      else f"{kind} epoch {row['metrics_epoch']}")  # fmt: skip
        elif status == "pruned":
            value = self.reported()
            source = f"pruned after epoch {row['epochs_run']} (last reported value)"
        else:
            value, source = None, f"{status}: NaN"
        row.update(objective_value=value, objective_from=source)

    def _close(self) -> None:
        finished = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        self.row.update(run_duration=time.time() - self.t0, finished_at=finished)
        self._returned()
        # the study hears the outcome from the job, while it still beats: a finished trial is
        # never left RUNNING without heartbeats for another worker to fail and rerun
        self.trial.finish(self.status, self.row["objective_value"])
        self.trial.stop()
        write_results_row(self.out, self.row)
        if self.tb is not None:
            if self.status != "interrupted":  # a continued run writes its own at the end
                metrics = {f"hparam/{m}": v for m, v in self.metrics().items()}
                self.tb.log_hparams(self._hparams_given_first(), metrics)
            self.tb.close()
        self.trackers.finish(self.row)
        self.alive.release()
        if not str(self.row["error"]).startswith("KeyboardInterrupt"):  # train.py says it
            log.info("%s", outcome(self.row, self.out))


def _elapsed(checkpoint: dict[str, Any]) -> float:
    """Seconds a checkpointed job had run when its ``last.pt`` was written (older checkpoints:
    the run duration of its last epoch row)."""
    if isinstance(checkpoint.get("elapsed"), (int, float)):
        return float(checkpoint["elapsed"])
    rows = checkpoint.get("epoch_rows") or []
    return float(rows[-1].get("run duration", 0.0)) if rows else 0.0


def _metric(value: float | None) -> str:
    """A metric in a log line (``-`` when the epoch has none)."""
    return "-" if value is None else f"{value:.4f}"
