"""Inference latency: PyTorch eager against ONNX Runtime, for the seeds' ``network``, ``bn_cnn``
and the model of ``experiment=fashion_mnist_fast``, at batch 1 (ms per image) and batch 256
(images per second), on this machine's CPU. The same timing as the rows' ``latency_ms``
(``cnnsweep.train.latency``: median of 7 timed repeats after 3 warm-up calls), eval mode,
random weights (the cost does not depend on them), Fashion-MNIST's shape. PyTorch runs in
channels_last, as the jobs measure it; ONNX Runtime with its default threads.

    python scripts/bench_export.py          # ~1 minute
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from cnnsweep.export import WithNormalisation
from cnnsweep.exported import Exported
from cnnsweep.models import build_model, count_params, forward_flops, model_spec
from cnnsweep.train.latency import seconds_per_call

REPO = Path(__file__).resolve().parents[1]
MODELS = {"network": [], "bn_cnn": ["model=bn_cnn"],
          "fashion_mnist_fast": ["experiment=fashion_mnist_fast"]}  # fmt: skip


def model_of(overrides: list[str]) -> torch.nn.Module:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        cfg = compose("config", overrides=overrides)
    torch.manual_seed(0)
    return build_model(**model_spec(cfg.model)).eval()


@torch.no_grad()
def main() -> None:
    torch.set_num_threads(os.cpu_count() or 1)
    warnings.filterwarnings("ignore")
    cpu = torch.device("cpu")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; ", end="")
    import onnxruntime

    print(f"onnxruntime {onnxruntime.__version__}")
    print("| model | params | FLOPs | eager ms (batch 1) | ONNX RT ms (batch 1) | "
          "eager img/s (batch 256) | ONNX RT img/s (batch 256) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name, overrides in MODELS.items():
        model = model_of(overrides)
        wrapped = WithNormalisation(model, [0.286], [0.353]).eval()
        eager = wrapped.to(memory_format=torch.channels_last)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.onnx"
            program = torch.onnx.export(
                wrapped, (torch.rand(2, 1, 28, 28),), dynamo=True, opset_version=18,
                input_names=["images"], output_names=["logits"], verbose=False,
                dynamic_shapes=({0: torch.export.Dim("batch")},),
            )  # fmt: skip
            program.save(str(path))
            session = Exported(path, {"mean": [0.0], "std": [1.0]}).session
            row = []
            for batch in (1, 256):
                x = torch.rand(batch, 1, 28, 28)
                xc = x.contiguous(memory_format=torch.channels_last)
                feed = {"images": x.numpy()}
                t_eager = seconds_per_call(lambda: eager(xc), batch, cpu)  # noqa: B023
                t_ort = seconds_per_call(lambda: session.run(None, feed), batch, cpu)  # noqa: B023
                row += [t_eager, t_ort]
        flops = forward_flops(model, 1, 28)
        print(f"| {name} | {count_params(model):,} | {flops / 1e6:.2f} M | "
              f"{1000 * row[0]:.3f} | {1000 * row[1]:.3f} | {256 / row[2]:,.0f} | "
              f"{256 / row[3]:,.0f} |")  # fmt: skip
    sys.stdout.flush()


if __name__ == "__main__":
    main()
