"""The synthetic toy task: exact solutions, the read check, knobs, and a held-out set that can
never overlap training problems."""

import json

import pytest

from vtc_lab.task import toytask
from vtc_lab.eval.benchmarks import BenchmarkConfig, load_benchmark, register_toy_benchmark
from vtc_lab.eval.metrics import grade_predictions
from vtc_lab.task.toytask import ToyTaskSpec


def test_solution_by_hand():
    p = toytask.make_problem((4, 8, 2, 1), 2, "sum")
    # sum rule: new[i] = s[i] + s[i+1 mod 4] (mod 10)
    assert p.lines == ("C4.8.2.1", "B2.0.3.5", "A2.3.8.7")
    assert p.answer == "2.3.8.7" and "C4.8.2.1" in p.question
    t = toytask.make_problem((0, 9), 1, "table")
    assert t.lines == ("B0.9", "A3.5")
    # shift rule: new[i] = TABLE[s[i+1 mod 4]], TABLE = 3 7 0 9 1 8 2 6 4 5
    s = toytask.make_problem((4, 8, 2, 1), 2, "shift")
    assert s.lines == ("C4.8.2.1", "B4.0.7.1", "A3.6.7.1")


def test_shift_lines_never_repeat_within_a_problem_except_for_periodic_states():
    """`table` repeats every 10 steps, so with 15 steps a late line can be copied from an old
    page; `shift` repeats only after 20 steps, except for states that are themselves periodic
    under the rotation (constant or abab: 100 of the 10,000 4-digit states)."""
    import itertools

    repeats = {"table": 0, "shift": 0}
    for state in itertools.product(range(10), repeat=4):
        for rule in repeats:
            states = [line[1:] for line in toytask.solve(state, 15, rule)]
            repeats[rule] += len(set(states)) < len(states)
    assert repeats == {"table": 10_000, "shift": 100}


@pytest.mark.parametrize("rule", toytask.RULES)
def test_every_step_is_a_function_of_the_previous_line_only(rule):
    for p in toytask.training_problems(ToyTaskSpec(digits=5, steps=9, min_steps=3, rule=rule), 50):
        for prev, cur in zip(p.lines, p.lines[1:]):
            assert toytask.next_line(prev, rule) == cur
        assert toytask.next_line(p.lines[-1], rule) is None and p.lines[-1][0] == "A"


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
                          problems[0].meta["steps"], "shift")
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


def test_read_checks_of_one_long_generation_cut_mid_line():
    """Text memory's rounds end wherever the token budget ran out: the first line started in
    round r is checked against the line before it, which straddles the cut."""
    right = ["C4.8.2.1\nB2.0", ".3.5\nA2.3.8.7</think>"]
    assert toytask.read_checks(right, "sum", continuous=True) == (1, 1)
    assert toytask.read_checks(["C4.8.2.1\nB2.0", ".3.5\nA2.3.8.8</think>"], "sum",
                               continuous=True) == (1, 0)
    # read as separate turns, the same rounds would compare "B2.0" with ".3.5"
    assert toytask.read_checks(right, "sum") == (1, 0)
    # a cut exactly at a line start is the separate-turn case
    assert toytask.read_checks(["C4.8.2.1\n", "B2.0.3.5\n"], "sum", continuous=True) == (1, 1)


def test_read_details_edit_distance_and_cer():
    rounds = ["C4.8.2.1\n", "B2.0.3.6\nA2.3.8.7", "garbage</think>"]
    # round 1 (0-based) wrote B2.0.3.6 where its page's C4.8.2.1 steps to B2.0.3.5; round 2's
    # first line follows A (finished): not checked
    assert toytask.read_details(rounds, "sum") == [(1, "B2.0.3.6", "B2.0.3.5")]
    assert toytask.edit_distance("B2.0.3.6", "B2.0.3.5") == 1
    assert toytask.edit_distance("", "abc") == 3 and toytask.edit_distance("abc", "") == 3
    assert toytask.edit_distance("kitten", "sitting") == 3
    assert toytask.char_error_rate("B2.0.3.6", "B2.0.3.5") == 1 / 8
    assert toytask.char_error_rate("B2.0.3.5", "B2.0.3.5") == 0.0
    assert toytask.char_error_rate("B2.0.3", "B2.0.3.5") == 2 / 8  # a dropped digit and dot
