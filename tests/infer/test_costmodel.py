"""Invariants of the analytical latency model (vtc_lab.infer.costmodel)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from vtc_lab.infer.costmodel import (
    GLM_41V_9B, H100, QWEN3_VL_8B, Hardware, ModelShape, Workload, concurrency, decode_s,
    forward_s, kv_budget_bytes, optical_loop, serving, serving_hardware, speedup, step_s,
    text_loop, throughput, vision_s)

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


# --- serving terms (issue 24): fitted on public figures, checked on held-out ones ---

PUBLIC = Path(__file__).resolve().parents[2] / "experiments" / "perf" / "serving_decode_public.json"


def test_refit_of_the_public_points_gives_the_presets_terms():
    """SERVING_FIT is what `cost_model.py fit` computes from the JSON, not a hand-set number."""
    from vtc_lab.infer.costfit import fit_serving, load_points
    from vtc_lab.infer.costmodel import SERVING_FIT

    model, points = load_points(PUBLIC)
    terms = fit_serving(model, points)
    for key, value in SERVING_FIT.items():
        assert terms[key] == pytest.approx(value, rel=0.01), key


def test_held_out_points_do_not_enter_the_fit(tmp_path):
    from vtc_lab.infer.costfit import check, fit_serving, load_points

    data = json.loads(PUBLIC.read_text())
    model, points = load_points(PUBLIC)
    base = fit_serving(model, points)
    for p in data["points"]:
        if p["split"] != "fit":
            p["step_ms"] *= 3  # wildly different held-out / excluded measurements
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(data))
    model, moved = load_points(changed)
    assert fit_serving(model, moved) == base
    rows = {r["id"]: r for r in check(model, points, base)}
    assert {r["split"] for r in rows.values()} == {"fit", "heldout"}  # excluded ones are dropped
    assert all(abs(r["error"]) < 1e-6 for r in rows.values() if r["split"] == "fit")  # 4 terms, 4 points


def test_fitted_formula_is_the_models_step():
    """costfit's prediction and costmodel.step_s are the same arithmetic (memory-bound)."""
    from vtc_lab.infer.costfit import LLAMA3_8B, DecodePoint, predict_step
    from vtc_lab.infer.costmodel import SERVING_FIT, serving_hardware, step_s

    for gpu, batch, context in (("H100", 1, 300), ("H100", 16, 300), ("A100-40GB", 8, 1088)):
        p = DecodePoint("x", gpu, batch, context, 1.0, "fit")
        assert step_s(LLAMA3_8B, serving_hardware(gpu), batch, context) == pytest.approx(
            predict_step(LLAMA3_8B, p, SERVING_FIT), rel=1e-6)


def test_bad_measurement_files_are_named(tmp_path):
    from vtc_lab.infer.costfit import load_points

    data = json.loads(PUBLIC.read_text())
    data["points"][0]["split"] = "train"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="split must be"):
        load_points(bad)
    data["points"][0].update(split="fit", gpu="B300")
    bad.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="gpu must be one of"):
        load_points(bad)
    with pytest.raises(ValueError, match="gpu must be one of"):
        serving_hardware("TPU")


def test_decode_step_costs_grow_with_batch_and_context_and_keep_a_floor():
    m, hw = QWEN3_VL_8B, H100
    assert step_s(m, hw, 16, 1000) > step_s(m, hw, 1, 1000)
    assert step_s(m, hw, 1, 60000) > step_s(m, hw, 1, 1000)
    weights_only = m.weight_bytes() / hw.bandwidth
    assert step_s(m, hw, 1, 0) == pytest.approx(
        weights_only + hw.step_overhead_s + hw.seq_overhead_s, rel=0.01)
    # K/V is read at attention's lower efficiency: the extra per token is kv / (bw * eff)
    extra = step_s(m, hw, 1, 10001) - step_s(m, hw, 1, 1)
    assert extra == pytest.approx(10000 * m.kv_bytes_per_token() / (hw.bandwidth * hw.kv_efficiency))


def test_vision_has_a_per_page_cost_and_an_efficiency():
    base = replace(H100, vision_efficiency=1.0, page_overhead_s=0.0)
    slow = replace(base, vision_efficiency=0.5, page_overhead_s=0.002)
    flops_only = vision_s(QWEN3_VL_8B, base, 2000, 5, overhead=False)
    assert vision_s(QWEN3_VL_8B, slow, 2000, 5, overhead=False) == pytest.approx(
        2 * flops_only + 5 * 0.002)
    assert vision_s(QWEN3_VL_8B, base, 2000, 5) == pytest.approx(flops_only + base.vision_overhead_s)


def test_kv_capacity_in_blocks_and_at_a_budget():
    m = QWEN3_VL_8B
    per_block = 16 * m.kv_bytes_per_token()
    assert concurrency(m, H100, 17, kv_budget=4 * per_block) == 2  # 17 tokens take 2 blocks
    assert concurrency(m, H100, 16, kv_budget=4 * per_block) == 4
    assert concurrency(m, H100, 16, kv_budget=4 * per_block, max_seqs=3) == 3
    with pytest.raises(ValueError, match="kv_budget"):
        concurrency(m, H100, 16, kv_budget=0)


def test_throughput_follows_the_kv_budget_and_favours_the_shorter_context():
    w = PAPER
    full_t = throughput(QWEN3_VL_8B, H100, w, "text")
    full_o = throughput(QWEN3_VL_8B, H100, w, "optical")
    assert full_o["concurrency"] > full_t["concurrency"]
    assert full_o["requests_per_s"] > full_t["requests_per_s"]
    small = kv_budget_bytes(QWEN3_VL_8B, H100) / 4
    small_t = throughput(QWEN3_VL_8B, H100, w, "text", kv_budget=small)
    assert small_t["concurrency"] < full_t["concurrency"]
    assert small_t["requests_per_s"] < full_t["requests_per_s"]
    # the serving speedup is the throughput ratio
    assert full_o["requests_per_s"] / full_t["requests_per_s"] == pytest.approx(
        (serving(QWEN3_VL_8B, H100, w, "text").total_s - _cpu(w, "text")) /
        (serving(QWEN3_VL_8B, H100, w, "optical").total_s - _cpu(w, "optical")))
    with pytest.raises(ValueError, match="mode"):
        throughput(QWEN3_VL_8B, H100, w, "pages")


def _cpu(w, mode):
    b = serving(QWEN3_VL_8B, H100, w, mode)
    return b.render_s + b.preprocess_s


def test_a_concurrency_cap_of_one_leaves_only_the_context_gain():
    """One sequence at a time: no concurrency gain, only the cheaper K/V reads of a short context."""
    capped = speedup(QWEN3_VL_8B, H100, PAPER, "serving", max_seqs=1)
    free = speedup(QWEN3_VL_8B, H100, PAPER, "serving")
    assert 1.0 < capped < free
