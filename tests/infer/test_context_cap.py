"""The context cap (`loop.max_context_tokens`, `loop.context_policy`) and the text fallback of
short optical rounds (`loop.min_render_tokens`): exact rules on constructed cases with a scripted
engine that counts its prompts, and the cap as an invariant over real runs of the tiny model."""

from __future__ import annotations

import pytest
import torch

from .infer_scripted import VISION_PER_IMAGE, ScriptedEngine, images_of, question_of
from .test_loop import cfg, pages_of, problems
from vtc_lab.eval.benchmarks import Problem
from vtc_lab.infer.config import EvalConfig, LoopConfig
from vtc_lab.infer.engine import HFEngine
from vtc_lab.infer.loop import run_loop
from vtc_lab.infer.metrics import efficiency_metrics
from vtc_lab.models import ModelConfig, load_backbone
from vtc_lab.render import RenderConfig


class CountingEngine(ScriptedEngine):
    """The scripted engine plus the exact prompt counter the cap needs (its own counting rule:
    one token per question word and prefix id, `VISION_PER_IMAGE` per page)."""

    def count_prompt_tokens(self, request) -> tuple[int, int]:
        return (len(question_of(request).split()) + len(request.prefix_ids),
                VISION_PER_IMAGE * len(images_of(request)))


def test_text_memory_drops_exactly_the_excess_ids_from_the_left():
    # ids are word lengths: round 1 keeps [1, 2, 3, 4, 5], round 2 adds [2, 1, 3, 2]
    eng = CountingEngine({"q": ["a bb ccc dddd eeeee", "ff g hhh ii", "x y", "z"]})
    (rec,) = run_loop(eng, problems("q"), cfg("text", max_context_tokens=8,
                                              context_policy="drop_oldest"),
                      None, None, progress=False)
    prefixes = [c[0].prefix_ids for c in eng.calls]
    # round 3's prompt would be 1 + 9 = 10 > 8: the two oldest ids go; round 4's 1 + 7 + 2 = 10
    assert prefixes == [[], [1, 2, 3, 4, 5], [3, 4, 5, 2, 1, 3, 2], [5, 2, 1, 3, 2, 1, 1]]
    assert [r.dropped_tokens for r in rec.rounds] == [0, 0, 2, 2]
    assert [r.context_text_tokens for r in rec.rounds] == [1, 6, 8, 8]
    assert rec.status == "max_rounds"
    # the graded turn is everything the model wrote, whatever the prompt no longer holds
    assert rec.output == "a bb ccc dddd eeeee" + "ff g hhh ii" + "x y" + "z"


def test_optical_memory_drops_whole_pages_oldest_first():
    # round 1: pages "a b c" (width 15) and "dd ee ff" (18); round 2: "ggg hhh iii" (21)
    eng = CountingEngine({"q": ["a b c dd ee ff", "ggg hhh iii", "j"]})
    (rec,) = run_loop(eng, problems("q"), cfg("optical", max_rounds=3, max_context_tokens=16,
                                              context_policy="drop_oldest"),
                      None, None, renderer=pages_of, progress=False)
    widths = [[im.width for im in images_of(c[0])] for c in eng.calls]
    # round 3 would see 3 pages (1 + 21 tokens > 16): the oldest page goes, 1 + 14 fit
    assert widths == [[], [15, 18], [18, 21]]
    assert [(r.dropped_tokens, r.dropped_images) for r in rec.rounds] == [(0, 0), (0, 0), (7, 1)]
    assert [r.context_vision_tokens for r in rec.rounds] == [0, 14, 14]
    # what round 2's page cost is still measured exactly across the drop
    assert [r.memory_vision_tokens for r in rec.rounds] == [14, 7, 0]


def test_stop_policy_ends_the_sample_before_the_round_that_does_not_fit():
    eng = CountingEngine({"q": ["a bb ccc dddd eeeee", "ff g hhh ii", "x y"]})
    (rec,) = run_loop(eng, problems("q"), cfg("text", max_context_tokens=8), None, None,
                      progress=False)
    assert len(eng.calls) == 2  # round 3 (prompt 10) is never sent
    assert rec.status == "context_overflow" and rec.num_rounds == 2
    assert all(r.dropped_tokens == 0 for r in rec.rounds)


def test_a_question_past_the_cap_ends_every_mode_without_a_round():
    for mode in ("optical", "text", "none"):
        eng = CountingEngine({"one two three four": ["x"]})
        (rec,) = run_loop(eng, problems("one two three four"),
                          cfg(mode, max_context_tokens=3, context_policy="drop_oldest"),
                          None, None, renderer=pages_of, progress=False)
        assert (rec.status, rec.num_rounds, eng.calls) == ("context_overflow", 0, [])


def test_drop_oldest_needs_an_engine_that_counts_prompts():
    eng = ScriptedEngine({"q": ["x"]})
    with pytest.raises(ValueError, match="context_policy=drop_oldest needs an engine"):
        run_loop(eng, problems("q"), cfg("text", max_context_tokens=8,
                                         context_policy="drop_oldest"), None, None,
                 progress=False)


def test_short_optical_rounds_stay_text_until_they_are_worth_a_page():
    # min 4 tokens: round 1 (2 words) is kept as text and continued; with round 2 the kept
    # text has 5 words and is rendered as a whole ("a b cc" + "dd ee": two pages)
    eng = CountingEngine({"q": ["a b\n", "cc dd ee", "f"]})
    (rec,) = run_loop(eng, problems("q"), cfg("optical", max_rounds=3, min_render_tokens=4),
                      None, None, renderer=pages_of, progress=False)
    assert [c[0].prefix_ids for c in eng.calls] == [[], [1, 1], []]
    assert [[im.width for im in images_of(c[0])] for c in eng.calls] == [[], [], [16, 15]]
    assert [r.memory_kind for r in rec.rounds] == ["text", "pages", ""]
    assert [r.memory_text_tokens for r in rec.rounds] == [2, 5, 0]
    assert [r.new_images for r in rec.rounds] == [0, 2, 0]


def test_min_render_tokens_zero_renders_every_round():
    eng = CountingEngine({"q": ["a b\n", "cc dd ee", "f"]})
    (rec,) = run_loop(eng, problems("q"), cfg("optical", max_rounds=3), None, None,
                      renderer=pages_of, progress=False)
    assert [r.memory_kind for r in rec.rounds] == ["pages", "pages", ""]
    assert [c[0].prefix_ids for c in eng.calls] == [[], [], []]


def test_text_kept_next_to_pages_is_refused_for_a_server_engine():
    from vtc_lab.infer.engine_config import EngineConfig

    with pytest.raises(ValueError, match="loop.min_render_tokens applies to engine=hf only"):
        EvalConfig(engine=EngineConfig(name="openai", base_urls=["http://127.0.0.1:9/v1"]),
                   loop=LoopConfig(min_render_tokens=64))
    # the other loops keep no text next to pages: nothing to refuse
    EvalConfig(engine=EngineConfig(name="openai", base_urls=["http://127.0.0.1:9/v1"]),
               loop=LoopConfig(mode="text", min_render_tokens=64))


def test_loop_config_refuses_bad_cap_settings():
    with pytest.raises(ValueError, match="loop.context_policy must be one of"):
        LoopConfig(context_policy="truncate")
    with pytest.raises(ValueError, match="loop.min_render_tokens must be an integer >= 0"):
        LoopConfig(min_render_tokens=-1)


@pytest.fixture(scope="module")
def engine() -> HFEngine:
    torch.set_num_threads(1)
    return HFEngine(load_backbone(ModelConfig()))


@pytest.mark.parametrize("mode", ["optical", "text", "none"])
def test_the_cap_is_never_exceeded_with_the_tiny_model(engine, mode):
    probs = [Problem(id=str(i), question=q, gold="2", benchmark="math500")
             for i, q in enumerate(["What is $1+1$?", "Compute $\\frac{6}{3}$ now."])]
    loop = LoopConfig(mode=mode, max_rounds=5, max_new_tokens=12, do_sample=True,
                      temperature=1.0, batch_size=2, seed=5, context_policy="drop_oldest")
    base = max(sum(engine.count_prompt_tokens(r)) for r in _first_requests(probs))
    cap = base + 20  # a round and a half of text memory
    recs = run_loop(engine, probs, LoopConfig(**{**loop.__dict__, "max_context_tokens": cap}),
                    RenderConfig(), "sys", progress=False)
    rounds = [r for rec in recs for r in rec.rounds]
    assert rounds and all(r.context_text_tokens + r.context_vision_tokens <= cap for r in rounds)
    assert efficiency_metrics(recs, 5)["context_tokens_peak"] <= cap
    if mode == "none":
        assert all(r.dropped_tokens == 0 for r in rounds)
    else:  # the memory outgrew the cap, and the drops are what kept the prompts under it
        assert any(r.dropped_tokens > 0 for r in rounds)
        if mode == "optical":
            assert any(r.dropped_images > 0 for r in rounds)


def _first_requests(probs):
    from vtc_lab.data.messages import build_messages
    from vtc_lab.infer.engine_api import GenerationRequest

    return [GenerationRequest(messages=build_messages(p.question, [], "sys", "before"))
            for p in probs]


def test_length_buckets_are_exact():
    from vtc_lab.infer.metrics import length_bucket, length_metrics
    from vtc_lab.infer.records import ProblemRecord

    assert [length_bucket(s) for s in (0, 4, 5, 9, 10, 24, 25)] == \
        [(0, 4), (0, 4), (5, 9), (5, 9), (10, 14), (20, 24), (25, 29)]
    probs = [Problem(id=f"p{s}", question="q", gold="1", benchmark="toy", meta={"steps": s})
             for s in (5, 9, 12, 14, 25)]
    probs.append(Problem(id="x", question="q", gold="1", benchmark="toy"))  # no length: left out
    correct = {"p5": [True, False], "p9": [True, True], "p12": [False, False], "p14": [True, False],
               "p25": [True, True], "x": [True, True]}
    # The strict verdict counts, as for the headline accuracy: p25's first sample is right only
    # under lenient extraction (an answer the model never clearly stated) and is not credited.
    lenient_only = {("p25", 0)}
    recs = [ProblemRecord(problem_id=pid, benchmark="toy", sample=s, mode="optical", seed=0,
                          gold="1", status="final", output="", latency_s=0.0, correct=c,
                          correct_strict=c and (pid, s) not in lenient_only)
            for pid, cs in correct.items() for s, c in enumerate(cs)]
    assert length_metrics(recs, probs) == {
        "accuracy_len_05-09": 0.75, "samples_len_05-09": 4.0,
        "accuracy_len_10-14": 0.25, "samples_len_10-14": 4.0,
        "accuracy_len_25-29": 0.5, "samples_len_25-29": 2.0}
    assert length_metrics(recs, probs[-1:]) == {}
