"""Optuna's own pictures and trials table for every study the rows' trials belong to."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cnnsweep.files import atomic_write
from cnnsweep.reports import save_figure
from cnnsweep.sweep.storage import JOURNAL, hide_password, open_storage


def open_study(name: str, url: str) -> Any:
    """The study, read from its storage (an RDB URL, or the sweeper's ``journal:///`` file);
    never creates a database, a table or a journal file."""
    import optuna

    if url.startswith(JOURNAL):  # the sweeper's journal file; Optuna would create it
        path = url[len(JOURNAL) :]
        if not Path(path).is_file():
            raise FileNotFoundError(f"no such file {path}")
        return optuna.load_study(study_name=name, storage=open_storage(url))
    if url.startswith("sqlite:///"):  # SQLAlchemy would create a missing file
        path = url[len("sqlite:///") :].partition("?")[0]
        if path not in ("", ":memory:") and not Path(path).is_file():
            raise FileNotFoundError(f"no such file {path}")
    storage = optuna.storages.RDBStorage(url, skip_table_creation=True)
    return optuna.load_study(study_name=name, storage=storage)


def _importances(vis: Any, study: Any, evaluator: Any) -> Any:
    """Optuna's importance bars, saying which method computed them."""
    ax = vis.plot_param_importances(study, evaluator=evaluator)
    ax.set_xlabel("importance (PED-ANOVA, as the dashboard)")
    return ax


def best_so_far(trials: Any, start: float, maximize: bool = True) -> list[tuple[float, float, int]]:
    """(minutes since ``start`` (a timestamp), best value so far, the trial that has it) at each
    completed trial's end, in the order they ended."""
    import optuna

    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    points: list[tuple[float, float, int]] = []
    for t in sorted(done, key=lambda t: t.datetime_complete):
        minute = (t.datetime_complete.timestamp() - start) / 60
        better = not points or (t.value > points[-1][1] if maximize else t.value < points[-1][1])
        points.append((minute, t.value, t.number) if better else (minute, *points[-1][1:]))
    return points


def _best_so_far(study: Any) -> Any:
    """The best value found so far against the minutes since the study's first trial started:
    what a search buys with more time (a worker's idle time and pruning both show in it)."""
    import matplotlib.pyplot as plt
    import optuna

    start = min(t.datetime_start for t in study.trials if t.datetime_start is not None)
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    points = best_so_far(study.trials, start.timestamp(), maximize)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.step([p[0] for p in points], [p[1] for p in points], where="post", marker="o", markersize=3)
    ax.set(xlabel="minutes since the study's first trial started", ylabel="best value so far",
           title="Best value so far")  # fmt: skip
    ax.grid(alpha=0.3)
    return ax


def study_report(study: Any, folder: Path) -> tuple[list[Path], list[str]]:
    """Optuna's pictures of ``study`` and its ``trials.csv`` in ``folder``; returns the files
    written and one line per picture that cannot be drawn (yet)."""
    import matplotlib
    import matplotlib.pyplot as plt
    import optuna

    vis = optuna.visualization.matplotlib
    # PED-ANOVA, as optuna-dashboard computes it: the report and the dashboard agree (and it
    # draws no random numbers: the same bars every time)
    evaluator = optuna.importance.PedAnovaImportanceEvaluator()
    plots: dict[str, Any] = {  # file: (completed trials it needs, how Optuna draws it)
        "optimization_history.png": (1, vis.plot_optimization_history),
        "param_importances.png": (2, lambda s: _importances(vis, s, evaluator)),
        "intermediate_values.png": (0, vis.plot_intermediate_values),
        "parallel_coordinate.png": (2, vis.plot_parallel_coordinate),
        "best_so_far.png": (1, _best_so_far),
    }
    if len(study.directions) > 1:  # several objectives: the front, not one value's history
        names = study.metric_names
        plots = {"pareto_front.png": (1, lambda s: vis.plot_pareto_front(s, target_names=names))}
    done = len(study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE]))
    curves = any(t.intermediate_values for t in study.get_trials(deepcopy=False))
    folder.mkdir(parents=True, exist_ok=True)
    written, notes = [], []
    verbosity = optuna.logging.get_verbosity()
    # rc_context: Optuna's plots switch pyplot to the ggplot style, keep it from our figures
    with matplotlib.rc_context(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an ExperimentalWarning from every plot function
        for file, (needs, draw) in plots.items():
            before = set(plt.get_fignums())
            try:
                optuna.logging.set_verbosity(optuna.logging.ERROR)  # the notes say what is missing
                if done < needs or (file == "intermediate_values.png" and not curves):
                    why = f"{done} completed trial(s)" if done < needs else "no per-epoch values"
                    raise ValueError(f"{why}, needs {needs or 'a trial with them'}")
                figure = np.ravel(draw(study))[0].figure
                figure.tight_layout()  # long names (model.depth) kept inside the picture
                save_figure(figure, folder / file)
                written.append(folder / file)
            except Exception as e:  # one picture missing must not cost the others
                notes.append(f"study {study.study_name!r}: no {file}: {e}".splitlines()[0])
            finally:
                for num in set(plt.get_fignums()) - before:
                    plt.close(num)
                optuna.logging.set_verbosity(verbosity)
    trials = study.trials_dataframe().to_csv(index=False, lineterminator="\n")
    atomic_write(folder / "trials.csv", trials)
    return [*written, folder / "trials.csv"], notes


def storage_label(url: str) -> str:
    """A short name for a storage: a sqlite or journal file's name, a server's host and
    database (``db.example-optuna``)."""
    path = str(url).partition("?")[0]
    if path.startswith(("sqlite:", "journal:")):
        return Path(path.split(":///", 1)[-1]).name or "memory"
    rest = path.split("://", 1)[-1].rpartition("@")[2]
    return rest.replace("/", "-").replace(":", "-")


def study_reports(runs: pd.DataFrame, out: Path) -> tuple[list[str], list[Path], list[str]]:
    """A ``study_report`` in ``out/<study name>/`` for every study the rows' trials belong to.
    Returns lines for ``summary.md``, the files written and one line per study or picture
    skipped: a study that cannot be read never stops the aggregate."""
    if not {"study_name", "trial_number"} <= set(runs.columns):
        return [], [], []
    trials = runs[runs["study_name"].notna() & runs["trial_number"].notna()]
    storage = trials.get("study_storage", pd.Series(pd.NA, index=trials.index, dtype=object))
    lines, written, notes, used = [], [], [], set()
    for name in sorted(trials["study_name"].unique()):
        urls = sorted(storage[trials["study_name"] == name].dropna().unique())
        if not urls:
            notes.append(f"study {name!r}: its rows name no study_storage (written by an older "
                         "version): no study report")  # fmt: skip
        for url in urls:
            folder = re.sub(r"[^\w.=+-]", "_", name)
            if len(urls) > 1:  # one name in two storages: each folder says which storage
                folder += "@" + re.sub(r"[^\w.=+-]", "_", storage_label(url))
            while folder in used:
                folder += "_"
            try:
                study = open_study(name, url)
                files, skipped = study_report(study, out / folder)
            except Exception as e:
                why = f"{type(e).__name__}: {e}".splitlines()[0]
                notes.append(f"study {name!r} in {hide_password(url)} skipped: {why}")
                continue
            used.add(folder)
            written, notes = written + files, notes + skipped
            states = pd.Series([t.state.name.lower() for t in study.trials]).value_counts()
            several = len(study.directions) > 1
            best = study.best_trial if states.get("complete") and not several else None
            front = f"), {len(study.best_trials)} on the Pareto front" if several else ")"
            lines.append(
                f"- `{name}`: {len(study.trials)} trial(s) ("
                + ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
                + (f"), best {best.value:.4f} (trial {best.number})" if best else front)
                + f" in `{hide_password(url)}`: `{folder}/`"
            )
    return lines, written, notes
