"""Lossless segmentation: reasoning text -> ordered segments with `"".join(segments) == text`.

All policies share one greedy loop: from the current position take the character window that
`max_tokens` tokens cover, let the policy pick a cut inside it, then re-count the candidate
segment on its own (a BPE may tokenise a slice differently from the whole text) and shrink the
window until it fits. Cuts are character positions, so joining the slices gives the text back
exactly whatever the policy does.

A policy is a cut factory registered under its name with `@register_policy("<name>")`
(`SegmentationConfig.policy` accepts exactly the registered names); adding one is a decorated
factory here plus a preset in conf/segmentation/, and tests/segment/test_policies.py runs its
contract tests over every registered policy.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # the config imports this module to validate `policy`
    from vtc_lab.segment.config import SegmentationConfig

CutFunction = Callable[[str, int, int, "SegmentationConfig"], int]
"""`cut(text, start, end, cfg)`: the end of the next segment, in (start, end]."""

_POLICIES: dict[str, Callable[["SegmentationConfig"], CutFunction]] = {}


def register_policy(name: str):
    """Decorator: register a cut factory `make(cfg) -> cut` as the policy `name`."""
    if not name.isidentifier():
        raise ValueError(f"segmentation policy name must be an identifier, got {name!r}")

    def add(make: Callable[["SegmentationConfig"], CutFunction]):
        if name in _POLICIES:
            raise ValueError(f"segmentation policy {name!r} is already registered")
        _POLICIES[name] = make
        return make

    return add


def policy_names() -> tuple[str, ...]:
    """Every registered policy, in registration order."""
    return tuple(_POLICIES)


class TokenCounter(Protocol):
    """The part of `vtc_lab.render.TextTokenizer` segmentation needs."""

    def count(self, text: str) -> int: ...

    def offsets(self, text: str) -> list[tuple[int, int]]: ...


class TooManySegmentsError(ValueError):
    """A trace needs more than `max_segments` segments and `on_overflow` is `drop`."""


_PARAGRAPH = re.compile(r"\n[ \t]*\n[ \t\n]*")
_SENTENCE = re.compile(r"[.!?][)\"'\]]*[ \t]+")
_LINE = re.compile(r"\n")
_SPACE = re.compile(r"\s+")


def _last_cut(pattern: re.Pattern[str], text: str, lo: int, hi: int) -> int | None:
    """End of the last match of `pattern` in text[:hi] that ends in [lo, hi]; None if none."""
    best = None
    # Search a little before lo so a separator straddling lo is still seen.
    for m in pattern.finditer(text, max(0, lo - 64), hi):
        if lo <= m.end() <= hi:
            best = m.end()
    return best


def _boundary_cut(text: str, start: int, end: int, cfg: SegmentationConfig) -> int:
    lo = max(start + 1, start + int((end - start) * cfg.min_fill))
    for pattern in (_PARAGRAPH, _SENTENCE, _LINE, _SPACE):
        cut = _last_cut(pattern, text, lo, end)
        if cut is not None and cut > start:
            return cut
    return end


def _marker_pattern(markers: list[str]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(m) for m in sorted(markers, key=len, reverse=True))
    return re.compile(rf"(?<![\w])(?:{alternatives})(?![\w])")


@register_policy("markers")
def _make_markers_cut(cfg: SegmentationConfig) -> CutFunction:
    """Before the last reflection marker ("Wait", ...) under the budget, else as `boundary`."""
    pattern = _marker_pattern(cfg.markers)

    def cut(text: str, start: int, end: int, cfg: SegmentationConfig) -> int:
        lo = max(start + 1, start + int((end - start) * cfg.min_fill))
        best = None
        for m in pattern.finditer(text, lo, end):
            best = m.start()  # cut right before the marker: it opens the next round
        return best if best is not None else _boundary_cut(text, start, end, cfg)

    return cut


def _fixed_cut(text: str, start: int, end: int, cfg: SegmentationConfig) -> int:
    return end


@register_policy("fixed_tokens")
def _make_fixed_cut(cfg: SegmentationConfig) -> CutFunction:
    """Every max_tokens tokens, wherever that falls."""
    return _fixed_cut


@register_policy("boundary")
def _make_boundary_cut(cfg: SegmentationConfig) -> CutFunction:
    """The last paragraph break, else sentence end, else line break, else space."""
    return _boundary_cut


def segment_text(text: str, cfg: SegmentationConfig, tokenizer: TokenCounter) -> list[str]:
    """Cut `text` into segments of at most `cfg.max_tokens` tokens each (lossless).

    Returns [] for an empty text. Every segment but possibly the merged last one (see
    `min_tokens`, `on_overflow="merge"`) counts at most `max_tokens` tokens with `tokenizer`,
    except a single character that alone needs more tokens than the budget (characters are
    never split).
    Raises TooManySegmentsError when more than `max_segments` are needed and `on_overflow` is
    `drop`.
    """
    if not isinstance(text, str):
        raise TypeError(f"segment_text: text must be a str, got {type(text).__name__}")
    if not text:
        return []
    spans = tokenizer.offsets(text)
    ends = [e for _, e in spans]
    if not ends or ends[-1] != len(text):
        raise ValueError(
            "segment_text: tokenizer.offsets must cover the text "
            f"(last span ends at {ends[-1] if ends else None}, text has {len(text)} chars)"
        )
    choose = _POLICIES[cfg.policy](cfg)
    cuts: list[int] = []
    pos = 0
    while pos < len(text):
        if cfg.max_segments is not None and len(cuts) == cfg.max_segments - 1:
            if cfg.on_overflow == "merge" or tokenizer.count(text[pos:]) <= cfg.max_tokens:
                cuts.append(len(text))
                break
            raise TooManySegmentsError(
                f"trace needs more than segmentation.max_segments={cfg.max_segments} segments "
                f"of {cfg.max_tokens} tokens ({len(text)} chars)"
            )
        first = bisect.bisect_right(ends, pos)  # first token ending after pos
        budget = cfg.max_tokens
        while True:
            last = min(first + budget, len(ends)) - 1
            window_end = ends[last]
            if window_end >= len(text) and tokenizer.count(text[pos:]) <= cfg.max_tokens:
                cut = len(text)
                break
            cut = choose(text, pos, min(window_end, len(text)), cfg)
            n = tokenizer.count(text[pos:cut])
            if n <= cfg.max_tokens:
                break
            if budget == 1:
                # One token's span still counts too many on its own (a character the BPE
                # spells with several byte tokens): shrink by characters; a single character
                # is atomic and may exceed a tiny budget.
                while cut > pos + 1 and tokenizer.count(text[pos:cut]) > cfg.max_tokens:
                    cut -= 1
                break
            budget = max(1, budget - (n - cfg.max_tokens))
        if cut <= pos:  # defensive: always make progress
            cut = min(len(text), ends[first])
        cuts.append(cut)
        pos = cut
    segments = [text[a:b] for a, b in zip([0, *cuts[:-1]], cuts)]
    if cfg.min_tokens and len(segments) > 1 and tokenizer.count(segments[-1]) < cfg.min_tokens:
        segments[-2:] = [segments[-2] + segments[-1]]
    return segments
