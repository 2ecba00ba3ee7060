"""The one rule for text bytes that are not valid UTF-8 (the dataset builder and `vtc-lab render`).

Input files are hand-made or scraped: a stray Latin-1 byte must neither crash one tool nor be
hidden by the other. Rule: every invalid UTF-8 byte sequence becomes U+FFFD (the replacement
character, which the renderer draws as a visible box-like glyph), and so does a lone surrogate
(a JSON `"\\ud800"` escape decodes to one; it cannot be written back as UTF-8). Each replacement
is counted, and the tools report the counts (`invalid_utf8` in the dataset stats, the render
report's `render/invalid_utf8`), so nothing is replaced silently.
"""

from __future__ import annotations

import re

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
