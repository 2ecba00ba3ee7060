"""An analytical latency model of the text loop and the optical loop (pure Python).

Why: the paper's 2.7x lower latency depends on the architecture, the sequence lengths and the
engine, not on trained weights, so it can be predicted before anything is trained. The model
counts FLOPs and bytes moved per forward pass and turns them into time with three hardware
numbers (peak FLOP/s, memory bandwidth, and a fixed per-forward overhead), in two regimes:

- `eager`: one sequence at a time through an eager engine (HF `generate`). A forward costs
  max(compute, memory traffic) + a fixed overhead (kernel launches, Python); at batch 1 the
  overhead dominates decode, so latency ~ number of decode steps and shorter memory barely helps.
- `serving`: a serving engine (vLLM-like: paged KV cache, CUDA graphs, no per-step overhead)
  runs `problems` sequences concurrently; how many fit is limited by the KV cache of their live
  context. Decode is bandwidth-bound: a step reads the weights once and every running
  sequence's K/V, so a loop with a smaller context fits more sequences per step.

Latency of a loop = rendering + image preprocessing + vision tower + prefills + decode steps.
`reuse` = the engine keeps the KV cache of the shared prefix and the pages' vision features
across rounds (vtc_lab.infer.reuse; prefix caching in vLLM); without it every round re-encodes
and re-prefills every page. docs/cost-model.md states the assumptions;
experiments/perf/cost_model.py validates the model against measurements and predicts the
paper's setting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class ModelShape:
    """The dimensions that cost time (read off a transformers config)."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    vision_layers: int
    vision_hidden: int
    vision_intermediate: int
    patches_per_token: int = 4
    """Vision patches merged into one LM token (spatial merge 2x2)."""
    bytes_per_param: int = 2
    tied_embeddings: bool = False

    @classmethod
    def from_config(cls, config) -> "ModelShape":
        """From a transformers VLM config (Qwen2/2.5/3-VL, GLM-4.1V): attribute reads only."""
        text = config.get_text_config() if hasattr(config, "get_text_config") else config.text_config
        vision = config.vision_config
        heads = text.num_attention_heads
        merge = getattr(vision, "spatial_merge_size", 2)
        return cls(layers=text.num_hidden_layers, hidden=text.hidden_size, heads=heads,
                   kv_heads=getattr(text, "num_key_value_heads", None) or heads,
                   head_dim=getattr(text, "head_dim", None) or text.hidden_size // heads,
                   intermediate=text.intermediate_size, vocab=text.vocab_size,
                   vision_layers=vision.depth, vision_hidden=vision.hidden_size,
                   vision_intermediate=vision.intermediate_size, patches_per_token=merge * merge,
                   tied_embeddings=bool(getattr(config, "tie_word_embeddings", False)))

    def layer_params(self) -> int:
        attn = self.hidden * self.head_dim * (2 * self.heads + 2 * self.kv_heads)
        return attn + 3 * self.hidden * self.intermediate  # gated MLP: gate, up, down

    def lm_params(self) -> int:
        head = 0 if self.tied_embeddings else self.vocab * self.hidden
        return self.layers * self.layer_params() + self.vocab * self.hidden + head

    def flops_per_token(self) -> float:
        """Matmul FLOPs of one token through the LM (2 per weight; embedding lookup is free)."""
        return 2.0 * (self.layers * self.layer_params() + self.vocab * self.hidden)

    def attention_flops(self, new: int, before: int) -> float:
        """QK^T and AV of `new` causal tokens after `before` cached ones."""
        pairs = new * before + new * (new + 1) / 2
        return 4.0 * self.layers * self.heads * self.head_dim * pairs

    def kv_bytes_per_token(self) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * self.bytes_per_param

    def weight_bytes(self) -> int:
        return self.lm_params() * self.bytes_per_param

    def vision_flops(self, tokens: float, pages: float) -> float:
        """Vision tower over `pages` pages holding `tokens` merged tokens in all (attention is
        full within a page, so it grows with the square of the page's patches)."""
        patches = tokens * self.patches_per_token
        per_layer = 4 * self.vision_hidden ** 2 + 2 * self.vision_hidden * self.vision_intermediate
        merger = (self.patches_per_token * self.vision_hidden) ** 2 + \
            self.patches_per_token * self.vision_hidden * self.hidden
        linear = 2.0 * (patches * self.vision_layers * per_layer + tokens * merger)
        per_page = patches / pages if pages else 0.0
        attn = 4.0 * self.vision_layers * self.vision_hidden * per_page * patches
        return linear + attn


@dataclass(frozen=True)
class Hardware:
    """What a machine (and engine) does per second and per forward."""

    name: str
    flops: float
    """Achieved matmul FLOP/s (peak x utilisation)."""
    bandwidth: float
    """Achieved memory bandwidth, bytes/s."""
    memory: float
    """Accelerator memory, bytes (bounds concurrency in the serving regime)."""
    forward_overhead_s: float
    """Fixed time of one LM forward in the eager engine (launches, Python, generate's per-step
    bookkeeping); 0 in a CUDA-graph serving engine."""
    vision_overhead_s: float = 0.0
    """Fixed time of one vision-tower call."""


# Datasheet peaks x typical achieved fractions (dense bf16 matmul ~60 %, HBM ~80 %).
H100 = Hardware("H100 SXM 80GB", flops=0.6 * 989e12, bandwidth=0.8 * 3.35e12, memory=80e9,
                forward_overhead_s=0.040, vision_overhead_s=0.030)
"""One H100. The eager overhead is the measured HF `generate` decode step at the published
Qwen3-VL-8B dimensions on an H200 (38-48 ms per step, nearly flat in batch and context)."""


@dataclass(frozen=True)
class Workload:
    """One problem: a question, then `total` reasoning tokens in rounds of `round_tokens`."""

    total: int
    round_tokens: int
    question_tokens: int = 120
    """Prompt tokens besides memory (system prompt, question, chat template)."""
    compression: float = 3.7
    """Text tokens per vision token of a rendered round (the renderer's measured ratio)."""
    pages_per_round: float = 1.0
    page_delimiters: int = 2
    """Text tokens around each page (vision start/end)."""
    render_s_per_page: float = 0.0
    preprocess_s_per_page: float = 0.0
    """Image preprocessing per page in a prompt (without reuse done again every round for every
    page; with reuse once per page)."""

    @property
    def rounds(self) -> int:
        return max(1, math.ceil(self.total / self.round_tokens))

    def round_vision_tokens(self) -> float:
        return self.round_tokens / self.compression


@dataclass
class Breakdown:
    """Predicted seconds per phase (and the context it ran at)."""

    render_s: float = 0.0
    preprocess_s: float = 0.0
    vision_s: float = 0.0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    peak_context: float = 0.0
    mean_context: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def total_s(self) -> float:
        return self.render_s + self.preprocess_s + self.vision_s + self.prefill_s + self.decode_s


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


def vision_s(model: ModelShape, hw: Hardware, tokens: float, pages: float) -> float:
    if pages <= 0:
        return 0.0
    return model.vision_flops(tokens, pages) / hw.flops + hw.vision_overhead_s


def text_loop(model: ModelShape, hw: Hardware, w: Workload) -> Breakdown:
    """One generation of `total` tokens after the question (eager, batch 1)."""
    q = w.question_tokens
    return Breakdown(prefill_s=forward_s(model, hw, q, 0), decode_s=decode_s(model, hw, w.total, q),
                     peak_context=q + w.total, mean_context=q + w.total / 2)


def _optical_prompts(w: Workload) -> list[tuple[float, float]]:
    """(memory tokens in the prompt, pages in the prompt) per round."""
    per_round = w.round_vision_tokens() + w.page_delimiters * w.pages_per_round
    return [(r * per_round, r * w.pages_per_round) for r in range(w.rounds)]


def optical_loop(model: ModelShape, hw: Hardware, w: Workload, reuse: bool) -> Breakdown:
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
        b.vision_s += vision_s(model, hw, new_tokens, new_pages)
        b.preprocess_s += w.preprocess_s_per_page * new_pages
        if r:
            b.render_s += w.render_s_per_page * w.pages_per_round
        cached = (memory - w.round_vision_tokens() - w.page_delimiters * w.pages_per_round) \
            if (reuse and r) else 0.0
        b.prefill_s += forward_s(model, hw, int(round(prompt - cached)), cached)
        b.decode_s += decode_s(model, hw, w.round_tokens, prompt)
        contexts.append((prompt, prompt + w.round_tokens))
    b.peak_context = max(end for _, end in contexts)
    b.mean_context = sum((a + e) / 2 for a, e in contexts) / len(contexts)
    return b


def concurrency(model: ModelShape, hw: Hardware, context: float, max_seqs: int = 256,
                reserve: float = 0.1) -> int:
    """Sequences whose K/V (at `context` tokens each) fit next to the weights (paged KV cache:
    memory follows the live context, so the steady state is set by the mean context)."""
    free = hw.memory * (1 - reserve) - model.weight_bytes()
    if free <= 0:
        raise ValueError(f"{hw.name}: the weights ({model.weight_bytes() / 1e9:.1f} GB) do not fit")
    return max(1, min(max_seqs, int(free // (context * model.kv_bytes_per_token()))))


def serving(model: ModelShape, hw: Hardware, w: Workload, mode: str, problems: int = 512,
            reuse: bool = True, max_seqs: int = 256) -> Breakdown:
    """Wall time per problem when `problems` problems run through a serving engine at the
    concurrency their KV cache allows (no fixed per-step overhead; prefill and vision tower
    compute-bound, decode a batched, bandwidth-bound step)."""
    served = replace(hw, forward_overhead_s=0.0, vision_overhead_s=0.0)
    single = text_loop(model, served, w) if mode == "text" else optical_loop(model, served, w, reuse)
    batch = min(problems, concurrency(model, hw, single.mean_context, max_seqs))
    waves = problems / batch
    b = Breakdown(render_s=single.render_s, preprocess_s=single.preprocess_s,
                  peak_context=single.peak_context, mean_context=single.mean_context,
                  extra={"concurrency": batch})
    # Compute-bound parts run at full throughput whatever the batch: per problem they cost the
    # same as alone minus the weight reads a batch shares (negligible for prefill).
    b.vision_s = single.vision_s
    b.prefill_s = single.prefill_s
    if mode == "text":
        steps = [(w.total, w.question_tokens)]
    else:
        steps = [(w.round_tokens, w.question_tokens + memory) for memory, _ in _optical_prompts(w)]
    b.decode_s = sum(decode_s(model, served, n, start, batch, overhead=False)
                     for n, start in steps) * waves / problems
    return b


def speedup(model: ModelShape, hw: Hardware, w: Workload, regime: str = "eager",
            reuse: bool = True, problems: int = 512) -> float:
    """Text-loop latency / optical-loop latency."""
    if regime == "eager":
        return text_loop(model, hw, w).total_s / optical_loop(model, hw, w, reuse).total_s
    if regime == "serving":
        return serving(model, hw, w, "text", problems).total_s / \
            serving(model, hw, w, "optical", problems, reuse).total_s
    raise ValueError(f"regime must be 'eager' or 'serving', got {regime!r}")


QWEN3_VL_8B = ModelShape(layers=36, hidden=4096, heads=32, kv_heads=8, head_dim=128,
                         intermediate=12288, vocab=151936, vision_layers=27, vision_hidden=1152,
                         vision_intermediate=4304)
"""Qwen3-VL-8B-Instruct's published dimensions (bf16)."""
GLM_41V_9B = ModelShape(layers=40, hidden=4096, heads=32, kv_heads=2, head_dim=128,
                        intermediate=13696, vocab=151552, vision_layers=24, vision_hidden=1536,
                        vision_intermediate=13696)
"""GLM-4.1V-9B-Thinking's (and Glyph's) published dimensions (bf16)."""
