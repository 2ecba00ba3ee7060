"""Lossless, budgeted segmentation for every registered policy (hypothesis on arbitrary text)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vtc_lab.segment import (SegmentationConfig, TooManySegmentsError, policy_names,
                             register_policy, segment_text)

from .conftest import WordPieceTokenizer

TOK = WordPieceTokenizer()
ALPHABET = st.sampled_from(list("ab Wait.\n\n?!x12 ") + ["Wait", " Alternatively", "\r\n", "é", "\t"])
TEXTS = st.lists(ALPHABET, max_size=120).map("".join) | st.text(max_size=300)


def test_the_shipped_policies_are_registered():
    assert set(policy_names()) == {"fixed_tokens", "boundary", "markers"}


@pytest.mark.parametrize("policy", policy_names())
@settings(max_examples=60, deadline=None)
@given(text=TEXTS, max_tokens=st.integers(1, 40), min_tokens=st.integers(0, 5),
       max_segments=st.none() | st.integers(1, 4))
def test_lossless_and_within_budget(policy, text, max_tokens, min_tokens, max_segments):
    """The contract of every registered policy."""
    if min_tokens >= max_tokens:
        min_tokens = 0
    cfg = SegmentationConfig(policy=policy, max_tokens=max_tokens, min_tokens=min_tokens,
                             max_segments=max_segments, on_overflow="merge")
    segs = segment_text(text, cfg, TOK)
    assert "".join(segs) == text
    assert all(segs), "no empty segments"
    if max_segments is not None:
        assert len(segs) <= max_segments
        return  # the last segment holds whatever is left
    # every segment but a merged tail respects the budget
    for s in segs[:-1]:
        assert TOK.count(s) <= max_tokens
    if segs and min_tokens == 0:
        assert TOK.count(segs[-1]) <= max_tokens
    elif segs:
        assert TOK.count(segs[-1]) < max_tokens + max(min_tokens, 1) + 1


def test_a_registered_policy_is_a_config_option_and_stays_lossless():
    """One decorated factory is all a policy needs; the loop keeps it lossless and budgeted."""
    from vtc_lab.segment import policies

    @register_policy("halves")
    def make(cfg):
        return lambda text, start, end, cfg: start + max(1, (end - start) // 2)

    try:
        with pytest.raises(ValueError, match="'halves' is already registered"):
            register_policy("halves")(make)
        cfg = SegmentationConfig(policy="halves", max_tokens=8, min_tokens=0)
        text = "Wait, one two three four five six seven eight nine ten."
        segs = segment_text(text, cfg, TOK)
        assert "".join(segs) == text and all(TOK.count(s) <= 8 for s in segs)
        fixed = segment_text(text, SegmentationConfig(policy="fixed_tokens", max_tokens=8,
                                                      min_tokens=0), TOK)
        assert len(segs) > len(fixed)  # its own cuts were used
    finally:
        policies._POLICIES.pop("halves")
    with pytest.raises(ValueError, match="segmentation.policy must be one of"):
        SegmentationConfig(policy="halves")


def test_empty_text_gives_no_segments(tok):
    assert segment_text("", SegmentationConfig(), tok) == []


def test_boundary_prefers_paragraph_then_sentence(tok):
    para = "First we add. " * 6 + "\n\n"
    text = para + "Then we multiply things here. " * 6
    cfg = SegmentationConfig(policy="boundary", max_tokens=TOK.count(para) + 3, min_tokens=0)
    segs = segment_text(text, cfg, tok)
    assert segs[0] == para
    # later cuts land right after a sentence end
    for s in segs[1:-1]:
        assert s.endswith(". ")


def test_fixed_tokens_cuts_exactly_at_budget(tok):
    text = " ".join(f"w{i}" for i in range(50))
    segs = segment_text(text, SegmentationConfig(policy="fixed_tokens", max_tokens=7, min_tokens=0), tok)
    assert [tok.count(s) for s in segs[:-1]] == [7] * (len(segs) - 1)


def test_markers_cut_before_reflection(tok):
    text = "So x equals four, clearly right. Wait, that is wrong since y is odd. " * 3
    cfg = SegmentationConfig(policy="markers", max_tokens=25, min_tokens=0, min_fill=0.2)
    segs = segment_text(text, cfg, tok)
    assert "".join(segs) == text
    assert all(s.startswith("Wait") for s in segs[1:])


def test_tiny_tail_is_merged(tok):
    text = "alpha beta gamma delta. " * 4 + "ok"
    unmerged = segment_text(text, SegmentationConfig(policy="fixed_tokens", max_tokens=8,
                                                     min_tokens=0), tok)
    assert [tok.count(s) for s in unmerged] == [8, 8, 8, 8, 1]  # a 1-token tail on its own
    merged = segment_text(text, SegmentationConfig(policy="fixed_tokens", max_tokens=8,
                                                   min_tokens=3), tok)
    assert merged == unmerged[:-2] + [unmerged[-2] + unmerged[-1]]
    assert merged[-1] == " alpha beta gamma delta. ok" and "".join(merged) == text
    # a tail of min_tokens or more stays on its own
    kept = segment_text(text, SegmentationConfig(policy="fixed_tokens", max_tokens=8,
                                                 min_tokens=1), tok)
    assert kept == unmerged


def test_max_segments_drop_and_merge(tok):
    text = "one two three four. " * 20
    drop = SegmentationConfig(max_tokens=10, min_tokens=0, max_segments=3)
    with pytest.raises(TooManySegmentsError, match="max_segments=3"):
        segment_text(text, drop, tok)
    merge = SegmentationConfig(max_tokens=10, min_tokens=0, max_segments=3, on_overflow="merge")
    segs = segment_text(text, merge, tok)
    assert len(segs) == 3 and "".join(segs) == text


@pytest.mark.parametrize("field,value", [("policy", "nope"), ("max_tokens", 0), ("min_tokens", -1),
                                         ("max_segments", 0), ("on_overflow", "x"), ("min_fill", 1.5)])
def test_config_errors_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"segmentation.{field}"):
        SegmentationConfig(**{field: value})
