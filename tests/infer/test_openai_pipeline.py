"""`engine=openai` drives each sample on its own (`engine.per_sample`): the same records as the
loop's lockstep batches, at most `engine.max_concurrency` requests in flight, and a slow sample
holds up no other. Real HTTP against tests/infer/fake_openai.py; no wall times asserted (the
throughput is measured by experiments/perf/openai_pipeline.py)."""

from __future__ import annotations

import pytest

from tests.infer.fake_openai import FakeOpenAIServer
from tests.infer.test_openai_faults import comparable
from vtc_lab.eval.benchmarks import Problem
from vtc_lab.infer.config import LoopConfig
from vtc_lab.infer.engine_api import ConcurrentEngine
from vtc_lab.infer.engine_config import EngineConfig
from vtc_lab.infer.loop import LoopStats, run_loop
from vtc_lab.infer.openai_engine import OpenAIEngine
from vtc_lab.render import RenderConfig

PROBLEMS = [Problem(id=f"p{i}", question=f"What is {i} + {2 * i}? Show the steps.", gold=str(3 * i),
                    benchmark="math500") for i in range(7)]


def run(server: FakeOpenAIServer, cfg: LoopConfig, problems=PROBLEMS, **engine_kw):
    engine = OpenAIEngine(EngineConfig(name="openai", base_urls=[server.url], **engine_kw))
    engine.check([cfg.mode])
    order: list[str] = []
    stats = LoopStats()
    try:
        records = run_loop(engine, problems, cfg, RenderConfig(), "sys", progress=False,
                           samples_per_problem=cfg.samples_per_problem,
                           on_record=lambda r: order.append(r.problem_id), stats=stats)
    finally:
        engine.close()
    return records, order, stats


@pytest.mark.parametrize("mode,sample", [("optical", False), ("text", False), ("none", False),
                                         ("optical", True), ("text", True)])
def test_per_sample_gives_the_batched_records(mode, sample):
    cfg = LoopConfig(mode=mode, max_rounds=4, max_new_tokens=24, batch_size=3, seed=11,
                     do_sample=sample, temperature=1.0, samples_per_problem=2 if sample else 1)
    # jittered latencies: the per-sample schedule sees rounds come back in another order
    with FakeOpenAIServer(jitter_s=0.02) as server:
        batched, batched_order, batched_stats = run(server, cfg, per_sample=False)
        piped, piped_order, piped_stats = run(server, cfg, per_sample=True, max_concurrency=3)
    assert [comparable(r) for r in piped] == [comparable(r) for r in batched]
    assert len({r.status for r in batched}) > 1 or max(len(r.rounds) for r in batched) > 1
    assert sorted(piped_order) == sorted(batched_order)
    # one request per round either way; batched: one generate call per batch and round
    assert piped_stats.batches == sum(len(r.rounds) for r in piped)
    assert batched_stats.batches < piped_stats.batches


def test_requests_in_flight_stay_within_max_concurrency():
    cfg = LoopConfig(mode="none", max_rounds=3, max_new_tokens=16, batch_size=7)
    with FakeOpenAIServer(latency_s=0.2) as server:
        run(server, cfg, per_sample=True, max_concurrency=3)
        assert server.peak_in_flight == 3


def test_a_slow_sample_holds_up_no_other():
    """The first problem's requests take 1.5 s, the others' none: with two in flight, every
    other problem runs all its rounds on the second slot and is written before the slow one;
    in lockstep batches of two, the slow problem's batch partner waits for it each round."""
    problems = [Problem(id="slow", question="SLOW What is 1+1?", gold="2", benchmark="math500"),
                *PROBLEMS[:4]]
    cfg = LoopConfig(mode="none", max_rounds=3, max_new_tokens=16, batch_size=2)
    with FakeOpenAIServer(slow={"SLOW": 1.5}) as server:
        piped, piped_order, _ = run(server, cfg, problems, per_sample=True, max_concurrency=2)
        batched, batched_order, _ = run(server, cfg, problems, per_sample=False)
    assert piped_order[-1] == "slow"
    assert batched_order == [p.id for p in problems]
    assert [comparable(r) for r in piped] == [comparable(r) for r in batched]


def test_the_engine_is_concurrent_only_per_sample():
    with FakeOpenAIServer() as server:
        for per_sample, in_flight in ((True, 5), (False, 0)):
            engine = OpenAIEngine(EngineConfig(name="openai", base_urls=[server.url],
                                               max_concurrency=5, per_sample=per_sample))
            assert isinstance(engine, ConcurrentEngine) and engine.max_in_flight == in_flight
            engine.close()


def test_per_sample_must_be_a_bool():
    with pytest.raises(ValueError, match="engine.per_sample must be true or false"):
        EngineConfig(name="openai", base_urls=["http://h:1/v1"], per_sample="yes")
