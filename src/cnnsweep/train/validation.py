"""Every knob checked before any data is read or any file is written: one line each."""

from __future__ import annotations

import math

import torch
from omegaconf import DictConfig, OmegaConf

from cnnsweep.models import MODELS, build_model, min_image_size, model_spec
from cnnsweep.schema import BUDGETS, COSTS, METRICS, objectives
from cnnsweep.tracking import logger_problem
from cnnsweep.train.augment import AUGMENTS
from cnnsweep.train.monitor import MONITORS
from cnnsweep.train.runtime import ConfigError, check_precision, resolve_device, resolve_threads
from cnnsweep.train.schedule import SCHEDULERS
from cnnsweep.train.whitening import FIRST_CONV


def validate(cfg: DictConfig) -> None:
    """Refuse bad knobs before any data is read or any file is written."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        example = " ".join(f"{k}=<{k.rsplit('.', 1)[-1]}>" for k in missing)
        raise ConfigError(
            f"{', '.join(missing)} not set: give {'it' if len(missing) == 1 else 'them'} on the "
            f"command line, e.g. python train.py data={cfg.data.name} {example}"
        )

    def number(key: str, kind: type, low: float, high: float | None = None, closed: str = ""):
        """``closed``: which ends are allowed ("low", "high", "low high"); else open."""
        value = OmegaConf.select(cfg, key)
        ok = isinstance(value, (int, float) if kind is float else int)
        ok = ok and not isinstance(value, bool) and math.isfinite(value)
        ok = ok and (value >= low if "low" in closed else value > low)
        ok = ok and (high is None or (value <= high if "high" in closed else value < high))
        if not ok:
            what = "an integer" if kind is int else "a number"
            bounds = f"{'>=' if 'low' in closed else '>'} {low:g}"
            if high is not None:
                bounds += f" and {'<=' if 'high' in closed else '<'} {high:g}"
            raise ConfigError(f"{key}={value!r} is not allowed: {key} must be {what} {bounds}")

    number("lr", float, 0)
    for budget in BUDGETS:
        if cfg.get(budget) is not None:
            number(budget, float, 0)
    number("batch_size", int, 0)
    number("epochs", int, 0)
    vf = cfg.data.val_fraction
    if isinstance(vf, bool) or not isinstance(vf, (int, float)) or not 0 <= vf < 1:
        raise ConfigError(f"data.val_fraction={vf!r} is not allowed: it must be in [0, 1)")
    subset = cfg.data.get("subset")
    if subset is not None:
        ok = isinstance(subset, (int, float)) and not isinstance(subset, bool)
        if not ok or not (subset >= 1 and float(subset).is_integer() or 0 < subset < 1):
            raise ConfigError(
                f"data.subset={subset!r} is not allowed: use images per class (an integer >= 1), "
                "a fraction of each class (0 < x < 1) or null (all images)"
            )
    check_folds(cfg.data.get("folds"), cfg.data.get("fold"))
    if problem := logger_problem(cfg):  # a tracker's package missing: before training starts
        raise ConfigError(problem)
    if not isinstance(cfg.seed, int) or isinstance(cfg.seed, bool):
        raise ConfigError(f"seed={cfg.seed!r} is not allowed: seed must be an integer")
    switches = ("shuffle", "tta", "keep_best", "compile", "profile", "lr_find", "latency",
                "reuse_memory")  # fmt: skip
    for key in switches:
        if not isinstance(cfg.get(key, False), bool):
            raise ConfigError(f"{key}={cfg.get(key)!r} is not allowed: use true or false")
    number("label_smoothing", float, 0, 1, "low")
    if cfg.ema.enabled:
        number("ema.decay", float, 0, 1)
        number("ema.every", int, 0)
    for group, names in (("augment", AUGMENTS), ("scheduler", SCHEDULERS), ("model", MODELS)):
        if cfg[group].name not in names:
            raise ConfigError(
                f"{group}.name={cfg[group].name!r} is not allowed: use one of {sorted(names)}"
            )
    if cfg.augment.name != "none":
        number("augment.shift", int, 0, closed="low")
        number("augment.flip", float, 0, 1, "low high")
    if cfg.augment.name == "shift_flip_erase":
        number("augment.erase", float, 0, 1, "low high")
        number("augment.erase_size", int, 0)
    for key in ("width", "depth", "stages"):
        if key in cfg.model:
            number(f"model.{key}", int, 0)
    if cfg.model.get("first_depth") is not None:
        number("model.first_depth", int, 0)
    if not isinstance(cfg.model.get("pool_before_bn", False), bool):
        raise ConfigError(
            f"model.pool_before_bn={cfg.model.pool_before_bn!r} is not allowed: use true or false"
        )
    if (first_conv := cfg.model.get("first_conv", "trained")) not in FIRST_CONV:
        allowed = list(FIRST_CONV)
        raise ConfigError(f"model.first_conv={first_conv!r} is not allowed: use one of {allowed}")
    number("tta_shift", int, 0, closed="low")
    if "dropout" in cfg.model:
        number("model.dropout", float, 0, 1, "low")
    if cfg.early_stopping.patience is not None:
        number("early_stopping.patience", int, 0)
    if cfg.monitor not in MONITORS:
        raise ConfigError(f"monitor={cfg.monitor!r} is not allowed: use one of {list(MONITORS)}")
    number("checkpoint.every", int, 0, closed="low")
    if cfg.get("overfit_batches") is not None:
        number("overfit_batches", int, 0)
    limit = cfg.get("limit_batches")
    is_count = isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1
    is_fraction = isinstance(limit, float) and 0 < limit < 1
    if limit is not None and not (is_count or is_fraction):
        raise ConfigError(
            f"limit_batches={limit!r} is not allowed: use a number of batches (an integer >= 1), "
            "a fraction of every split (0 < x < 1) or null (all batches)"
        )
    device = resolve_device(cfg.device)
    resolve_threads(cfg.threads)
    check_precision(cfg.precision, device)
    allowed = [m for m in METRICS if vf > 0 or not m.startswith(("val", "best_val"))]
    check_objectives(cfg, allowed)
    if vf == 0 and cfg.early_stopping.patience is not None:
        raise ConfigError("early_stopping.patience needs a validation split: data.val_fraction > 0")
    check_model_fits(cfg)


def check_model_fits(cfg: DictConfig) -> None:
    """The model builds and takes the data's image size (else: the smallest size it takes)."""
    spec = model_spec(cfg.model)
    if spec.get("num_classes") is None:  # an image folder's: known once its folders are read
        spec["num_classes"] = 2
    try:
        model = build_model(**spec)
        with torch.no_grad():
            model.eval()(
                torch.zeros(1, spec["in_channels"], spec["image_size"], spec["image_size"])
            )
    except ValueError as e:
        raise ConfigError(str(e)) from None
    except RuntimeError:
        raise ConfigError(
            f"data.image_size={spec['image_size']} is too small for model {spec['name']!r}: "
            f"it takes images of at least {min_image_size(spec)}x{min_image_size(spec)}"
        ) from None


def check_folds(folds: object, fold: object) -> None:
    """``data.folds`` (K >= 2 or null) and ``data.fold`` (0..K-1, or all) fit together."""
    if folds is None:
        if fold is not None:
            raise ConfigError(f"data.fold={fold!r} needs data.folds=K (K >= 2 folds to hold out)")
        return
    if not isinstance(folds, int) or isinstance(folds, bool) or folds < 2:
        raise ConfigError(f"data.folds={folds!r} is not allowed: use an integer >= 2, or null")
    ok = fold == "all" or isinstance(fold, int) and not isinstance(fold, bool) and 0 <= fold < folds
    if not ok:
        raise ConfigError(
            f"data.fold={fold!r} is not allowed with data.folds={folds}: use 0..{folds - 1} "
            "(that fold validates) or all (every fold in turn, their mean returned)"
        )


def check_objectives(cfg: DictConfig, allowed: list[str]) -> None:
    """``objective``: one metric, or a list whose first is a metric and the rest metrics or
    costs (``flops``, ``params``, ``latency_ms``), each once."""
    value = cfg.objective
    names = objectives(value if isinstance(value, str) else list(value))
    shown = value if isinstance(value, str) else f"[{','.join(names)}]"
    if isinstance(value, str) and value not in allowed:
        raise ConfigError(f"objective={value!r} is not allowed: use one of {allowed}")
    if not names or names[0] not in allowed:
        raise ConfigError(f"objective={shown} is not allowed: its first name must be one of "
                          f"{allowed}")  # fmt: skip
    bad = [n for n in names[1:] if n not in (*allowed, *COSTS)]
    if bad or len(set(names)) < len(names):
        why = f"{bad[0]!r} is unknown" if bad else "a name is repeated"
        raise ConfigError(f"objective={shown} is not allowed: {why}; after the first, use "
                          f"metrics {allowed} or costs {list(COSTS)}, each once")  # fmt: skip
    if len(names) > 1 and cfg.data.get("fold") == "all":
        raise ConfigError("data.fold=all returns one cross-validated value: give one objective")
