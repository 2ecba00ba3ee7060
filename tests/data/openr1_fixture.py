"""Test fixture writer: OpenR1-Math-220K-shaped files (parquet or jsonl) for the trace sources'
tests and the build-data perf script; by default the packaged MATH500 problems as OpenR1 rows
(`vtc_lab.data.sources.math500_fixture_rows`). Not part of the library: nothing in it writes
its own input."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from vtc_lab.data.sources import math500_fixture_rows


def write_openr1_fixture(path: str | Path, rows: Iterable[dict] | None = None, limit: int | None = None) -> Path:
    """Write rows (default: the MATH500 fixture) as an OpenR1-schema `.parquet` or `.jsonl` file."""
    path = Path(path)
    rows = list(rows if rows is not None else math500_fixture_rows())[:limit]
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        with open(path, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path
