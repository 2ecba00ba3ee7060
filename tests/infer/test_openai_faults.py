"""`engine=openai` facing broken servers, each a real HTTP server on 127.0.0.1
(tests/infer/fake_openai.py): a 200 that is an HTML page or JSON without `choices` ends the eval
with one line naming the server and what it sent (records so far kept, the rerun resumes); a
prompt past the model's context length, in any of the servers' wordings, ends that sample as
`context_overflow` and the eval goes on."""

from __future__ import annotations

import json

import pytest

from tests.infer.fake_openai import OVERFLOW_MESSAGES, FakeOpenAIServer
from tests.infer.test_openai_client import run_eval, write_problems
from vtc_lab.eval.benchmarks import Problem
from vtc_lab.infer.config import LoopConfig
from vtc_lab.infer.engine_api import GenerationParams, GenerationRequest
from vtc_lab.infer.engine_config import EngineConfig
from vtc_lab.infer.loop import run_loop
from vtc_lab.infer.openai_engine import EngineUnavailableError, OpenAIEngine

QUESTIONS = [f"What is {i}+{3 - i}?" for i in range(4)]


def engine_for(server: FakeOpenAIServer, **kw) -> OpenAIEngine:
    engine = OpenAIEngine(EngineConfig(name="openai", base_urls=[server.url], max_retries=1,
                                       retry_backoff_s=0.01, **kw))
    engine.check(["optical", "text", "none"])
    return engine


def comparable(record) -> dict:
    """A record without its wall-clock fields."""
    d = record.to_dict()
    d.pop("latency_s")
    for r in d["rounds"]:
        r.pop("generate_s")
        r.pop("render_s", None)
    return d


def rows(path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.mark.parametrize("fault,says", [
    ("html", "answered HTTP 200 text/html, not JSON: '<html><body><h1>Welcome to nginx!"),
    ("no_choices", "answered without `choices`: '{\"id\": \"x\""),
])
def test_a_broken_answer_ends_the_eval_in_one_line_and_the_rerun_resumes(tmp_path, fault, says):
    # the third problem's prompt draws the broken answer; one sample in flight at a time, so
    # the first two are finished (and written) when it comes
    bench = write_problems(tmp_path / "b.jsonl", QUESTIONS[:2] + ["BROKEN " + QUESTIONS[2]]
                           + QUESTIONS[3:])
    with FakeOpenAIServer(faults={"BROKEN": fault}) as server:
        proc, out = run_eval(tmp_path, server.url, bench, "loops=[none]",
                             "engine.max_concurrency=1")
        assert proc.returncode == 1
        assert "Traceback" not in proc.stderr
        # the CLI's one error line (vtc_lab.cli.main), the server's answer in it
        lines = [x for x in proc.stderr.splitlines() if x.startswith("vtc-lab eval: error:")]
        assert len(lines) == 1, proc.stderr[-3000:]
        assert f"last: {server.url}: /chat/completions {says}" in lines[0]
        assert "giving up after 2 attempts" in lines[0]  # retried first (max_retries=1)
        assert [r["problem_id"] for r in rows(out / "local__none.jsonl")[1:]] == ["0", "1"]
        server.faults.clear()  # the server is fixed: the rerun does only what is left
        proc, out = run_eval(tmp_path, server.url, bench, "loops=[none]",
                             "engine.max_concurrency=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["eval/local/none/resumed_samples"] == 2.0
    assert sorted(r["problem_id"] for r in rows(out / "local__none.graded.jsonl")) == \
        ["0", "1", "2", "3"]


def test_a_prompt_past_the_context_length_is_counted_and_the_eval_goes_on(tmp_path):
    bench = write_problems(tmp_path / "b.jsonl", QUESTIONS[:1] + ["TOO LONG " + QUESTIONS[1]]
                           + QUESTIONS[2:])
    with FakeOpenAIServer(faults={"TOO LONG": "overflow"}) as server:
        proc, out = run_eval(tmp_path, server.url, bench, "loops=[optical,text]")
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    for mode in ("optical", "text"):
        by_id = {r["problem_id"]: r for r in rows(out / f"local__{mode}.graded.jsonl")}
        assert sorted(by_id) == ["0", "1", "2", "3"]
        assert by_id["1"]["status"] == "context_overflow" and by_id["1"]["rounds"] == []
        assert all(by_id[i]["status"] != "context_overflow" for i in "023")
        assert metrics[f"eval/local/{mode}/status/context_overflow"] == 1.0


@pytest.mark.parametrize("style", sorted(OVERFLOW_MESSAGES))
def test_every_servers_context_length_refusal_ends_that_sample(style):
    """loop=text grows the prompt each round; a server with a small max_model_len refuses a
    later round (through /completions) in vLLM's, SGLang's or OpenAI's words: the sample ends as
    `context_overflow` after the rounds that fit, the others are untouched."""
    problems = [Problem(id=str(i), question=q, gold="3", benchmark="math500")
                for i, q in enumerate(QUESTIONS)]
    cfg = LoopConfig(mode="text", max_rounds=6, max_new_tokens=30, batch_size=2)
    with FakeOpenAIServer() as server:
        engine = engine_for(server)
        free = run_loop(engine, problems, cfg, None, "sys", progress=False)
        engine.close()
    limit = 40 + max(r.rounds[0].context_text_tokens for r in free) + 30 + 10
    assert any(len(r.rounds) >= 3 for r in free)  # some sample would need a longer prompt
    with FakeOpenAIServer(max_model_len=limit, overflow_style=style) as server:
        engine = engine_for(server)
        capped = run_loop(engine, problems, cfg, None, "sys", progress=False)
        engine.close()
    for a, b in zip(free, capped):
        fits = [r for r in a.rounds if r.context_text_tokens + 30 <= limit]
        if len(fits) == len(a.rounds):
            assert comparable(b) == comparable(a)
        else:
            assert b.status == "context_overflow"
            assert [r.text for r in b.rounds] == [r.text for r in fits]
    assert sum(r.status == "context_overflow" for r in capped) >= 1


def test_other_client_errors_still_stop_the_run():
    """A 400/404 that is not about the context length is no overflow: the run stops with it."""
    with FakeOpenAIServer() as server:
        engine = engine_for(server)
        engine.model = "another-model"  # the server answers 404 "model does not exist"
        request = GenerationRequest(messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(EngineUnavailableError, match="HTTP 404: The model `another-model`"):
            engine.generate([request], GenerationParams(max_new_tokens=4))
        engine.close()
