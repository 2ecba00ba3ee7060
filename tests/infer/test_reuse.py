"""Cross-round reuse in the HF engine: vision features per page and the KV cache of the shared
prefix. Outputs with reuse must equal outputs without it; the counters must show the reuse."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from vtc_lab.eval.benchmarks import Problem
from vtc_lab.infer.config import LoopConfig
from vtc_lab.infer.engine import GenerationParams, GenerationRequest, HFEngine
from vtc_lab.infer.loop import run_loop
from vtc_lab.infer.reuse import PrefixCache, VisionCache, image_spans, page_key
from vtc_lab.models import ModelConfig, load_backbone
from vtc_lab.render import RenderConfig

PROBLEMS = [Problem(id="a", question="What is $1+1$?", gold="2", benchmark="math500"),
            Problem(id="b", question="Compute $\\frac{6}{3}$.", gold="2", benchmark="math500")]


@pytest.fixture(scope="module")
def qwen():
    torch.set_num_threads(1)
    return load_backbone(ModelConfig())


def _run(backbone, mode: str, reuse: bool, batch_size: int = 1, do_sample: bool = False,
         static_cache: bool = False):
    engine = HFEngine(backbone, reuse_vision=reuse, reuse_prefix=reuse, static_cache=static_cache)
    cfg = LoopConfig(mode=mode, max_rounds=3, max_new_tokens=24, do_sample=do_sample,
                     temperature=1.0, batch_size=batch_size, seed=5)
    recs = run_loop(engine, PROBLEMS, cfg, RenderConfig(), "sys", progress=False)
    tokens = [[(r.text, r.generated_tokens, r.context_text_tokens, r.context_vision_tokens)
               for r in rec.rounds] for rec in recs]
    return tokens, engine.stats


@pytest.mark.parametrize("mode", ["optical", "text"])
def test_reuse_gives_identical_outputs_and_skips_work(qwen, mode):
    plain, plain_stats = _run(qwen, mode, reuse=False)
    reused, stats = _run(qwen, mode, reuse=True)
    assert reused == plain
    assert all(len(rounds) == 3 for rounds in plain)  # every round ran: there was a prefix to reuse
    assert plain_stats.reused_tokens == 0 and plain_stats.images_encoded == plain_stats.images
    assert stats.prompt_tokens == plain_stats.prompt_tokens
    # Rounds 2 and 3 of both problems start from the previous round's KV cache.
    assert stats.reused_tokens > stats.prompt_tokens // 3
    if mode == "optical":
        assert stats.images == plain_stats.images > 0
        # Round 3 re-reads round 1's pages: from the KV prefix, not the vision tower, and
        # their pixels from the pixel cache, not the image processor.
        assert stats.images_encoded < stats.images
        assert stats.images_preprocessed < stats.images == plain_stats.images_preprocessed


def test_sampled_optical_loop_with_reuse_matches(qwen):
    assert _run(qwen, "optical", True, do_sample=True)[0] == _run(qwen, "optical", False, do_sample=True)[0]


def test_batched_calls_reuse_vision_features_only(qwen):
    plain, _ = _run(qwen, "optical", reuse=False, batch_size=2)
    reused, stats = _run(qwen, "optical", reuse=True, batch_size=2)
    assert reused == plain
    assert stats.reused_tokens == 0  # no KV reuse across left-padded rows
    assert 0 < stats.images_encoded < stats.images


@pytest.mark.parametrize("mode", ["optical", "text"])
def test_static_cache_gives_identical_outputs(qwen, mode):
    """The GPU mode (static cache, compiled there) decodes the same tokens as the dynamic cache
    (checked on CPU, where transformers does not compile)."""
    assert _run(qwen, mode, True, batch_size=2, static_cache=True)[0] == \
        _run(qwen, mode, False, batch_size=2)[0]


def test_glm4v_optical_loop_with_reuse_matches():
    glm = load_backbone(ModelConfig(name="tiny_glm4v", arch="glm4v"))
    plain, _ = _run(glm, "optical", reuse=False)
    reused, stats = _run(glm, "optical", reuse=True)
    assert reused == plain and stats.reused_tokens > 0


def test_a_different_page_in_the_same_place_is_not_reused(qwen):
    """Two pages of the same size give the same placeholder tokens: the page identity decides."""
    engine = HFEngine(qwen)
    params = GenerationParams(max_new_tokens=6, do_sample=False)
    white = Image.new("RGB", (300, 300), "white")
    grey = Image.new("RGB", (300, 300), (90, 90, 90))

    def request(image):
        from vtc_lab.data.messages import build_messages

        return GenerationRequest(build_messages("Same question?", [image], "sys"))

    engine.generate([request(white)], params)
    first = engine.stats.reused_tokens
    out = engine.generate([request(grey)], params)[0]
    stats = engine.stats
    fresh = HFEngine(qwen, reuse_vision=False, reuse_prefix=False).generate([request(grey)], params)[0]
    assert out.token_ids == fresh.token_ids
    ids = engine.encode(request(grey))["input_ids"][0]
    start = image_spans(ids, engine.image_token_id)[0][0]
    assert stats.reused_tokens - first == start  # up to the page's first placeholder, not beyond
    assert stats.images_encoded == 2


def test_cached_preprocessing_equals_the_processor(qwen):
    """The pixel cache changes where the tensors come from, not what they are."""
    from vtc_lab.data.messages import build_messages
    from vtc_lab.render import render_text

    pages = render_text("Long memory text. " * 200, RenderConfig()) + render_text("x", RenderConfig())
    request = GenerationRequest(build_messages("Q?", pages, "sys"))
    plain = HFEngine(qwen, reuse_vision=False).encode(request)
    engine = HFEngine(qwen)
    for _ in range(2):  # cold, then every page from the cache
        cached = engine.encode(request)
        assert plain.keys() == cached.keys()
        assert all(torch.equal(plain[k], cached[k]) for k in plain)
    assert engine._encoder.image_processor.misses == len(pages)
    assert qwen.processor.image_processor is not engine._encoder.image_processor  # not patched


def _fake_cache(length: int):
    from transformers import DynamicCache

    cache = DynamicCache()
    kv = torch.arange(length, dtype=torch.float32).view(1, 1, length, 1)
    cache.update(kv, kv.clone(), 0)
    return cache


def test_prefix_match_rules():
    pc = PrefixCache()
    ids = torch.tensor([1, 2, 9, 9, 9, 3, 4, 5])
    pages = [(2, 5, "p1")]
    pc.store(ids, pages, _fake_cache(8))
    # Same prefix, same page, diverging at position 6: reuse 6 tokens, cache cropped to 6.
    cache, n = pc.match(torch.tensor([1, 2, 9, 9, 9, 3, 7, 7]), pages)
    assert n == 6 and cache.get_seq_length() == 6
    assert pc.match(torch.tensor([1, 2, 9]), []) == (None, 0)  # consumed: one entry, one use
    # A different page at the same place: reuse stops where that page starts.
    pc.store(ids, pages, _fake_cache(8))
    assert pc.match(ids.clone(), [(2, 5, "p2")])[1] == 2
    # Placeholders the model generated (no page behind them) are not a page.
    pc.store(ids, [], _fake_cache(8))
    assert pc.match(ids.clone(), pages)[1] == 2
    # At least one prompt token is left to prefill.
    pc.store(ids, pages, _fake_cache(8))
    assert pc.match(ids.clone(), pages)[1] == 7


def test_vision_cache_is_bounded_and_keyed_by_content():
    class Out:
        def __init__(self, pooler_output):
            self.pooler_output = pooler_output

    class Model:
        calls = 0

        def get_image_features(self, rows, grid, return_dict=True):
            Model.calls += 1
            sizes = grid.prod(-1).tolist()
            return Out(torch.split(rows * 2, sizes))

    vc = VisionCache(max_bytes=2 * 4 * 4 * 4)  # room for two pages of 4 rows x 4 floats
    grid = torch.tensor([[1, 2, 2]])
    pages = {k: torch.full((4, 4), float(i)) for i, k in enumerate("abc")}
    for key in "abca":
        out, encoded = vc.features(Model(), pages[key], grid, [key], use_cache=True)
        assert torch.equal(out.pooler_output[0], pages[key] * 2)
    assert Model.calls == 4 and len(vc) == 2  # "a" was evicted by "c", so it ran again
    both, encoded = vc.features(Model(), torch.cat([pages["c"], pages["b"]]),
                                torch.tensor([[1, 2, 2], [1, 2, 2]]), ["c", "b"], use_cache=True)
    assert encoded == 1 and torch.equal(both.pooler_output[1], pages["b"] * 2)
    white, black = Image.new("L", (8, 8), 255), Image.new("L", (8, 8), 0)
    assert page_key(white) != page_key(black) and page_key(white) == page_key(white.copy())
    assert page_key("not an image") is None
