"""Grading throughput and the cost of the safety net, side by side in one process.

Measures, on the MATH500 reference solutions graded against their own answers (500 items, real
LaTeX through extraction + math-verify):
  - in-process `answers_match` (math-verify, no hard deadline)      -> the unsafe baseline
  - `grade_many` with 1 and with 2 worker processes (hard deadlines) -> what evaluations use
  - `is_correct` per call (shared long-lived worker)
  - recovery: a batch with pathological power towers (timeout per item) next to the same batch
    without them, to show a stuck item costs its timeout and nothing more.

    python experiments/perf/grading.py [--repeats 3] [--timeout 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

from vtc_lab.eval import BenchmarkConfig, extract_answer, grade_many, is_correct, load_benchmark
from vtc_lab.eval.grade import answers_match


def clear_caches() -> None:
    """math-verify memoises parses (lru_cache) and sympy caches results; forked workers would
    inherit a warm parent cache, so every timed run starts cold."""
    from math_verify import parser
    from sympy.core.cache import clear_cache

    parser.parse_latex_cached.cache_clear()
    parser.parse_expr_cached.cache_clear()
    clear_cache()


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        clear_caches()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=2.0, help="per-item deadline for the tower batch")
    args = ap.parse_args()

    problems = load_benchmark(BenchmarkConfig(name="math500"))
    items = [(p.meta["solution"], p.gold) for p in problems]
    n = len(items)

    def in_process():
        ok = sum(answers_match(extract_answer(t, "math500"), g, "math500") for t, g in items)
        assert ok == n, ok

    def pool(workers):
        def run():
            res = grade_many(items, "math500", timeout_s=20, workers=workers)
            assert sum(r.correct for r in res) == n
        return run

    rows = [("in-process answers_match (no hard deadline)", best_of(in_process, args.repeats))]
    rows.append(("grade_many workers=1", best_of(pool(1), args.repeats)))
    rows.append(("grade_many workers=2", best_of(pool(2), args.repeats)))
    print(f"MATH500 self-grading, {n} items, best of {args.repeats}")
    print(f"{'path':46s} {'seconds':>8s} {'items/s':>9s} {'vs in-process':>14s}")
    for name, secs in rows:
        print(f"{name:46s} {secs:8.2f} {n / secs:9.1f} {rows[0][1] / secs:13.2f}x")

    is_correct("\\boxed{1}", "1", "math500")  # start the shared worker
    lat = []
    for t, g in items[:100]:
        t0 = time.perf_counter()
        is_correct(t, g, "math500")
        lat.append(time.perf_counter() - t0)
    print(f"is_correct per call (shared worker, 100 items): median {statistics.median(lat) * 1e3:.1f} ms, "
          f"max {max(lat) * 1e3:.1f} ms")

    tower = ("\\boxed{9^{9^{9^{9^{9}}}}}", "1")
    clean = items[:100]
    dirty = clean[:50] + [tower] * 4 + clean[50:]
    t_clean = best_of(lambda: grade_many(clean, "math500", timeout_s=args.timeout, workers=2), 1)
    t0 = time.perf_counter()
    res = grade_many(dirty, "math500", timeout_s=args.timeout, workers=2)
    t_dirty = time.perf_counter() - t0
    statuses = [r.status for r in res]
    print(f"100 items: {t_clean:.2f} s; same + 4 power towers (timeout {args.timeout:g} s, 2 workers): "
          f"{t_dirty:.2f} s, statuses ok={statuses.count('ok')} timeout={statuses.count('timeout')}, "
          f"correct={sum(r.correct for r in res)}")


if __name__ == "__main__":
    main()
