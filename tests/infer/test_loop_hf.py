"""The three loops with the real tiny Qwen3-VL, the real renderer and the real grader."""

from __future__ import annotations

import pytest
import torch

from vtc_lab.eval.benchmarks import Problem
from vtc_lab.infer.config import LoopConfig
from vtc_lab.infer.engine import HFEngine
from vtc_lab.infer.loop import LoopStats, run_loop
from vtc_lab.infer.metrics import efficiency_metrics, grade_records
from vtc_lab.models import ModelConfig, load_backbone
from vtc_lab.render import RenderConfig, render_text, vision_tokens

PROBLEMS = [Problem(id="a", question="What is $1+1$?", gold="2", benchmark="math500"),
            Problem(id="b", question="Compute $\\frac{6}{3}$.", gold="2", benchmark="math500")]


@pytest.fixture(scope="module")
def engine() -> HFEngine:
    torch.set_num_threads(1)
    return HFEngine(load_backbone(ModelConfig()))


def loop(mode: str) -> LoopConfig:
    return LoopConfig(mode=mode, max_rounds=3, max_new_tokens=12, do_sample=True, temperature=1.0,
                      top_p=0.95, batch_size=2, seed=3)


def test_optical_loop_feeds_rendered_pages_back(engine):
    cfg = RenderConfig()
    stats = LoopStats()
    recs = run_loop(engine, PROBLEMS, loop("optical"), cfg, "sys", progress=False, stats=stats,
                    keep_images=2)
    spec = engine.backbone.vision_spec
    for rec in recs:
        assert rec.status in ("final", "max_rounds")
        assert rec.rounds[0].context_vision_tokens == 0 and rec.rounds[0].images == 0
        for prev, cur in zip(rec.rounds, rec.rounds[1:]):
            pages = render_text(prev.text, cfg)
            assert prev.new_images == len(pages)
            assert cur.images == prev.images + len(pages)
            # The vision tokens the model saw equal the renderer's per-backbone count.
            added = sum(vision_tokens(p.width, p.height, spec) for p in pages)
            assert cur.context_vision_tokens - prev.context_vision_tokens == added
            assert prev.memory_vision_tokens == added
            assert cur.context_text_tokens == prev.context_text_tokens + 2 * len(pages)  # start/end
        assert [im.size for im in rec.memory_images] == \
            [p.size for r in rec.rounds[:-1] for p in render_text(r.text, cfg)]
    m = efficiency_metrics(recs, 3, engine.kv_bytes_per_token(), stats.wall_s)
    assert m["context_tokens_peak"] >= m["context_tokens_mean"] > 0
    assert m["compression_ratio"] > 0
    assert m["kv_cache_peak_bytes_per_sample"] == engine.kv_bytes_per_token() * max(
        r.context_text_tokens + r.context_vision_tokens + r.generated_tokens
        for rec in recs for r in rec.rounds)
    acc = grade_records(recs, PROBLEMS, workers=1)
    assert acc["num_samples"] == 2 and all(r.correct is not None for r in recs)


def test_text_loop_context_grows_by_the_generated_ids(engine):
    recs = run_loop(engine, PROBLEMS, loop("text"), None, "sys", progress=False)
    for rec in recs:
        for prev, cur in zip(rec.rounds, rec.rounds[1:]):
            # Every generated id is kept except special ones (end-of-turn, image placeholders).
            assert 0 < prev.memory_text_tokens <= prev.generated_tokens
            assert cur.context_text_tokens == prev.context_text_tokens + prev.memory_text_tokens
            assert cur.context_vision_tokens == 0
        assert rec.output == "".join(r.text for r in rec.rounds)


def test_none_loop_context_is_constant(engine):
    recs = run_loop(engine, PROBLEMS, loop("none"), None, "sys", progress=False)
    for rec in recs:
        assert len({r.context_text_tokens for r in rec.rounds}) == 1
        assert all(r.context_vision_tokens == 0 for r in rec.rounds)
        assert rec.output == rec.rounds[-1].text
