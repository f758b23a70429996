"""What a job leaves behind: TensorBoard events and results rows, always written atomically."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import tempfile
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
EPOCHS_JSON = "epochs.json"
EPOCHS_CSV = "epochs.csv"
PACKAGES = ("torch", "torchvision", "hydra-core", "optuna", "numpy", "cnnsweep")


# what a job writes into its folder (besides Hydra's .hydra/ and train.log): a new attempt
# removes the earlier attempt's, so nothing stale is ever read as the new attempt's
JOB_OUTPUTS = (
    RESULTS_JSON, RESULTS_CSV, EPOCHS_JSON, EPOCHS_CSV, "model.pt", "plot.png", "samples.png",
    "filters.png", "confusion_matrix.png", "classification_report.txt",
    "classification_report.json", "predictions.png",
)  # fmt: skip


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_path(path: str | Path) -> Path:
    """A new empty temporary file beside ``path``, with the permissions a plain ``open`` would
    give (mkstemp makes 0600 files: colleagues could not read a sweep's results)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~_umask())
    os.close(fd)
    return Path(tmp)


def atomic_write(path: str | Path, content: str | bytes) -> None:
    """Write to a temporary file beside ``path`` and rename it: readers never see half a file."""
    tmp = atomic_path(path)
    try:
        if isinstance(content, bytes):
            tmp.write_bytes(content)
        else:
            tmp.write_text(content, encoding="utf-8", newline="")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def clear_job_outputs(job_dir: str | Path, keep_checkpoint: bool = False) -> None:
    """Remove what an earlier attempt in ``job_dir`` wrote (rows, weights, pictures, TensorBoard
    events, its training checkpoint); a resumed attempt keeps the checkpoint, its epoch rows and
    events (they continue)."""
    job_dir = Path(job_dir)
    keep = {EPOCHS_JSON, EPOCHS_CSV} if keep_checkpoint else set()
    for name in JOB_OUTPUTS:
        if name not in keep:
            (job_dir / name).unlink(missing_ok=True)
    if not keep_checkpoint:
        (job_dir / "last.pt").unlink(missing_ok=True)
        shutil.rmtree(job_dir / "tb", ignore_errors=True)


def move_job_outputs(job_dir: str | Path) -> Path:
    """Move what a job wrote in ``job_dir`` (rows, weights, pictures, events, checkpoint)
    together into ``job_dir/replaced/<UTC time>/``, where the aggregate and the user still find
    them (``results.json`` beside its ``model.pt``). Returns that folder."""
    from datetime import datetime, timezone

    job_dir = Path(job_dir)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target, n = job_dir / "replaced" / stamp, 1
    while target.exists():
        n += 1
        target = job_dir / "replaced" / f"{stamp}-{n}"
    target.mkdir(parents=True)
    for name in (*JOB_OUTPUTS, "last.pt", "last.pt.unusable", "tb"):
        if (job_dir / name).exists():
            os.replace(job_dir / name, target / name)
    return target


def _jsonable(value: Any) -> Any:
    """NaN/inf are not JSON: a diverged loss is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write(path, json.dumps(_jsonable(obj), indent=2, ensure_ascii=False) + "\n")


def write_csv(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """Rows of flat dicts (lists/dicts are JSON-encoded into their cell)."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in row.items()}
        )
    atomic_write(path, buf.getvalue())


def write_results_row(job_dir: str | Path, row: dict[str, Any]) -> None:
    """The job's results row, as ``results.json`` and a one-row ``results.csv``."""
    write_json(Path(job_dir) / RESULTS_JSON, row)
    write_csv(Path(job_dir) / RESULTS_CSV, [{k: v for k, v in row.items() if k != "config"}])


def write_epoch_rows(job_dir: str | Path, rows: list[dict[str, Any]]) -> None:
    write_json(Path(job_dir) / EPOCHS_JSON, rows)
    write_csv(Path(job_dir) / EPOCHS_CSV, rows)


def read_results_row(job_dir: str | Path) -> dict[str, Any] | None:
    """The job's results row, or None when there is none or it cannot be parsed."""
    try:
        row = json.loads((Path(job_dir) / RESULTS_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return row if isinstance(row, dict) else None


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


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
