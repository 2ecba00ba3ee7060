"""Character error rate: how far a transcript is from the text that was rendered (pure Python).

`edit_distance` is the project's one Levenshtein distance, defined beside the toy task's
reading metrics (`vtc_lab.task`, the lowest layer, which may import no other stage). `cer` normalises
whitespace on both sides first: a page's line breaks are the renderer's wrapping, not the text's,
so a transcript that reads the page line by line is not charged for where lines end.
"""

from __future__ import annotations

import re

from vtc_lab.task.toytask import edit_distance

__all__ = ["cer", "edit_distance", "normalize_space"]

_SPACE = re.compile(r"\s+")


def normalize_space(text: str) -> str:
    """Every run of whitespace one space, none at the ends."""
    return _SPACE.sub(" ", text).strip()


def cer(reference: str, transcript: str) -> tuple[int, int]:
    """(edits, reference characters) after whitespace normalisation; the rate is their ratio
    (an empty reference: the transcript's length over 1)."""
    ref, hyp = normalize_space(reference), normalize_space(transcript)
    return edit_distance(ref, hyp), len(ref)
