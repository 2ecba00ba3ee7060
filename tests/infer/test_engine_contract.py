"""The engine contract, run over every registered engine (`vtc_lab.infer.engines`).

Each engine is built the way `vtc-lab eval` builds it (`EngineSpec.build(EvalConfig)`): `hf`
loads the tiny Qwen3-VL in this process, `openai` connects to the standard-library fake server
(tests/infer/fake_openai.py) over real HTTP. What the loops rely on is checked identically for
both: one output per request in order, independent of the batch; budgets; greedy and seeded
sampling repeat; text/vision split of the context; a prefix continues the turn by exactly its
ids; token counting; `vtc-lab eval` through the registry writes its predictions.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from PIL import Image

from tests.infer.fake_openai import FakeOpenAIServer
from vtc_lab.data.messages import build_messages
from vtc_lab.eval.benchmarks import BenchmarkConfig
from vtc_lab.infer.config import EvalConfig, LoopConfig
from vtc_lab.infer.engine_api import Engine, GenerationParams, GenerationRequest
from vtc_lab.infer.engine_config import EngineConfig
from vtc_lab.infer.engines import ENGINES, EngineSpec, engine_names, get_engine, register_engine
from vtc_lab.tracking.config import TrackingConfig


@contextmanager
def _hf_config(tmp_path: Path) -> Iterator[EvalConfig]:
    import torch

    torch.set_num_threads(1)
    yield EvalConfig(engine=EngineConfig(name="hf"), device="cpu")


@contextmanager
def _openai_config(tmp_path: Path) -> Iterator[EvalConfig]:
    with FakeOpenAIServer() as server:
        yield EvalConfig(engine=EngineConfig(name="openai", base_urls=[server.url],
                                             connect_timeout_s=5.0, max_retries=0))


# How each registered engine gets something to talk to in a test: a new engine adds its own.
SETUPS = {"hf": _hf_config, "openai": _openai_config}


def test_every_registered_engine_has_a_contract_setup():
    assert set(engine_names()) == set(SETUPS), \
        "a newly registered engine needs its setup in SETUPS, so the contract below covers it"


@pytest.fixture(scope="module", params=engine_names())
def built(request, tmp_path_factory):
    name = request.param
    with SETUPS[name](tmp_path_factory.mktemp(name)) as cfg:
        engine = get_engine(name).build(cfg)
        try:
            yield name, cfg, engine
        finally:
            engine.close()


def page(width: int = 120, height: int = 60) -> Image.Image:
    img = Image.new("RGB", (width, height), "white")
    for x in range(0, width, 5):
        img.putpixel((x, height // 2), (0, 0, 0))
    return img


GREEDY = GenerationParams(max_new_tokens=6, do_sample=False)
SAMPLED = GenerationParams(max_new_tokens=6, do_sample=True, temperature=1.0, top_p=1.0)


def test_built_engine_speaks_the_protocol(built):
    name, _, engine = built
    assert isinstance(engine, Engine)
    assert callable(engine.close)
    # an engine behind servers names the served model (part of the predictions' identity)
    assert get_engine(name).servers == isinstance(getattr(engine, "served_model", None), str)


def test_one_output_per_request_in_order_and_independent_of_the_batch(built):
    _, _, engine = built
    reqs = [GenerationRequest(build_messages("short", [], None), seed=3),
            GenerationRequest(build_messages("a longer question here", [page()], "sys"), seed=4),
            GenerationRequest(build_messages("third one", [], None), seed=5)]
    for params in (GREEDY, SAMPLED):
        batched = engine.generate(reqs, params)
        assert len(batched) == 3
        for req, out in zip(reqs, batched):
            (alone,) = engine.generate([req], params)
            assert out.token_ids == alone.token_ids and out.text == alone.text
            assert out.context_text_tokens == alone.context_text_tokens
            assert 0 < len(out.token_ids) <= params.max_new_tokens
            assert out.overflow is None


def test_greedy_and_seeded_sampling_repeat(built):
    _, _, engine = built
    msgs = build_messages("pick anything", [], None)
    a, b = engine.generate([GenerationRequest(msgs, seed=1), GenerationRequest(msgs, seed=1)],
                           SAMPLED)
    assert a.token_ids == b.token_ids
    g1 = engine.generate([GenerationRequest(msgs, seed=1)], GREEDY)[0]
    g2 = engine.generate([GenerationRequest(msgs, seed=9)], GREEDY)[0]
    assert g1.token_ids == g2.token_ids  # greedy ignores the seed


def test_context_splits_text_and_vision_tokens(built):
    _, _, engine = built
    plain, with_page, two_pages = engine.generate([
        GenerationRequest(build_messages("Q?", [], None)),
        GenerationRequest(build_messages("Q?", [page()], None)),
        GenerationRequest(build_messages("Q?", [page(), page(200, 90)], None))], GREEDY)
    assert plain.context_vision_tokens == 0 < plain.context_text_tokens
    assert 0 < with_page.context_vision_tokens < two_pages.context_vision_tokens
    # the image adds its placeholders, not text (delimiters at most a few tokens)
    assert with_page.context_text_tokens - plain.context_text_tokens <= 4


def test_a_prefix_continues_the_turn_by_exactly_its_ids(built):
    """The text-memory loop's contract: the prompt grows by the prefix ids and nothing else."""
    _, _, engine = built
    msgs = build_messages("continue me", [], None)
    first = engine.generate([GenerationRequest(msgs)], GREEDY)[0]
    prefix = first.memory_ids if first.memory_ids is not None else first.token_ids
    assert prefix, "the first round produced no ids to continue from"
    second = engine.generate([GenerationRequest(msgs, prefix_ids=list(prefix))], GREEDY)[0]
    assert second.context_text_tokens == first.context_text_tokens + len(prefix)
    assert second.context_vision_tokens == 0


def test_counts_text_tokens(built):
    _, _, engine = built
    short, longer = engine.count_text_tokens("12+3"), engine.count_text_tokens("12+3" * 5)
    assert 0 < short < longer


def test_eval_runs_through_the_registry(built, tmp_path, monkeypatch):
    """`evaluate` builds the engine from the registry (spy on the spec's builder) and writes one
    record per problem and loop."""
    from vtc_lab.infer.offline import evaluate

    name, cfg, _ = built
    spec = get_engine(name)
    calls = []
    original = EngineSpec.build

    def spy(self, c):
        calls.append(self.name)
        return original(self, c)

    monkeypatch.setattr(EngineSpec, "build", spy)
    cfg = EvalConfig(engine=cfg.engine, device=cfg.device, output_root=str(tmp_path),
                     benchmark=BenchmarkConfig(name="toy", limit=2),
                     loop=LoopConfig(max_rounds=2, max_new_tokens=8, do_sample=False),
                     loops=["optical", "text"], tracking=TrackingConfig(mode="off"),
                     grade_workers=1, progress=False, log_images=0)
    metrics = evaluate(cfg)
    assert calls == [spec.name]
    assert metrics["eval/toy/optical/num_samples"] == metrics["eval/toy/text/num_samples"] == 2
    (out_dir,) = (tmp_path / "eval").iterdir()
    (pred_dir,) = out_dir.iterdir()
    lines = (pred_dir / "toy__text.jsonl").read_text().splitlines()
    header = json.loads(lines[0])["header"]
    assert len(lines) == 3
    assert ("served_model" in header["model"]) == spec.servers


def test_registry_refuses_a_second_engine_under_a_taken_name():
    with pytest.raises(ValueError, match="'hf' is already registered"):
        register_engine(EngineSpec("hf", "somewhere:else", servers=True))
    with pytest.raises(ValueError, match="builder must be 'module:function'"):
        register_engine(EngineSpec("other", "no_colon", servers=False))
    assert "other" not in ENGINES
    with pytest.raises(ValueError, match=r"engine.name must be one of \['hf', 'openai'\], got 'vllm'"):
        EngineConfig(name="vllm")


def build_scripted(cfg: EvalConfig):
    from tests.infer.infer_scripted import ScriptedEngine

    return ScriptedEngine({"q": ["so</think><answer>1</answer>"]})


def test_a_registered_engine_is_usable_by_name_without_other_code(tmp_path):
    """One registration is all a new engine needs: `engine.name` accepts it and `evaluate`'s
    builder call reaches it (a server-less engine registered here, then removed)."""
    register_engine(EngineSpec("scripted", "tests.infer.test_engine_contract:build_scripted",
                               servers=False))
    try:
        cfg = EvalConfig(engine=EngineConfig(name="scripted"))
        engine = get_engine("scripted").build(cfg)
        assert isinstance(engine, Engine)
        with pytest.raises(ValueError, match="engine.base_urls is empty: engine=openai"):
            EngineConfig(name="openai")
    finally:
        del ENGINES["scripted"]
