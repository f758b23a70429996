"""Predict with a trained job: `python predict.py outputs/<date>/<time> [IMAGE ...]`."""

from cnnsweep.commands import exit_without_teardown
from cnnsweep.predict import main

if __name__ == "__main__":
    exit_without_teardown(main())
