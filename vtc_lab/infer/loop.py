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

What a mode keeps between rounds is its memory strategy (vtc_lab.infer.memory); when a sample
ends is `stop_reason`, the one stop rule. The loop itself never branches on the mode. Under a
context cap (`loop.max_context_tokens`) with an engine that counts prompts, every request goes
through `fit_context` first: the same rule for every memory (stop, or drop the oldest memory in
the memory's own unit until the prompt fits).

Work is batched over (problem, sample) units in chunks of `batch_size`; within a chunk the
active set shrinks as units finish. An engine whose requests are independent calls to a server
(`ConcurrentEngine`, `engine=openai`) is instead driven per sample: each sample's next round is
sent as soon as its previous one returns, a bounded number in flight, so no sample waits for a
batch's slowest one (same records: a sample depends only on its own rounds and seeds).

Model output is only ever decoded, rendered and parsed (vtc_lab.task.completion): never
executed. Misbehaving models (no `</think>`, empty answers,
empty rounds, markup the renderer chokes on, budget-sized outputs) end up as statuses and
counters, not exceptions.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from vtc_lab.task.completion import is_final
from vtc_lab.infer.config import LoopConfig
from vtc_lab.infer.engine_api import (ConcurrentEngine, Engine, GenerationParams,
                                      GenerationRequest)
from vtc_lab.infer.memory import NoMemory, OpticalMemory, Renderer, TextMemory, Unit
from vtc_lab.infer.records import ProblemRecord, RoundRecord

log = logging.getLogger(__name__)


def derive_seed(seed: int, benchmark: str, problem_id: str, sample: int, round_: int = 0) -> int:
    """A 63-bit seed that depends only on its inputs (not on batch order or resumption)."""
    digest = hashlib.sha256(f"{seed}|{benchmark}|{problem_id}|{sample}|{round_}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def generation_params(cfg: LoopConfig) -> GenerationParams:
    """The one place a loop's decoding settings become an engine's per-batch params."""
    return GenerationParams(max_new_tokens=cfg.max_new_tokens, do_sample=cfg.do_sample,
                            temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k,
                            repetition_penalty=cfg.repetition_penalty)


def default_renderer(render_cfg: Any) -> Renderer:
    """`text -> (pages, truncated)` with `vtc_lab.render` and the run's renderer config."""
    from vtc_lab.render import render_with_layout

    def render(text: str) -> tuple[list, bool]:
        result = render_with_layout(text, render_cfg)
        lossy = bool(result.truncated or result.dropped_chars or result.missing_glyphs)
        return list(result.images), lossy

    return render


@dataclass
class LoopStats:
    """Run-level measurements that are not a sum over records (filled by `run_loop`)."""

    wall_s: float = 0.0
    kv_cache_peak_bytes_batch: int = 0
    """Peak over generate calls of the padded batch's K/V cache (rows x (prompt width + new))."""
    batches: int = 0
    special_tokens: int = 0
    """Model special tokens / placeholders in the problems' questions that `build_messages` made
    inert (`vtc_lab.data.special_tokens`), counted once per problem."""


def _chunks(problems: Sequence[Any], samples: int, cfg: LoopConfig,
            skip: set[tuple[str, int]]) -> list[list[Unit]]:
    """Batches of pending units, cut from the FULL (problem, sample) list.

    Boundaries do not depend on what is already done, so a resumed run generates each pending
    batch with exactly the composition the uninterrupted run had: batched decoding in bf16 on a
    GPU is not independent of the other rows (padding changes the kernels' reductions), so equal
    numbers after a restart need equal batches, not only per-sample seeds.
    """
    units = [Unit(p, s, derive_seed(cfg.seed, p.benchmark, p.id, s))
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
    image_max_pixels: int | None = None,
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
    prompt builder), and `image_max_pixels` the training encoder's page cap (optical pages are
    downscaled to it; None: rendered size). `samples_per_problem` overrides `loop_cfg.samples_per_problem`, which
    overrides 1. `skip` holds (problem_id, sample) keys already done (resumption);
    `on_record` is called for each record when its batch (per-sample schedule: the sample) has
    finished (the eval CLI appends it to its jsonl), so an interrupted run resumes there.
    `keep_images` keeps the memory pages of the first N optical records (for logging).
    Records are not graded here: see `vtc_lab.infer.metrics.grade_records`.
    """
    from vtc_lab.data.messages import build_messages
    from vtc_lab.data.special_tokens import neutralise

    samples = samples_per_problem or loop_cfg.samples_per_problem or 1
    counter = prompt_counter(engine, loop_cfg)
    stats = stats if stats is not None else LoopStats()
    # benchmark text never injects special tokens (build_messages neutralises it): count them
    stats.special_tokens += sum(neutralise(p.question)[1] for p in problems)
    chunks = _chunks(problems, samples, loop_cfg, set(skip))
    memory = make_memory(loop_cfg, engine, render_cfg, renderer, image_max_pixels)
    params = generation_params(loop_cfg)
    pending = [u for chunk in chunks for u in chunk]
    keep = {id(u) for u in pending[:keep_images]}  # the first `keep_images` pending samples
    records: list[ProblemRecord] = []
    bar = _progress(len(pending), loop_cfg.mode, progress)

    def build(u: Unit, round_: int) -> GenerationRequest:
        return GenerationRequest(
            messages=build_messages(u.problem.question, u.images, system_prompt, image_position),
            prefix_ids=u.prefix_ids,
            seed=derive_seed(loop_cfg.seed, u.problem.benchmark, u.problem.id, u.sample, round_))

    def request(u: Unit, round_: int) -> GenerationRequest | None:
        """Round `round_`'s request of `u`, fitted to the context cap (None: `u` ended)."""
        if counter is None:
            return build(u, round_)
        return fit_context(u, lambda: build(u, round_), counter, memory, loop_cfg)

    def finish(units: list[Unit]) -> None:
        done = [_finish(u, memory, loop_cfg.mode, keep=id(u) in keep) for u in units]
        for record in done:
            if on_record is not None:
                on_record(record)
        records.extend(done)
        bar.update(len(done))

    start = time.perf_counter()
    if isinstance(engine, ConcurrentEngine) and engine.max_in_flight > 0:
        _run_per_sample(engine, pending, request, params, memory, loop_cfg, finish, stats,
                        counter is not None)
        order = {(u.problem.id, u.sample): i for i, u in enumerate(pending)}
        records.sort(key=lambda r: order[r.key])  # finished out of order: canonical order
    else:
        _run_batched(engine, chunks, request, params, memory, loop_cfg, finish, stats,
                     counter is not None)
    bar.close()
    stats.wall_s += time.perf_counter() - start
    return records


def _run_batched(engine: Engine, chunks: list[list[Unit]], request: Callable, params: Any,
                 memory: NoMemory, cfg: LoopConfig, finish: Callable, stats: LoopStats,
                 counted: bool = False) -> None:
    """Batch by batch: each round of a batch is one `generate` call over its active samples,
    and the next round waits for the batch's slowest sample (what a batched in-process model
    needs)."""
    kv_per_token = engine.kv_bytes_per_token()
    for chunk in chunks:
        for round_ in range(1, cfg.max_rounds + 1):
            requests = {id(u): request(u, round_) for u in chunk if not u.done}
            active = [u for u in chunk if not u.done]  # a prompt past the cap ended its sample
            if not active:
                break
            outputs = engine.generate([requests[id(u)] for u in active], params)
            stats.batches += 1
            if kv_per_token:
                width = max(o.context_text_tokens + o.context_vision_tokens for o in outputs)
                new = max(len(o.token_ids) for o in outputs)
                stats.kv_cache_peak_bytes_batch = max(
                    stats.kv_cache_peak_bytes_batch, kv_per_token * len(outputs) * (width + new))
            for u, out in zip(active, outputs):
                advance(u, out, round_, memory, cfg, counted)
        finish(chunk)


def _run_per_sample(engine: ConcurrentEngine, units: list[Unit], request: Callable, params: Any,
                    memory: NoMemory, cfg: LoopConfig, finish: Callable, stats: LoopStats,
                    counted: bool = False) -> None:
    """Each sample on its own (a server engine): at most `engine.max_in_flight` samples have a
    request in flight; a sample's next round is sent as soon as its previous one returns, and a
    finished sample's slot goes to the next pending one. A sample's rounds depend only on its
    own earlier rounds (and seeds), so the records equal the batched schedule's."""
    from concurrent.futures import FIRST_COMPLETED, wait

    queue = iter(units)
    in_flight: dict[Any, tuple[Unit, int]] = {}

    def send(u: Unit, round_: int) -> None:
        req = request(u, round_)
        if req is None:  # its prompt is past the context cap: the sample ends here
            finish([u])
            nxt = next(queue, None)
            if nxt is not None:
                send(nxt, 1)
            return
        in_flight[engine.submit(req, params)] = (u, round_)

    try:
        for u in itertools.islice(queue, engine.max_in_flight):
            send(u, 1)
        while in_flight:
            done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
            for future in done:
                u, round_ = in_flight.pop(future)
                advance(u, future.result(), round_, memory, cfg, counted)
                stats.batches += 1
                if not u.done:
                    send(u, round_ + 1)
                    continue
                finish([u])
                nxt = next(queue, None)
                if nxt is not None:
                    send(nxt, 1)
    finally:  # an engine error ends the run: the records finished so far are already out
        for future in in_flight:
            future.cancel()


def advance(u: Unit, out: Any, round_: int, memory: NoMemory, cfg: LoopConfig,
            counted: bool = False) -> None:
    """Take round `round_`'s output into sample `u`: its round record, its memory for the next
    round, and whether it ends (`u.status`). A request the server refused as past the model's
    context length ends the sample as `context_overflow`, with no record for that round."""
    if out.overflow is not None:
        log.warning("%s/%s sample %d: round %d refused by the server (context length): %s; "
                    "recorded as context_overflow", u.problem.benchmark, u.problem.id, u.sample,
                    round_, out.overflow)
        u.status = "context_overflow"
        return
    graded_text = memory.observe(u, out)
    rec = RoundRecord(
        round=round_, text=out.text, generated_tokens=len(out.token_ids),
        context_text_tokens=out.context_text_tokens,
        context_vision_tokens=out.context_vision_tokens, images=len(u.images),
        generate_s=out.generate_s, final=is_final(graded_text), stopped=out.stopped,
        dropped_tokens=u.dropped_tokens, dropped_images=u.dropped_images)
    u.dropped_tokens = u.dropped_images = u.dropped_vision = 0
    u.rounds.append(rec)
    if not rec.final and round_ < cfg.max_rounds:  # there is a next round
        memory.remember(u, out, rec)
    u.status = stop_reason(rec, round_, cfg, counted=counted)


def prompt_counter(engine: Engine, cfg: LoopConfig) -> Callable | None:
    """The engine's exact prompt counter (`count_prompt_tokens(request) -> (text, vision)`) when
    the loop has a context cap and the engine has one; None otherwise. `drop_oldest` needs it."""
    counter = getattr(engine, "count_prompt_tokens", None) if cfg.max_context_tokens else None
    if counter is None and cfg.max_context_tokens and cfg.context_policy == "drop_oldest":
        raise ValueError(
            f"loop.context_policy=drop_oldest needs an engine that counts prompt tokens "
            f"(engine=hf); {type(engine).__name__} does not: use loop.context_policy=stop")
    return counter


def fit_context(u: Unit, build: Callable[[], GenerationRequest], counter: Callable,
                memory: NoMemory, cfg: LoopConfig) -> GenerationRequest | None:
    """The request `build()` makes for `u`, its prompt within `cfg.max_context_tokens`.

    The prompt is counted exactly (the engine's own template, tokenizer and processor). Past
    the cap: `stop` ends the sample as `context_overflow`; `drop_oldest` drops the oldest memory
    (`memory.drop_oldest`, in the memory's own unit) and counts again until it fits, recording
    what went into `u` for this round's record; a prompt that does not fit without memory
    ends the sample too. The same rule for every memory kind.
    """
    cap = cfg.max_context_tokens
    req = build()
    text, vision = counter(req)
    first = text + vision
    while text + vision > cap:
        if cfg.context_policy != "drop_oldest" or not memory.drop_oldest(u, text + vision - cap):
            u.status = "context_overflow"
            return None
        req = build()
        text, now = counter(req)
        u.dropped_vision += vision - now
        vision = now
    u.dropped_tokens += first - (text + vision)
    return req


def stop_reason(rec: RoundRecord, round_: int, cfg: LoopConfig,
                counted: bool = False) -> str | None:
    """Why a sample ends after round `round_` (whose memory step has run), or None to go on.

    The whole stop rule, in order: the round is final; it was the last allowed round; its text
    could not be rendered into memory; or the next prompt would exceed `max_context_tokens`.
    That next prompt is this one plus the new memory: exact for text memory (the kept ids),
    bounded by the rendered text's token count for optical memory (the vision tokens of new
    pages are only known once the processor has seen them). `counted`: the engine counts each
    prompt before it is sent (`fit_context`), which applies the cap instead of this bound.
    """
    if rec.final:
        return "final"
    if round_ == cfg.max_rounds:
        return "max_rounds"
    if rec.render_error is not None:
        return "render_error"
    next_prompt = rec.context_text_tokens + rec.context_vision_tokens + rec.memory_text_tokens
    if cfg.max_context_tokens and not counted and next_prompt > cfg.max_context_tokens:
        return "context_overflow"
    return None


def make_memory(cfg: LoopConfig, engine: Engine, render_cfg: Any = None,
                renderer: Renderer | None = None, image_max_pixels: int | None = None) -> NoMemory:
    """The memory strategy of `cfg.mode` (optical pages are drawn with `renderer`, default: the
    run's renderer config through vtc_lab.render, and capped at `image_max_pixels`)."""
    if cfg.mode == "optical":
        return OpticalMemory(renderer or default_renderer(render_cfg), engine.count_text_tokens,
                             image_max_pixels, cfg.min_render_tokens)
    return TextMemory() if cfg.mode == "text" else NoMemory()


def _finish(u: Unit, memory: NoMemory, mode: str, keep: bool) -> ProblemRecord:
    return ProblemRecord(
        problem_id=u.problem.id, benchmark=u.problem.benchmark, sample=u.sample, mode=mode,
        seed=u.seed, gold=u.problem.gold, status=u.status, output=memory.output(u),
        latency_s=sum(r.generate_s + r.render_s for r in u.rounds), rounds=u.rounds,
        memory_images=list(u.images) if keep else [])


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
