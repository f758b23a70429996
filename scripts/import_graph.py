"""The package's import graph, read from the code: ``python scripts/import_graph.py [--modules]``.

Prints each package (or module) of ``cnnsweep`` with what it imports from the others, then the
cycles (none expected). Imports inside functions count too: they are imports all the same.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "cnnsweep"


def modules() -> dict[str, Path]:
    """``cnnsweep.x.y`` -> its file, for every module of the package."""
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = ["cnnsweep", *path.relative_to(SRC).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports(path: Path) -> set[str]:
    """The ``cnnsweep`` modules a file imports (anywhere in it)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("cnnsweep"):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("cnnsweep")}
    return found


def unit(module: str, by_package: bool) -> str:
    """``cnnsweep.train.job`` -> ``train`` (by package) or ``train.job``."""
    parts = module.split(".")[1:] or ["cnnsweep"]
    return parts[0] if by_package else ".".join(parts)


def graph(by_package: bool = True) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for module, path in modules().items():
        source = unit(module, by_package)
        edges.setdefault(source, set())
        for target in imports(path):
            if unit(target, by_package) != source:
                edges[source].add(unit(target, by_package))
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle found by a depth-first walk (each reported once, from its smallest node)."""
    found, seen = [], set()

    def walk(node: str, path: list[str]) -> None:
        for nxt in sorted(edges.get(node, ())):
            if nxt in path:
                cycle = path[path.index(nxt) :]
                key = tuple(sorted(cycle))
                if key not in seen:
                    seen.add(key)
                    found.append([*cycle, nxt])
            else:
                walk(nxt, [*path, nxt])

    for start in sorted(edges):
        walk(start, [start])
    return found


def main(argv: Iterable[str] = ()) -> int:
    edges = graph(by_package="--modules" not in argv)
    width = max(map(len, edges))
    for source in sorted(edges):
        print(f"{source:<{width}} -> {', '.join(sorted(edges[source])) or '-'}")
    loops = cycles(edges)
    print("cycles: " + ("; ".join(" -> ".join(c) for c in loops) if loops else "none"))
    return 1 if loops else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
