"""Ranking and statistics over seeds: what the leaderboard's numbers are."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cnnsweep.results.load import STATUSES
from cnnsweep.schema import KNOBS


def is_better(objective: str) -> str:
    """``max`` for accuracies, ``min`` for losses."""
    return "min" if objective.endswith("loss") else "max"


def _numbers(runs: pd.DataFrame, column: str) -> pd.Series:
    """``column`` as finite floats, NaN where missing or not a number."""
    if column not in runs or pd.api.types.is_bool_dtype(runs[column]):
        return pd.Series(np.nan, index=runs.index)
    values = pd.to_numeric(runs[column], errors="coerce").astype("float64")
    return values.where(np.isfinite(values))


def rank_runs(runs: pd.DataFrame, objective: str | None = None) -> tuple[pd.DataFrame, str]:
    """Completed jobs ranked best first by ``objective`` within their dataset (accuracies of
    two datasets are not comparable), then the others by status.

    ``objective`` defaults to the one most completed jobs were run with (``val_acc`` if none).
    Returns the sorted rows with ``rank`` and ``score`` and the objective used.
    """
    if objective is None:
        counts = runs.loc[runs["status"] == "completed"].get("objective", pd.Series()).dropna()
        counts = counts.value_counts()
        objective = min(counts.index, key=lambda k: (-counts[k], k)) if len(counts) else "val_acc"
    score = _numbers(runs, objective)
    ranked = (runs["status"] == "completed") & score.notna()
    sign = -1.0 if is_better(objective) == "max" else 1.0
    order = pd.DataFrame({
        "unranked": ~ranked, "dataset": dataset_of(runs).where(ranked, ""),  # others: by status
        "key": np.where(ranked, sign * score, runs["status"].cat.codes),
        "sweep": runs["sweep"], "job": runs["job"].fillna(-1), "job_dir": runs["job_dir"],
    })  # fmt: skip
    runs = runs.assign(score=score).loc[order.sort_values(list(order.columns)).index]
    place = order.loc[runs.index].groupby("dataset", sort=False).cumcount() + 1
    runs.insert(0, "rank", place.astype("Int64").mask(order["unranked"]))
    return runs.reset_index(drop=True), objective


def why_unranked(runs: pd.DataFrame, objective: str) -> pd.Series:
    """Why each job has no rank (None for a ranked one): its error; for a completed job
    without ``objective`` (a fixed recipe that keeps no validation split has no ``val_acc``)
    what to rank it by; for a pruned one, where its last value came from."""

    def column(name: str) -> pd.Series:
        return runs[name] if name in runs else pd.Series(None, index=runs.index, dtype=object)

    why: list[str | None] = []
    for rank, status, error, own, source in zip(
        runs["rank"], runs["status"], column("error"), column("objective"),
        column("objective_from"),
    ):  # fmt: skip
        if not pd.isna(rank):
            why.append(None)
        elif isinstance(error, str) and error:
            why.append(error)
        elif status == "completed":
            hint = f'; rank by its objective: make aggregate ARGS="--objective {own}"'
            useful = isinstance(own, str) and own != objective
            why.append(f"no {objective} to rank by" + (hint if useful else ""))
        else:
            why.append(source if isinstance(source, str) else None)
    return pd.Series(why, index=runs.index, dtype=object)


def ci_bounds(metric: str) -> tuple[float | None, float | None]:
    """The values ``metric`` can take, which its confidence interval is clipped to: [0, 1] for
    an accuracy (a name ending in ``acc`` or ``accuracy``), >= 0 for a loss, else unbounded."""
    if metric.endswith(("acc", "accuracy")):
        return 0.0, 1.0
    return (0.0, None) if metric.endswith("loss") else (None, None)


def repeat_of(runs: pd.DataFrame) -> pd.Series:
    """Which repeat of its configuration each job is: its seed, and its fold under k-fold
    cross-validation (the folds of one configuration group like seeds)."""

    def column(name: str) -> pd.Series:
        values = runs[name] if name in runs else pd.Series(pd.NA, index=runs.index)
        return values.astype(object).where(values.notna(), "")

    return column("seed").astype(str) + "/" + column("fold").astype(str)


def _seed_outcomes(runs: pd.DataFrame, ranked: pd.Series, objective: str) -> pd.DataFrame:
    """Per configuration (index ``config_id``): ``seeds_total``, the distinct seeds its jobs ran
    with whatever their status, and ``not_completed``, those of them no ranked job counts,
    by status (``"1 pruned, 1 failed"``; ``""`` when every seed completed). A seed that completed
    in one job and failed in another counts as completed."""
    order = {s: i for i, s in enumerate(STATUSES)}
    code = runs["status"].astype(object).map(order).fillna(len(STATUSES)).astype(int)
    seeds = pd.DataFrame({
        "config_id": runs["config_id"],
        "seed": repeat_of(runs),
        "code": code.where(~ranked, -1),  # -1: counted in the statistics
    })  # fmt: skip
    per_seed = seeds.groupby(["config_id", "seed"], dropna=False, sort=False)["code"].min()
    per_seed = per_seed.reset_index()
    names = [f"completed without {objective}", *STATUSES[1:], "of unknown status"]

    def not_completed(codes: pd.Series) -> str:
        counts = codes[codes >= 0].value_counts().sort_index()
        return ", ".join(f"{n} {names[c]}" for c, n in counts.items())

    groups = per_seed.groupby("config_id", sort=False)["code"]
    return pd.DataFrame({"seeds_total": groups.size(), "not_completed": groups.agg(not_completed)})


def seed_stats(runs: pd.DataFrame, objective: str) -> tuple[pd.DataFrame, int]:
    """Ranked jobs grouped by configuration: mean, std (and for ``objective`` a 95% Student t
    interval, clipped to ``ci_bounds``) of the metrics over its distinct seeds; and how many
    duplicate (configuration, seed) jobs were left out: of those only the one that finished
    last counts.

    ``n`` is the number of seeds the statistics are over; ``seeds_total`` the distinct seeds the
    configuration's jobs ran with, any status; ``not_completed`` the difference by status
    (``"1 failed"``, ``""`` when none): a failed, diverged or pruned seed is not in the mean.
    Only configurations with a ranked job are listed."""
    from scipy import stats

    ranked = runs["rank"].notna()
    done = runs[ranked]
    end = pd.to_datetime(done.get("finished_at"), utc=True, errors="coerce", format="ISO8601")
    done = done.assign(_end=end).sort_values(["_end", "job_dir"], na_position="first")
    unique = done.assign(_repeat=repeat_of(done))
    unique = unique.drop_duplicates(["config_id", "_repeat"], keep="last").drop(columns="_repeat")
    metrics = list(dict.fromkeys((objective, "val_acc", "test_acc")))
    values = pd.DataFrame({m: _numbers(unique, m) for m in metrics}, index=unique.index)
    groups = values.groupby(unique["config_id"], sort=False)
    table = groups.agg(["mean", "std"])
    table.columns = [f"{m}_{s}" for m, s in table.columns]
    knobs = [c for c in KNOBS if c not in ("seed", "fold") and c in unique]
    table = unique.groupby("config_id", sort=False)[knobs].first().join(table)
    table["n"] = groups.size()
    table = table.join(_seed_outcomes(runs, ranked, objective))
    table["best_rank"] = unique.groupby("config_id", sort=False)["rank"].min()
    n, std = table["n"].astype("float64"), table[f"{objective}_std"]
    half = stats.t.ppf(0.975, n - 1) * std / np.sqrt(n)  # NaN for a single seed
    low, high = ci_bounds(objective)
    table["ci_low"] = (table[f"{objective}_mean"] - half).clip(low, high)
    table["ci_high"] = (table[f"{objective}_mean"] + half).clip(low, high)
    sign = -1.0 if is_better(objective) == "max" else 1.0
    table = table.reset_index().assign(_key=sign * table[f"{objective}_mean"].to_numpy())
    table = table.assign(_data=dataset_of(table))
    table = table.sort_values(["_data", "_key", "best_rank", "config_id"])
    table = table.drop(columns=["_key", "_data"])
    return table.reset_index(drop=True), len(done) - len(unique)


def seeds_text(groups: pd.DataFrame) -> list[str]:
    """The ``seeds`` cell of each configuration: ``3``, or ``2 of 3 (1 failed)`` when some of
    its seeds did not complete."""
    return [
        str(n) if not missed else f"{n} of {total} ({missed})"
        for n, total, missed in zip(groups["n"], groups["seeds_total"], groups["not_completed"])
    ]


def ci_method(objective: str) -> str:
    """How the interval of the mean ``objective`` is computed, in words."""
    low, high = ci_bounds(objective)
    clip = (
        "clipped to [0, 1] for an accuracy" if high is not None
        else "cut at 0 for a loss" if low is not None
        else "not clipped"
    )  # fmt: skip
    return f"Student's t over the completed seeds, mean ± t(0.975, n−1) · std / √n, {clip}"


def dataset_of(rows: pd.DataFrame) -> pd.Series:
    """Each row's dataset (``data``), as text ("" where unknown): what rankings are within."""
    if "data" not in rows:
        return pd.Series("", index=rows.index)
    return rows["data"].astype(object).where(rows["data"].notna(), "").astype(str)


def datasets(rows: pd.DataFrame) -> list[str]:
    """The datasets among ``rows``' completed jobs, sorted."""
    done = rows[rows["rank"].notna()] if "rank" in rows else rows
    return sorted(set(dataset_of(done)))


def varying(rows: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """The columns with more than one known value among ``rows``."""
    return [c for c in columns if c in rows and rows[c].nunique(dropna=True) > 1]


def busy_fraction(rows: Sequence[dict], slots: int) -> float:
    """How busy ``slots`` parallel slots were over a sweep: the jobs' summed ``run_duration``
    over ``slots`` x (the last ``finished_at`` minus the first ``started_at``). 1.0: no slot
    ever waited; a synchronous batch waiting for its slowest job shows as less."""
    start = min(pd.Timestamp(r["started_at"]) for r in rows)
    end = max(pd.Timestamp(r["finished_at"]) for r in rows)
    busy = sum(float(r["run_duration"]) for r in rows)
    return busy / (slots * max((end - start).total_seconds(), 1e-9))


def pareto_front(runs: pd.DataFrame, objective: str, cost: str = "flops") -> pd.Series:
    """True for each ranked job that no other ranked job of its dataset beats on both
    ``objective`` and ``cost`` (at least as good on both, better on one); False for the other
    ranked jobs, NA for the unranked ones and those without a ``cost``."""
    score, price = _numbers(runs, "score"), _numbers(runs, cost)
    if is_better(objective) == "min":
        score = -score
    ranked = runs["rank"].notna() & score.notna() & price.notna()
    front = pd.Series(pd.NA, index=runs.index, dtype="boolean")
    data = dataset_of(runs)
    for name in data[ranked].unique():
        idx = runs.index[ranked & (data == name)]
        s, c = score[idx].to_numpy(), price[idx].to_numpy()
        # beaten[i]: some j is at least as good on both and better on one
        ge = (s[None, :] >= s[:, None]) & (c[None, :] <= c[:, None])
        gt = (s[None, :] > s[:, None]) | (c[None, :] < c[:, None])
        beaten = (ge & gt).any(axis=1)
        front[idx] = ~beaten
    return front
