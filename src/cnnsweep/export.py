"""A job's kept weights out of PyTorch: ``python export.py JOB [--format onnx|torchscript]``.

Writes ``JOB/model.onnx`` (ONNX opset ``OPSET``, ONNX Runtime runs it) and ``JOB/model.ts``
(TorchScript). Both take **float32 NCHW images with pixel values in [0, 1]** (what
``torchvision.transforms.ToTensor`` gives; any batch size) and return **(N, classes) logits**:
the dataset's normalisation is built in. Their metadata (``cnnsweep`` in ONNX's metadata_props,
``cnnsweep.json`` in TorchScript's extra files) holds the class names, the input convention,
the model spec and the job's data config, which ``predict.py`` reads to use an exported model
as it uses ``model.pt``. Each export is checked: its logits against PyTorch's on real test
images of the job's dataset; the largest absolute difference is printed.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnsweep.exported import load_exported
from cnnsweep.files import atomic_write
from cnnsweep.predict import PredictError, Trained, load_trained, random_test_images

OPSET = 18
FORMATS = {"onnx": "model.onnx", "torchscript": "model.ts"}
INPUT = "float32 NCHW images, pixel values in [0, 1]; normalisation built in; output: logits"
CHECK_IMAGES = 256
TOLERANCE = 1e-4  # float32 logits of the same graph on another runtime


class WithNormalisation(nn.Module):
    """``model`` behind the dataset's normalisation: images in [0, 1] in, logits out."""

    def __init__(self, model: nn.Module, mean: Any, std: Any) -> None:
        super().__init__()
        self.model = model
        shape = (1, -1, 1, 1)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(shape))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(shape))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model((images - self.mean) / self.std)


def metadata(trained: Trained, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    """What an exported file says of itself (JSON): enough for predict to use it."""
    return {"class_names": list(trained.data["class_names"]), "input": INPUT, "opset": OPSET,
            "model": spec or {}, "data": trained.data}  # fmt: skip


def export(trained: Trained, fmt: str, out: Path) -> Path:
    """Write ``trained`` (a model.pt's) in ``fmt``; returns the file."""
    data = trained.data
    wrapped = WithNormalisation(trained.model, data["mean"], data["std"]).eval()
    channels, size = int(data["in_channels"]), int(data["image_size"])
    example = torch.rand(2, channels, size, size)
    meta = json.dumps(metadata(trained, trained.spec))
    path = out / FORMATS[fmt]
    with warnings.catch_warnings():  # torch.jit and the ONNX exporter's chatter
        warnings.simplefilter("ignore")
        if fmt == "onnx":
            import onnx

            program = torch.onnx.export(
                wrapped, (example,), dynamo=True, opset_version=OPSET, verbose=False,
                input_names=["images"], output_names=["logits"],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
            )  # fmt: skip
            proto = program.model_proto
            onnx.helper.set_model_props(proto, {"cnnsweep": meta})
            atomic_write(path, proto.SerializeToString())
        else:
            buffer = io.BytesIO()
            traced = torch.jit.trace(wrapped, example)
            torch.jit.save(traced, buffer, _extra_files={"cnnsweep.json": meta})
            atomic_write(path, buffer.getvalue())
    return path


@torch.no_grad()
def check(trained: Trained, path: Path, data_dir: str | None = None) -> float:
    """The largest absolute difference between the exported model's logits and PyTorch's on
    ``CHECK_IMAGES`` real test images of the job's dataset."""
    images, _ = random_test_images(trained, CHECK_IMAGES, seed=0, data_dir=data_dir)
    expected = trained.model(images)
    model, _ = load_exported(path)
    return float((model(images) - expected).abs().max())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python export.py", description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)  # fmt: skip
    parser.add_argument("job", help="a job dir (holding model.pt) or a model.pt file")
    parser.add_argument("--format", choices=[*FORMATS, "all"], default="all",
                        help="onnx, torchscript or all (default: all)")  # fmt: skip
    parser.add_argument("--data-dir", default=None, help="where the dataset lives, if it moved")
    args = parser.parse_args(argv)
    try:
        trained = load_trained(args.job)
        if trained.path.suffix != ".pt":
            raise PredictError(f"{trained.path} is exported already: give the job dir")
        for fmt in FORMATS if args.format == "all" else [args.format]:
            path = export(trained, fmt, trained.path.parent)
            diff = check(trained, path, args.data_dir)
            verdict = "ok" if diff <= TOLERANCE else f"MORE THAN {TOLERANCE:g}"
            opset = f", opset {OPSET}" if fmt == "onnx" else ""
            print(f"wrote {path} ({fmt}{opset}); logits vs PyTorch on {CHECK_IMAGES} test "
                  f"images: max abs difference {diff:.2e} ({verdict})")  # fmt: skip
            if diff > TOLERANCE:
                return 1
        print(f"input: {INPUT}")
        return 0
    except PredictError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
