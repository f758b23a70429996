"""Predict with a trained job: random test images, or image files of any size and colour.

python predict.py <job dir or model.pt> [IMAGE ...] [-n 16] [--seed 0] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from omegaconf import OmegaConf

from cnnsweep.data.images import ImageReadError, conversion_for, read_image
from cnnsweep.data.load import load_test_split
from cnnsweep.data.normalise import to_float
from cnnsweep.data.torchvision_sets import dataset_folder
from cnnsweep.data.types import DatasetError, Stat
from cnnsweep.exported import EXPORTED_SUFFIXES, ExportedModelError, load_exported
from cnnsweep.models import build_model

if TYPE_CHECKING:  # matplotlib is imported only when a picture is drawn
    from matplotlib.figure import Figure

CHECKPOINT = "model.pt"


class PredictError(RuntimeError):
    """Bad input to predict: the message says which path and why."""


@dataclass
class Trained:
    model: torch.nn.Module
    data: dict[
        str, Any
    ]  # the job's resolved data config (class names, mean/std, where the data is)
    path: Path
    spec: dict[str, Any] | None = None  # what rebuilds the model (a model.pt's)


def load_trained(path: str | Path) -> Trained:
    """A job dir (holding model.pt), a checkpoint file, or a model exported by export.py ->
    the model in eval mode (normalised images in, logits out) and its data config."""
    path = Path(path)
    if path.suffix in EXPORTED_SUFFIXES:
        try:
            model, data = load_exported(path)
        except ExportedModelError as e:
            raise PredictError(str(e)) from None
        return Trained(model, data, path)
    file = path / CHECKPOINT if path.is_dir() else path
    if not file.is_file():
        what = "a job dir without model.pt" if path.is_dir() else "no such file"
        raise PredictError(
            f"{path} is {what}; give a job dir (holding {CHECKPOINT}) or a checkpoint"
        )
    try:
        ckpt = torch.load(file, map_location="cpu", weights_only=True)  # no pickled code runs
    except Exception as e:
        raise PredictError(f"{file} is not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or not {"state_dict", "model", "data"} <= set(ckpt):
        raise PredictError(f"{file} is not a cnnsweep checkpoint (needs state_dict, model, data)")
    spec = ckpt["model"]
    try:
        model = build_model(**spec)
    except (TypeError, ValueError) as e:
        raise PredictError(f"{file}: cannot rebuild the model from {spec}: {e}") from None
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        raise PredictError(
            f"{file}: weights do not fit model {spec.get('name')!r} "
            f"(in_channels={spec.get('in_channels')}, "
            f"num_classes={spec.get('num_classes')}): {first}"
        ) from None
    model.eval()
    data = dict(ckpt["data"])
    if data.get("class_names") is None and ckpt.get("class_names"):
        data["class_names"] = list(ckpt["class_names"])  # an image folder's, found when training
    return Trained(model, data, file, spec)


def prepare_image(path: str | Path, data: dict[str, Any]) -> torch.Tensor:
    """Make a photo look like the dataset's images -> normalised float [C, H, W].

    The conversion is the one an image folder's training images went through (orientation,
    transparency, bit depth, colour mode, size): RGB for colour datasets; for the MNIST family
    grayscale, light object on a dark background, padded to a square."""
    path = Path(path)
    try:
        # datasets without a resize key (the MNIST family, CSV) pad: a drawing keeps its edges
        conv = conversion_for(data, default_fit="pad")
    except DatasetError as e:
        raise PredictError(f"the checkpoint's data config cannot convert images: {e}") from None
    if data.get("mean") is None or data.get("std") is None:
        raise PredictError(
            "the checkpoint has no normalisation (data.mean/std are null); train it again"
        )
    try:
        pixels = read_image(path, conv)
    except ImageReadError as e:
        raise PredictError(f"{path} cannot be read as an image (PNG/JPG/...): {e}") from None
    except FileNotFoundError:
        raise PredictError(f"{path} cannot be read as an image: no such file") from None
    x = torch.from_numpy(pixels).unsqueeze(0)
    return to_float(x, data["mean"], data["std"], conv.channels)[0]


@torch.no_grad()
def probabilities(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    return torch.softmax(model(images), dim=1)


def _probe(data: dict[str, Any]) -> tuple[list[str], str, bool]:
    """(the config's path keys, the path that shows the data is there, is it a folder)."""
    source = data.get("source")
    if source == "torchvision":
        return ["root"], str(Path(data["root"]) / dataset_folder(data["dataset"])), True
    if source == "csv":
        return ["train_csv", "test_csv"], data["test_csv"], False
    if source == "image_folder":
        return (
            ["train_dir", "test_dir", "cache_dir"],
            data.get("test_dir") or data["train_dir"],
            True,
        )
    return [], "", True


def locate_data(data: dict[str, Any], job_dir: Path, data_dir: str | None = None) -> dict:
    """The checkpoint's data config with its paths pointing at data that exists, never at a
    place to download into.

    A relative path (older checkpoints store ``data.root`` as ``data``) is relative to the
    folder the job was started in: the job folder is ``<there>/outputs/<date>/<time>`` or
    ``<there>/multirun/<date>/<time>/<n>``, so the job folder's parents are searched, then the
    current folder. ``data_dir`` (``--data-dir``) is the torchvision root, or the folder that
    relative CSV/image-folder paths start from; only then may torchvision download (into it).
    """
    data = dict(data)
    keys, probe, is_dir = _probe(data)
    if not keys:
        return data
    if data.get("source") == "torchvision":
        if data_dir is not None:
            return data | {"root": str(data_dir)}
        data["download"] = False
    exists = Path.is_dir if is_dir else Path.is_file
    if Path(probe).is_absolute():
        if not exists(Path(probe)):
            raise PredictError(
                f"the job's data is not in {probe} (moved?); give --data-dir DIR, "
                f"the folder that now holds it"
            )
        if data.get("cache_dir") and not Path(data["cache_dir"]).is_absolute():
            data["cache_dir"] = None  # relative to an unknown folder: convert, write nothing
        return data
    bases = [Path(data_dir)] if data_dir is not None else [job_dir, *job_dir.parents, Path.cwd()]
    for base in bases:
        if exists(base / probe):
            for key in keys:
                value = data.get(key)
                if isinstance(value, str) and value and not Path(value).is_absolute():
                    data[key] = str(base / value)
            return data
    where = (
        f"{data_dir}"
        if data_dir is not None
        else f"{job_dir}, its parent folders and the current folder {Path.cwd()}"
    )
    if data.get("source") == "torchvision":
        hint = f"the data_dir that holds {Path(probe).name}/"
    else:
        hint = f"the folder that holds {Path(probe).parts[0]} (relative paths start there)"
    raise PredictError(
        f"the job's data ({probe}) was not found in {where}; nothing was downloaded; "
        f"give --data-dir DIR, {hint}"
    )


def random_test_images(trained: Trained, n: int, seed: int, data_dir: str | None = None):
    """N test images picked with ``seed``, from the dataset the job was trained on."""
    cfg = OmegaConf.create(locate_data(trained.data, trained.path.parent, data_dir))
    try:
        test = load_test_split(cfg)
    except DatasetError as e:
        raise PredictError(f"cannot load the test split of {cfg.name}: {e}") from None
    pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))[:n]
    return test.images[pick], test.labels[pick]


def predictions_figure(
    images: torch.Tensor,
    preds: torch.Tensor,
    probs: torch.Tensor,
    labels: torch.Tensor,
    class_names: list[str],
    mean: Stat | None = None,
    std: Stat | None = None,
) -> Figure:
    from cnnsweep.reports import samples_figure  # matplotlib only when a picture is asked for

    fig = samples_figure(images, labels, class_names, mean, std)
    for ax, p, q, t in zip(fig.axes, preds, probs, labels):
        ok = int(p) == int(t)
        ax.set_title(
            f"{class_names[int(p)]} {q:.0%}\n" + ("" if ok else f"true: {class_names[int(t)]}"),
            fontsize=8,
            color="green" if ok else "red",
        )
        if not ok:
            for spine in ax.spines.values():
                spine.set_visible(True)
                spine.set_color("red")
                spine.set_linewidth(3)
            ax.axis("on")
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("predicted (true where wrong)", fontsize=10)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("checkpoint", help="a job dir (holding model.pt), a model.pt file, or an "
                        "exported model.onnx / model.ts")  # fmt: skip
    parser.add_argument("images", nargs="*", help="image files (PNG/JPG, any size, colour or gray)")
    parser.add_argument("-n", type=int, default=16, help="random test images when no files given")
    parser.add_argument("--seed", type=int, default=0, help="which random test images")
    parser.add_argument("--out", default=None, help="folder for predictions.png (default: job dir)")
    parser.add_argument(
        "--data-dir",
        default=None,
        help="where the dataset lives, if it moved: the data_dir of torchvision datasets, or the\n"
        "folder relative CSV/image-folder paths start from (never downloads otherwise)",
    )
    args = parser.parse_args(argv)
    if args.n <= 0:
        parser.error(f"-n {args.n} is not allowed: give a number > 0")
    try:
        trained = load_trained(args.checkpoint)
        names = list(trained.data["class_names"])
        if args.images:
            batch = torch.stack([prepare_image(p, trained.data) for p in args.images])
            probs = probabilities(trained.model, batch)
            for path, row in zip(args.images, probs):
                top = torch.topk(row, k=min(3, len(names)))
                guesses = ", ".join(f"{names[i]} {p:.1%}" for p, i in zip(top.values, top.indices))
                print(f"{path}: {guesses}")
            return 0
        images, labels = random_test_images(trained, args.n, args.seed, args.data_dir)
        probs = probabilities(trained.model, images)
        conf, preds = probs.max(1)
        for i, (p, q, t) in enumerate(zip(preds, conf, labels)):
            mark = "ok" if p == t else "WRONG"
            print(
                f"{i:3d}  predicted {names[int(p)]:<14} {q:6.1%}  true {names[int(t)]:<14} {mark}"
            )
        print(f"{int((preds == labels).sum())}/{len(labels)} correct")
        from cnnsweep.reports import save_figure

        out = Path(args.out) if args.out else trained.path.parent
        out.mkdir(parents=True, exist_ok=True)
        data = trained.data
        fig = predictions_figure(images, preds, conf, labels, names, data["mean"], data["std"])
        print(f"wrote {save_figure(fig, out / 'predictions.png')}")
        return 0
    except PredictError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
