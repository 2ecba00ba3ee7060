"""The model side of `vtc-lab serve`: the in-process engine plus what a server needs from it.

`ServingEngine` is `HFEngine` with token-id prompts (the `/v1/completions` prompt that continues
an assistant turn, encoded as-is instead of through the chat template), stop strings (a row
whose new text contains one is ended at once, by forcing the end-of-turn token, and its text
cut before it), the context-length check (prompt + max_tokens against `max_model_len`, after
the prompt is encoded and before anything is generated) and logprobs (one forward pass over
prompt + generated ids, log-softmax of the raw logits: the model's own distribution, as vLLM
reports by default). `ModelRunner` is what the routes await: it queues that work on the one
model thread (`Batcher`) and returns the outputs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch

from vtc_lab.infer.engine import GenerationOutput, GenerationParams, GenerationRequest, HFEngine
from vtc_lab.serve.batcher import Batcher
from vtc_lab.serve.protocol import RequestError


@dataclass
class ServedRequest(GenerationRequest):
    """A `GenerationRequest` whose prompt may be raw token ids, with its stop strings and the
    context budget it must fit; the engine records the ids the model saw."""

    prompt_ids: list[int] | None = None
    """Token-id prompt (completions); None: `messages` through the chat template."""
    stop: list[str] = field(default_factory=list)
    """Stop strings: the text ends before the first one."""
    max_new_tokens: int | None = None
    """The completion budget checked with the prompt against `max_model_len` once the prompt is
    encoded; None: no check (/tokenize, scoring what was already generated)."""
    encoded_ids: list[int] = field(default_factory=list)
    """Filled by the engine: the ids the model saw (template + image placeholders + prefix)."""


@dataclass(frozen=True)
class TokenLogprob:
    """One token of a scored sequence: its logprob and the `top` most likely tokens there."""

    token_id: int
    logprob: float
    top: list[tuple[int, float]]


def context_error(limit: int, prompt: int, completion: int, what: str) -> RequestError:
    """The OpenAI API's wording, which clients match on to shorten their prompts."""
    return RequestError(f"This model's maximum context length is {limit} tokens. However, you "
                        f"requested {prompt + completion} tokens ({prompt} in the {what}, "
                        f"{completion} in the completion). Please reduce the length of the "
                        f"{what} or completion.", param=what)


class _StopStrings:
    """Logits processor: a row whose decoded new text contains one of its stop strings gets
    only the end-of-turn token, so generation of that row ends at once."""

    def __init__(self, engine: "ServingEngine", requests: Sequence[ServedRequest]):
        self.engine = engine
        self.stops = [r.stop for r in requests]
        self.tail = max((len(s) for r in requests for s in r.stop), default=0) + 8
        self.width: int | None = None
        self.forced: set[int] = set()

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        if self.width is None:
            self.width = input_ids.shape[1]
        for row, stops in enumerate(self.stops):
            if not stops or row in self.forced:
                continue
            new = input_ids[row, self.width:][-self.tail:].tolist()
            text = self.engine.tokenizer.decode(new, skip_special_tokens=True)
            if any(s in text for s in stops):
                self.forced.add(row)
                scores[row] = float("-inf")
                scores[row, self.engine.stop_ids[0]] = 0.0
        return scores


class ServingEngine(HFEngine):
    """`HFEngine` that also accepts token-id prompts, honours stop strings, checks the context
    length and scores sequences."""

    def __init__(self, backbone, max_model_len: int | None = None, **kw):
        super().__init__(backbone, **kw)
        config = self.model.config
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        self.max_model_len = max_model_len or int(getattr(text, "max_position_embeddings", 0)
                                                  or 0) or None
        self._stops: _StopStrings | None = None

    def encode(self, request: GenerationRequest) -> dict[str, torch.Tensor]:
        if isinstance(request, ServedRequest) and request.prompt_ids is not None:
            ids = torch.tensor([request.prompt_ids + list(request.prefix_ids)], dtype=torch.long)
            enc = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        else:
            enc = super().encode(request)
        if isinstance(request, ServedRequest):
            request.encoded_ids = enc["input_ids"][0].tolist()
            prompt = len(request.encoded_ids)
            if request.max_new_tokens is not None and self.max_model_len \
                    and prompt + request.max_new_tokens > self.max_model_len:
                raise context_error(self.max_model_len, prompt, request.max_new_tokens,
                                    "prompt" if request.prompt_ids is not None else "messages")
        return enc

    def logits_processors(self, requests, params, device) -> list:
        extra = []
        self._stops = None
        if self.stop_ids and any(getattr(r, "stop", None) for r in requests):
            self._stops = _StopStrings(self, requests)
            extra.append(self._stops)
        return super().logits_processors(requests, params, device) + extra

    @torch.inference_mode()
    def generate(self, requests: Sequence[GenerationRequest],
                 params: GenerationParams) -> list[GenerationOutput]:
        outs = super().generate(requests, params)
        forced = self._stops.forced if self._stops is not None else set()
        self._stops = None
        return [self._cut(r, o, i in forced) for i, (r, o) in enumerate(zip(requests, outs))]

    def _cut(self, request: GenerationRequest, out: GenerationOutput,
             forced: bool) -> GenerationOutput:
        """The output ending before its first stop string (finish 'stop'), without the
        end-of-turn token that was forced to end it."""
        stops = getattr(request, "stop", None)
        if not stops:
            return out
        ids = out.token_ids[:-1] if forced else out.token_ids
        hits = [i for i in (out.text.find(s) for s in stops) if i >= 0]
        if not hits:
            return replace(out, token_ids=ids) if forced else out
        return replace(out, text=out.text[:min(hits)], token_ids=ids, stopped=True,
                       memory_ids=None)

    def tokenize(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])

    def detokenize(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def token_text(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id], skip_special_tokens=False)

    @torch.inference_mode()
    def score(self, request: ServedRequest, start: int, top: int) -> list[TokenLogprob]:
        """Logprob and `top` alternatives of each token of the encoded request from index
        `start` (>= 1) on: one forward pass, log-softmax of the raw logits, in chunks of
        positions so that the float32 copy stays small."""
        enc = self.encode(request)
        device = next(self.model.parameters()).device
        dtype = next(self.model.parameters()).dtype
        batch = {k: (v.to(device, dtype) if torch.is_floating_point(v) else v.to(device))
                 for k, v in enc.items()}
        base = getattr(self.model, "model", None)
        if getattr(base, "rope_deltas", None) is not None:
            base.rope_deltas = None
        logits = self.model(**batch, use_cache=False).logits[0]
        ids = batch["input_ids"][0]
        out: list[TokenLogprob] = []
        for lo in range(max(start, 1), ids.shape[0], 512):
            hi = min(lo + 512, ids.shape[0])
            logp = torch.log_softmax(logits[lo - 1:hi - 1].float(), dim=-1)
            chosen = logp.gather(1, ids[lo:hi, None])[:, 0].tolist()
            values, index = logp.topk(top, dim=-1) if top else (None, None)
            for k, tok in enumerate(ids[lo:hi].tolist()):
                alts = list(zip(index[k].tolist(), values[k].tolist())) if top else []
                out.append(TokenLogprob(tok, chosen[k], alts))
        return out


class ModelRunner:
    """The engine behind one worker thread; what the routes await."""

    def __init__(self, engine: ServingEngine, max_batch_size: int, batch_wait_s: float):
        self.engine = engine
        self.batcher = Batcher(engine, max_batch_size=max_batch_size, wait_s=batch_wait_s)

    async def generate(self, requests: list[ServedRequest],
                       params: GenerationParams) -> list[GenerationOutput]:
        futures = [asyncio.wrap_future(self.batcher.submit(r, params)) for r in requests]
        return list(await asyncio.gather(*futures))

    async def score(self, request: ServedRequest, start: int, top: int) -> list[TokenLogprob]:
        return await asyncio.wrap_future(
            self.batcher.call(lambda: self.engine.score(request, start, top)))

    async def encode(self, request: ServedRequest) -> list[int]:
        """The prompt ids of a request (the chat template applied on the model thread)."""
        await asyncio.wrap_future(self.batcher.call(lambda: self.engine.encode(request)))
        return request.encoded_ids

    def close(self) -> None:
        self.batcher.close()
