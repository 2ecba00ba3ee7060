"""Where `vtc-lab render` gets its texts: a literal, a text file, or a jsonl/parquet column.
Errors name the file, line and field, because these inputs are hand-made. (A benchmark is a
jsonl file too: the CLI resolves its path through the `benchmark` config group and reads it here.)
Bytes that are not UTF-8 follow the dataset builder's rule (`vtc_lab.textio`): replaced
by U+FFFD and counted (`render/invalid_utf8`), never a crash and never silent."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import NamedTuple

from vtc_lab.textio import clean_value, decode_utf8, read_jsonl


class LoadedTexts(NamedTuple):
    name: str
    """Source name (for a file: its stem plus a hash of its absolute path, so two files with
    the same stem never share an output directory)."""
    texts: list[str]
    invalid_utf8: int = 0
    """Invalid UTF-8 sequences / lone surrogates replaced by U+FFFD."""


def jsonl_texts(source, field: str, label: str | None = None,
                counts: list[int] | None = None) -> list[str]:
    """The string at key `field` of every JSON line of `source` (a path or lines, as
    `vtc_lab.textio.read_jsonl` takes them; blank lines skipped); errors say `file:line`.
    `counts` gets each kept text's number of UTF-8 replacements."""
    texts: list[str] = []
    for line in read_jsonl(source, label):
        if line.error is not None:
            raise ValueError(f"{line.where}: {line.error}")
        row = line.row
        if field not in row:
            raise ValueError(f"{line.where}: no field {field!r} (has: {', '.join(row)})")
        value = row[field]
        if not isinstance(value, str):
            raise ValueError(f"{line.where}: field {field!r} is {type(value).__name__}, not text")
        if counts is not None:
            counts.append(line.replaced)
        texts.append(value)
    return texts


def _parquet(path: Path, field: str, counts: list[int] | None = None) -> list[str]:
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise ValueError(f"{path}: not a readable parquet file ({exc})") from exc
    if field not in schema.names:
        raise ValueError(f"{path}: no column {field!r} (has: {', '.join(schema.names)})")
    try:
        column = pq.read_table(path, columns=[field]).column(field).to_pylist()
    except Exception as exc:  # noqa: BLE001 - corrupt pages: OSError, ArrowInvalid, ...
        raise ValueError(f"{path}: column {field!r} does not decode ({type(exc).__name__}: {exc})") from exc
    texts = []
    for i, value in enumerate(column):
        if not isinstance(value, (str, bytes)):
            raise ValueError(f"{path}: row {i} of column {field!r} is {type(value).__name__}, not text")
        value, n = clean_value(value)  # a binary column: the same UTF-8 rule
        if counts is not None:
            counts.append(n)
        texts.append(value)
    return texts


def read_texts(path: str | Path, field: str, counts: list[int] | None = None) -> list[str]:
    """The texts of one file: a plain text file is one text; `.jsonl`, `.jsonl.gz` and `.parquet`
    give the string at column `field` of every row. `counts` (if given) gets each text's
    number of invalid UTF-8 sequences replaced by U+FFFD."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    suffixes = "".join(path.suffixes[-2:]).lower()
    if suffixes.endswith((".jsonl", ".jsonl.gz", ".json.gz", ".ndjson")):
        return jsonl_texts(path, field, counts=counts)
    if path.suffix.lower() == ".parquet":
        return _parquet(path, field, counts)
    text, replaced = decode_utf8(path.read_bytes())
    if counts is not None:
        counts.append(replaced)
    return [text]


def file_source_name(path: str | Path) -> str:
    """`<stem>-<8 hex of the absolute path>`: a/notes.txt and b/notes.txt are different inputs
    and must not share a report folder (their pages would overwrite each other)."""
    path = Path(path).expanduser()
    where = hashlib.sha256(str(path.resolve()).encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{path.name.split('.')[0]}-{where}"


def load_texts(text: str | None = None, file: str | None = None, field: str = "solution",
               limit: int | None = None) -> LoadedTexts:
    """(source name, texts, invalid UTF-8 count). Precedence: `text`, then `file`."""
    counts: list[int] = []
    if text is not None:
        name, texts = "text", [text]
    elif file is not None:
        texts = read_texts(file, field, counts)
        name = file_source_name(file)
    else:
        raise ValueError("nothing to render: set text=..., file=... or benchmark=...")
    if limit is not None:
        texts, counts = texts[:limit], counts[:limit]
    return LoadedTexts(name, texts, sum(counts))
