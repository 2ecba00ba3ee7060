"""`break_lines` against the plain per-word rule it must reproduce (its fast paths included).

The rule (reportlab's): a word joins the line when `width + space + word <= max_w + shrink *
space * gaps`, i.e. a line may be overfull by what squeezing its spaces absorbs. break_lines
jumps over runs of words with prefix sums; the jump must give exactly the lines the per-word
rule gives, also when a word boundary lies within float error of the limit (the `eps` guard).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from vtc_lab.render.layout import break_lines


def _per_word_rule(widths: list[float], space_w: float, max_w: float, shrink: float):
    lines, start, cur, n = [], 0, 0.0, 0
    for i, ww in enumerate(widths):
        if n == 0:
            start, cur, n = i, ww, 1
            continue
        new = cur + space_w + ww
        if new <= max_w + shrink * space_w * n:
            cur, n = new, n + 1
        else:
            lines.append((start, i - 1, cur))
            start, cur, n = i, ww, 1
    if n:
        lines.append((start, len(widths) - 1, cur))
    return lines


def _text(word_widths: list[float], space_w: float):
    """"a a a ..." whose i-th letter is `word_widths[i]` wide: (text, code points, prefix sums of
    the character widths, each word's width as break_lines computes it from those sums)."""
    text = " ".join("a" * len(word_widths))
    cps = np.frombuffer(text.encode("utf-32-le"), np.uint32).astype(np.int64)
    char_w = np.zeros(len(text))
    char_w[0::2] = word_widths
    char_w[1::2] = space_w
    cum = np.concatenate([[0.0], np.cumsum(char_w)])
    return text, cps, cum, [float(cum[2 * i + 1] - cum[2 * i]) for i in range(len(word_widths))]


def _layout(word_widths: list[float], space_w: float, max_w: float, shrink: float):
    text, cps, cum, _ = _text(word_widths, space_w)
    (lines, _), = break_lines(text, cps, cum, 1.0, max_w, space_w, shrink)
    return [(ln.start // 2, (ln.end - 1) // 2, ln.width) for ln in lines]


WIDTHS = st.lists(st.sampled_from([0.1, 0.2, 0.3, 0.7, 1.1, 2.5, 3.3]), min_size=1, max_size=60)


@settings(max_examples=400, deadline=None)
@given(widths=WIDTHS, space_w=st.sampled_from([0.25, 0.3, 0.1]),
       shrink=st.sampled_from([0.0, 0.05, 0.5]), first=st.integers(0, 59), cut=st.integers(1, 59),
       below=st.booleans())
@example(widths=[0.7, 2.5, 0.1, 1.1, 0.2], space_w=0.3, shrink=0.05, first=0, cut=9, below=True)
@example(widths=[0.1, 0.1, 2.5, 0.1], space_w=0.3, shrink=0.0, first=0, cut=4, below=False)
@example(widths=[0.1, 0.1, 0.1, 0.1], space_w=0.25, shrink=0.0, first=0, cut=2, below=False)
def test_lines_are_the_per_word_rule_even_at_the_limit(widths, space_w, shrink, first, cut, below):
    # The limit is put exactly where the per-word rule's running width lands after `cut` words
    # from word `first` (minus the squeeze allowance), or one float step below it: a boundary
    # at float-error distance, where prefix sums and the rule's running sum can disagree.
    exact = _text(widths, space_w)[3]
    run = exact[min(first, len(exact) - 1):][:cut]
    cur = run[0]
    for w in run[1:]:
        cur = cur + space_w + w
    max_w = cur - shrink * space_w * (len(run) - 1)
    max_w = max(max(exact), math.nextafter(max_w, 0) if below else max_w)
    got = _layout(widths, space_w, max_w, shrink)
    want = _per_word_rule(exact, space_w, max_w, shrink)
    assert [ln[:2] for ln in got] == [ln[:2] for ln in want]  # the breaks: exactly
    assert [ln[2] for ln in got] == pytest.approx([ln[2] for ln in want], rel=1e-12)


def test_squeezable_spaces_let_a_line_run_over():
    # three words of 10 with spaces of 2: 34 wide; max 33 fits only with shrink
    assert [ln[:2] for ln in _layout([10, 10, 10], 2.0, 33.0, 0.0)] == [(0, 1), (2, 2)]
    assert [ln[:2] for ln in _layout([10, 10, 10], 2.0, 33.0, 0.25)] == [(0, 2)]
