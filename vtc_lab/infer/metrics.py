"""Grading and run-level metrics of loop records.

Accuracy comes from `vtc_lab.eval` (math-verify in worker processes with per-item deadlines);
everything else (rounds, tokens, context, compression, latency, memory, misbehaviour counters)
is computed here from the `ProblemRecord`s, so a resumed eval that reloads its records from the
predictions file reaches the same numbers as an uninterrupted one.

Token accounting: `context_vision_tokens` are image placeholder tokens only; the image delimiter
tokens (`<|vision_start|>`, `<|vision_end|>`, GLM's begin/end-of-image) count as text tokens.
`compression_ratio` = text tokens of all rendered round texts (backbone tokenizer) / the vision
tokens their pages cost in the following prompt.
"""

from __future__ import annotations

import os
import resource
import sys
from collections.abc import Sequence
from typing import Any

from vtc_lab.task.completion import THINK_END, parse
from vtc_lab.infer.records import STATUSES, ProblemRecord


def grade_records(records: Sequence[ProblemRecord], problems: Sequence[Any],
                  timeout_s: float = 5.0, workers: int = 2) -> dict[str, float]:
    """Grade each record's `output` (lenient and strict extraction), fill its prediction fields,
    and return the accuracy metrics of `vtc_lab.eval.summarize` (accuracy, mean_at_k, ...)."""
    from vtc_lab.eval.metrics import grade_predictions, summarize

    graded = grade_predictions(problems, [(r.problem_id, r.sample, r.output) for r in records],
                               timeout_s=timeout_s, workers=workers)
    for rec, g in zip(records, graded):
        rec.prediction, rec.correct = g.extracted, g.correct
        rec.prediction_strict, rec.correct_strict = g.extracted_strict, g.correct_strict
        rec.grade_status = g.status if g.status != "ok" else g.status_strict
    return summarize(graded)


def read_metrics(records: Sequence[ProblemRecord], problems: Sequence[Any]) -> dict[str, float]:
    """How well rounds read their memory, for benchmarks that can tell (the toy task).

    `read_rate`: of the rounds r >= 2 whose first line follows a valid unfinished line, the
    share whose first line is exactly the next line (`vtc_lab.task.toytask.read_details`; text
    memory's rounds are cut mid-line and checked on the joined text): the state was recovered
    from memory and stepped once. Reading fidelity (issue 23 §3), what a misread costs:
    `read_cer` is the mean character error rate of those first lines against the exact
    expected line, `read_cer/round_<n>` the same per round; `first_misread/round_<n>` counts
    the samples whose first wrong first line is in round n (`none`: checked, never wrong) and
    `acc_by_first_misread/round_<n>` is their (strict) accuracy (graded records: call after
    `grade_records`). Other benchmarks: no keys.
    """
    from vtc_lab.task.toytask import char_error_rate, read_details

    rules = {p.id: (p.meta.get("spec") or {}).get("rule") for p in problems
             if isinstance(p.meta.get("spec"), dict)}
    if not rules:
        return {}
    checked = ok = 0
    cer_sum = 0.0
    by_round: dict[int, list[float]] = {}
    first: dict[str, list[bool]] = {}
    for rec in records:
        rule = rules.get(rec.problem_id)
        if not rule:
            continue
        details = read_details([r.text for r in rec.rounds], rule, continuous=rec.mode == "text")
        misread = None
        for r, got, want in details:
            cer = char_error_rate(got, want)
            checked, ok, cer_sum = checked + 1, ok + (got == want), cer_sum + cer
            by_round.setdefault(r + 1, []).append(cer)
            if misread is None and got != want:
                misread = f"round_{r + 1}"
        if details:
            first.setdefault(misread or "none", []).append(bool(rec.correct_strict))
    out = {"read_rate": ok / checked if checked else 0.0, "read_checked": float(checked),
           "read_cer": cer_sum / checked if checked else 0.0}
    for n, cers in sorted(by_round.items()):
        out[f"read_cer/round_{n}"] = sum(cers) / len(cers)
    for name, correct in sorted(first.items()):
        out[f"first_misread/{name}"] = float(len(correct))
        out[f"acc_by_first_misread/{name}"] = sum(correct) / len(correct)
    return out


LENGTH_BUCKET = 5
"""Width, in problem steps, of the length buckets of `length_metrics`."""


def length_bucket(steps: int, width: int = LENGTH_BUCKET) -> tuple[int, int]:
    """(first, last) step count of the bucket holding `steps`: [0, w-1], [w, 2w-1], ..."""
    lo = (steps // width) * width
    return lo, lo + width - 1


def length_metrics(records: Sequence[ProblemRecord], problems: Sequence[Any]) -> dict[str, float]:
    """Accuracy by problem length, for benchmarks whose problems say how long they are (the toy
    task's `steps`): `accuracy_len_<first>-<last>` over the graded samples of the problems in
    that bucket (the strict verdict, like `accuracy`) and `samples_len_<first>-<last>` their number (zero-padded, so keys sort by
    length). Other benchmarks: no keys. What a context cap costs shows as accuracy falling with
    length (`loop.max_context_tokens`)."""
    steps = {p.id: p.meta["steps"] for p in problems if isinstance(p.meta.get("steps"), int)}
    groups: dict[str, list[float]] = {}
    for rec in records:  # the strict verdict, as the headline accuracy counts
        if rec.problem_id in steps and rec.correct_strict is not None:
            lo, hi = length_bucket(steps[rec.problem_id])
            groups.setdefault(f"{lo:02d}-{hi:02d}", []).append(float(rec.correct_strict))
    out: dict[str, float] = {}
    for name, xs in sorted(groups.items()):
        out[f"accuracy_len_{name}"] = sum(xs) / len(xs)
        out[f"samples_len_{name}"] = float(len(xs))
    return out


def _percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), 0.0 for no values."""
    if not values:
        return 0.0
    xs = sorted(values)
    pos = (len(xs) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def efficiency_metrics(records: Sequence[ProblemRecord], max_rounds: int,
                       kv_bytes_per_token: int | None = None, wall_s: float | None = None,
                       ) -> dict[str, float]:
    """Rounds, tokens, context, compression, latency and misbehaviour counters of a run."""
    n = len(records)
    rounds = [r for rec in records for r in rec.rounds]
    contexts = [r.context_text_tokens + r.context_vision_tokens for r in rounds]
    latencies = [rec.latency_s for rec in records]
    render_s = sum(r.render_s for r in rounds)
    busy_s = sum(r.generate_s for r in rounds) + render_s

    def mean(xs) -> float:
        xs = list(xs)
        return sum(xs) / len(xs) if xs else 0.0

    out: dict[str, float] = {
        "rounds_mean": mean(rec.num_rounds for rec in records),
        "generated_tokens_mean": mean(sum(r.generated_tokens for r in rec.rounds) for rec in records),
        "generated_tokens_total": float(sum(r.generated_tokens for r in rounds)),
        "context_tokens_peak": float(max(contexts, default=0)),
        "context_tokens_mean": mean(contexts),
        "context_text_tokens_mean": mean(r.context_text_tokens for r in rounds),
        "context_vision_tokens_mean": mean(r.context_vision_tokens for r in rounds),
        "memory_images_mean": mean(sum(r.new_images for r in rec.rounds) for rec in records),
        "latency_mean_s": mean(latencies),
        "round_latency_mean_s": mean(r.generate_s + r.render_s for r in rounds),
        "latency_p50_s": _percentile(latencies, 0.5),
        "latency_p90_s": _percentile(latencies, 0.9),
        "render_share": render_s / busy_s if busy_s > 0 else 0.0,
        "render_s_total": render_s,
    }
    for k in range(1, max_rounds + 1):
        out[f"rounds_hist/{k}"] = float(sum(rec.num_rounds == k for rec in records))
    # Compression of the rendered memory: only rounds whose pages reached a following prompt.
    measured = [r for r in rounds if r.new_images and r.memory_vision_tokens > 0]
    text_tok = sum(r.memory_text_tokens for r in measured)
    vision_tok = sum(r.memory_vision_tokens for r in measured)
    out["memory_text_tokens_total"] = float(text_tok)
    out["memory_vision_tokens_total"] = float(vision_tok)
    out["compression_ratio"] = text_tok / vision_tok if vision_tok else 0.0
    if kv_bytes_per_token:
        peak_seq = max((r.context_text_tokens + r.context_vision_tokens + r.generated_tokens
                        for r in rounds), default=0)
        out["kv_cache_peak_bytes_per_sample"] = float(kv_bytes_per_token * peak_seq)
    if wall_s:
        out["wall_s"] = wall_s
        out["samples_per_s"] = n / wall_s
        out["problems_per_s"] = len({rec.problem_id for rec in records}) / wall_s
    # Misbehaviour, counted (docs/inference.md, "Bad input"): never a crash.
    for status in STATUSES:
        out[f"status/{status}"] = float(sum(rec.status == status for rec in records))
    out["final_rate"] = mean(rec.status == "final" for rec in records)
    out["bad/no_think_end"] = float(sum(THINK_END not in rec.output for rec in records))
    out["bad/empty_answer"] = float(sum(_empty_answer(rec.output) for rec in records))
    out["bad/empty_rounds"] = float(sum(not r.text.strip() for r in rounds))
    out["bad/all_rounds_empty"] = float(sum(
        bool(rec.rounds) and all(not r.text.strip() for r in rec.rounds) for rec in records))
    out["bad/budget_hits"] = float(sum(not r.stopped for r in rounds))
    out["bad/render_errors"] = float(sum(r.render_error is not None for r in rounds))
    out["bad/render_lossy"] = float(sum(r.render_truncated for r in rounds))
    # The context cap (loop.context_policy=drop_oldest): how often memory was dropped to fit.
    out["context/dropped_rounds"] = float(sum(r.dropped_tokens > 0 for r in rounds))
    out["context/dropped_tokens_mean"] = mean(
        sum(r.dropped_tokens for r in rec.rounds) for rec in records)
    out["kept/text_rounds"] = float(sum(r.memory_kind == "text" for r in rounds))
    out["kept/page_rounds"] = float(sum(r.memory_kind == "pages" for r in rounds))
    return out


def _empty_answer(text: str) -> bool:
    """`</think>` followed by an `<answer>` block with nothing in it."""
    return parse(text).empty_answer


class PeakMemory:
    """Peak memory of a block of work: peak RSS and, when CUDA is in use, the allocator's peak.

    With `reset=True` (a process that owns its measurements, like `vtc-lab eval`) the peaks are
    reset at `start()` (RSS through /proc/self/clear_refs on Linux), so the numbers are the
    block's: `peak_rss_bytes`, `peak_cuda_bytes`. With `reset=False` (inside training, whose own
    peak readings must not be disturbed) nothing is reset and the keys say so:
    `process_peak_rss_bytes`, `process_peak_cuda_bytes` (peaks since the process started).
    """

    def __init__(self, reset: bool = True) -> None:
        self.reset = reset
        self.rss_reset = False

    def start(self) -> None:
        if not self.reset:
            return
        try:
            torch = _loaded_torch()
            if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
                torch.cuda.reset_peak_memory_stats()
        except Exception:  # noqa: BLE001 - measuring must never break a run
            pass
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
            self.rss_reset = True
        except OSError:
            self.rss_reset = False

    def read(self) -> dict[str, float]:
        out: dict[str, float] = {}
        windowed = self.reset and self.rss_reset
        hwm = _vm_hwm_bytes() if windowed else None
        if hwm is None:
            hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        out["peak_rss_bytes" if windowed else "process_peak_rss_bytes"] = float(hwm)
        try:
            torch = _loaded_torch()
            if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
                key = "peak_cuda_bytes" if self.reset else "process_peak_cuda_bytes"
                out[key] = float(torch.cuda.max_memory_allocated())
        except Exception:  # noqa: BLE001
            pass
        return out


def _loaded_torch():
    """torch if this process has imported it, else None: a process without torch (an
    `engine=openai` client) has no CUDA memory to measure, and must not import torch for it."""
    return sys.modules.get("torch")


def _vm_hwm_bytes() -> int | None:
    try:
        with open(f"/proc/{os.getpid()}/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
