"""Reading fidelity of the toy task (issue 23 §3): per-round character error rate of the first
line a round writes against the exact next line of its newest page, and accuracy by the round
of the first misread, computed from graded records."""

from __future__ import annotations

import pytest

from vtc_lab.eval.benchmarks import BenchmarkConfig, load_benchmark
from vtc_lab.task import toytask
from vtc_lab.task.toytask import next_line
from vtc_lab.infer.metrics import read_metrics
from vtc_lab.infer.records import ProblemRecord, RoundRecord


def record(pid: str, rounds: list[str], correct: bool, mode: str = "optical") -> ProblemRecord:
    rs = [RoundRecord(round=i + 1, text=t, generated_tokens=1, context_text_tokens=1,
                      context_vision_tokens=0, images=0, generate_s=0.0, final=False, stopped=True)
          for i, t in enumerate(rounds)]
    rec = ProblemRecord(problem_id=pid, benchmark="toy", sample=0, mode=mode, seed=0, gold="",
                        status="final", output=rounds[-1], latency_s=0.0, rounds=rs)
    rec.correct = rec.correct_strict = correct
    return rec


def corrupt(line: str, n: int) -> str:
    """`line` with its last n digits replaced (n edits)."""
    chars = list(line)
    digits = [i for i, c in enumerate(chars) if c.isdigit()][-n:]
    for i in digits:
        chars[i] = str((int(chars[i]) + 1) % 10)
    return "".join(chars)


@pytest.fixture(scope="module")
def problems():
    return load_benchmark(BenchmarkConfig(name="toy", limit=3))


def rounds_of(problem, wrong: dict[int, int]) -> list[str]:
    """The problem's trace in 4-line rounds as a model would write it when round r (0-based)
    starts with `wrong[r]` wrong digits and every later line steps the line before it."""
    first = toytask.parse_line(problem.question.rsplit(" ", 1)[1])
    lines = [toytask.format_line(*first)]
    while len(lines) < problem.meta["steps"] + 1:
        line = next_line(lines[-1], "shift")
        r = len(lines) // 4
        if len(lines) % 4 == 0 and r in wrong:
            line = corrupt(line, wrong[r])
        lines.append(line)
    rounds = ["\n".join(lines[k:k + 4]) + "\n" for k in range(0, len(lines), 4)]
    rounds[-1] = rounds[-1].rstrip("\n") + "</think>"
    return rounds


def test_cer_per_round_and_accuracy_by_first_misread(problems):
    a, b, c = problems[0], problems[1], problems[2]
    recs = [record(a.id, rounds_of(a, {}), True),            # never misread
            record(b.id, rounds_of(b, {1: 1}), False),      # round 2 off by one digit
            record(c.id, rounds_of(c, {2: 2, 3: 4}), True)]  # first misread in round 3
    m = read_metrics(recs, problems)
    checks = m["read_checked"]
    assert checks == 9  # 3 later rounds (2, 3, 4) per sample: 15-16 lines in 4-line rounds
    assert m["read_rate"] == pytest.approx(6 / 9)
    assert m["read_cer/round_2"] == pytest.approx((1 / 8) / 3)
    assert m["read_cer/round_3"] == pytest.approx((2 / 8) / 3)
    assert m["read_cer/round_4"] == pytest.approx((4 / 8) / 3)
    assert m["read_cer"] == pytest.approx((1 / 8 + 2 / 8 + 4 / 8) / 9)
    assert {k: v for k, v in m.items() if "first_misread" in k} == {
        "first_misread/none": 1.0, "acc_by_first_misread/none": 1.0,
        "first_misread/round_2": 1.0, "acc_by_first_misread/round_2": 0.0,
        "first_misread/round_3": 1.0, "acc_by_first_misread/round_3": 1.0}


def test_other_benchmarks_get_no_keys():
    math = load_benchmark(BenchmarkConfig(name="math500", limit=1))
    assert read_metrics([record(math[0].id, ["x", "y"], True)], math) == {}
