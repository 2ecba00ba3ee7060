"""LoopConfig / EvaluatorConfig validation and the shipped presets."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from vtc_lab.infer.config import LoopConfig
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
    ({"max_rounds": 0}, "evaluator.max_rounds"),
    ({"benchmarks": []}, "evaluator.benchmarks"),
])
def test_evaluator_config_names_the_bad_field(kwargs, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        EvaluatorConfig(**kwargs)


def test_evaluator_overrides_reach_the_loop_config():
    cfg = EvaluatorConfig(max_rounds=3, max_new_tokens=17, do_sample=False, batch_size=2)
    loop = cfg.loop_config("none")
    assert (loop.mode, loop.max_rounds, loop.max_new_tokens, loop.do_sample, loop.batch_size) == \
        ("none", 3, 17, False, 2)
    full = EvaluatorConfig(max_rounds=None, max_new_tokens=None).loop_config("optical")
    assert (full.max_rounds, full.max_new_tokens) == (8, 8192)
