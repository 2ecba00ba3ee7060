"""The synthetic toy task: exact solutions, the read check, knobs, and a held-out set that can
never overlap training problems."""

import json

import pytest

from vtc_lab.eval import toytask
from vtc_lab.eval.benchmarks import BenchmarkConfig, load_benchmark, register_toy_benchmark
from vtc_lab.eval.metrics import grade_predictions
from vtc_lab.eval.toytask import ToyTaskSpec


def test_solution_by_hand():
    p = toytask.make_problem((4, 8, 2, 1), 2, "sum")
    # sum rule: new[i] = s[i] + s[i+1 mod 4] (mod 10)
    assert p.lines == ("C4.8.2.1", "B2.0.3.5", "A2.3.8.7")
    assert p.answer == "2.3.8.7" and "C4.8.2.1" in p.question
    t = toytask.make_problem((0, 9), 1, "table")
    assert t.lines == ("B0.9", "A3.5")


def test_every_step_is_a_function_of_the_previous_line_only():
    for p in toytask.training_problems(ToyTaskSpec(digits=5, steps=9, min_steps=3), 50):
        for prev, cur in zip(p.lines, p.lines[1:]):
            assert toytask.next_line(prev, "sum") == cur
        assert toytask.next_line(p.lines[-1], "sum") is None and p.lines[-1][0] == "A"


def test_lines_are_single_tokens_per_character_and_rounds_cut_exactly():
    from vtc_lab.models.tiny_tokenizer import build_tiny_tokenizer
    from vtc_lab.render import HFTextTokenizer
    from vtc_lab.segment import SegmentationConfig, segment_text

    tok = HFTextTokenizer(build_tiny_tokenizer("qwen3_vl", 512))
    spec = ToyTaskSpec(digits=4, steps=15, lines_per_round=4)
    seg = SegmentationConfig(policy="boundary", max_tokens=toytask.round_budget(spec), min_tokens=0)
    for p in toytask.training_problems(spec, 40):
        text = p.reasoning
        assert tok.count(text) == len(text)  # no BPE merges (adjacent digits would merge)
        rounds = segment_text(text, seg, tok)
        assert [r.count("\n") for r in rounds] == [4, 4, 4, 3]
        assert "".join(rounds) == text and rounds[1].startswith(p.lines[4])


def test_heldout_never_overlaps_training_and_is_fixed():
    spec = ToyTaskSpec(digits=3, steps=4, min_steps=2, train_problems=2000, seed=7)
    held = toytask.heldout_problems(spec, 200)
    assert len({p.id for p in held}) == 200
    for seed in range(4):
        train = {p.id for p in toytask.training_problems(
            ToyTaskSpec(digits=3, steps=4, min_steps=2, seed=seed), 2000)}
        assert len(train) == 2000 and not train & {p.id for p in held}
    # the held-out set does not depend on the training seed
    assert [p.id for p in toytask.heldout_problems(ToyTaskSpec(digits=3, steps=4, min_steps=2,
                                                               seed=99), 200)] == [p.id for p in held]


def test_asking_for_more_problems_than_the_space_holds_is_an_error():
    with pytest.raises(ValueError, match="raise toy.digits"):
        list(toytask.training_problems(ToyTaskSpec(digits=2, steps=3), 95))


@pytest.mark.parametrize("bad", [{"digits": 1}, {"steps": 26}, {"min_steps": 0},
                                 {"min_steps": 16}, {"rule": "mul"}, {"heldout_fraction": 1.0}])
def test_bad_knobs_name_the_field(bad):
    with pytest.raises(ValueError, match=f"toy.{next(iter(bad))}"):
        ToyTaskSpec(**bad)


def test_registered_benchmark_grades_with_the_normal_grader():
    problems = load_benchmark(BenchmarkConfig(name="toy"))
    assert len(problems) == 500 and problems.version.startswith("1-")
    p = problems[0]
    lines = toytask.solve(toytask.parse_line(p.question.rsplit(" ", 1)[1])[1],
                          problems[0].meta["steps"], "sum")
    answer = lines[-1][1:]
    assert answer == p.gold
    good = "\n".join(lines) + "</think>\n<answer>" + answer + "</answer>"
    wrong = good.replace(answer + "<", answer[:-1] + str((int(answer[-1]) + 1) % 10) + "<")
    graded = grade_predictions(problems, [(p.id, 0, good), (p.id, 1, wrong)], workers=1)
    assert [g.correct_strict for g in graded] == [True, False]


def test_benchmark_of_other_knobs_replaces_the_default_and_restores():
    try:
        register_toy_benchmark(ToyTaskSpec(digits=3, steps=5), count=50)
        problems = load_benchmark(BenchmarkConfig(name="toy"))
        assert len(problems) == 50 and all(len(p.gold) == 5 for p in problems)
        assert json.loads(toytask.benchmark_jsonl(ToyTaskSpec(digits=3, steps=5), 50)
                          .splitlines()[0])["spec"]["digits"] == 3
    finally:
        register_toy_benchmark()
    assert len(load_benchmark(BenchmarkConfig(name="toy"))) == 500


def test_read_checks():
    rounds = ["C4.8.2.1\nB2.0.3.5\n", "A2.3.8.7</think>\n<answer>2.3.8.7</answer>"]
    assert toytask.read_checks(rounds, "sum") == (1, 1)
    assert toytask.read_checks(["C4.8.2.1\n", "B2.0.3.6\n"], "sum") == (1, 0)
    # a predecessor that is not a valid line is not checked
    assert toytask.read_checks(["garbage", "B2.0.3.5"], "sum") == (0, 0)
