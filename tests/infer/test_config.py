"""LoopConfig / EvaluatorConfig validation and the shipped presets."""

from dataclasses import fields
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from vtc_lab.infer.config import EvalConfig, LoopConfig
from vtc_lab.train.config import EvaluatorConfig

CONF = Path(__file__).resolve().parents[2] / "conf"


@pytest.mark.parametrize("name", ["optical", "text", "none"])
def test_loop_presets_compose(name):
    raw = OmegaConf.merge(OmegaConf.structured(LoopConfig), OmegaConf.load(CONF / "loop" / f"{name}.yaml"))
    cfg = OmegaConf.to_object(raw)
    assert cfg.mode == name
    # The reference protocol: 8 rounds x 8,192 tokens, T=0.6, top_p=0.95.
    assert (cfg.max_rounds, cfg.max_new_tokens, cfg.temperature, cfg.top_p) == (8, 8192, 0.6, 0.95)


@pytest.mark.parametrize("name", ["off", "default"])
def test_evaluator_presets_compose(name):
    raw = OmegaConf.merge(OmegaConf.structured(EvaluatorConfig),
                          OmegaConf.load(CONF / "evaluator" / f"{name}.yaml"))
    cfg = OmegaConf.to_object(raw)
    assert cfg.enabled is (name == "default")


@pytest.mark.parametrize("kwargs, field", [
    ({"mode": "vision"}, "loop.mode"),
    ({"max_rounds": 0}, "loop.max_rounds"),
    ({"max_new_tokens": -1}, "loop.max_new_tokens"),
    ({"top_p": 0.0}, "loop.top_p"),
    ({"temperature": 0.0}, "loop.temperature"),
    ({"do_sample": False, "samples_per_problem": 4}, "loop.samples_per_problem"),
])
def test_loop_config_names_the_bad_field(kwargs, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        LoopConfig(**kwargs)


def test_greedy_allows_zero_temperature():
    assert LoopConfig(do_sample=False, temperature=0.0).temperature == 0.0


@pytest.mark.parametrize("kwargs, field", [
    ({"loops": ["optical", "vision"]}, "evaluator.loops"),
    ({"every_n_steps": -1}, "evaluator.every_n_steps"),
    ({"benchmarks": []}, "evaluator.benchmarks"),
])
def test_evaluator_config_names_the_bad_field(kwargs, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        EvaluatorConfig(**kwargs)


def test_evaluator_loop_reaches_each_mode():
    """(The page cap is no loop setting: `model.image_max_pixels`, handed to the loops through
    the run's reading spec.)"""
    cfg = EvaluatorConfig(loop=LoopConfig(max_rounds=3, max_new_tokens=17, do_sample=False,
                                          batch_size=2))
    loop = cfg.loop_config("none")
    assert (loop.mode, loop.max_rounds, loop.max_new_tokens, loop.do_sample, loop.batch_size) == (
        "none", 3, 17, False, 2)
    assert cfg.loop.mode == "optical"  # each mode is a copy; the nested loop is not changed


def test_evaluator_loop_overrides_compose_and_are_validated_by_the_loop_schema():
    raw = OmegaConf.merge(OmegaConf.structured(EvaluatorConfig),
                          OmegaConf.load(CONF / "evaluator" / "default.yaml"),
                          OmegaConf.from_dotlist(["loop.max_rounds=5", "loop.top_k=7"]))
    loop = OmegaConf.to_object(raw).loop_config("text")
    assert (loop.max_rounds, loop.max_new_tokens, loop.top_k, loop.do_sample) == (5, 256, 7, False)
    bad = OmegaConf.merge(raw, OmegaConf.from_dotlist(["loop.max_rounds=0"]))
    with pytest.raises(ValueError, match=r"loop\.max_rounds"):
        OmegaConf.to_object(bad)


def test_each_decoding_setting_is_declared_once():
    """`LoopConfig` declares the decoding settings; the evaluator nests it instead of copying
    fields, and the engine's per-batch params take `LoopConfig`'s names and defaults."""
    import ast
    import inspect
    import textwrap

    from vtc_lab.infer.engine import GenerationParams
    from vtc_lab.infer.loop import generation_params

    loop_fields = {f.name: f for f in fields(LoopConfig)}
    assert not {f.name for f in fields(EvaluatorConfig)} & set(loop_fields)
    assert not {f.name for f in fields(EvalConfig)} & set(loop_fields)
    params = [f.name for f in fields(GenerationParams)]
    assert set(params) <= set(loop_fields)
    # each default is read from LoopConfig's (`name: type = _LOOP.name`), never restated: an
    # equal literal would pass a comparison of values today and drift tomorrow
    body = ast.parse(textwrap.dedent(inspect.getsource(GenerationParams))).body[0].body
    defaults = {node.target.id: ast.unparse(node.value) for node in body
                if isinstance(node, ast.AnnAssign) and node.value is not None}
    assert defaults == {name: f"_LOOP.{name}" for name in params}
    # every setting reaches the engine: each value differs from its default
    odd = LoopConfig(max_new_tokens=3, do_sample=False, temperature=1.3, top_p=0.5, top_k=4,
                     repetition_penalty=1.2)
    assert all(getattr(odd, n) != loop_fields[n].default for n in params)
    assert generation_params(odd) == GenerationParams(**{n: getattr(odd, n) for n in params})