"""Exported models (``model.onnx``, ``model.ts``, written by ``export.py``) behind the same
interface as a ``model.pt``'s: ``predict.py JOB/model.onnx image.png`` works as with the job."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

EXPORTED_SUFFIXES = (".onnx", ".ts")


class ExportedModelError(ValueError):
    """A file that is not a model ``export.py`` wrote."""


class Exported(nn.Module):
    """An exported file behind predict's interface: normalised images in (as predict prepares
    them), the exported model fed raw [0, 1] pixels, logits out."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        super().__init__()
        shape = (1, -1, 1, 1)
        self.mean = torch.tensor(data["mean"], dtype=torch.float32).reshape(shape)
        self.std = torch.tensor(data["std"], dtype=torch.float32).reshape(shape)
        self.path = path
        if path.suffix == ".onnx":
            import onnxruntime

            cpu = ["CPUExecutionProvider"]
            self.session = onnxruntime.InferenceSession(str(path), providers=cpu)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                self.module = torch.jit.load(str(path), map_location="cpu")

    def forward(self, normalised: torch.Tensor) -> torch.Tensor:
        pixels = (normalised * self.std + self.mean).float().contiguous()
        if self.path.suffix == ".onnx":
            return torch.from_numpy(self.session.run(None, {"images": pixels.numpy()})[0])
        return self.module(pixels)


def read_metadata(path: Path) -> dict[str, Any]:
    """The ``cnnsweep`` metadata of an exported file (ExportedModelError when it has none)."""
    try:
        if path.suffix == ".onnx":
            import onnx

            props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
            return json.loads(props["cnnsweep"])
        extra = {"cnnsweep.json": ""}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        return json.loads(extra["cnnsweep.json"])
    except Exception as e:  # not a model file, or not one this repo exported
        raise ExportedModelError(
            f"{path} is not a model exported by export.py ({type(e).__name__})"
        ) from None


def load_exported(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """An exported ``model.onnx`` / ``model.ts`` as predict uses a model: the model (normalised
    images in, logits out) and the job's data config."""
    path = Path(path)
    if not path.is_file():
        raise ExportedModelError(f"{path}: no such file")
    meta = read_metadata(path)
    data = dict(meta["data"], class_names=meta["class_names"])
    return Exported(path, data).eval(), data
