"""What the latency cost model (vtc_lab.infer.costmodel) reads: model shapes, hardware, workload.

Why a module of its own: the shapes and hardware profiles are facts (published dimensions,
datasheet peaks, efficiencies fitted by experiments/perf/cost_model.py), the loop models in
costmodel.py are the arithmetic over them; keeping them apart keeps both short. Everything here
is re-exported by vtc_lab.infer.costmodel, whose public names are the API.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


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
    """What a machine (and engine) does per second, per forward and per decode step."""

    name: str
    flops: float
    """Achieved matmul FLOP/s (peak x utilisation)."""
    bandwidth: float
    """Achieved memory bandwidth reading the weights, bytes/s."""
    memory: float
    """Accelerator memory, bytes (bounds concurrency in the serving regime)."""
    forward_overhead_s: float
    """Fixed time of one LM forward in the eager engine (launches, Python, generate's per-step
    bookkeeping); not charged in the serving regime, which has `step_overhead_s` instead."""
    vision_overhead_s: float = 0.0
    """Fixed time of one vision-tower call in the eager engine."""
    step_overhead_s: float = 0.0
    """Fixed time of one decode step in a serving or compiled engine, whatever the batch: what
    CUDA graphs leave of the launches, the scheduler, the sampler, the detokenizer."""
    seq_overhead_s: float = 0.0
    """Time added to a decode step per running sequence (block tables, per-sequence scheduling
    and sampling): why a step at batch 16 costs more than the weights and K/V it reads."""
    kv_efficiency: float = 1.0
    """Fraction of `bandwidth` attention achieves reading K/V: paged blocks and one query row
    per sequence use the memory system worse than a weight GEMV does."""
    vision_efficiency: float = 1.0
    """Fraction of `flops` the vision tower achieves (narrow matmuls, attention per page)."""
    page_overhead_s: float = 0.0
    """Fixed time per page through the vision tower in any engine (patch embedding, position
    tables and the merger run per image)."""


# Datasheet peaks (dense bf16 FLOP/s, HBM bytes/s, memory bytes) of the GPUs the fits use.
PEAKS = {"H100": (989e12, 3.35e12, 80e9), "H800": (989e12, 3.35e12, 80e9),
         "H200": (989e12, 4.8e12, 141e9), "A100-40GB": (312e12, 1.555e12, 40e9)}
"""name -> (peak bf16 dense FLOP/s, peak HBM bandwidth bytes/s, memory bytes)."""

# Serving-engine terms fitted on public vLLM decode figures for Llama-3-8B (4 fit points, 4
# held out; sources and errors in docs/cost-model.md) by
# `python experiments/perf/cost_model.py fit`; tests/infer/test_costmodel.py re-fits them.
SERVING_FIT = dict(weight_efficiency=0.840, kv_efficiency=0.405, step_overhead_s=0.48e-3,
                   seq_overhead_s=0.263e-3)
"""Fraction of peak HBM bandwidth reading weights, fraction of that reading K/V, fixed seconds
per decode step, seconds per running sequence per step (vLLM, CUDA graphs)."""
MATMUL_EFFICIENCY = 0.6
"""Achieved fraction of the dense bf16 peak in prefill (assumed: large GEMMs reach ~60 %)."""
VISION_EFFICIENCY = 0.81
"""Fraction of MATMUL_EFFICIENCY the vision tower reaches: 1 / 1.23, the midpoint of the
19-27 % by which the FLOP-only term underestimated one page's encoding on an H200 (issue 24)."""
HF_COMPILED_STEP_S = 6.6e-3
"""Fixed time of a decode step of HF `generate` with a static cache, compiled: the batch-1 step
measured on an H200 at Qwen3-VL-8B dimensions was ~2.5x the bandwidth-only prediction
(issue 24: 2-3x); what the weights and K/V do not explain is this fixed cost."""


def serving_hardware(gpu: str, step_overhead_s: float | None = None,
                     seq_overhead_s: float | None = None, name: str | None = None) -> Hardware:
    """A GPU's datasheet peaks with the fitted serving-engine terms (vLLM-like: CUDA graphs,
    paged K/V); `step_overhead_s` / `seq_overhead_s` replace the fitted ones (an HF compiled
    engine, the sensitivity table)."""
    if gpu not in PEAKS:
        raise ValueError(f"gpu must be one of {sorted(PEAKS)}, got {gpu!r}")
    flops, bandwidth, memory = PEAKS[gpu]
    fit = SERVING_FIT
    return Hardware(
        name or f"{gpu} (serving)", flops=MATMUL_EFFICIENCY * flops,
        bandwidth=fit["weight_efficiency"] * bandwidth, memory=memory,
        forward_overhead_s=0.040, vision_overhead_s=0.030,
        step_overhead_s=fit["step_overhead_s"] if step_overhead_s is None else step_overhead_s,
        seq_overhead_s=fit["seq_overhead_s"] if seq_overhead_s is None else seq_overhead_s,
        kv_efficiency=fit["kv_efficiency"], vision_efficiency=VISION_EFFICIENCY)


H100 = serving_hardware("H100", name="H100 SXM 80GB")
"""One H100. Eager overhead: the HF `generate` decode step measured at the published
Qwen3-VL-8B dimensions on an H200 (38-48 ms per step, nearly flat in batch and context), 30 ms
per vision call; serving terms: the vLLM fit (SERVING_FIT)."""
H200 = serving_hardware("H200", name="H200 141GB")
"""One H200, the same terms over its peaks."""
H100_HF_COMPILED = serving_hardware("H100", step_overhead_s=HF_COMPILED_STEP_S, seq_overhead_s=0.0,
                                    name="H100 (HF static cache, compiled)")
"""HF `generate` with a compiled static cache: no scheduler (no per-sequence cost), a larger
fixed step (Python around each compiled step)."""


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


QWEN3_VL_8B = ModelShape(layers=36, hidden=4096, heads=32, kv_heads=8, head_dim=128,
                         intermediate=12288, vocab=151936, vision_layers=27, vision_hidden=1152,
                         vision_intermediate=4304)
"""Qwen3-VL-8B-Instruct's published dimensions (bf16)."""
GLM_41V_9B = ModelShape(layers=40, hidden=4096, heads=32, kv_heads=2, head_dim=128,
                        intermediate=13696, vocab=151552, vision_layers=24, vision_hidden=1536,
                        vision_intermediate=13696)
"""GLM-4.1V-9B-Thinking's (and Glyph's) published dimensions (bf16)."""
