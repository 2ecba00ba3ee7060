"""An analytical latency model of the text loop and the optical loop (pure Python).

Why: the paper's 2.7x lower latency depends on the architecture, the sequence lengths and the
engine, not on trained weights, so it can be predicted before anything is trained. The model
counts FLOPs and bytes moved per forward pass and turns them into time with a few hardware
numbers (achieved FLOP/s and bandwidth, fixed costs per forward, per step and per sequence, and
attention's and the vision tower's efficiencies, fitted on measurements), in two regimes:

- `eager`: one sequence at a time through an eager engine (HF `generate`). A forward costs
  max(compute, memory traffic) + a fixed overhead (kernel launches, Python); at batch 1 the
  overhead dominates decode, so latency ~ number of decode steps and shorter memory barely helps.
- `serving`: a serving engine (vLLM-like: paged KV cache, CUDA graphs) runs `problems`
  sequences concurrently; how many fit is limited by the KV cache of their live context. A
  decode step costs a fixed time, a time per running sequence, the weights read once and every
  running sequence's K/V read at attention's (lower) bandwidth efficiency (`step_s`), so a
  loop with a smaller context fits more sequences per step. `throughput` turns that into
  requests per second at a memory budget.

Latency of a loop = rendering + image preprocessing + vision tower + prefills + decode steps.
`reuse` = the engine keeps the KV cache of the shared prefix and the pages' vision features
across rounds (vtc_lab.infer.reuse; prefix caching in vLLM); without it every round re-encodes
and re-prefills every page. docs/cost-model.md states the assumptions;
experiments/perf/cost_model.py validates the model against measurements and predicts the
paper's setting. The shapes, hardware profiles and fitted terms live in
vtc_lab.infer.costshapes (re-exported here).
"""

from __future__ import annotations

import math

from vtc_lab.infer.costshapes import (  # noqa: F401 - re-exported: the cost model's public API
    GLM_41V_9B, H100, H100_HF_COMPILED, H200, HF_COMPILED_STEP_S, MATMUL_EFFICIENCY, PEAKS,
    QWEN3_VL_8B, SERVING_FIT, VISION_EFFICIENCY, Breakdown, Hardware, ModelShape, Workload,
    serving_hardware)


def forward_s(model: ModelShape, hw: Hardware, new: int, before: float, batch: int = 1,
              overhead: bool = True) -> float:
    """One LM forward of `new` tokens per sequence over `before` cached ones, `batch` sequences."""
    flops = batch * (new * model.flops_per_token() + model.attention_flops(new, int(before)))
    traffic = model.weight_bytes() + batch * (before + new) * model.kv_bytes_per_token()
    return max(flops / hw.flops, traffic / hw.bandwidth) + (hw.forward_overhead_s if overhead else 0.0)


def decode_s(model: ModelShape, hw: Hardware, steps: int, start: float, batch: int = 1,
             overhead: bool = True, block: int = 64) -> float:
    """`steps` decode steps from context `start` (summed over blocks at their mid context)."""
    total, done = 0.0, 0
    while done < steps:
        n = min(block, steps - done)
        total += n * forward_s(model, hw, 1, start + done + n / 2, batch, overhead)
        done += n
    return total


def step_s(model: ModelShape, hw: Hardware, batch: int, context: float) -> float:
    """One decode step of a serving or compiled engine: `batch` sequences at mean `context`.

    max(compute, weights at `bandwidth` + K/V at `bandwidth * kv_efficiency`) + the fixed step
    cost + the per-sequence cost. The eager engine's step is `forward_s` (its own overhead)."""
    compute = batch * (model.flops_per_token() + model.attention_flops(1, int(context))) / hw.flops
    memory = model.weight_bytes() / hw.bandwidth + \
        batch * (context + 1) * model.kv_bytes_per_token() / (hw.bandwidth * hw.kv_efficiency)
    return max(compute, memory) + hw.step_overhead_s + batch * hw.seq_overhead_s


def serving_decode_s(model: ModelShape, hw: Hardware, steps: int, start: float,
                     batch: int = 1, block: int = 64) -> float:
    """`steps` serving decode steps from context `start` (blocks at their mid context)."""
    total, done = 0.0, 0
    while done < steps:
        n = min(block, steps - done)
        total += n * step_s(model, hw, batch, start + done + n / 2)
        done += n
    return total


def vision_s(model: ModelShape, hw: Hardware, tokens: float, pages: float,
             overhead: bool = True) -> float:
    """The vision tower over `pages` pages: FLOPs at `flops * vision_efficiency`, a fixed cost
    per page, and (`overhead`: the eager engine) a fixed cost per call."""
    if pages <= 0:
        return 0.0
    return model.vision_flops(tokens, pages) / (hw.flops * hw.vision_efficiency) + \
        pages * hw.page_overhead_s + (hw.vision_overhead_s if overhead else 0.0)


def text_loop(model: ModelShape, hw: Hardware, w: Workload, overhead: bool = True) -> Breakdown:
    """One generation of `total` tokens after the question (eager, batch 1)."""
    q = w.question_tokens
    return Breakdown(prefill_s=forward_s(model, hw, q, 0, 1, overhead),
                     decode_s=decode_s(model, hw, w.total, q, 1, overhead),
                     peak_context=q + w.total, mean_context=q + w.total / 2)


def _optical_prompts(w: Workload) -> list[tuple[float, float]]:
    """(memory tokens in the prompt, pages in the prompt) per round."""
    per_round = w.round_vision_tokens() + w.page_delimiters * w.pages_per_round
    return [(r * per_round, r * w.pages_per_round) for r in range(w.rounds)]


def optical_loop(model: ModelShape, hw: Hardware, w: Workload, reuse: bool,
                 overhead: bool = True) -> Breakdown:
    """`rounds` rounds of `round_tokens`; round r reads the pages of rounds < r (eager, batch 1).

    With `reuse` round r encodes only the newest pages and prefills only what follows the
    previous round's pages (the new pages, the question and the template after them)."""
    b = Breakdown()
    q = w.question_tokens
    contexts = []
    for r, (memory, pages) in enumerate(_optical_prompts(w)):
        prompt = q + memory
        new_pages = w.pages_per_round if (reuse and r) else pages
        new_tokens = new_pages / w.pages_per_round * w.round_vision_tokens() if pages else 0.0
        b.vision_s += vision_s(model, hw, new_tokens, new_pages, overhead)
        b.preprocess_s += w.preprocess_s_per_page * new_pages
        if r:
            b.render_s += w.render_s_per_page * w.pages_per_round
        cached = (memory - w.round_vision_tokens() - w.page_delimiters * w.pages_per_round) \
            if (reuse and r) else 0.0
        b.prefill_s += forward_s(model, hw, int(round(prompt - cached)), cached, 1, overhead)
        b.decode_s += decode_s(model, hw, w.round_tokens, prompt)
        contexts.append((prompt, prompt + w.round_tokens))
    b.peak_context = max(end for _, end in contexts)
    b.mean_context = sum((a + e) / 2 for a, e in contexts) / len(contexts)
    return b


def kv_budget_bytes(model: ModelShape, hw: Hardware, reserve: float = 0.1) -> float:
    """Bytes left for K/V next to the weights (vLLM's gpu_memory_utilization = 1 - reserve)."""
    free = hw.memory * (1 - reserve) - model.weight_bytes()
    if free <= 0:
        raise ValueError(f"{hw.name}: the weights ({model.weight_bytes() / 1e9:.1f} GB) do not fit")
    return free


def concurrency(model: ModelShape, hw: Hardware, context: float, max_seqs: int = 256,
                reserve: float = 0.1, block: int = 16, kv_budget: float | None = None) -> int:
    """Sequences whose K/V (at `context` tokens each, rounded up to whole `block`-token pages)
    fit in `kv_budget` bytes (default: next to the weights). Paged K/V follows the live context,
    so the steady state is set by the mean context."""
    budget = kv_budget_bytes(model, hw, reserve) if kv_budget is None else kv_budget
    if budget <= 0:
        raise ValueError(f"kv_budget must be positive, got {budget}")
    per_seq = math.ceil(max(1.0, context) / block) * block * model.kv_bytes_per_token()
    return max(1, min(max_seqs, int(budget // per_seq)))


def _decode_phases(w: Workload, mode: str) -> list[tuple[int, float]]:
    """(steps, starting context) of each generation of one problem."""
    if mode == "text":
        return [(w.total, w.question_tokens)]
    return [(w.round_tokens, w.question_tokens + memory) for memory, _ in _optical_prompts(w)]


def serving(model: ModelShape, hw: Hardware, w: Workload, mode: str, problems: int = 512,
            reuse: bool = True, max_seqs: int = 256, kv_budget: float | None = None) -> Breakdown:
    """GPU time per problem when `problems` problems run through a serving engine at the
    concurrency their K/V allows: prefill and the vision tower at full compute throughput (no
    eager overheads), decode as batched steps (`step_s`) amortised over the batch. Rendering
    and preprocessing are CPU work, reported but overlapped by a serving front-end."""
    if mode not in ("text", "optical"):
        raise ValueError(f"mode must be 'text' or 'optical', got {mode!r}")
    single = text_loop(model, hw, w, overhead=False) if mode == "text" else \
        optical_loop(model, hw, w, reuse, overhead=False)
    batch = min(problems, concurrency(model, hw, single.mean_context, max_seqs,
                                      kv_budget=kv_budget))
    waves = problems / batch  # continuous batching: a steady state, not whole waves
    b = Breakdown(render_s=single.render_s, preprocess_s=single.preprocess_s,
                  vision_s=single.vision_s, prefill_s=single.prefill_s,
                  peak_context=single.peak_context, mean_context=single.mean_context,
                  extra={"concurrency": batch})
    b.decode_s = sum(serving_decode_s(model, hw, n, start, batch)
                     for n, start in _decode_phases(w, mode)) * waves / problems
    b.extra["step_s"] = step_s(model, hw, batch, single.mean_context)
    return b


def throughput(model: ModelShape, hw: Hardware, w: Workload, mode: str,
               kv_budget: float | None = None, reuse: bool = True, max_seqs: int = 256,
               problems: int = 512) -> dict:
    """Requests per second a serving engine sustains for this workload with `kv_budget` bytes
    of K/V (default: the GPU's memory next to the weights): the GPU work per request (vision,
    prefill, decode amortised over the concurrent batch); CPU rendering overlaps it."""
    b = serving(model, hw, w, mode, problems, reuse, max_seqs, kv_budget)
    gpu_s = b.vision_s + b.prefill_s + b.decode_s
    return {"requests_per_s": 1.0 / gpu_s, "concurrency": b.extra["concurrency"],
            "gpu_s_per_request": gpu_s, "mean_context": b.mean_context,
            "step_s": b.extra["step_s"]}


def speedup(model: ModelShape, hw: Hardware, w: Workload, regime: str = "eager",
            reuse: bool = True, problems: int = 512, max_seqs: int = 256) -> float:
    """Text-loop latency / optical-loop latency (serving: GPU time per problem, i.e. the
    throughput ratio)."""
    if regime == "eager":
        return text_loop(model, hw, w).total_s / optical_loop(model, hw, w, reuse).total_s
    if regime == "serving":
        return serving(model, hw, w, "text", problems, max_seqs=max_seqs).total_s / \
            serving(model, hw, w, "optical", problems, reuse, max_seqs).total_s
    raise ValueError(f"regime must be 'eager' or 'serving', got {regime!r}")
