"""Train one configuration, or sweep many with -m: `python train.py -m lr=0.01,0.001`."""

import logging
import math
import sys
import warnings

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from cnnsweep.commands import exit_without_teardown, interrupted_line
from cnnsweep.data.types import DatasetError
from cnnsweep.sweep.callbacks import SweepSummary
from cnnsweep.sweep.resolvers import register_resolvers
from cnnsweep.train.job import ConfigError, run_job
from cnnsweep.train.liveness import register, unregister
from cnnsweep.train.lr_find import find_lr

log = logging.getLogger("train")
# Hydra 1.4 warns about every callback it instantiates without an execution whitelist; the one
# conf/config.yaml names is this repo's own (cnnsweep.sweep.callbacks.SweepSummary)
warnings.filterwarnings(
    "ignore",
    message=r"hydra\.utils\.instantiate\(\) resolved _target_='cnnsweep\.",
    category=UserWarning,
)


register_resolvers()  # ${cnnsweep.worker:} in the search presets' sweep folders


@hydra.main(config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    register()  # counted by threads=auto from now on, before the data is read
    try:
        if cfg.get("lr_find"):  # the learning-rate range test: nothing else is trained
            return find_lr(cfg)
        return run_job(cfg)
    except (ConfigError, DatasetError) as e:
        # bad input: one line, not a traceback; in a sweep the other jobs go on
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            log.error("job failed: %s", e)
            return math.nan
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    finally:
        unregister()


if __name__ == "__main__":
    if not {"-m", "--multirun"} & set(sys.argv):  # a single run is a job from its first second
        register()  # (a sweep's driver is not: its jobs register, wherever they run)
    try:
        main()
    except KeyboardInterrupt as e:  # Ctrl-C: one line, not a traceback; rows already say it
        print(interrupted_line(e, sys.argv[1:], SweepSummary.sweep_dir), file=sys.stderr)
        sys.exit(130)
    exit_without_teardown(0)  # done: the prompt back 1.5-2.3 s sooner
