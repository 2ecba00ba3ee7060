"""Completion-format edges the mutation pass found untested (docs/testing.md)."""

from __future__ import annotations

import pytest

from vtc_lab.task.completion import format_target, is_final, split_final


def test_a_mid_trace_target_is_the_segment_alone_even_with_an_answer_at_hand():
    assert format_target("so far x=2", False, "2") == "so far x=2"
    assert format_target("so far x=2", False) == "so far x=2"


@pytest.mark.parametrize("answer", [None, "", " \n"])
def test_the_last_target_refuses_a_missing_answer(answer):
    with pytest.raises(ValueError, match="non-empty answer"):
        format_target("x", True, answer)


@pytest.mark.parametrize("answer", ["1</answer>", "so</think>1"])
def test_the_last_target_refuses_an_answer_that_would_break_the_format(answer):
    with pytest.raises(ValueError, match="must not contain"):
        format_target("x", True, answer)


def test_the_last_target_round_trips_through_the_parser():
    target = format_target("so 3+4=7.", True, 7)
    assert is_final(target) and split_final(target) == ("so 3+4=7.", "7")
