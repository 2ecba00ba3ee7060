"""The headline accuracy is strict and exact: a model that writes the gold answer in the answer
slot scores 1, one that writes a wrong answer there (or none) scores 0, through the same
`evaluate_benchmarks` path; and a random-init model's noise earns nothing on MATH500."""

from __future__ import annotations

import torch

from vtc_lab.infer.config import LoopConfig
from vtc_lab.infer.engine import HFEngine
from vtc_lab.infer.evaluate import evaluate_benchmarks, load_problems
from vtc_lab.models import ModelConfig, load_backbone

from .infer_scripted import ScriptedEngine, question_of

torch.set_num_threads(1)

WRONG = "987654321"
LOOP = LoopConfig(mode="none", max_rounds=1, max_new_tokens=24, batch_size=16, seed=0)


class _AnswerEngine(ScriptedEngine):
    """Answers each problem with `answer(problem)`, found by its question in the prompt."""

    def __init__(self, problems, answer):
        super().__init__({})
        self.problems, self.answer = problems, answer

    def generate(self, requests, params):
        for req in requests:
            q = question_of(req)
            if q not in self.scripts:
                problem = next(p for p in self.problems if p.question in q)
                self.scripts[q] = [self.answer(problem)]
        return super().generate(requests, params)


def _accuracy(problems, answer) -> tuple[float, float]:
    results = evaluate_benchmarks(_AnswerEngine(problems, answer), {"math500": problems}, [LOOP],
                                  progress=False, grade_workers=1)
    m = results.metrics
    assert m["eval/math500/none/num_samples"] == len(problems)
    return m["eval/math500/none/accuracy"], m["eval/math500/none/accuracy_lenient"]


def test_gold_in_the_answer_slot_scores_one_and_a_wrong_one_zero():
    problems = load_problems("math500", limit=8, seed=0)
    assert _accuracy(problems, lambda p: f"so </think>\n<answer>{p.gold}</answer>") == (1.0, 1.0)
    assert not any(p.gold == WRONG for p in problems)
    assert _accuracy(problems, lambda p: f"so </think>\n<answer>{WRONG}</answer>") == (0.0, 0.0)
    # half right, half wrong: exactly one half (not a grader that marks everything alike)
    half = _accuracy(problems, lambda p: "so </think>\n<answer>"
                     f"{WRONG if problems.index(p) % 2 else p.gold}</answer>")
    assert half == (0.5, 0.5)
    # an answer tag without the closing </think> earns the lenient score only
    assert _accuracy(problems, lambda p: f"so <answer>{p.gold}</answer>") == (0.0, 1.0)


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
