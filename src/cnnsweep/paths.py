"""Where the newest results are: ``python -m cnnsweep.paths sweep|job`` (used by the Makefile).

- the newest *sweep*: the folder of the most recently written ``multirun.yaml`` under
  ``multirun/`` (one search's start, never the study folder that holds all of them);
- the newest *job*: the folder of the most recently written ``model.pt`` under ``outputs/``
  and ``multirun/``.

Nothing found prints nothing and exits 1, so a Make target can say what to run first.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

ROOTS = ("outputs", "multirun")


def _newest(pattern: str, roots: Iterable[str | Path]) -> Path | None:
    found = [p for root in roots if Path(root).is_dir() for p in Path(root).rglob(pattern)]
    return max(found, key=lambda p: (p.stat().st_mtime, str(p))).parent if found else None


def newest_sweep(roots: Iterable[str | Path] = ("multirun",)) -> Path | None:
    return _newest("multirun.yaml", roots)


def newest_job(roots: Iterable[str | Path] = ROOTS) -> Path | None:
    return _newest("model.pt", roots)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in ("sweep", "job"):
        print("usage: python -m cnnsweep.paths sweep|job [ROOT ...]", file=sys.stderr)
        return 2
    finder = newest_sweep if args[0] == "sweep" else newest_job
    found = finder(args[1:]) if args[1:] else finder()
    if found is None:
        return 1
    print(found)
    return 0


if __name__ == "__main__":
    sys.exit(main())
