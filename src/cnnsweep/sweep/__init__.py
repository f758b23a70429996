"""Searches: the Optuna sweeper (trial identity, pruning, shared studies), a job's handle on its
trial, study storages, and the line a sweep ends with."""
