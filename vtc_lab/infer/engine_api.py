"""The engine API the loops talk to, without torch.

The loop hands an `Engine` (a Protocol) a batch of `GenerationRequest`s (chat messages with PIL
images, plus an optional assistant-turn prefix of token ids) and gets one `GenerationOutput` per
request back. The in-process engine (`vtc_lab.infer.engine.HFEngine`) needs torch; the OpenAI
client (`vtc_lab.infer.openai_engine`) and the loop do not, and import only this module, so an
evaluation against a server runs on a machine without torch (docs/engines.md, client-only
install).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from vtc_lab.infer.config import LoopConfig


_LOOP = LoopConfig()


@dataclass
class GenerationParams:
    """Decoding settings shared by a batch: the loop builds them from its `LoopConfig`
    (`vtc_lab.infer.loop.generation_params`); the server from a request. Fields and defaults are
    `LoopConfig`'s, so each setting is declared (and documented) once, there."""

    max_new_tokens: int = _LOOP.max_new_tokens
    do_sample: bool = _LOOP.do_sample
    temperature: float = _LOOP.temperature
    top_p: float = _LOOP.top_p
    top_k: int = _LOOP.top_k
    repetition_penalty: float = _LOOP.repetition_penalty


@dataclass
class GenerationRequest:
    """One generation: chat messages from `vtc_lab.data.build_messages`, optionally followed by
    an assistant-turn prefix (token ids the model produced earlier: the text-memory baseline
    continues its own turn from exact ids, so nothing it wrote is re-tokenized or re-parsed)."""

    messages: list[dict]
    prefix_ids: list[int] = field(default_factory=list)
    seed: int = 0


@dataclass
class GenerationOutput:
    """What one request produced and what it cost."""

    text: str
    """Decoded new text (special tokens such as end-of-turn removed)."""
    token_ids: list[int]
    """New token ids, up to and including the end-of-turn token when one was emitted."""
    context_text_tokens: int
    """Prompt tokens that are not image placeholders (incl. the prefix and image delimiters)."""
    context_vision_tokens: int
    """Image placeholder tokens in the prompt (the merged vision tokens the LM attends to)."""
    stopped: bool
    """True when the model ended its turn (end-of-turn token), False when it hit the budget."""
    generate_s: float
    """Wall time of the batched call this request was part of."""
    memory_ids: list[int] | None = None
    """The new ids that may be fed back as text memory: `token_ids` without special tokens
    (end-of-turn, image placeholders, vision delimiters...), i.e. exactly the ids behind `text`.
    A model that emits an image placeholder must not smuggle it into the next prompt. None: use
    `token_ids` minus a final end-of-turn token."""
    overflow: str | None = None
    """Set when the request was not generated because its prompt (plus the token budget) is
    past the model's context length, as the server refused it: the server's message. The loop
    ends the sample as `context_overflow` (as its own `max_context_tokens` check does) and goes
    on with the others; the other fields are then empty."""


@runtime_checkable
class Engine(Protocol):
    """What the loops need from a model. Implementations must never execute model output."""

    def generate(self, requests: Sequence[GenerationRequest],
                 params: GenerationParams) -> list[GenerationOutput]: ...

    def count_text_tokens(self, text: str) -> int: ...

    def kv_bytes_per_token(self) -> int | None: ...


@runtime_checkable
class ConcurrentEngine(Engine, Protocol):
    """An engine whose requests are independent calls (a server behind an HTTP API): the loop
    then drives each sample on its own instead of in lockstep batches (`vtc_lab.infer.loop`)."""

    max_in_flight: int
    """Most requests the loop keeps in flight; 0: use the batched schedule (`generate`)."""

    def submit(self, request: GenerationRequest,
               params: GenerationParams) -> Future[GenerationOutput]: ...
