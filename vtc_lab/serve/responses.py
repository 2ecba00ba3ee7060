"""OpenAI response bodies of `vtc-lab serve`: choices, usage, logprobs, and the server-sent
event chunks of a streamed answer.

Streaming here is the protocol, not incremental decoding: the batcher generates whole requests,
so the chunks of an answer are sent once it is generated (one chunk per token, the role first,
the finish reason last, then `data: [DONE]`). Clients that stream (the openai SDK,
lm-evaluation-harness) read the same text as from a non-streamed answer.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

from vtc_lab.infer.engine import GenerationOutput
from vtc_lab.serve.runner import ServingEngine, TokenLogprob

_FLOOR = -9999.0
"""Logprobs below this (-inf of a masked token) are reported as this: JSON has no infinity."""


def finish_reason(out: GenerationOutput) -> str:
    return "stop" if out.stopped else "length"


def usage(prompt_tokens: int, outs: list[GenerationOutput], vision: int = 0) -> dict:
    completion = sum(len(o.token_ids) for o in outs)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion,
            "prompt_tokens_details": {"image_tokens": vision} if vision else None}


def _lp(value: float) -> float:
    return max(value, _FLOOR)


def completion_logprobs(engine: ServingEngine, scored: list[TokenLogprob | None]) -> dict:
    """The completions API's logprobs object: parallel lists over the tokens (None for the
    first prompt token, which has no context); `top_logprobs` holds the top tokens and the
    chosen one, as vLLM's do (a loglikelihood client checks greediness on it)."""
    tokens, token_lps, tops, offsets, offset = [], [], [], [], 0
    for item in scored:
        if item is None:
            continue
        text = engine.token_text(item.token_id)
        tokens.append(text)
        offsets.append(offset)
        offset += len(text)
        if item.logprob is None:
            token_lps.append(None)
            tops.append(None)
            continue
        token_lps.append(_lp(item.logprob))
        top: dict[str, float] = {}
        for tok, lp in [*item.top, (item.token_id, item.logprob)]:
            key = engine.token_text(tok)
            top[key] = max(top.get(key, _FLOOR), _lp(lp))
        tops.append(top)
    return {"tokens": tokens, "token_logprobs": token_lps, "top_logprobs": tops,
            "text_offset": offsets}


def chat_logprobs(engine: ServingEngine, scored: list[TokenLogprob]) -> dict:
    """The chat API's logprobs object: one entry per generated token with its top tokens."""
    def entry(tok: int, lp: float) -> dict:
        text = engine.token_text(tok)
        return {"token": text, "logprob": _lp(lp), "bytes": list(text.encode())}

    return {"content": [{**entry(s.token_id, s.logprob),
                         "top_logprobs": [entry(t, lp) for t, lp in s.top]} for s in scored]}


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def _pieces(engine: ServingEngine, out: GenerationOutput) -> Iterator[str]:
    """`out.text` in one piece per generated token (pieces concatenate to the text exactly; a
    token that ends mid-character waits for the next)."""
    text, done = out.text, 0
    for i in range(1, len(out.token_ids) + 1):
        prefix = engine.tokenizer.decode(out.token_ids[:i], skip_special_tokens=True)
        if prefix.endswith("\ufffd"):
            continue
        end = min(len(prefix), len(text))
        if end > done:
            yield text[done:end]
            done = end
    if done < len(text):
        yield text[done:]


def sse(obj: Any) -> str:
    return f"data: {json.dumps(obj)}\n\n"


def stream_chat(engine: ServingEngine, model: str, outs: list[GenerationOutput],
                usage_body: dict | None) -> Iterator[str]:
    rid, created = new_id("chatcmpl"), int(time.time())

    def chunk(index: int, delta: dict, finish: str | None) -> str:
        return sse({"id": rid, "object": "chat.completion.chunk", "created": created,
                    "model": model, "choices": [{"index": index, "delta": delta,
                                                 "logprobs": None, "finish_reason": finish}]})

    for i, out in enumerate(outs):
        yield chunk(i, {"role": "assistant", "content": ""}, None)
        for piece in _pieces(engine, out):
            yield chunk(i, {"content": piece}, None)
        yield chunk(i, {}, finish_reason(out))
    if usage_body is not None:
        yield sse({"id": rid, "object": "chat.completion.chunk", "created": created,
                   "model": model, "choices": [], "usage": usage_body})
    yield "data: [DONE]\n\n"


def stream_completion(engine: ServingEngine, model: str, outs: list[GenerationOutput],
                      usage_body: dict | None) -> Iterator[str]:
    rid, created = new_id("cmpl"), int(time.time())

    def chunk(index: int, text: str, finish: str | None) -> str:
        return sse({"id": rid, "object": "text_completion", "created": created, "model": model,
                    "choices": [{"index": index, "text": text, "logprobs": None,
                                 "finish_reason": finish}]})

    for i, out in enumerate(outs):
        for piece in _pieces(engine, out):
            yield chunk(i, piece, None)
        yield chunk(i, "", finish_reason(out))
    if usage_body is not None:
        yield sse({"id": rid, "object": "text_completion", "created": created, "model": model,
                   "choices": [], "usage": usage_body})
    yield "data: [DONE]\n\n"
