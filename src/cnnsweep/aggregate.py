"""``python -m cnnsweep.aggregate`` (``make aggregate``): see ``cnnsweep.results.cli``."""

import sys

from cnnsweep.results.cli import main

if __name__ == "__main__":
    sys.exit(main())
