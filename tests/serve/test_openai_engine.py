"""`engine=openai` against a real `vtc-lab serve` process: the three loops give the in-process
engine's records, and bad servers fail before any work, naming the URL."""

from __future__ import annotations

import socket

import pytest
import torch

from vtc_lab.eval.benchmarks import Problem
from vtc_lab.infer.config import LoopConfig
from vtc_lab.infer.engine import HFEngine
from vtc_lab.infer.engine_config import EngineConfig
from vtc_lab.infer.loop import run_loop
from vtc_lab.infer.openai_engine import EngineUnavailableError, OpenAIEngine
from vtc_lab.models import ModelConfig, load_backbone
from vtc_lab.render import RenderConfig

PROBLEMS = [Problem(id="a", question="What is $1+1$?", gold="2", benchmark="math500"),
            Problem(id="b", question="Compute $\\frac{6}{3}$.", gold="2", benchmark="math500"),
            Problem(id="c", question="Solve $x+3=5$.", gold="2", benchmark="math500")]


@pytest.fixture(scope="module")
def hf(ckpt) -> HFEngine:
    torch.set_num_threads(1)
    return HFEngine(load_backbone(ModelConfig(source="pretrained", path=str(ckpt), arch="auto")))


@pytest.fixture(scope="module")
def remote(server):
    engine = OpenAIEngine(EngineConfig(name="openai", base_urls=[server.url]))
    engine.check(["optical", "text", "none"])
    yield engine
    engine.close()


def comparable(records) -> list[dict]:
    """Records without wall-clock fields (everything else must match exactly)."""
    out = []
    for rec in records:
        d = rec.to_dict()
        d.pop("latency_s")
        for r in d["rounds"]:
            r.pop("generate_s")
            r.pop("render_s", None)
        out.append(d)
    return out


@pytest.mark.parametrize("mode,sample", [("optical", False), ("text", False), ("none", False),
                                         ("optical", True), ("text", True)])
def test_loops_through_the_server_equal_the_in_process_engine(hf, remote, mode, sample):
    cfg = LoopConfig(mode=mode, max_rounds=3, max_new_tokens=10, do_sample=sample,
                     temperature=1.0, top_p=0.9, top_k=50 if sample else 0, batch_size=2, seed=5)
    local = run_loop(hf, PROBLEMS, cfg, RenderConfig(), "sys", progress=False)
    served = run_loop(remote, PROBLEMS, cfg, RenderConfig(), "sys", progress=False)
    assert comparable(served) == comparable(local)
    rounds = [r for rec in served for r in rec.rounds]
    assert len(rounds) > len(PROBLEMS)  # later rounds ran: memory went over the wire
    if mode == "optical":
        assert any(r.context_vision_tokens > 0 for r in rounds)
    if mode == "text":  # the text loop continued from token ids: the prompt grew by them
        rec = served[0]
        for prev, cur in zip(rec.rounds, rec.rounds[1:]):
            assert cur.context_text_tokens == prev.context_text_tokens + prev.memory_text_tokens


def test_the_server_model_name_and_capabilities_are_found(remote, server, ckpt):
    assert remote.model == ckpt.name  # the short id: the export directory's name, not its path
    assert remote.can_tokenize
    assert len(remote.image_token_ids) == 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_fails_naming_the_url():
    url = f"http://127.0.0.1:{free_port()}/v1"
    engine = OpenAIEngine(EngineConfig(name="openai", base_urls=[url], connect_timeout_s=2))
    with pytest.raises(EngineUnavailableError, match=f"cannot reach the server at {url}"):
        engine.check(["optical"])
    engine.close()


def test_wrong_model_name_fails_naming_url_and_served_models(server, ckpt):
    engine = OpenAIEngine(EngineConfig(name="openai", base_urls=[server.url], model="glyph-9b"))
    with pytest.raises(EngineUnavailableError) as err:
        engine.check(["none"])
    assert server.url in str(err.value) and "'glyph-9b'" in str(err.value)
    assert repr(ckpt.name) in str(err.value)  # what it does serve
    engine.close()


def test_generate_before_check_is_refused(server):
    engine = OpenAIEngine(EngineConfig(name="openai", base_urls=[server.url]))
    with pytest.raises(RuntimeError, match="check"):
        engine.generate([], None)
    engine.close()


def test_engine_config_refuses_bad_urls():
    with pytest.raises(ValueError, match="base_urls is empty"):
        EngineConfig(name="openai")
    with pytest.raises(ValueError, match="not an http"):
        EngineConfig(name="openai", base_urls=["localhost:8000"])
    with pytest.raises(ValueError, match="twice"):
        EngineConfig(name="openai", base_urls=["http://a:1/v1", "http://a:1"])
    assert EngineConfig(name="openai", base_urls=["http://a:1/", "http://b:2/v1"]
                        ).normalized_urls == ["http://a:1/v1", "http://b:2/v1"]
