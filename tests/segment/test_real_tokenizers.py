"""Segmentation with real BPE tokenizers (the offline Qwen vocabulary and the tiny model's)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vtc_lab.data.config import DataConfig
from vtc_lab.data.sources import Trace, iter_traces
from vtc_lab.segment import SegmentationConfig, segment_text

qwen = pytest.importorskip("tiktoken") and __import__("vtc_lab.render", fromlist=["qwen_tokenizer"]).qwen_tokenizer()


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=400), policy=st.sampled_from(["fixed_tokens", "boundary", "markers"]),
       max_tokens=st.integers(1, 30))
def test_lossless_with_qwen_bpe(text, policy, max_tokens):
    cfg = SegmentationConfig(policy=policy, max_tokens=max_tokens, min_tokens=0)
    segs = segment_text(text, cfg, qwen)
    assert "".join(segs) == text
    # only a single character the BPE spells with several tokens may exceed a tiny budget
    assert all(qwen.count(s) <= max_tokens or len(s) == 1 for s in segs)


def test_math500_solutions_boundary_cuts_at_structure():
    """On real solutions, boundary cuts land after a paragraph, sentence or line end almost always."""
    traces = [t for t in iter_traces(DataConfig(limit=80)) if isinstance(t, Trace)]
    cfg = SegmentationConfig(max_tokens=64, min_tokens=0)
    cuts = structural = 0
    for t in traces:
        segs = segment_text(t.reasoning, cfg, qwen)
        assert "".join(segs) == t.reasoning
        assert all(qwen.count(s) <= 64 for s in segs)
        for s in segs[:-1]:
            cuts += 1
            structural += s.endswith(("\n", ". ", "? ", "! ", ".  ", ".$ ")) or s[-1] in ".\n"
    assert cuts > 50
    assert structural / cuts > 0.6, f"only {structural}/{cuts} cuts at a sentence/line/paragraph end"


def test_tiny_model_tokenizer_budget():
    from vtc_lab.models import load_tokenizer
    from vtc_lab.models.config import ModelConfig
    from vtc_lab.render import HFTextTokenizer

    tok = HFTextTokenizer(load_tokenizer(ModelConfig()))
    text = next(t for t in iter_traces(DataConfig(limit=3)) if isinstance(t, Trace)).reasoning * 3
    for policy in ("fixed_tokens", "boundary", "markers"):
        segs = segment_text(text, SegmentationConfig(policy=policy, max_tokens=50, min_tokens=0), tok)
        assert "".join(segs) == text and all(tok.count(s) <= 50 for s in segs)
