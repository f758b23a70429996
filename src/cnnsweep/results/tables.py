"""Frames written as CSV and JSON (the same job folders give the same bytes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from cnnsweep.files import atomic_write, write_json
from cnnsweep.results.load import (
    TIMESTAMPS,
)


def is_container(value: Any) -> bool:
    return isinstance(value, (list, dict))


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain Python values (None for missing), timestamps as ISO 8601 strings."""
    df = df.copy()
    for c in TIMESTAMPS:
        if c in df and isinstance(df[c].dtype, pd.DatetimeTZDtype):
            df[c] = df[c].map(lambda t: None if pd.isna(t) else t.isoformat(), na_action=None)
    return df.astype(object).where(df.notna(), None).to_dict("records")


def write_table(df: pd.DataFrame, csv_path: Path, json_path: Path) -> list[dict[str, Any]]:
    """``df`` as CSV (lists JSON-encoded in their cell) and as a JSON list; returns its rows.

    The JSON goes through ``json``, not ``to_json``: that rounds floats to 15 digits and writes
    ``/`` as ``\\/``."""
    records = _records(df)
    cells = [{k: json.dumps(v) if is_container(v) else v for k, v in r.items()} for r in records]
    cells = pd.DataFrame(cells, columns=df.columns, dtype=object)  # None stays None, 1 stays 1
    atomic_write(csv_path, cells.to_csv(index=False, lineterminator="\n"))
    write_json(json_path, records)
    return records
