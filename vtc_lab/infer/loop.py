"""`run_loop`: the optical-memory loop (VTC-R1), the text-memory baseline and the no-memory ablation.

One function, three modes, so the offline `vtc-lab eval` and the in-training evaluator measure
the same thing:

- `optical`: round 1 sees the question; a round that is not final (`</think>` + non-empty
  `<answer>`) has its text rendered with the run's renderer config and the pages appended to the
  memory; round r sees the question and every page so far.
- `text`: the same budgets, but the model continues its own assistant turn: round r's prompt is
  the question followed by the exact token ids of rounds 1..r-1 (one long generation cut into
  rounds of `max_new_tokens`).
- `none`: every round sees only the question (what the memory is worth).

Work is batched over (problem, sample) units in chunks of `batch_size`; within a chunk the
active set shrinks as units finish. Model output is only ever decoded, rendered and regex-parsed:
never executed. Misbehaving models (no `</think>`, empty answers, empty rounds, markup the
renderer chokes on, budget-sized outputs) end up as statuses and counters, not exceptions.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from vtc_lab.eval.completion import is_final
from vtc_lab.infer.config import LoopConfig
from vtc_lab.infer.engine import Engine, GenerationParams, GenerationRequest
from vtc_lab.infer.records import ProblemRecord, RoundRecord


def derive_seed(seed: int, benchmark: str, problem_id: str, sample: int, round_: int = 0) -> int:
    """A 63-bit seed that depends only on its inputs (not on batch order or resumption)."""
    digest = hashlib.sha256(f"{seed}|{benchmark}|{problem_id}|{sample}|{round_}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def generation_params(cfg: LoopConfig) -> GenerationParams:
    return GenerationParams(max_new_tokens=cfg.max_new_tokens, do_sample=cfg.do_sample,
                            temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k,
                            repetition_penalty=cfg.repetition_penalty)


def default_renderer(render_cfg: Any) -> Callable[[str], tuple[list, bool]]:
    """`text -> (pages, truncated)` with `vtc_lab.render` and the run's renderer config."""
    from vtc_lab.render import render_with_layout

    def render(text: str) -> tuple[list, bool]:
        result = render_with_layout(text, render_cfg)
        lossy = bool(result.truncated or result.dropped_chars or result.missing_glyphs)
        return list(result.images), lossy

    return render


@dataclass
class _Unit:
    """Mutable state of one (problem, sample) while its chunk runs."""

    problem: Any
    sample: int
    seed: int
    images: list = field(default_factory=list)
    prefix_ids: list[int] = field(default_factory=list)
    prefix_text: str = ""
    rounds: list[RoundRecord] = field(default_factory=list)
    status: str | None = None
    pending_vision: int | None = None  # vision tokens before the latest pages were appended

    @property
    def done(self) -> bool:
        return self.status is not None


@dataclass
class LoopStats:
    """Run-level measurements that are not a sum over records (filled by `run_loop`)."""

    wall_s: float = 0.0
    kv_cache_peak_bytes_batch: int = 0
    """Peak over generate calls of the padded batch's K/V cache (rows x (prompt width + new))."""
    batches: int = 0


def _chunks(problems: Sequence[Any], samples: int, cfg: LoopConfig,
            skip: set[tuple[str, int]]) -> list[list[_Unit]]:
    """Batches of pending units, cut from the FULL (problem, sample) list.

    Boundaries do not depend on what is already done, so a resumed run generates each pending
    batch with exactly the composition the uninterrupted run had: batched decoding in bf16 on a
    GPU is not independent of the other rows (padding changes the kernels' reductions), so equal
    numbers after a restart need equal batches, not only per-sample seeds.
    """
    units = [_Unit(p, s, derive_seed(cfg.seed, p.benchmark, p.id, s))
             for p in problems for s in range(samples)]
    chunks = [units[lo:lo + cfg.batch_size] for lo in range(0, len(units), cfg.batch_size)]
    chunks = [[u for u in chunk if (u.problem.id, u.sample) not in skip] for chunk in chunks]
    return [chunk for chunk in chunks if chunk]


def run_loop(
    engine: Engine,
    problems: Sequence[Any],
    loop_cfg: LoopConfig,
    render_cfg: Any = None,
    system_prompt: str | None = None,
    *,
    image_position: str = "before",
    samples_per_problem: int | None = None,
    skip: Iterable[tuple[str, int]] = (),
    on_record: Callable[[ProblemRecord], None] | None = None,
    keep_images: int = 0,
    renderer: Callable[[str], tuple[list, bool]] | None = None,
    progress: bool = True,
    stats: LoopStats | None = None,
) -> list[ProblemRecord]:
    """Run `loop_cfg.mode` over `problems` (`vtc_lab.eval.Problem`s); one record per sample.

    `system_prompt` / `image_position` must match the training data (build_messages is the one
    prompt builder). `samples_per_problem` overrides `loop_cfg.samples_per_problem`, which
    overrides 1. `skip` holds (problem_id, sample) keys already done (resumption);
    `on_record` is called for each record when its batch has finished (the eval CLI appends it
    to its jsonl), so an interrupted run resumes at a batch boundary.
    `keep_images` keeps the memory pages of the first N optical records (for logging).
    Records are not graded here: see `vtc_lab.infer.metrics.grade_records`.
    """
    from vtc_lab.data.messages import build_messages

    samples = samples_per_problem or loop_cfg.samples_per_problem or 1
    chunks = _chunks(problems, samples, loop_cfg, set(skip))
    if loop_cfg.mode == "optical" and renderer is None:
        renderer = default_renderer(render_cfg)
    params = generation_params(loop_cfg)
    kv_per_token = engine.kv_bytes_per_token()
    stats = stats if stats is not None else LoopStats()
    records: list[ProblemRecord] = []
    bar = _progress(sum(len(c) for c in chunks), loop_cfg.mode, progress)
    start = time.perf_counter()
    for chunk in chunks:
        for round_ in range(1, loop_cfg.max_rounds + 1):
            active = [u for u in chunk if not u.done]
            if not active:
                break
            if loop_cfg.max_context_tokens:
                active = _drop_overflowing(active, loop_cfg.max_context_tokens)
                if not active:
                    break
            requests = [GenerationRequest(
                messages=build_messages(u.problem.question,
                                        u.images if loop_cfg.mode == "optical" else [],
                                        system_prompt, image_position),
                prefix_ids=u.prefix_ids if loop_cfg.mode == "text" else [],
                seed=derive_seed(loop_cfg.seed, u.problem.benchmark, u.problem.id, u.sample, round_))
                for u in active]
            outputs = engine.generate(requests, params)
            stats.batches += 1
            if kv_per_token:
                width = max(o.context_text_tokens + o.context_vision_tokens for o in outputs)
                new = max(len(o.token_ids) for o in outputs)
                stats.kv_cache_peak_bytes_batch = max(
                    stats.kv_cache_peak_bytes_batch, kv_per_token * len(outputs) * (width + new))
            for u, out in zip(active, outputs):
                if u.pending_vision is not None and u.rounds:
                    # Exact cost of the pages appended after the previous round: the difference
                    # in vision placeholders the model actually saw.
                    u.rounds[-1].memory_vision_tokens = out.context_vision_tokens - u.pending_vision
                    u.pending_vision = None
                graded_text = u.prefix_text + out.text if loop_cfg.mode == "text" else out.text
                rec = RoundRecord(
                    round=round_, text=out.text, generated_tokens=len(out.token_ids),
                    context_text_tokens=out.context_text_tokens,
                    context_vision_tokens=out.context_vision_tokens,
                    images=len(u.images) if loop_cfg.mode == "optical" else 0,
                    generate_s=out.generate_s, final=is_final(graded_text), stopped=out.stopped)
                u.rounds.append(rec)
                if rec.final:
                    u.status = "final"
                elif round_ == loop_cfg.max_rounds:
                    u.status = "max_rounds"
                else:
                    _remember(u, out, rec, loop_cfg.mode, engine, renderer,
                              loop_cfg.image_max_pixels)
                if loop_cfg.mode == "text":
                    u.prefix_text = graded_text
        finished = []
        for u in chunk:
            if u.status is None:  # every round overflowed before generating
                u.status = "context_overflow"
            finished.append(_finish(u, loop_cfg.mode, keep=len(records) + len(finished) < keep_images))
        for record in finished:
            if on_record is not None:
                on_record(record)
        records.extend(finished)
        bar.update(len(finished))
    bar.close()
    stats.wall_s += time.perf_counter() - start
    return records


def _remember(u: _Unit, out, rec: RoundRecord, mode: str, engine: Engine, renderer,
              max_pixels: int | None = None) -> None:
    """Turn a non-final round into memory for the next one (mode-specific)."""
    if mode == "text":
        if out.memory_ids is not None:
            ids = list(out.memory_ids)
        else:
            ids = list(out.token_ids)
            if out.stopped and ids:
                ids = ids[:-1]  # the end-of-turn token would close the turn we continue
        rec.memory_text_tokens = len(ids)
        u.prefix_ids = u.prefix_ids + ids
    elif mode == "optical":
        t0 = time.perf_counter()
        try:
            pages, lossy = renderer(out.text)
        except Exception as err:  # noqa: BLE001 - a renderer failure ends this sample, counted
            rec.render_s = time.perf_counter() - t0
            rec.render_error = f"{type(err).__name__}: {str(err)[:200]}"
            u.status = "render_error"
            return
        if max_pixels:
            from vtc_lab.train.collate import cap_pixels  # the training encoder's own resize

            pages = [cap_pixels(page, max_pixels) for page in pages]
        rec.render_s = time.perf_counter() - t0
        rec.new_images = len(pages)
        rec.render_truncated = lossy
        rec.memory_text_tokens = engine.count_text_tokens(out.text) if out.text else 0
        u.pending_vision = out.context_vision_tokens
        u.images = u.images + list(pages)


def _drop_overflowing(active: list[_Unit], limit: int) -> list[_Unit]:
    """Mark units whose next prompt would exceed `limit` tokens as `context_overflow`.

    The next prompt is the last one plus the new memory: exact for text memory (the generated
    ids), bounded by the rendered text's token count for optical memory (the vision tokens of new
    pages are only known once the processor has seen them). Round 1 is never dropped.
    """
    keep = []
    for u in active:
        if u.rounds:
            last = u.rounds[-1]
            nxt = last.context_text_tokens + last.context_vision_tokens
            nxt += last.memory_text_tokens
            if nxt > limit:
                u.status = "context_overflow"
                continue
        keep.append(u)
    return keep


def _finish(u: _Unit, mode: str, keep: bool) -> ProblemRecord:
    last = u.rounds[-1].text if u.rounds else ""
    output = u.prefix_text if mode == "text" else last
    return ProblemRecord(
        problem_id=u.problem.id, benchmark=u.problem.benchmark, sample=u.sample, mode=mode,
        seed=u.seed, gold=u.problem.gold, status=u.status, output=output,
        latency_s=sum(r.generate_s + r.render_s for r in u.rounds), rounds=u.rounds,
        memory_images=list(u.images) if keep and mode == "optical" else [])


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, mode: str, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"loop[{mode}]", unit="sample")
