"""``python -m cnnsweep.aggregate`` (``make aggregate``): see ``cnnsweep.results.cli``."""

from cnnsweep.commands import exit_without_teardown
from cnnsweep.results.cli import main

if __name__ == "__main__":
    exit_without_teardown(main())
