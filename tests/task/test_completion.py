"""The one parser of the completion format: its definition, and linear time on hostile rounds."""

from __future__ import annotations

import re
import time
import timeit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vtc_lab.task.completion import answer_tags, format_target, is_final, parse, split_final
from vtc_lab.eval.extract import extract_answer

_SPEC_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def _spec_answer(text: str) -> str | None:
    """The definition, written the slow obvious way: the first lazy `<answer>(.*?)</answer>`
    after the last `</think>`, stripped, non-empty."""
    if "</think>" not in text:
        return None
    m = _SPEC_RE.search(text.rsplit("</think>", 1)[1])
    return m.group(1).strip() or None if m else None


_PIECES = st.sampled_from(["</think>", "<answer>", "</answer>", " ", "5", "x", "\n", "<", "/"])


@given(st.lists(_PIECES, max_size=30).map("".join))
def test_parser_agrees_with_the_regex_definition(text):
    assert split_final(text)[1] == _spec_answer(text)
    assert is_final(text) is (_spec_answer(text) is not None)


@given(st.lists(_PIECES, max_size=30).map("".join))
def test_answer_tags_finds_the_regex_pairs(text):
    closed, unclosed = answer_tags(text)
    matches = list(_SPEC_RE.finditer(text))
    assert closed == [m.group(1) for m in matches]
    rest = text[matches[-1].end():] if matches else text
    expect = rest[rest.rfind("<answer>") + 8:] if "<answer>" in rest else None
    assert unclosed == expect


def test_empty_answer_is_a_format_failure_not_final():
    p = parse("r</think>\n<answer>  </answer><answer>5</answer>")
    assert p.empty_answer and not p.final and p.answer is None  # the FIRST pair decides
    assert not parse("r</think><answer>5</answer>").empty_answer


def test_builder_loop_and_grader_read_the_same_slot():
    target = format_target("so 2+2=4.", True, "4")
    assert is_final(target) and split_final(target) == ("so 2+2=4.", "4")
    assert extract_answer(target, "math500", strict=True) == "4"


def _scaling(fn, small: str, large: str) -> float:
    """min time(large) / min time(small), each the best of several runs of this process's CPU
    time (other processes on a busy machine neither count nor stall it). The large text is
    retried at most 5 times and only while less than 5 s were spent on it, so a quadratic
    regression fails after one slow call instead of hanging."""
    t_small = min(timeit.Timer(lambda: fn(small), timer=time.process_time).repeat(5, number=3)) / 3
    best, spent = float("inf"), 0.0
    for _ in range(5):
        took = timeit.Timer(lambda: fn(large), timer=time.process_time).timeit(number=1)
        best, spent = min(best, took), spent + took
        if best / t_small < 8 or spent > 5:
            break
    return best / t_small


HOSTILE = {
    "unclosed answers after think": lambda n: "</think>" + "<answer>" * (n // 8 - 1),
    "unclosed answers, no think": lambda n: "<answer>" * (n // 8),
    "many think ends": lambda n: "</think>" * (n // 8),
    "unclosed answers after a closed one": lambda n: "</think><answer>1</answer>" + "<answer>" * (n // 8 - 4),
}
"""Rounds where a lazy `<answer>(.*?)</answer>` rescans to the end from every unclosed tag.
(Rounds with thousands of closed pairs are linear too, but their timing is not: CPython's
str.find switches algorithm for haystacks over 30,000 characters, which changes its constant.)"""


@pytest.mark.parametrize("shape", sorted(HOSTILE))
@pytest.mark.parametrize("fn", [is_final, answer_tags], ids=["is_final", "answer_tags"])
def test_hostile_round_parses_in_linear_time(shape, fn):
    """36k characters (a long real round) vs 4x that: linear time scales ~4x, the lazy regex this
    replaced scaled ~20x (2.3 s -> 48 s). Asserted on the scaling, not on seconds. (The loop calls
    `is_final` on every round; the grader reads the slot through `parse` and `answer_tags`.)"""
    small, large = HOSTILE[shape](36_000), HOSTILE[shape](144_000)
    assert 35_000 < len(small) <= 36_000 and len(large) > 3.99 * len(small)
    ratio = _scaling(fn, small, large)
    assert ratio < 8, f"{shape}: 4x the text took {ratio:.1f}x the time (quadratic?)"


MARKER_OWNER = "vtc_lab/task/completion.py"


def test_the_format_markers_are_spelt_in_one_module():
    """`<think>`, `</think>`, `<answer>`, `</answer>` as string literals (docstrings aside) appear
    only in vtc_lab.task.completion; every other module imports them (issue 22 §5)."""
    import ast
    from pathlib import Path

    import vtc_lab
    from vtc_lab.task import completion

    assert completion.MARKERS == ("<think>", "</think>", "<answer>", "</answer>")
    root = Path(vtc_lab.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docs = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)
                and isinstance(node.value, ast.Constant)}  # docstrings and bare strings
        rel = path.relative_to(root.parent).as_posix()
        found += [f"{rel}:{node.lineno}" for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and isinstance(node.value, str)
                  and id(node) not in docs and any(m in node.value for m in completion.MARKERS)
                  and rel != MARKER_OWNER]
    assert found == []
