"""`LoopConfig`: the schema of the `loop` config group (conf/loop/*.yaml are presets of it).

Kept free of torch and transformers so configs compose and validate without loading a model.
Defaults are the VTC-R1 reference protocol: at most 8 rounds of at most 8,192 new tokens,
temperature 0.6, top_p 0.95.
"""

from __future__ import annotations

from dataclasses import dataclass

MODES = ("optical", "text", "none")


@dataclass
class LoopConfig:
    mode: str = "optical"
    """Which loop: `optical` (earlier rounds rendered to images and fed back), `text` (the
    long-context baseline: the model continues its own assistant turn, earlier rounds kept as
    exact tokens, i.e. one long generation cut into rounds), `none` (every round sees only the question:
    the no-memory ablation)."""

    max_rounds: int = 8
    """Most rounds per problem (sample). A problem stops earlier once a round is final
    (`</think>` followed by a non-empty `<answer>...</answer>`)."""

    max_new_tokens: int = 8192
    """Most generated tokens per round. The same budget applies to all three modes."""

    temperature: float = 0.6
    """Sampling temperature (ignored when `do_sample` is false)."""

    top_p: float = 0.95
    """Nucleus sampling mass (ignored when `do_sample` is false)."""

    top_k: int = 0
    """Top-k sampling cut-off; 0 disables it (the reference protocol uses top_p only)."""

    do_sample: bool = True
    """Sample (true) or decode greedily (false). Greedy with `samples_per_problem > 1` gives
    identical samples, so that combination is refused."""

    batch_size: int = 8
    """Problems (samples) generated together; the active set shrinks as problems finish."""

    seed: int = 0
    """Seed of every round's sampling; round r of sample s of problem p uses a seed derived
    from (seed, p, s, r), so results do not depend on batch composition or resumption."""

    samples_per_problem: int | None = None
    """Samples per problem for mean@k. null: the benchmark's reference protocol (16 for AIME25
    and AMC23, 1 otherwise) when the benchmark declares one, else 1."""

    max_context_tokens: int = 0
    """Stop a problem (counted as `context_overflow`) when a round's context would exceed this
    many tokens; 0 = no limit. Guards the text baseline against unbounded prompts."""

    image_max_pixels: int | None = None
    """Downscale each memory page (aspect kept) to at most this many pixels before the processor,
    exactly as the training encoder does with `trainer.image_max_pixels`: must match training,
    or the model reads pages at a size it never saw. null: pages go in at rendered size."""

    repetition_penalty: float = 1.0
    """transformers' repetition penalty; 1.0 = off (the reference protocol)."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"loop.mode must be one of {MODES}, got {self.mode!r}")
        for name in ("max_rounds", "max_new_tokens", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"loop.{name} must be an integer >= 1, got {value!r}")
        if self.temperature <= 0 and self.do_sample:
            raise ValueError(
                f"loop.temperature must be > 0 when loop.do_sample is true, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"loop.top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"loop.top_k must be >= 0, got {self.top_k}")
        if self.samples_per_problem is not None and self.samples_per_problem < 1:
            raise ValueError(
                f"loop.samples_per_problem must be >= 1 or null, got {self.samples_per_problem}")
        if (not self.do_sample and self.samples_per_problem is not None
                and self.samples_per_problem > 1):
            raise ValueError("loop.samples_per_problem > 1 needs loop.do_sample=true "
                             "(greedy decoding would repeat the same sample)")
        if self.max_context_tokens < 0:
            raise ValueError(
                f"loop.max_context_tokens must be >= 0, got {self.max_context_tokens}")
        if self.image_max_pixels is not None and self.image_max_pixels < 1:
            raise ValueError(
                f"loop.image_max_pixels must be >= 1 or null, got {self.image_max_pixels}")
        if self.repetition_penalty <= 0:
            raise ValueError(
                f"loop.repetition_penalty must be > 0, got {self.repetition_penalty}")
