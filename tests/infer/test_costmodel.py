"""Invariants of the analytical latency model (vtc_lab.infer.costmodel)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from vtc_lab.infer.costmodel import (
    GLM_41V_9B, H100, QWEN3_VL_8B, Hardware, ModelShape, Workload, concurrency, decode_s,
    forward_s, optical_loop, serving, speedup, text_loop)

PAPER = Workload(total=8 * 8192, round_tokens=8192, compression=3.72, pages_per_round=5.1)


def test_shapes_match_the_real_transformers_models():
    """Parameter and K/V counts equal what the built transformers classes hold."""
    torch = pytest.importorskip("torch")
    from vtc_lab.infer.engine import HFEngine
    from vtc_lab.models import ModelConfig, load_backbone
    from vtc_lab.models.registry import tiny_backbone_names

    torch.set_num_threads(1)
    for arch in tiny_backbone_names():
        backbone = load_backbone(ModelConfig(name=f"tiny_{arch}", arch=arch))
        shape = replace(ModelShape.from_config(backbone.model.config), bytes_per_param=4)
        lm = sum(p.numel() for n, p in backbone.model.named_parameters() if "visual" not in n)
        assert abs(shape.lm_params() - lm) / lm < 0.01  # only norms and biases are left out
        assert shape.kv_bytes_per_token() == HFEngine(backbone).kv_bytes_per_token()


def test_published_sizes():
    assert QWEN3_VL_8B.lm_params() == pytest.approx(8.2e9, rel=0.03)
    assert GLM_41V_9B.lm_params() == pytest.approx(9.4e9, rel=0.05)
    assert QWEN3_VL_8B.kv_bytes_per_token() == 2 * 36 * 8 * 128 * 2


def test_one_round_costs_the_same_in_both_loops():
    w = replace(PAPER, total=8192)
    assert optical_loop(QWEN3_VL_8B, H100, w, True).total_s == pytest.approx(
        text_loop(QWEN3_VL_8B, H100, w).total_s)
    for regime in ("eager", "serving"):
        assert speedup(QWEN3_VL_8B, H100, w, regime) == pytest.approx(1.0)


def test_reuse_never_costs_more_and_saves_vision_and_prefill():
    for rounds in (2, 4, 8):
        w = replace(PAPER, total=rounds * 8192)
        with_reuse = optical_loop(QWEN3_VL_8B, H100, w, True)
        without = optical_loop(QWEN3_VL_8B, H100, w, False)
        assert with_reuse.decode_s == without.decode_s
        assert with_reuse.vision_s <= without.vision_s and with_reuse.prefill_s <= without.prefill_s
        if rounds > 2:  # round 2's pages are all new: reuse starts paying from round 3
            assert with_reuse.vision_s < without.vision_s and with_reuse.prefill_s < without.prefill_s


def test_latency_grows_with_context_and_length():
    m, hw = QWEN3_VL_8B, H100
    assert forward_s(m, hw, 1, 60000) > forward_s(m, hw, 1, 1000)
    assert decode_s(m, hw, 100, 50000) > decode_s(m, hw, 100, 0)
    lengths = [text_loop(m, hw, replace(PAPER, total=t)).total_s for t in (1024, 4096, 16384)]
    assert lengths == sorted(lengths)


def test_launch_bound_eager_engine_gains_almost_nothing():
    """When a fixed per-forward overhead dominates, latency ~ decode steps, equal in both loops."""
    slow = replace(H100, forward_overhead_s=1.0)
    assert speedup(QWEN3_VL_8B, slow, PAPER, "eager") == pytest.approx(1.0, abs=0.01)
    # With no overhead at all the shorter context shows, but batch-1 decode stays weight-bound.
    assert 1.0 < speedup(QWEN3_VL_8B, replace(H100, forward_overhead_s=0.0), PAPER, "eager") < 1.6


def test_serving_concurrency_follows_the_kv_cache():
    m = QWEN3_VL_8B
    assert concurrency(m, H100, 8000) >= 2 * concurrency(m, H100, 16000) >= concurrency(m, H100, 32000)
    small = Hardware("tiny", 1e12, 1e11, memory=m.weight_bytes() * 0.5, forward_overhead_s=0.0)
    with pytest.raises(ValueError, match="do not fit"):
        concurrency(m, small, 1000)
    text = serving(m, H100, PAPER, "text")
    optical = serving(m, H100, PAPER, "optical")
    assert optical.extra["concurrency"] > text.extra["concurrency"]
    assert optical.mean_context < text.mean_context


def test_serving_speedup_grows_with_rounds_and_compression():
    s = [speedup(QWEN3_VL_8B, H100, replace(PAPER, total=r * 8192), "serving") for r in (2, 4, 8)]
    assert s == sorted(s) and s[0] > 1.0
    low = speedup(QWEN3_VL_8B, H100, replace(PAPER, compression=1.5), "serving")
    assert low < s[-1]


def test_no_compression_means_no_gain():
    """Pages that cost as many tokens as the text they hold cannot beat the text loop."""
    w = replace(PAPER, compression=1.0, page_delimiters=0)
    assert speedup(QWEN3_VL_8B, H100, w, "serving", reuse=True) <= 1.0 + 1e-9
    assert speedup(QWEN3_VL_8B, H100, w, "eager", reuse=True) <= 1.0 + 1e-9


def test_bad_regime_is_named():
    with pytest.raises(ValueError, match="regime"):
        speedup(QWEN3_VL_8B, H100, PAPER, "batched")
