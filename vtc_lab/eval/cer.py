"""Character error rate: how far a transcript is from the text that was rendered (pure Python).

`edit_distance` is the Levenshtein distance (insertions, deletions, substitutions, each 1),
computed row by row after the common prefix and suffix are cut off, so a close transcript costs
about its length and only the differing middle pays the quadratic table. `cer` normalises
whitespace on both sides first: a page's line breaks are the renderer's wrapping, not the text's,
so a transcript that reads the page line by line is not charged for where lines end.
"""

from __future__ import annotations

import re

_SPACE = re.compile(r"\s+")


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance between `a` and `b`."""
    start = 0
    while start < len(a) and start < len(b) and a[start] == b[start]:
        start += 1
    end_a, end_b = len(a), len(b)
    while end_a > start and end_b > start and a[end_a - 1] == b[end_b - 1]:
        end_a, end_b = end_a - 1, end_b - 1
    a, b = a[start:end_a], b[start:end_b]
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def normalize_space(text: str) -> str:
    """Every run of whitespace one space, none at the ends."""
    return _SPACE.sub(" ", text).strip()


def cer(reference: str, transcript: str) -> tuple[int, int]:
    """(edits, reference characters) after whitespace normalisation; the rate is their ratio
    (an empty reference: the transcript's length over 1)."""
    ref, hyp = normalize_space(reference), normalize_space(transcript)
    return edit_distance(ref, hyp), len(ref)
