"""Trace files: which files `data.path` names, their rows (parquet in record batches,
jsonl through the one JSONL reader, `vtc_lab.textio.read_jsonl`), and a cheap content
fingerprint of each, which the builder checks before reusing a dataset."""

from __future__ import annotations

import glob as globlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from vtc_lab.data.traces import Skip
from vtc_lab.textio import JsonlFileError, clean_value, read_jsonl

READ_BATCH_ROWS = 256
_EXTENSIONS = (".parquet", ".jsonl", ".jsonl.gz", ".json")


# ---------------------------------------------------------------------------------- files


def resolve_files(path: str) -> list[Path]:
    """One file, every data file in a directory (sorted), or a glob's matches (sorted)."""
    p = Path(path).expanduser()
    if p.is_file():
        return [p]
    if p.is_dir():
        found = sorted(f for f in p.iterdir() if f.is_file() and f.name.endswith(_EXTENSIONS))
        if not found:
            raise FileNotFoundError(f"data.path={path!r}: directory holds no {', '.join(_EXTENSIONS)} files")
        return found
    matches = sorted(Path(m) for m in globlib.glob(os.path.expanduser(path), recursive=True))
    matches = [m for m in matches if m.is_file()]
    if not matches:
        raise FileNotFoundError(f"data.path={path!r}: no such file, directory or glob match")
    return matches


def iter_rows(path: Path, columns: list[str] | None = None) -> Iterator[tuple[str, dict | Skip]]:
    """(origin, row) for each row of a parquet or jsonl(.gz) file; bad lines become Skips.

    Parquet reads only `columns` (those present), so the large columns of OpenR1-Math-220K the
    builder does not need (`messages`, `solution`, ...) are never decoded. A file that cannot be
    read at all (truncated, not parquet, bad gzip) or a row group / the rest of a gzip stream that
    fails to decode becomes one `bad_input_file` Skip naming the file, the rows lost and the
    reason; the rows around it are kept. Text that is not valid UTF-8 follows
    `vtc_lab.textio` (U+FFFD, counted in the row under `INVALID_UTF8`).
    """
    if path.name.endswith(".parquet"):
        yield from _parquet_rows(path, columns)
        return
    try:
        for line in read_jsonl(path):
            if line.error is not None:
                yield line.where, Skip("malformed_json", line.where, line.error)
                continue
            record = line.row
            record[INVALID_UTF8] = line.replaced
            yield line.where, record
    except JsonlFileError as exc:  # the lines before it were kept
        yield str(path), Skip("bad_input_file", str(path), str(exc))


INVALID_UTF8 = "__vtc_invalid_utf8__"
"""Key under which `iter_rows` reports a row's U+FFFD replacements (never a real column)."""


def _parquet_rows(path: Path, columns: list[str] | None) -> Iterator[tuple[str, dict | Skip]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path, page_checksum_verification=True)
        names = set(pf.schema_arrow.names)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
        yield str(path), Skip("bad_input_file", str(path),
                              f"not a readable parquet file: {type(exc).__name__}: {exc}")
        return
    wanted = None if columns is None else [c for c in dict.fromkeys(columns) if c in names]
    row = 0
    for group in range(pf.metadata.num_row_groups):
        end = row + pf.metadata.row_group(group).num_rows
        try:  # streamed in batches: memory stays one batch whatever the row group size
            for batch in pf.iter_batches(batch_size=READ_BATCH_ROWS, columns=wanted,
                                         row_groups=[group]):
                for record in batch.to_pylist():
                    row += 1
                    record, replaced = clean_value(record)
                    record[INVALID_UTF8] = replaced
                    yield f"{path}:row {row}", record
        except Exception as exc:  # noqa: BLE001 - corrupt pages: OSError, ArrowInvalid, ...
            where = f"{path}:rows {row + 1}-{end}"
            yield where, Skip("bad_input_file", where,
                              f"row group {group} does not decode: {type(exc).__name__}: {exc}")
        row = end


FULL_HASH_BYTES = 64 << 20
"""Files up to this size are hashed whole; larger ones by size plus sampled blocks."""
_SAMPLE_BLOCK = 1 << 20
_SAMPLES = 16


def file_fingerprint(path: Path) -> dict:
    """{"path", "bytes", "sha256"} of one input file. Cheap by design (a build checks it on
    every run): files up to FULL_HASH_BYTES are hashed whole, larger ones by their size and 16
    blocks of 1 MiB spread evenly over the file (first and last included), so a parquet shard of
    OpenR1-Math-220K costs ~16 MiB of reading, not its gigabytes."""
    size = path.stat().st_size
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        if size <= FULL_HASH_BYTES:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        else:
            step = (size - _SAMPLE_BLOCK) / (_SAMPLES - 1)
            for i in range(_SAMPLES):
                fh.seek(int(i * step))
                h.update(fh.read(_SAMPLE_BLOCK))
            h.update(str(size).encode())
    return {"path": str(path.resolve()), "bytes": size, "sha256": h.hexdigest(),
            "sampled": size > FULL_HASH_BYTES}
