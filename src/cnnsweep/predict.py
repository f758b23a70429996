"""Predict with a trained job: random test images, or image files of any size and colour.

python predict.py <job dir or model.pt> [IMAGE ...] [-n 16] [--seed 0] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from PIL import Image, ImageOps, UnidentifiedImageError

from cnnsweep.data import DatasetError, load_test_split
from cnnsweep.models import build_model

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


def load_trained(path: str | Path) -> Trained:
    """A job dir (holding model.pt) or a checkpoint file -> the rebuilt model in eval mode."""
    path = Path(path)
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
    return Trained(model, ckpt["data"], file)


def prepare_image(path: str | Path, data: dict[str, Any]) -> torch.Tensor:
    """Make a photo look like the dataset: grayscale, light object on a dark background,
    fitted into image_size x image_size, normalised -> float [C, H, W]."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            gray = ImageOps.exif_transpose(img).convert("L")
    except (UnidentifiedImageError, OSError) as e:
        reason = "not an image file" if isinstance(e, UnidentifiedImageError) else str(e)
        raise PredictError(f"{path} cannot be read as an image (PNG/JPG/...): {reason}") from None
    pixels = torch.tensor(list(gray.getdata()), dtype=torch.float32).reshape(
        gray.height, gray.width
    )
    border = torch.cat([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    if border.mean() > 127:  # dark object on a light page: the datasets are the other way round
        gray = ImageOps.invert(gray)
    size = int(data.get("image_size", 28))
    fitted = ImageOps.pad(gray, (size, size), method=Image.Resampling.LANCZOS, color=0)
    x = torch.tensor(list(fitted.getdata()), dtype=torch.float32).reshape(1, size, size) / 255.0
    channels = int(data.get("in_channels", 1))
    return ((x - data["mean"]) / data["std"]).expand(channels, size, size).contiguous()


@torch.no_grad()
def probabilities(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    return torch.softmax(model(images), dim=1)


def random_test_images(trained: Trained, n: int, seed: int, data_dir: str | None = None):
    """N test images picked with ``seed``, from the dataset the job was trained on."""
    cfg = OmegaConf.create(trained.data)
    if data_dir is not None and "root" in cfg:
        cfg.root = data_dir
    try:
        test = load_test_split(cfg)
    except DatasetError as e:
        raise PredictError(f"cannot load the test split of {cfg.name}: {e}") from None
    pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))[:n]
    return test.images[pick], test.labels[pick]


def predictions_figure(images, preds, probs, labels, class_names):
    from cnnsweep.reports import samples_figure  # matplotlib only when a picture is asked for

    fig = samples_figure(images, labels, class_names)
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
    parser.add_argument("checkpoint", help="a job dir (holding model.pt) or a model.pt file")
    parser.add_argument("images", nargs="*", help="image files (PNG/JPG, any size, colour or gray)")
    parser.add_argument("-n", type=int, default=16, help="random test images when no files given")
    parser.add_argument("--seed", type=int, default=0, help="which random test images")
    parser.add_argument("--out", default=None, help="folder for predictions.png (default: job dir)")
    parser.add_argument("--data-dir", default=None, help="where the dataset lives, if it moved")
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
        fig = predictions_figure(images, preds, conf, labels, names)
        print(f"wrote {save_figure(fig, out / 'predictions.png')}")
        return 0
    except PredictError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
