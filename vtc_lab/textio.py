"""The one rule for text bytes that are not valid UTF-8 (the dataset builder and `vtc-lab render`),
and the one JSONL reader (`read_jsonl`: traces, `vtc-lab render` files, benchmarks).

Input files are hand-made or scraped: a stray Latin-1 byte must neither crash one tool nor be
hidden by the other. Rule: every invalid UTF-8 byte sequence becomes U+FFFD (the replacement
character, which the renderer draws as a visible box-like glyph), and so does a lone surrogate
(a JSON `"\\ud800"` escape decodes to one; it cannot be written back as UTF-8). Each replacement
is counted, and the tools report the counts (`invalid_utf8` in the dataset stats, the render
report's `render/invalid_utf8`), so nothing is replaced silently.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPLACEMENT = "\ufffd"
_REPLACEMENT_BYTES = REPLACEMENT.encode("utf-8")
_SURROGATE = re.compile("[\ud800-\udfff]")


def decode_utf8(raw: bytes) -> tuple[str, int]:
    """(text, replaced): `raw` decoded as UTF-8, each invalid byte sequence replaced by U+FFFD
    (Python's `errors="replace"` rule: one U+FFFD per maximal invalid subpart)."""
    try:
        return raw.decode("utf-8"), 0
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="replace")
        # U+FFFD characters that were valid in the input are not replacements
        return text, text.count(REPLACEMENT) - raw.count(_REPLACEMENT_BYTES)


def replace_surrogates(text: str) -> tuple[str, int]:
    """(text, replaced): lone surrogates (not encodable as UTF-8) replaced by U+FFFD."""
    if text.isascii():
        return text, 0
    return _SURROGATE.subn(REPLACEMENT, text)


def clean_value(value):
    """A decoded JSON/parquet value with the rule applied to every string inside it (bytes
    values are decoded as UTF-8); returns (value, replaced)."""
    if isinstance(value, str):
        return replace_surrogates(value)
    if isinstance(value, (bytes, bytearray)):
        text, n = decode_utf8(bytes(value))
        return text, n
    if isinstance(value, list):
        out, total = [], 0
        for v in value:
            v, n = clean_value(v)
            out.append(v)
            total += n
        return out, total
    if isinstance(value, dict):
        out_d, total = {}, 0
        for k, v in value.items():
            v, n = clean_value(v)
            out_d[k] = v
            total += n
        return out_d, total
    return value, 0


@dataclass(frozen=True)
class JsonLine:
    """One non-blank line of a JSONL file, as `read_jsonl` yields it."""

    where: str
    """`<file>:<line>`: what every message about this line starts with."""
    lineno: int
    """1-based physical line number (blank lines counted)."""
    row: Any
    """The decoded JSON object, strings cleaned by the UTF-8 rule; None when `error` is set."""
    error: str | None
    """Why the line is not a JSON object (`invalid JSON (...)`, `not a JSON object (list)`)."""
    replaced: int
    """Invalid UTF-8 sequences and lone surrogates on this line replaced by U+FFFD."""


class JsonlFileError(ValueError):
    """The file itself cannot be read further (a truncated or damaged gzip stream, an I/O
    error); the message names the file and the last line read. Lines before it were yielded."""


def read_jsonl(source: str | Path | Iterable[bytes | str], label: str | None = None
               ) -> Iterator[JsonLine]:
    """Each non-blank line of a `.jsonl` / `.jsonl.gz` file (`source` a path; gunzipped when
    its name ends in .gz) or of already-read lines (`source` an iterable of bytes or str,
    `label` naming them in messages). Bytes are decoded by the UTF-8 rule above, never
    strictly. A line that is not a JSON object is yielded with its `error`, so each caller
    chooses to stop (naming `where`) or to skip and count it; a file that breaks off raises
    `JsonlFileError`. Lines are split on newline only (JSON strings may hold U+2028)."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        yield from _read_file(path, label or str(path))
    else:
        yield from _read_lines(source, label or "<lines>")


def _read_file(path: Path, label: str) -> Iterator[JsonLine]:
    last = 0
    try:
        with (gzip.open if path.name.endswith(".gz") else open)(path, "rb") as fh:
            for line in _read_lines(fh, label):
                last = line.lineno
                yield line
    except EOFError:  # gzip: the stream ends before its end marker
        raise JsonlFileError(f"{path}: the gzip file is truncated after line {last} (it ends "
                             "before its end marker: an interrupted copy or download?)") from None
    except (gzip.BadGzipFile, zlib.error) as exc:  # not gzip, or damaged inside
        raise JsonlFileError(f"{path}: not a readable gzip file after line {last} ({exc})") \
            from None
    except OSError as exc:
        raise JsonlFileError(f"{path}: unreadable after line {last} "
                             f"({type(exc).__name__}: {exc})") from None


def _read_lines(lines: Iterable[bytes | str], label: str) -> Iterator[JsonLine]:
    for lineno, raw in enumerate(lines, 1):
        text, replaced = decode_utf8(raw) if isinstance(raw, (bytes, bytearray)) else (raw, 0)
        if not text.strip():
            continue
        where = f"{label}:{lineno}"
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            yield JsonLine(where, lineno, None, f"invalid JSON ({exc.msg} at column {exc.colno})",
                           replaced)
            continue
        if not isinstance(row, dict):
            yield JsonLine(where, lineno, None, f"not a JSON object ({type(row).__name__})",
                           replaced)
            continue
        row, more = clean_value(row)
        yield JsonLine(where, lineno, row, None, replaced + more)
