"""Grading: math-verify equivalence table, the packaged references grade themselves 100 %,
and pathological expressions cost a timeout, never a hang or a crash."""

import threading
import time

import pytest

from vtc_lab.eval import BenchmarkConfig, grade_many, is_correct, load_benchmark
from vtc_lab.eval.grade import answers_match, compare_many

EQUIVALENT = [
    ("\\frac{1}{2}", "0.5"), ("\\dfrac{1}{2}", "\\frac12"), ("\\tfrac{3}{4}", "3/4"),
    ("[1, 3)", "[1,3)"), ("(-\\infty, 2]", "(-\\infty,2]"),
    ("90^\\circ", "90"), ("90^{\\circ}", "90"),
    ("50\\%", "50"), ("50\\%", "50 \\%"),
    ("5\\text{ cm}", "5"), ("\\$18", "18"),
    ("\\{1, 2, 3\\}", "\\{3,2,1\\}"), ("1, 2, 3", "3, 2, 1"),
    ("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", "\\begin{bmatrix}1&2\\\\3&4\\end{bmatrix}"),
    ("\\sqrt{8}", "2\\sqrt{2}"), ("27.0", "27"), ("x^2+2x+1", "(x+1)^2"),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\pi/2)"), ("\\frac{\\sqrt{3}}{2}", "\\frac{1}{2}\\sqrt{3}"),
    ("1000000", "1{,}000{,}000"), ("x = 5", "5"), ("\\text{(C)}", "C"),
]
NOT_EQUIVALENT = [
    ("\\frac{1}{2}", "\\frac{1}{3}"), ("[1,3)", "(1,3)"), ("(1,3)", "(1,3]"),
    ("10\\%", "20"), ("45^\\circ", "46"), ("12 \\text{ dollars}", "13"),
    ("\\{1,2\\}", "\\{1,3\\}"),
    ("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", "\\begin{pmatrix}1&2\\\\4&3\\end{pmatrix}"),
    ("\\sqrt{8}", "3\\sqrt{2}"), ("27", "27.5"), ("-\\frac{1}{2}", "\\frac{1}{2}"), ("10", "10.001"),
]


@pytest.mark.parametrize("gold, pred", EQUIVALENT)
def test_equivalent_pairs(gold, pred):
    assert answers_match(pred, gold, "math500")


@pytest.mark.parametrize("gold, pred", NOT_EQUIVALENT)
def test_non_equivalent_pairs(gold, pred):
    assert not answers_match(pred, gold, "math500")


def test_pair_table_through_worker_processes_matches_in_process():
    pairs = [(p, g) for g, p in EQUIVALENT + NOT_EQUIVALENT]
    got = compare_many(pairs, timeout_s=20, workers=2)
    assert [s for s, *_ in got] == ["ok"] * len(pairs)
    assert [ok for _, ok, *_ in got] == [True] * len(EQUIVALENT) + [False] * len(NOT_EQUIVALENT)


def test_math500_reference_solutions_grade_100_percent():
    problems = load_benchmark(BenchmarkConfig(name="math500"))
    res = grade_many([(p.meta["solution"], p.gold) for p in problems], "math500", timeout_s=20, workers=2)
    assert [r.status for r in res].count("ok") == 500
    assert sum(r.correct for r in res) == 500
    # ...and not because everything passes: each solution against the next problem's answer
    shifted = grade_many([(p.meta["solution"], problems[(i + 1) % 500].gold) for i, p in enumerate(problems)],
                         "math500", timeout_s=20, workers=2)
    assert sum(r.correct for r in shifted) < 10


def test_gsm8k_reference_answers_and_number_forms():
    problems = load_benchmark(BenchmarkConfig(name="gsm8k"))
    res = grade_many([(p.meta["reference"], p.gold) for p in problems], "gsm8k")
    assert sum(r.correct for r in res) == 1319 and sum(r.correct for r in grade_many(
        [(p.meta["reference"], problems[i - 1].gold) for i, p in enumerate(problems)], "gsm8k")) < 40
    for text, gold, ok in [("#### 1,000", "1000", True), ("</think><answer>$1,000.00</answer>", "1000", True),
                           ("The answer is 18 dollars.", "18", True), ("#### 18.5", "18", False),
                           ("#### -3", "3", False), ("#### 7%", "7", True)]:
        assert is_correct(text, gold, "gsm8k") is ok, text


def test_gpqa_letters_exact():
    problems = load_benchmark(BenchmarkConfig(name="gpqa_diamond"))
    right = grade_many([(f"</think><answer>{p.gold}</answer>", p.gold) for p in problems], "gpqa_diamond")
    wrong = grade_many([("</think><answer>%s</answer>" % "BCDA"["ABCD".index(p.gold)], p.gold) for p in problems],
                       "gpqa_diamond")
    assert sum(r.correct for r in right) == 198 and sum(r.correct for r in wrong) == 0
    assert is_correct("\\boxed{B}", "B", "gpqa_diamond") and not is_correct("\\boxed{b}", "B", "gpqa_diamond", strict=True)


def test_amc23_float_golds():
    problems = load_benchmark(BenchmarkConfig(name="amc23"))
    assert is_correct("</think><answer>27</answer>", problems[0].gold, "amc23")
    assert is_correct("\\boxed{27.0}", "27.0", "amc23") and not is_correct("\\boxed{26}", "27.0", "amc23")


def test_is_correct_public_api_and_threads():
    assert is_correct("<think>...</think><answer>\\dfrac{1}{2}</answer>", "0.5", "math500")
    assert not is_correct("<think>...</think><answer></answer>", "0.5", "math500")
    assert not is_correct(None, "0.5", "math500")
    out = []
    t = threading.Thread(target=lambda: out.append(is_correct("\\boxed{0.5}", "\\frac12", "math500")))
    t.start(); t.join()
    assert out == [True]


def test_pathological_expression_times_out_and_the_rest_is_graded():
    tower = "\\boxed{9^{9^{9^{9^{9}}}}}"
    items = [("\\boxed{2}", "2"), (tower, "1"), ("\\boxed{3}", "4"), (tower, "2"), ("\\boxed{\\frac{2}{4}}", "0.5")]
    # returning at all is the point (no hang); the deadline counts grader CPU time, so the fine
    # items are graded however loaded the machine is
    res = grade_many(items, "math500", timeout_s=1.0, workers=2)
    assert [r.status for r in res] == ["ok", "timeout", "ok", "timeout", "ok"]
    assert [r.correct for r in res] == [True, False, False, False, True]
    assert res[1].extracted == "9^{9^{9^{9^{9}}}}" and "1s of grader CPU time" in res[1].error
    assert is_correct(tower, "1", "math500", timeout_s=1.0) is False
    assert is_correct("\\boxed{4}", "4", "math500")  # the shared worker was replaced


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/stat"), reason="needs /proc")
def test_worker_killed_mid_item_is_an_error_and_is_replaced():
    """A grader process that dies (OOM killer, segfault in a C extension) costs one item."""
    import multiprocessing as mp
    import os
    import signal

    from vtc_lab.eval.grade import _cpu_seconds

    before = {p.pid for p in mp.active_children()}  # e.g. is_correct's shared worker

    def kill_worker_mid_item():
        # the event: the worker has spent CPU time on the tower (setting up takes ~none), so it
        # is mid-item whenever the scheduler lets it get there
        child = _new_child(before)
        while (_cpu_seconds(child.pid) or 0.0) < 0.2:
            time.sleep(0.01)
        os.kill(child.pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_worker_mid_item)
    killer.start()
    res = grade_many([("\\boxed{9^{9^{9^{9^{9}}}}}", "1"), ("\\boxed{1}", "1")], "math500",
                     timeout_s=60, workers=1)
    killer.join()
    assert res[0].status == "error" and "died" in res[0].error
    assert (res[1].status, res[1].correct) == ("ok", True)


def test_no_answer_is_ok_status_with_none():
    res = grade_many([("no answer here at all", "1")], "math500", strict=True)
    assert (res[0].status, res[0].correct, res[0].extracted) == ("ok", False, None)
    with pytest.raises(ValueError, match="timeout_s"):
        compare_many([("1", "1")], timeout_s=0)


def test_memory_cap_is_relative_to_a_large_parent():
    """A training process (torch/CUDA) can map many GB; forked workers must still allocate."""
    import mmap

    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_NORESERVE", 0)
    big = mmap.mmap(-1, 8 << 30, flags=flags)  # 8 GB of untouched address space
    try:
        res = grade_many([("\\boxed{\\frac{1}{2}}", "0.5"), ("\\boxed{3}", "4")], "math500",
                         timeout_s=20, workers=1, memory_mb=512)
    finally:
        big.close()
    assert [(r.status, r.correct) for r in res] == [("ok", True), ("ok", False)]


def test_broken_latex_is_a_wrong_answer_not_a_grader_error():
    preds = ["\\frac{1}{", "}{", "\\begin{pmatrix}1&2", "x^^2", "\\sqrt", "$$", "1/0", "\\infty - \\infty", "??"]
    got = compare_many([(p, "\\frac{1}{2}") for p in preds], timeout_s=10, workers=2)
    assert [(s, ok) for s, ok, *_ in got] == [("ok", False)] * len(preds)


@pytest.mark.parametrize("name", ["aime25", "amc23"])
def test_numeric_golds_grade_themselves_and_reject_neighbours(name):
    problems = load_benchmark(BenchmarkConfig(name=name))
    right = grade_many([(f"</think><answer>{p.gold}</answer>", p.gold) for p in problems], name)
    wrong = grade_many([(f"\\boxed{{{float(p.gold) + 1:g}}}", p.gold) for p in problems], name)
    assert sum(r.correct for r in right) == len(problems)
    assert sum(r.correct for r in wrong) == 0 and all(r.status == "ok" for r in wrong)


def _stopped_worker(real_main):
    """A `_worker_main` that stops itself (SIGSTOP) before its first item: a grader process the
    scheduler gives no CPU, as on a heavily loaded machine."""
    import os
    import signal

    def main(conn, memory_mb):
        os.kill(os.getpid(), signal.SIGSTOP)
        real_main(conn, memory_mb)
    return main


def _new_child(before):
    """The one worker process started since `before` (a set of pids) was taken."""
    import multiprocessing as mp

    while not (new := [p for p in mp.active_children() if p.pid not in before]):
        time.sleep(0.01)
    (child,) = new
    return child


def _wait_stopped(pid):
    from pathlib import Path

    while Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "T":
        time.sleep(0.01)


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/stat"), reason="needs /proc")
def test_a_worker_starved_of_cpu_is_no_timeout(monkeypatch):
    """The deadline counts the grader's CPU time, not the wall clock: a fine comparison whose
    worker gets no CPU for longer than `timeout_s` (a loaded machine) is still graded."""
    import multiprocessing as mp
    import os
    import signal

    from vtc_lab.eval import grade

    monkeypatch.setattr(grade, "_worker_main", _stopped_worker(grade._worker_main))
    before = {p.pid for p in mp.active_children()}
    out = []
    t = threading.Thread(target=lambda: out.append(compare_many([("\\frac{2}{4}", "0.5")], timeout_s=2.0,
                                                                 workers=1)))
    t.start()
    child = _new_child(before)
    _wait_stopped(child.pid)
    time.sleep(3.0)  # more than a deadline of wall time passes while the worker has no CPU
    # (the backstop, 10 deadlines without progress, is far off)
    try:
        os.kill(child.pid, signal.SIGCONT)
    except ProcessLookupError:  # a wall-clock deadline already killed it
        pass
    t.join()
    assert [(s, ok) for s, ok, *_ in out[0]] == [("ok", True)]


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/stat"), reason="needs /proc")
def test_a_worker_that_never_runs_still_times_out(monkeypatch):
    """A wall-clock backstop (WALL_BACKSTOP x timeout_s without progress) ends an item whose
    worker is stopped."""
    from vtc_lab.eval import grade

    monkeypatch.setattr(grade, "_worker_main", _stopped_worker(grade._worker_main))
    got = compare_many([("1", "1")], timeout_s=0.1, workers=1)
    assert [(s, ok) for s, ok, *_ in got] == [("timeout", False)]
    assert got[0][3] >= 0.1 * grade.WALL_BACKSTOP
