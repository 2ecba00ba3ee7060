"""Grading: is an extracted answer equivalent to the gold answer?

- math (MATH500, AIME25, AMC23, local): equivalence through `math-verify` (LaTeX -> sympy,
  numeric and symbolic comparison, sets, intervals, matrices, units, percent). We never write a
  LaTeX grader of our own.
- gsm8k: exact decimal equality after dropping commas, `$` and units ("1,000" == "1000.00").
- gpqa: exact letter.

Two entry points, both bounded in time (a pathological answer such as a huge power tower, which
sympy would evaluate inside GMP where no signal can interrupt it, costs at most the timeout).
The deadline counts the worker's own CPU time (from /proc; wall time where there is none), so a
verdict does not depend on how loaded the machine is: a comparison that gets little CPU (an
evaluation beside a training job) is not turned into a timeout; a wall-clock backstop of
`WALL_BACKSTOP` x the timeout without progress still ends an item whose worker never runs.
- `is_correct(text, gold, benchmark)`: one item, for external checks. Math equivalence runs in
  one long-lived worker process shared by all calls (started on first use, replaced when it runs
  past `timeout_s` or dies), so a call costs a pipe round trip, not a process start.
- `grade_many(items, benchmark, timeout_s, workers)`: the batch path used by evaluations. Math
  equivalence runs in `workers` processes with a hard per-item deadline; a worker that runs past
  it is killed and replaced, one that crashes is replaced; the item gets status `timeout` or
  `error` and the evaluation goes on.
`answers_match(pred, gold, benchmark)` compares already-extracted answers in-process (math-verify's
own signal timeouts only; no hard deadline): use it only on trusted strings.
Model output is parsed, never executed.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import multiprocessing as mp
import threading
import time
from collections import deque
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from multiprocessing.connection import wait
from typing import Iterable, Sequence

from vtc_lab.eval.extract import extract_answer, grader_kind, normalize_number

STATUSES = ("ok", "timeout", "error")
WALL_BACKSTOP = 10.0
"""An item also times out when its worker makes no progress (neither runnable nor gaining CPU
time: stopped, or stuck in the kernel) for this many times its CPU deadline of wall time. A
worker that is merely starved (runnable, waiting for a core) never trips it."""


@dataclass(frozen=True)
class GradeResult:
    """The outcome of grading one prediction."""

    correct: bool
    """True only when an answer was extracted and judged equivalent (timeouts/errors: False)."""
    status: str
    """ok | timeout (ran past the per-item deadline) | error (the grader raised or crashed)."""
    extracted: str | None
    """The extracted answer (None: no answer found, counted as no-answer, status ok)."""
    error: str | None = None
    """Short reason for status error/timeout."""
    seconds: float = 0.0
    """Wall time spent comparing (0 for items without an answer); the deadline counts CPU time."""


# ---------------------------------------------------------------------------------- comparison
def _math_targets():
    from math_verify import ExprExtractionConfig, LatexExtractionConfig

    return [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]


def _math_equal(pred: str, gold: str, timeout: int | None, raise_on_error: bool) -> bool:
    """math-verify equivalence of two answer spans (each wrapped in \\boxed{} for parsing)."""
    from math_verify import parse, verify

    targets = _math_targets()
    g = parse("$" + gold + "$", targets, parsing_timeout=timeout, raise_on_error=raise_on_error)
    p = parse("$" + pred + "$", targets, parsing_timeout=timeout, raise_on_error=raise_on_error)
    if not g or not p:
        return pred.strip() == gold.strip()
    return bool(verify(g, p, timeout_seconds=timeout, raise_on_error=raise_on_error))


def _number_equal(pred: str, gold: str) -> bool:
    a, b = normalize_number(pred), normalize_number(gold)
    if a is None or b is None:
        return False
    try:
        return Decimal(a) == Decimal(b)
    except InvalidOperation:
        return False


def answers_match(pred: str, gold: str, benchmark: str, timeout_s: float | None = 5.0) -> bool:
    """Compare an already-extracted answer with the gold answer, in-process (see module doc)."""
    kind = grader_kind(benchmark)
    if kind == "gpqa":
        return pred.strip().upper() == gold.strip().upper()
    if kind == "gsm8k":
        return _number_equal(pred, gold)
    in_main = threading.current_thread() is threading.main_thread()
    timeout = max(1, math.ceil(timeout_s)) if (timeout_s and in_main) else None
    return _math_equal(pred, gold, timeout, raise_on_error=False)


# ---------------------------------------------------------------------------------- workers
def _cap_memory(memory_mb: int) -> None:
    """Let this process grow by at most `memory_mb` of address space beyond what it inherited.

    Relative, not absolute: a forked child inherits the parent's mappings (a training process with
    torch/CUDA can have tens of GB of virtual address space), and an absolute cap below that would
    make every allocation fail.
    """
    try:
        import resource

        with open("/proc/self/statm") as f:
            current = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        limit = current + memory_mb * 1024 * 1024
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, ValueError, OSError):  # no /proc or no rlimits: rely on the deadline
        pass


def _worker_main(conn, memory_mb: int | None) -> None:
    """Child process: compare (pred, gold) pairs until the parent closes the pipe."""
    if memory_mb:
        _cap_memory(memory_mb)
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        idx, pred, gold = msg
        try:
            # Deadline enforced by the parent; no signal alarms in here.
            ok = _math_equal(pred, gold, None, raise_on_error=True)
            reply = (idx, "ok", ok, None)
        except MemoryError:
            reply = (idx, "error", False, "MemoryError")
        except Exception as e:  # noqa: BLE001 - any grader failure is a per-item status
            reply = (idx, "error", False, f"{type(e).__name__}: {str(e)[:160]}")
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            return


def _context(name: str | None):
    """Default: fork where available (Linux). The parent imports math-verify first, so workers
    start in milliseconds and a killed one is replaced at once; like DataLoader workers, they
    never touch torch, so forking a torch-using parent is safe. `spawn`/`forkserver` re-import
    the parent's __main__ and need a real script file."""
    import math_verify  # noqa: F401  (imported before forking: the workers inherit it)

    if name is None:
        name = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    return mp.get_context(name)


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_stat(pid: int) -> tuple[str, float] | None:
    """(scheduler state, user + system CPU seconds) of a process (Linux /proc); None where
    unavailable. State R = running or waiting for a core."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return fields[0], (int(fields[11]) + int(fields[12])) / _TICKS
    except (OSError, IndexError, ValueError):
        return None


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a process has used (Linux /proc); None where unavailable."""
    stat = _proc_stat(pid)
    return None if stat is None else stat[1]


class _Worker:
    def __init__(self, ctx, memory_mb: int | None):
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_worker_main, args=(child, memory_mb), daemon=True)
        self.proc.start()
        child.close()
        self.item: int | None = None
        self.started = 0.0
        self.cpu0: float | None = None
        self.cpu_seen = 0.0
        self.progress = 0.0

    def begin(self, item: int, pred: str, gold: str) -> None:
        """Send one comparison and start its clocks (wall, and the worker's CPU time)."""
        self.item, self.started = item, time.monotonic()
        self.cpu0 = _cpu_seconds(self.proc.pid)
        self.cpu_seen, self.progress = self.cpu0 or 0.0, self.started
        self.conn.send((item, pred, gold))

    def time_left(self, timeout_s: float, now: float) -> float:
        """Seconds until the item's deadline at the earliest: CPU time accrues no faster than
        the wall clock (a single-threaded worker), so waiting this long never overshoots."""
        stat = _proc_stat(self.proc.pid) if self.cpu0 is not None else None
        if stat is None:  # no /proc (or the process is gone): a plain wall-clock deadline
            return self.started + timeout_s - now
        state, cpu = stat
        if state == "R" or cpu > self.cpu_seen:  # running, or waiting for a core: progress
            self.cpu_seen, self.progress = cpu, now
        return min(self.progress + timeout_s * WALL_BACKSTOP - now, timeout_s - (cpu - self.cpu0))

    def stop(self, kill: bool = False) -> None:
        if not kill:
            try:
                self.conn.send(None)
            except (BrokenPipeError, OSError):
                kill = True
        if kill:
            self.proc.kill()
        self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


def compare_many(
    pairs: Sequence[tuple[str, str]],
    timeout_s: float = 5.0,
    workers: int = 2,
    memory_mb: int | None = 4096,
    mp_context: str | None = None,
    progress: bool = False,
) -> list[tuple[str, bool, str | None, float]]:
    """Math equivalence of (pred, gold) answer spans in worker processes with a hard deadline.

    Returns (status, correct, error, seconds) per pair, in order.
    """
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    results: list[tuple[str, bool, str | None, float] | None] = [None] * len(pairs)
    if not pairs:
        return []
    from tqdm.auto import tqdm

    ctx = _context(mp_context)
    bar = tqdm(total=len(pairs), desc="grading", unit="item", disable=not progress, leave=False)
    pending = deque(range(len(pairs)))
    pool = [_Worker(ctx, memory_mb) for _ in range(min(workers, len(pairs)))]
    try:
        while pending or any(w.item is not None for w in pool):
            for w in pool:
                if w.item is None and pending:
                    i = pending.popleft()
                    w.begin(i, pairs[i][0], pairs[i][1])
            busy = [w for w in pool if w.item is not None]
            now = time.monotonic()
            ready = wait([w.conn for w in busy], timeout=max(0.0, min(w.time_left(timeout_s, now) for w in busy)))
            now = time.monotonic()
            for k, w in enumerate(pool):
                if w.item is None:
                    continue
                if w.conn in ready:
                    try:
                        idx, status, ok, err = w.conn.recv()
                        results[idx] = (status, bool(ok), err, now - w.started)
                        w.item = None
                        bar.update()
                        continue
                    except (EOFError, OSError):
                        w.proc.join(timeout=1)
                        results[w.item] = ("error", False, f"grader process died (exit {w.proc.exitcode})",
                                           now - w.started)
                elif w.time_left(timeout_s, now) <= 0:
                    results[w.item] = ("timeout", False, f"no verdict within {timeout_s:g}s of grader CPU time",
                                       now - w.started)
                else:
                    continue
                bar.update()
                w.stop(kill=True)  # dead or stuck: replace it
                pool[k] = _Worker(ctx, memory_mb)
    finally:
        bar.close()
        for w in pool:
            w.stop(kill=w.item is not None)
    return results  # type: ignore[return-value]


def grade_many(
    items: Iterable[tuple[str | None, str]],
    benchmark: str,
    timeout_s: float = 5.0,
    workers: int = 2,
    strict: bool = False,
    memory_mb: int | None = 4096,
    progress: bool = False,
) -> list[GradeResult]:
    """Grade (prediction_text, gold) pairs; never hangs or raises on a bad prediction.

    Extraction runs here (linear-time regexes); math equivalence runs in `workers` processes,
    each item with a hard `timeout_s` deadline (the worker's CPU seconds, see the module doc) and
    a `memory_mb` address-space cap (beyond the inherited size). GSM8K and
    GPQA comparisons are plain string/decimal checks done in-process. Identical (answer, gold)
    pairs are compared once.
    """
    items = list(items)
    kind = grader_kind(benchmark)
    extracted = [extract_answer(t, kind, strict=strict) for t, _ in items]
    out: list[GradeResult | None] = [None] * len(items)
    todo: dict[tuple[str, str], list[int]] = {}
    for i, ((_, gold), pred) in enumerate(zip(items, extracted)):
        if pred is None:
            out[i] = GradeResult(False, "ok", None)
        elif kind != "math":
            t0 = time.perf_counter()
            ok = answers_match(pred, str(gold), kind)
            out[i] = GradeResult(ok, "ok", pred, None, time.perf_counter() - t0)
        else:
            todo.setdefault((pred, str(gold)), []).append(i)
    keys = list(todo)
    verdicts = compare_many(keys, timeout_s=timeout_s, workers=workers, memory_mb=memory_mb,
                            progress=progress)
    for key, (status, ok, err, secs) in zip(keys, verdicts):
        for i in todo[key]:
            out[i] = GradeResult(ok and status == "ok", status, key[0], err, secs)
    return out  # type: ignore[return-value]


class _SharedWorker:
    """One persistent grading process for `is_correct` (thread-safe; re-created after a fork)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._worker: _Worker | None = None
        self._pid = 0

    def compare(self, pred: str, gold: str, timeout_s: float) -> tuple[str, bool, str | None]:
        with self._lock:
            if self._worker is None or self._pid != os.getpid() or not self._worker.proc.is_alive():
                self._worker = _Worker(_context(None), 4096)
                self._pid = os.getpid()
            w = self._worker
            try:
                w.begin(0, pred, gold)
                while (left := w.time_left(timeout_s, time.monotonic())) > 0:
                    if w.conn.poll(left):
                        _, status, ok, err = w.conn.recv()
                        w.item = None
                        return status, bool(ok), err
                verdict = ("timeout", False, f"no verdict within {timeout_s:g}s of grader CPU time")
            except (EOFError, OSError):
                verdict = ("error", False, f"grader process died after {time.monotonic() - w.started:.1f}s")
            w.stop(kill=True)
            self._worker = None
            return verdict

    def close(self) -> None:
        with self._lock:
            if self._worker is not None and self._pid == os.getpid():
                self._worker.stop()
            self._worker = None


_SHARED = _SharedWorker()
atexit.register(_SHARED.close)


def is_correct(
    prediction_text: str | None, gold: str, benchmark: str, strict: bool = False, timeout_s: float = 5.0
) -> bool:
    """Extract the answer from a model output and compare it with `gold` (public API).

    `benchmark` is a benchmark name or grader kind (math500, gsm8k, gpqa_diamond, math, ...);
    `strict` picks the extraction variant. Math equivalence runs in a shared worker process with
    a hard `timeout_s` deadline (CPU seconds, see the module doc); a timeout or grader crash
    counts as not correct (use `grade_many` to see the status).
    """
    pred = extract_answer(prediction_text, benchmark, strict=strict)
    if pred is None:
        return False
    if grader_kind(benchmark) != "math":
        return answers_match(pred, str(gold), benchmark)
    status, ok, _ = _SHARED.compare(pred, str(gold), timeout_s)
    return ok and status == "ok"
