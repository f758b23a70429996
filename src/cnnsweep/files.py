"""What a job leaves in its folder besides TensorBoard: its files' names, rows written
atomically (temporary file, then rename), read back, cleared or moved aside."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

RESULTS_JSON = "results.json"
CV_JSON = "cross_validation.json"  # a data.fold=all job: its folds, their values and mean
LR_FIND_JSON = "lr_find.json"  # an lr_find=true run: the range test, no training, no row
RESULTS_CSV = "results.csv"
EPOCHS_JSON = "epochs.json"
EPOCHS_CSV = "epochs.csv"
PACKAGES = ("torch", "torchvision", "hydra-core", "optuna", "numpy", "cnnsweep")
# what a job writes into its folder (besides Hydra's .hydra/ and train.log): a new attempt
# removes the earlier attempt's, so nothing stale is ever read as the new attempt's
JOB_OUTPUTS = (
    RESULTS_JSON, RESULTS_CSV, EPOCHS_JSON, EPOCHS_CSV, "model.pt", "plot.png", "samples.png",
    "filters.png", "confusion_matrix.png", "classification_report.txt",
    "classification_report.json", "predictions.png", "profile.json", "profile.txt",
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
