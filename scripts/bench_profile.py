"""Where an epoch's time goes: one recipe's training step cut into its parts, on real data.

The job is built as ``train.py`` builds it (the same config groups, model, optimizer, schedule,
augmentation, EMA, memory format and threads); then ``--steps`` training steps are timed part by
part (augmentation, forward and loss, backward, optimizer and schedule, EMA), and the passes an
epoch adds (validation; the final test pass, with TTA when the recipe has it) are timed whole.
Parts per step are scaled to a full epoch. Prints a Markdown table.

    python scripts/bench_profile.py                        # experiment=fashion_mnist_fast
    python scripts/bench_profile.py model=bn_cnn lr=0.001  # any train.py overrides
    python scripts/bench_profile.py --steps 5 --quick      # a check that it runs
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from cnnsweep.data.load import complete_config, load_data
from cnnsweep.data.splits import iterate_batches
from cnnsweep.train.job import prepare
from cnnsweep.train.loop import evaluate, tta_label
from cnnsweep.train.runtime import job_device, resolve_threads

REPO = Path(__file__).resolve().parents[1]


def timed(clock: dict[str, float], part: str, fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    clock[part] = clock.get(part, 0.0) + time.perf_counter() - start
    return out


def profile(overrides: list[str], steps: int, warmup: int = 5) -> list[tuple[str, float]]:
    """(part, seconds per epoch) for the job ``overrides`` configure."""
    with initialize_config_dir(config_dir=str(REPO / "conf")):
        cfg = compose("config", overrides=overrides)
    device = job_device(cfg.device)
    torch.set_num_threads(resolve_threads(cfg.threads))
    data = load_data(cfg.data, cfg.seed)
    complete_config(cfg.data, data)
    state, recipe, splits = prepare(cfg, data, device)
    model, train = state.model, splits["train"]
    per_epoch = -(-len(train) // cfg.batch_size)
    clock: dict[str, float] = {}
    batches = iterate_batches(train, cfg.batch_size, True, state.batch_gen)
    model.train()
    for i, (images, labels) in zip(range(warmup + steps), batches):
        if i == warmup:
            clock.clear()
        if recipe.augment is not None:
            images = timed(clock, "augmentation", recipe.augment, images, state.aug_gen)

        def forward(images=images, labels=labels):
            logits = model(images.contiguous(memory_format=recipe.memory_format))
            return F.cross_entropy(logits, labels, label_smoothing=recipe.label_smoothing)

        loss = timed(clock, "forward + loss", forward)
        state.optimizer.zero_grad(set_to_none=True)
        timed(clock, "backward", loss.backward)
        timed(
            clock, "optimizer + schedule", lambda: (state.optimizer.step(), state.scheduler.step())
        )
        if state.ema is not None:
            timed(clock, "EMA", state.ema.update, model)
    rows = [(part, seconds / steps * per_epoch) for part, seconds in clock.items()]
    fmt = recipe.memory_format
    for name, views in (("val", (False, 0)), ("test", (cfg.tta, cfg.tta_shift))):
        if name in splits:
            label = f"{name} pass{tta_label(*views)}"
            start = time.perf_counter()
            evaluate(
                state.eval_model, splits[name], memory_format=fmt, tta=views[0], tta_shift=views[1]
            )
            rows.append((label, time.perf_counter() - start))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("overrides", nargs="*", default=["experiment=fashion_mnist_fast"])
    parser.add_argument("--steps", type=int, default=60, help="timed steps (default: 60)")
    parser.add_argument("--quick", action="store_true", help="a 2000-image subset")
    args = parser.parse_args()
    overrides = list(args.overrides) + (["data.subset=200"] if args.quick else [])
    rows = profile(overrides, args.steps)
    epoch = sum(seconds for part, seconds in rows if not part.startswith("test"))
    print(f"{' '.join(overrides)}: {torch.get_num_threads()} threads, {args.steps} steps timed\n")
    print("| part | s per epoch | share of an epoch |\n| --- | ---: | ---: |")
    for part, seconds in rows:
        share = "once per job" if part.startswith("test") else f"{seconds / epoch:.0%}"
        print(f"| {part} | {seconds:.2f} | {share} |")
    print(f"| **an epoch** | **{epoch:.2f}** | |")


if __name__ == "__main__":
    main()
