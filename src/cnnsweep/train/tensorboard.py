"""One TensorBoard run per job: scalars, histograms, images, graph and the HParams entry."""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path
from typing import Any

import torch
import torchvision
from omegaconf import DictConfig
from torch import nn
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from cnnsweep.data.normalise import denormalise
from cnnsweep.data.types import Data
from cnnsweep.train.loop import Recipe
from cnnsweep.train.state import TrainState


class TensorBoardRun:
    """One TensorBoard run per job: scalars, histograms, images, graph and the HParams entry.

    The HParams summary is written into the same event file as the scalars (not the extra
    sub-run that ``SummaryWriter.add_hparams`` creates), so the HParams tab links both.
    """

    def __init__(self, log_dir: str | Path, purge_step: int | None = None) -> None:
        # purge_step: a continued run hides the events an interrupted attempt wrote from that
        # step (epoch) on, so no curve has two points at one step
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def log_epoch(self, epoch: int, metrics: dict[str, float | None]) -> None:
        for name, value in metrics.items():
            if value is not None:
                self.writer.add_scalar(name, value, epoch)

    def log_histograms(self, epoch: int, model: nn.Module) -> None:
        for name, param in model.named_parameters():
            self.writer.add_histogram(name, param.detach().cpu(), epoch)
            if param.grad is not None:
                self.writer.add_histogram(f"{name}.grad", param.grad.detach().cpu(), epoch)

    def log_images(self, tag: str, images: torch.Tensor, nrow: int = 8) -> None:
        grid = torchvision.utils.make_grid(images.detach().cpu(), nrow=nrow, normalize=True)
        self.writer.add_image(tag, grid)

    def log_graph(self, model: nn.Module, example: torch.Tensor) -> None:
        with warnings.catch_warnings():  # add_graph traces with torch.jit, deprecated but working
            warnings.simplefilter("ignore", FutureWarning)
            self.writer.add_graph(model, example)

    def log_png(self, tag: str, png: bytes, step: int = 0) -> None:
        """A PNG already rendered (for its file) goes to the Images tab as it is: no second
        rendering of the figure, no decoding and re-encoding."""
        from PIL import Image
        from tensorboard.compat.proto.summary_pb2 import Summary

        with Image.open(io.BytesIO(png)) as img:
            width, height = img.size
            channels = len(img.getbands())
        image = Summary.Image(
            height=height, width=width, colorspace=channels, encoded_image_string=png
        )
        summary = Summary(value=[Summary.Value(tag=tag, image=image)])
        self.writer._get_file_writer().add_summary(summary, step)

    def log_hparams(
        self, hparam_dict: dict[str, Any], metric_dict: dict[str, float | None]
    ) -> None:
        """HParams entry; each finite metric is also written as a scalar under the same tag.

        Every run declares all of ``metric_dict``'s columns, finite or not: TensorBoard takes the
        columns of its HParams table from one run's declaration, so a first run that diverged
        or was pruned must not hide a metric for all runs.
        """
        metrics = {k: v for k, v in metric_dict.items() if v is not None and math.isfinite(v)}
        hp = {
            k: v if isinstance(v, (int, float, str, bool)) else str(v)
            for k, v in hparam_dict.items()
        }
        exp, ssi, sei = hparams(hp, dict.fromkeys(metric_dict, 0.0))
        file_writer = self.writer._get_file_writer()
        for summary in (exp, ssi, sei):
            file_writer.add_summary(summary)
        for name, value in metrics.items():
            self.writer.add_scalar(name, value)

    def close(self) -> None:
        self.writer.close()


class NoTensorBoard:
    """What a job without ``tensorboard`` in its ``logger`` list writes events with: nothing."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def open_job_run(
    cfg: DictConfig, out: Path, name: str, state: TrainState, data: Data, recipe: Recipe
) -> TensorBoardRun | NoTensorBoard:
    """The job's TensorBoard run; a resumed job drops events after its checkpoint's epoch."""
    if "tensorboard" not in (cfg.get("logger") or {}):
        return NoTensorBoard()
    tb = TensorBoardRun(out / "tb" / name, purge_step=state.epoch + 1 if state.epoch else None)
    if state.epoch == 0:
        if cfg.tensorboard.images:
            tb.log_images("images", denormalise(data.train.images[:64], data.mean, data.std))
        if cfg.tensorboard.graph:
            example = data.train.images[:2].to(next(state.model.parameters()).device)
            tb.log_graph(state.model, example.contiguous(memory_format=recipe.memory_format))
    return tb
