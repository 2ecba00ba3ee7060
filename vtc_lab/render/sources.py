"""Where `vtc-lab render` gets its texts: a literal, a text file, or a jsonl/parquet column.
Errors name the file, line and field, because these inputs are hand-made. (A benchmark is a
jsonl file too: the CLI resolves its path through the `benchmark` config group and reads it here.)"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

def _jsonl(path: Path, field: str, opener=open) -> list[str]:
    with opener(path, "rt", encoding="utf-8") as fh:
        return jsonl_texts(fh, field, str(path))


def jsonl_texts(lines, field: str, label: str) -> list[str]:
    """The string at key `field` of every JSON line (blank lines skipped); errors say
    `label:line`."""
    texts: list[str] = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{label}:{lineno}: invalid JSON ({exc.msg})") from exc
        if not isinstance(row, dict) or field not in row:
            keys = ", ".join(row) if isinstance(row, dict) else type(row).__name__
            raise ValueError(f"{label}:{lineno}: no field {field!r} (has: {keys})")
        value = row[field]
        if not isinstance(value, str):
            raise ValueError(f"{label}:{lineno}: field {field!r} is {type(value).__name__}, not text")
        texts.append(value)
    return texts


def _parquet(path: Path, field: str) -> list[str]:
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise ValueError(f"{path}: not a readable parquet file ({exc})") from exc
    if field not in schema.names:
        raise ValueError(f"{path}: no column {field!r} (has: {', '.join(schema.names)})")
    column = pq.read_table(path, columns=[field]).column(field).to_pylist()
    for i, value in enumerate(column):
        if not isinstance(value, str):
            raise ValueError(f"{path}: row {i} of column {field!r} is {type(value).__name__}, not text")
    return column


def read_texts(path: str | Path, field: str) -> list[str]:
    """The texts of one file: a plain text file is one text; `.jsonl`, `.jsonl.gz` and `.parquet`
    give the string at column `field` of every row."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    suffixes = "".join(path.suffixes[-2:]).lower()
    if suffixes.endswith((".jsonl", ".jsonl.gz", ".json.gz", ".ndjson")):
        return _jsonl(path, field, gzip.open if suffixes.endswith(".gz") else open)
    if path.suffix.lower() == ".parquet":
        return _parquet(path, field)
    try:
        return [path.read_text(encoding="utf-8")]
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (byte {exc.start})") from exc


def load_texts(text: str | None = None, file: str | None = None, field: str = "solution",
               limit: int | None = None) -> tuple[str, list[str]]:
    """(source name, texts). Precedence: `text`, then `file`."""
    if text is not None:
        name, texts = "text", [text]
    elif file is not None:
        texts = read_texts(file, field)
        name = Path(file).name.split(".")[0]
    else:
        raise ValueError("nothing to render: set text=..., file=... or benchmark=...")
    if limit is not None:
        texts = texts[:limit]
    return name, texts
