"""Loops x benchmarks -> graded records, metrics and tables: shared by `vtc-lab eval` and the
in-training `OpticalMemoryEvaluator` (one code path, so their numbers agree).

Metric keys are `eval/<benchmark>/<loop key>/<metric>`, the loop key chosen by `loop_key` (the
one rule: the model's own memory loop is `memory`, so runs of an optical and a text model
overlay in one chart). With a `predictions_dir`, every finished
sample is appended to `<benchmark>__<loop>.jsonl` there as it finishes; a restarted run with the
same settings skips those samples (see `vtc_lab.infer.predictions`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vtc_lab.infer.config import LoopConfig
from vtc_lab.infer.loop import LoopStats, run_loop
from vtc_lab.infer.metrics import (PeakMemory, efficiency_metrics, grade_records,
                                   length_metrics, read_metrics)
from vtc_lab.infer.records import ProblemRecord

_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")


def load_problems(benchmark: str, limit: int = 0, seed: int = 0):
    """A benchmark by registered name, or a local jsonl path (`question`/`answer` fields)."""
    from vtc_lab.eval.benchmarks import BENCHMARKS, BenchmarkConfig, load_benchmark

    if benchmark in BENCHMARKS:
        cfg = BenchmarkConfig(name=benchmark, limit=limit or None, seed=seed)
    else:
        path = Path(benchmark)
        if not path.is_file():
            raise ValueError(f"benchmark {benchmark!r} is neither registered "
                             f"({sorted(BENCHMARKS)}) nor an existing jsonl file")
        name = path.name.split(".")[0]
        cfg = BenchmarkConfig(name=name, path=str(path), limit=limit or None, seed=seed)
    return load_benchmark(cfg)


MEMORY_KEY = "memory"
"""Metric-key name of the loop that feeds the model the memory it was trained to read."""


def loop_key(loop: str, memory: str | None = None) -> str:
    """The metric-key name of `loop` for a model trained with `memory` (optical | text | None:
    unknown). The loop equal to the model's own memory is `memory`, so the optical model's
    optical loop and the text model's text loop share `eval/<benchmark>/memory/<metric>` and
    selecting both runs in the MLflow UI overlays them; `none` stays `none`; any other loop (a
    text loop on an optical model) keeps its own name."""
    if memory is not None and loop == memory and loop != "none":
        return MEMORY_KEY
    return loop


def metric_key(benchmark: str, loop: str, metric: str, memory: str | None = None) -> str:
    """`eval/<benchmark>/<loop key>/<metric>` (see `loop_key`)."""
    return f"eval/{benchmark}/{loop_key(loop, memory)}/{metric}"


@dataclass
class EvalResults:
    """Everything one evaluation produced."""

    metrics: dict[str, float] = field(default_factory=dict)
    """Flat `eval/<benchmark>/<loop key>/<metric>` -> value (see `loop_key`)."""
    records: dict[str, list[ProblemRecord]] = field(default_factory=dict)
    """`<benchmark>/<loop>` -> graded records (resumed + new)."""

    @property
    def tables(self) -> dict[str, list[dict]]:
        return {key: [r.table_row() for r in recs] for key, recs in self.records.items()}

    def memory_images(self, limit: int) -> list[tuple[str, Any]]:
        """Up to `limit` (name, PIL image) pairs of rendered memory pages, for logging."""
        out: list[tuple[str, Any]] = []
        for key, recs in self.records.items():
            for rec in recs:
                for i, img in enumerate(rec.memory_images):
                    if len(out) >= limit:
                        return out
                    # ids come from data files: keep them one harmless path component
                    pid = _SAFE_NAME.sub("_", str(rec.problem_id))
                    out.append((f"{key.replace('/', '_')}_p{pid}_s{rec.sample}_{i:02d}.png", img))
        return out


def evaluate_benchmarks(
    engine: Any,
    problems: dict[str, Sequence[Any]],
    loop_cfgs: Sequence[LoopConfig],
    render_cfg: Any = None,
    system_prompt: str | None = None,
    image_position: str = "before",
    *,
    image_max_pixels: int | None = None,
    predictions_dir: str | Path | None = None,
    header: dict[str, Any] | None = None,
    keep_images: int = 2,
    progress: bool = True,
    grade_workers: int = 2,
    grade_timeout_s: float = 5.0,
    reset_memory_peaks: bool = True,
    model_memory: str | None = None,
) -> EvalResults:
    """Run every loop on every benchmark, grade, and compute the metrics.

    `problems` maps a benchmark name to its problems (a `vtc_lab.eval.ProblemList` carries its
    reference samples-per-problem, used when the loop config leaves it null). `header` is what
    identifies the run's settings in the predictions files (refused on mismatch when resuming).
    `reset_memory_peaks=False` leaves the process's peak-memory counters alone (in training).
    `system_prompt`, `image_position` and `image_max_pixels` (the page cap) are what the model
    was trained to read (`vtc_lab.models.reading.ReadingSpec`). `model_memory` is the memory it
    was trained with (optical | text; None: unknown): it names the metric keys (`loop_key`).
    """
    from vtc_lab.infer.predictions import PredictionsFile

    results = EvalResults()
    kv_per_token = engine.kv_bytes_per_token()
    for bench, probs in problems.items():
        for loop_cfg in loop_cfgs:
            samples = (loop_cfg.samples_per_problem
                       or getattr(probs, "samples_per_problem", None) or 1)
            if samples > 1 and not loop_cfg.do_sample:
                raise ValueError(
                    f"{bench}: {samples} samples per problem with loop.do_sample=false would be "
                    f"{samples} identical greedy samples; set loop.do_sample=true, or "
                    "benchmark.samples_per_problem=1 (loop.samples_per_problem=1)")
            key = f"{bench}/{loop_cfg.mode}"
            store = None
            done: list[ProblemRecord] = []
            if predictions_dir is not None:
                store = PredictionsFile(Path(predictions_dir) / f"{bench}__{loop_cfg.mode}.jsonl",
                                        {**(header or {}), "benchmark": bench,
                                         "loop": _loop_dict(loop_cfg), "samples": samples,
                                         "image_max_pixels": image_max_pixels})
                done = store.open()
                wanted = {(p.id, s) for p in probs for s in range(samples)}
                done = [r for r in done if r.key in wanted]
            stats = LoopStats()
            memory = PeakMemory(reset=reset_memory_peaks)
            memory.start()
            new = run_loop(engine, probs, loop_cfg, render_cfg, system_prompt,
                           image_position=image_position, image_max_pixels=image_max_pixels,
                           samples_per_problem=samples,
                           skip={r.key for r in done},
                           on_record=store.append if store is not None else None,
                           keep_images=keep_images, progress=progress, stats=stats)
            if store is not None:
                store.close()
            order = {(p.id, s): i for i, p in enumerate(probs) for s in range(samples)}
            records = sorted(done + new, key=lambda r: order[r.key])
            metrics = grade_records(records, probs, timeout_s=grade_timeout_s,
                                    workers=grade_workers)
            metrics.update(efficiency_metrics(records, loop_cfg.max_rounds, kv_per_token))
            metrics.update(read_metrics(records, probs))
            metrics.update(length_metrics(records, probs))
            if stats.wall_s > 0 and new:
                # Throughput of this invocation only: resumed samples cost no time here.
                metrics["samples_per_s"] = len(new) / stats.wall_s
                metrics["problems_per_s"] = len({r.problem_id for r in new}) / stats.wall_s
                metrics["wall_s"] = stats.wall_s
            if stats.kv_cache_peak_bytes_batch:
                metrics["kv_cache_peak_bytes_batch"] = float(stats.kv_cache_peak_bytes_batch)
            metrics["special_tokens"] = float(stats.special_tokens)
            metrics.update(memory.read())
            metrics["resumed_samples"] = float(len(done))
            results.records[key] = records
            results.metrics.update({metric_key(bench, loop_cfg.mode, k, model_memory): float(v)
                                    for k, v in metrics.items()})
    return results


def _loop_dict(cfg: LoopConfig) -> dict[str, Any]:
    from dataclasses import asdict

    # batch_size stays in: per-sample seeds make sampling batch-independent, but bf16 kernels on
    # a GPU give padded rows slightly different logits (measured: 6 of 16 greedy outputs changed
    # between batched and alone on an H100), so a resume must keep the batches.
    return asdict(cfg)
