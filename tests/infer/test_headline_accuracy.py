"""The headline accuracy is strict: a random-init model's noise earns nothing on MATH500."""

from __future__ import annotations

import torch

from vtc_lab.infer.config import LoopConfig
from vtc_lab.infer.engine import HFEngine
from vtc_lab.infer.evaluate import evaluate_benchmarks, load_problems
from vtc_lab.models import ModelConfig, load_backbone

torch.set_num_threads(1)


def test_random_init_model_scores_zero_headline_on_the_math500_fixture():
    engine = HFEngine(load_backbone(ModelConfig()))
    problems = {"math500": load_problems("math500", limit=16, seed=0)}
    loop = LoopConfig(mode="none", max_rounds=1, max_new_tokens=24, do_sample=True,
                      temperature=1.0, batch_size=16, seed=0)
    results = evaluate_benchmarks(engine, problems, [loop], progress=False, grade_workers=1)
    m = results.metrics
    assert m["eval/math500/none/num_samples"] == 16
    assert m["eval/math500/none/accuracy"] == 0.0
    assert "eval/math500/none/accuracy_lenient" in m  # reported beside it, never instead
