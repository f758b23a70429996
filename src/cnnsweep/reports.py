"""The pictures and per-class report people look at after training (seeds 003 and 004)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display: jobs run headless and in parallel
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from torch import nn  # noqa: E402

from cnnsweep.data.normalise import denormalise  # noqa: E402
from cnnsweep.data.types import Stat
from cnnsweep.files import atomic_write, write_json  # noqa: E402
from cnnsweep.models import first_convs  # noqa: E402


def render_png(fig: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes, rendered once (for its file and for TensorBoard alike)."""
    buf = io.BytesIO()
    # no "Software" stamp: the same figure gives the same bytes whatever matplotlib wrote it.
    # No bbox_inches="tight": every figure is laid out by tight_layout already, and "tight"
    # would draw each figure twice
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def save_figure(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Save a PNG atomically (tmp file + rename); the figure stays open."""
    atomic_write(path, render_png(fig, dpi))
    return Path(path)


def history_figure(epoch_rows: list[dict[str, Any]]) -> Figure:
    """Seed 004's plot.png: train and validation loss and accuracy per epoch."""
    epochs = [r["epoch"] for r in epoch_rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, train_key, val_key in (
        (ax_loss, "loss", "val_loss"),
        (ax_acc, "accuracy", "val_accuracy"),
    ):
        ax.plot(epochs, [r[train_key] for r in epoch_rows], "o-", label="train")
        val = [(e, r[val_key]) for e, r in zip(epochs, epoch_rows) if r.get(val_key) is not None]
        if val:
            ax.plot(*zip(*val), "s-", label="validation")
    best = [(r["val_accuracy"], e) for e, r in zip(epochs, epoch_rows) if r.get("val_accuracy")]
    if best:  # the epoch keep_best tests: the first with the highest validation accuracy
        best_epoch = max(best, key=lambda t: (t[0], -t[1]))[1]
        for ax in (ax_loss, ax_acc):
            ax.axvline(best_epoch, color="gray", ls=":", label="best validation accuracy")
    for ax, title in ((ax_loss, "Loss"), (ax_acc, "Accuracy")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        # below the plot, where no point can be: one epoch's points sit in the middle
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, fontsize=8)
        # whole epochs, with room around them: one epoch is a point, not a 0.96-1.04 axis
        ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    fig.tight_layout()
    return fig


def _show(
    ax: Any,
    image: torch.Tensor,
    title: str,
    color: str = "black",
    mean: Stat | None = None,
    std: Stat | None = None,
) -> None:
    """One normalised image (float [C, H, W]) on an axis, with a title.

    With the dataset's mean/std the pixels are shown as they were (true colours); without,
    stretched to the image's own range (a per-channel normalisation then tints colour images).
    """
    img = image.detach().float().cpu()
    if mean is not None and std is not None:
        img = denormalise(img.unsqueeze(0), mean, std)[0]
    else:
        img = (img - img.min()) / (img.max() - img.min() + 1e-8)
    if img.shape[0] == 1:
        ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(img.permute(1, 2, 0).numpy())
    # an explicit y: matplotlib then skips placing the title above tick labels on every draw,
    # which lays out the ticks of each of the 20 hidden axes (a third of the figure's cost)
    ax.set_title(_short(title), fontsize=9, color=color, y=1.0)
    ax.axis("off")


def _short(name: str, width: int = 18) -> str:
    """Folder names can be long; a title wider than its picture runs into the next one."""
    return name if len(name) <= width else name[: width - 1] + "…"


def samples_figure(
    images: torch.Tensor,
    labels: torch.Tensor,
    class_names: list[str],
    mean: Stat | None = None,
    std: Stat | None = None,
) -> Figure:
    """Seed 003's sample grid: training images titled with their class names (in colour for
    colour data; give the dataset's mean/std to show the true colours)."""
    n = len(images)
    cols = min(5, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.8 * cols, 1.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, label in zip(axes.flat, images, labels):
        _show(ax, image, class_names[int(label)], mean=mean, std=std)
    fig.tight_layout()
    return fig


def filter_mosaic(kernels: torch.Tensor, cols: int = 16) -> np.ndarray:
    """Filters ``[N, C, k, k]`` tiled into one image with white gaps, each filter stretched to
    0-1 on its own (an RGB filter as a whole, so its colour balance stays): [H, W] or [H, W, 3]."""
    n, c, k, _ = kernels.shape
    lo = kernels.amin(dim=(1, 2, 3), keepdim=True)
    norm = (kernels - lo) / (kernels.amax(dim=(1, 2, 3), keepdim=True) - lo + 1e-8)
    cols = min(cols, n)
    rows = -(-n // cols)
    mosaic = np.ones((rows * (k + 1) - 1, cols * (k + 1) - 1, c), dtype=np.float32)
    for i, w in enumerate(norm):
        top, left = (i // cols) * (k + 1), (i % cols) * (k + 1)
        mosaic[top : top + k, left : left + k] = w.permute(1, 2, 0).numpy()
    return mosaic if c == 3 else mosaic[..., 0]


def filters_figure(model: nn.Module, cols: int = 16) -> Figure:
    """Seed 003's filter pictures: every first-layer filter (in RGB when it reads 3 channels),
    and the second layer's filters on their first input channel; one mosaic per layer (one
    image to draw, not an axis per filter)."""
    convs = first_convs(model)[:2]
    weights = [c.weight.detach().float().cpu() for c in convs]
    rgb = bool(weights) and weights[0].shape[1] == 3
    mosaics = [
        filter_mosaic(w if i == 0 and rgb else w[:, :1], cols) for i, w in enumerate(weights)
    ]
    heights = [m.shape[0] for m in mosaics]
    fig, axes = plt.subplots(
        len(mosaics),
        1,
        figsize=(7, 0.9 + 7 * sum(heights) / max(m.shape[1] for m in mosaics)),
        height_ratios=heights,
        squeeze=False,
    )
    for i, (ax, mosaic, w) in enumerate(zip(axes[:, 0], mosaics, weights)):
        note = " (RGB)" if mosaic.ndim == 3 else " (input channel 0)" if i else ""
        ax.set_title(f"conv{i + 1}: {len(w)} filters {w.shape[-2]}x{w.shape[-1]}{note}",
                     fontsize=10)  # fmt: skip
        ax.imshow(mosaic, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.axis("off")
    fig.tight_layout()
    return fig


def confusion_figure(matrix: np.ndarray, class_names: list[str]) -> Figure:
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(0.6 * n + 3, 0.6 * n + 2.5))
    im = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix (test split)")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", fontsize=8,
                color="white" if count > threshold else "black")  # fmt: skip
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def class_report(
    y_true: torch.Tensor, y_pred: torch.Tensor, class_names: list[str]
) -> tuple[str, dict[str, Any], np.ndarray]:
    """Per-class precision, recall, F1 and support (text and dict, laid out as scikit-learn's
    ``classification_report`` with 4 digits; 0 where a class has no images or predictions),
    and the confusion matrix (rows: true class). Computed here: importing scikit-learn for
    this took 2.4 s of every process's first job."""
    k = len(class_names)
    t, p = y_true.cpu().long().numpy(), y_pred.cpu().long().numpy()
    matrix = np.bincount(t * k + p, minlength=k * k).reshape(k, k)
    hits, support, predicted = np.diag(matrix), matrix.sum(1), matrix.sum(0)
    precision = np.divide(hits, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(hits, support, out=np.zeros(k), where=support > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros(k), where=both > 0)
    total = int(support.sum())
    table: dict[str, Any] = {}
    for i, name in enumerate(class_names):
        table[name] = _scores(precision[i], recall[i], f1[i], support[i])
    table["accuracy"] = float(hits.sum() / total) if total else 0.0
    weights = support / total if total else np.zeros(k)
    table["macro avg"] = _scores(precision.mean(), recall.mean(), f1.mean(), total)
    table["weighted avg"] = _scores(
        (precision * weights).sum(), (recall * weights).sum(), (f1 * weights).sum(), total
    )
    return _report_text(table, class_names), table, matrix


def _scores(precision: float, recall: float, f1: float, support: int) -> dict[str, Any]:
    """One row of the table; support a float, as scikit-learn's JSON has always had it."""
    return {"precision": float(precision), "recall": float(recall), "f1-score": float(f1),
            "support": float(support)}  # fmt: skip


def _report_text(table: dict[str, Any], class_names: list[str]) -> str:
    """The table as text: one right-aligned row per class, then accuracy and the averages."""
    width = max(len(name) for name in [*class_names, "weighted avg"])
    heads = ["precision", "recall", "f1-score", "support"]
    lines = [f"{'':>{width}} " + "".join(f" {h:>9}" for h in heads), ""]

    def row(name: str) -> str:
        r = table[name]
        cells = "".join(f" {r[h]:>9.4f}" for h in heads[:3])
        return f"{name:>{width}} {cells} {int(r['support']):>9}"

    lines += [row(name) for name in class_names] + [""]
    total = int(table["macro avg"]["support"])
    lines.append(f"{'accuracy':>{width}}  {'':>9} {'':>9} {table['accuracy']:>9.4f} {total:>9}")
    lines += [row("macro avg"), row("weighted avg"), ""]
    return "\n".join(lines)


def _rendered(fig: Figure) -> bytes:
    """The figure's PNG bytes; the figure is closed (a sweep's process draws hundreds)."""
    png = render_png(fig)
    plt.close(fig)
    return png


_SAMPLES: dict[tuple, bytes] = {}  # this process's sample pictures, by what they show


def _samples_png(
    images: torch.Tensor,
    labels: torch.Tensor,
    class_names: list[str],
    mean: Stat | None,
    std: Stat | None,
) -> bytes:
    """samples.png, rendered once per process for the same pictures: the jobs of a sweep with
    one dataset and seed draw the same 20 training images, so later jobs reuse the bytes."""
    digest = hashlib.sha1(images.detach().cpu().numpy().tobytes())
    digest.update(labels.detach().cpu().numpy().tobytes())
    key = (digest.hexdigest(), tuple(class_names), repr(mean), repr(std))
    if key not in _SAMPLES:
        _SAMPLES.clear()  # one entry: a process trains one dataset at a time
        _SAMPLES[key] = _rendered(samples_figure(images, labels, class_names, mean, std))
    return _SAMPLES[key]


def write_job_reports(
    out_dir: str | Path,
    model: nn.Module,
    epoch_rows: list[dict[str, Any]],
    sample_images: torch.Tensor,
    sample_labels: torch.Tensor,
    y_true: torch.Tensor | None,
    y_pred: torch.Tensor | None,
    class_names: list[str],
    tb: Any = None,
    mean: Stat | None = None,
    std: Stat | None = None,
) -> list[Path]:
    """plot.png, samples.png, filters.png, confusion_matrix.png, classification_report.txt/json.

    Each picture also goes to TensorBoard's Images tab when a ``TensorBoardRun`` is given;
    ``mean``/``std`` (the normalisation of ``sample_images``) show the samples in true colours.
    """
    out_dir = Path(out_dir)
    pngs = {
        "plot": _rendered(history_figure(epoch_rows)),
        "samples": _samples_png(sample_images, sample_labels, class_names, mean, std),
        "filters": _rendered(filters_figure(model)),
    }
    written = []
    if y_true is not None and y_pred is not None:
        text, table, matrix = class_report(y_true, y_pred, class_names)
        atomic_write(out_dir / "classification_report.txt", text)
        write_json(out_dir / "classification_report.json", table)
        written += [out_dir / "classification_report.txt", out_dir / "classification_report.json"]
        pngs["confusion_matrix"] = _rendered(confusion_figure(matrix, class_names))
    for name, png in pngs.items():
        atomic_write(out_dir / f"{name}.png", png)
        written.append(out_dir / f"{name}.png")
        if tb is not None:
            tb.log_png(f"reports/{name}", png)
    return written
