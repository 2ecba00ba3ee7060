"""The HTTP routes of `vtc-lab serve` (FastAPI), in vLLM's shape.

- `POST /v1/chat/completions`: `messages` with text and `image_url` parts (data URLs only),
  `max_completion_tokens`/`max_tokens`, `temperature` (0 = greedy), `top_p`, `top_k` (0 or -1 =
  off), `seed`, `n`, `stop`, `logprobs`/`top_logprobs`, `stream`, `repetition_penalty`, and
  vLLM's `add_generation_prompt`, `continue_final_message`, `return_token_ids`,
  `return_prompt_token_ids`.
- `POST /v1/completions`: `prompt` as a string, a list of strings, token ids or a list of
  token-id lists; the same sampling fields; `logprobs` (top-k per token), `echo` (with
  `max_tokens: 0`: the prompt's logprobs only), `stream`.
- `POST /tokenize` (`prompt` or `messages`), `POST /detokenize`, `GET /v1/models`,
  `GET /v1/models/{id}`, `GET /health`, `GET /version`, `GET /metrics` (Prometheus),
  `GET /metrics/batches` (how the batcher grouped requests).

Every request is read within `max_request_bytes` (413 beyond), validated against the protocol
models (`vtc_lab.serve.protocol`; 400 naming the field) and checked against the per-request
limits before any work; an error is the OpenAI error body, and the server keeps serving.
One access-log line per request (logger `vtc_lab.serve.access`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

import vtc_lab
from vtc_lab.infer.engine import GenerationOutput, GenerationParams
from vtc_lab.models.reading import ReadingSpec
from vtc_lab.serve import responses as R
from vtc_lab.serve.config import ServeConfig
from vtc_lab.serve.inputs import message_text, to_engine_messages
from vtc_lab.serve.metrics import CONTENT_TYPE_LATEST, ServeMetrics
from vtc_lab.serve.protocol import (ChatRequest, CompletionRequest, DetokenizeRequest,
                                    RequestError, SamplingFields, TokenizeRequest, error_body,
                                    parse)
from vtc_lab.serve.runner import ModelRunner, ServedRequest, TokenLogprob, context_error

access_log = logging.getLogger("vtc_lab.serve.access")
log = logging.getLogger(__name__)


def sampling(req: SamplingFields, max_new_tokens: int) -> tuple[GenerationParams, int]:
    """(params, seed) of a validated request; temperature 0 is greedy."""
    temperature = 1.0 if req.temperature is None else req.temperature
    top_p = 1.0 if req.top_p is None else req.top_p
    top_k = 0 if req.top_k in (None, -1) else req.top_k
    rep = 1.0 if req.repetition_penalty is None else req.repetition_penalty
    greedy = temperature == 0
    params = GenerationParams(max_new_tokens=max_new_tokens, do_sample=not greedy,
                              temperature=1.0 if greedy else temperature,
                              top_p=1.0 if greedy else top_p, top_k=0 if greedy else top_k,
                              repetition_penalty=rep)
    seed = random.getrandbits(62) if req.seed is None else req.seed
    return params, seed


def create_app(runner: ModelRunner, cfg: ServeConfig, reading: ReadingSpec | None = None,
               on_startup: Callable[[], None] | None = None) -> FastAPI:
    """The app over `runner` (its engine on its device, in eval mode); `cfg` gives the name,
    the defaults and the limits; `reading` is what the model was trained to read (applied to
    every chat request); `on_startup` runs once the server accepts connections."""
    engine, name = runner.engine, cfg.model_name
    metrics = ServeMetrics()
    vocab = len(engine.tokenizer)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        if on_startup is not None:
            on_startup()
        yield
        runner.close()

    app = FastAPI(title="vtc-lab serve", lifespan=lifespan)
    app.state.runner = runner

    @app.middleware("http")
    async def access(request: Request, call_next):
        start = time.perf_counter()
        response = await call_next(request)
        elapsed = time.perf_counter() - start
        route = getattr(request.scope.get("route"), "path", "unmatched")
        metrics.requests.labels(route, str(response.status_code)).inc()
        metrics.latency.labels(route).observe(elapsed)
        client = request.client.host if request.client else "-"
        access_log.info('%s "%s %s" %d %.1fms', client, request.method, request.url.path,
                        response.status_code, elapsed * 1000)
        return response

    async def read_body(raw: Request) -> bytes:
        limit = cfg.max_request_bytes
        declared = raw.headers.get("content-length")
        too_large = RequestError(f"request body over {limit} bytes (max_request_bytes)", 413,
                                 "RequestTooLargeError")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise too_large
        chunks, size = [], 0
        async for chunk in raw.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    def check_model(model: str | None) -> None:
        if model not in (None, name):
            raise RequestError(f"The model `{model}` does not exist.", 404, "NotFoundError",
                               "model")

    async def guarded(handler, schema, raw: Request) -> Response:
        try:
            req = parse(schema, await read_body(raw))
            check_model(req.model)
            result = await handler(req)
            return result if isinstance(result, Response) else JSONResponse(result)
        except RequestError as err:
            return JSONResponse(error_body(str(err), err.status, err.kind, err.param),
                                status_code=err.status)
        except MemoryError:
            return JSONResponse(error_body("the server ran out of memory on this request", 503,
                                           "ServiceUnavailableError"), status_code=503)
        except Exception as err:  # noqa: BLE001 - report, keep serving
            log.exception("request failed")
            return JSONResponse(error_body(f"{type(err).__name__}: {err}", 500,
                                           "InternalServerError"), status_code=500)

    def check_ids(ids: list[int], where: str) -> None:
        bad = next((t for t in ids if t >= vocab), None)
        if bad is not None:
            raise RequestError(f"{where}: token id {bad} is outside this model's vocabulary "
                               f"(0..{vocab - 1})", param=where)

    def check_fits(prompt: int, completion: int, what: str) -> None:
        limit = engine.max_model_len
        if limit and prompt + completion > limit:
            raise context_error(limit, prompt, completion, what)

    def no_stream_logprobs(req) -> None:
        if req.stream and req.logprobs:
            raise RequestError("logprobs with stream=true is not supported by vtc-lab serve",
                               param="logprobs")

    async def chat(req: ChatRequest) -> Any:
        no_stream_logprobs(req)
        max_new = req.max_new_tokens(cfg.default_max_tokens)
        check_fits(0, max_new, "messages")
        messages = await asyncio.to_thread(to_engine_messages, req.messages, cfg, reading)
        prefix: list[int] = []
        if req.continue_final_message:
            prefix = engine.tokenize(message_text(messages[-1]))
            messages = messages[:-1]
        params, seed = sampling(req, max_new)
        requests = [ServedRequest(messages=messages, prefix_ids=prefix, seed=seed + i,
                                  stop=req.stops, max_new_tokens=max_new) for i in range(req.n)]
        outs = await runner.generate(requests, params)
        prompt = requests[0].encoded_ids
        vision = outs[0].context_vision_tokens
        use = R.usage(len(prompt), outs, vision)
        count_tokens("/v1/chat/completions", len(prompt), outs)
        if req.stream:
            include = req.stream_options is not None and req.stream_options.include_usage
            return StreamingResponse(R.stream_chat(engine, name, outs, use if include else None),
                                     media_type="text/event-stream")
        choices = []
        for i, (request, out) in enumerate(zip(requests, outs)):
            choice: dict[str, Any] = {"index": i, "message": {"role": "assistant",
                                                              "content": out.text},
                                      "logprobs": None, "finish_reason": R.finish_reason(out),
                                      "stop_reason": None}
            if req.logprobs:
                scored = await runner.score(_scoring(request, out), len(prompt),
                                            req.top_logprobs or 0)
                choice["logprobs"] = R.chat_logprobs(engine, scored)
            if req.return_token_ids:
                choice["token_ids"] = out.token_ids
            if req.return_prompt_token_ids or req.return_token_ids:
                choice["prompt_token_ids"] = prompt
            choices.append(choice)
        resp = {"id": R.new_id("chatcmpl"), "object": "chat.completion",
                "created": int(time.time()), "model": name, "choices": choices, "usage": use}
        if req.return_token_ids:
            resp["prompt_token_ids"] = prompt
        return resp

    async def completion(req: CompletionRequest) -> Any:
        no_stream_logprobs(req)
        prompts = req.prompts
        chars = sum(len(p) for p in prompts if isinstance(p, str))
        if chars > cfg.max_prompt_chars:
            raise RequestError(f"prompt of {chars} characters; this server's limit is "
                               f"{cfg.max_prompt_chars} (max_prompt_chars)", param="prompt")
        encoded: list[list[int]] = []
        for k, p in enumerate(prompts):
            where = "prompt" if len(prompts) == 1 else f"prompt.{k}"
            if isinstance(p, str):
                ids = engine.tokenize(p, add_special_tokens=req.add_special_tokens)
                if not ids:
                    raise RequestError(f"{where}: the prompt is empty", param=where)
            else:
                check_ids(p, where)
                ids = p
            check_fits(len(ids), req.max_tokens, "prompt")
            encoded.append(ids)
        params, seed = sampling(req, max(req.max_tokens, 1))
        requests = [ServedRequest(messages=[], prompt_ids=ids, seed=seed + i, stop=req.stops,
                                  max_new_tokens=req.max_tokens)
                    for ids in encoded for i in range(req.n)]
        if req.max_tokens == 0:  # echo of the prompt's logprobs only
            outs = [GenerationOutput("", [], len(r.prompt_ids), 0, False, 0.0)
                    for r in requests]
        else:
            outs = await runner.generate(requests, params)
        prompt_tokens = sum(len(ids) for ids in encoded)
        use = R.usage(prompt_tokens, outs)
        count_tokens("/v1/completions", prompt_tokens, outs)
        if req.stream:
            include = req.stream_options is not None and req.stream_options.include_usage
            return StreamingResponse(R.stream_completion(engine, name, outs,
                                                         use if include else None),
                                     media_type="text/event-stream")
        choices = []
        for i, (request, out) in enumerate(zip(requests, outs)):
            prompt_ids = request.prompt_ids
            text = out.text
            if req.echo:
                original = prompts[i // req.n]
                text = (original if isinstance(original, str)
                        else engine.tokenizer.decode(prompt_ids, skip_special_tokens=False)) + text
            choice: dict[str, Any] = {"index": i, "text": text, "logprobs": None,
                                      "finish_reason": R.finish_reason(out), "stop_reason": None}
            if req.logprobs is not None:
                start = 1 if req.echo else len(prompt_ids)
                scored = await runner.score(_scoring(request, out), start, req.logprobs)
                first = [TokenLogprob(prompt_ids[0], None, [])] if req.echo else []
                choice["logprobs"] = R.completion_logprobs(engine, first + scored)
            if req.return_token_ids:
                choice["token_ids"] = out.token_ids
                choice["prompt_token_ids"] = prompt_ids
            choices.append(choice)
        return {"id": R.new_id("cmpl"), "object": "text_completion",
                "created": int(time.time()), "model": name, "choices": choices, "usage": use}

    def count_tokens(route: str, prompt: int, outs: list[GenerationOutput]) -> None:
        metrics.prompt_tokens.labels(route).inc(prompt)
        metrics.generation_tokens.labels(route).inc(sum(len(o.token_ids) for o in outs))

    async def tokenize(req: TokenizeRequest) -> dict:
        if req.messages is not None:
            messages = await asyncio.to_thread(to_engine_messages, req.messages, cfg, reading)
            ids = await runner.encode(ServedRequest(messages=messages))
        else:
            if len(req.prompt) > cfg.max_prompt_chars:
                raise RequestError(f"prompt of {len(req.prompt)} characters; this server's "
                                   f"limit is {cfg.max_prompt_chars} (max_prompt_chars)",
                                   param="prompt")
            ids = engine.tokenize(req.prompt, req.add_special_tokens)
        return {"count": len(ids), "max_model_len": engine.max_model_len, "tokens": ids}

    async def detokenize(req: DetokenizeRequest) -> dict:
        check_ids(req.tokens, "tokens")
        return {"prompt": engine.detokenize(req.tokens)}

    @app.post("/v1/chat/completions")
    async def chat_route(raw: Request):
        return await guarded(chat, ChatRequest, raw)

    @app.post("/v1/completions")
    async def completion_route(raw: Request):
        return await guarded(completion, CompletionRequest, raw)

    @app.post("/tokenize")
    async def tokenize_route(raw: Request):
        return await guarded(tokenize, TokenizeRequest, raw)

    @app.post("/detokenize")
    async def detokenize_route(raw: Request):
        return await guarded(detokenize, DetokenizeRequest, raw)

    def model_card() -> dict:
        card = {"id": name, "object": "model", "created": int(time.time()),
                "owned_by": "vtc-lab", "root": name, "parent": None,
                "max_model_len": engine.max_model_len}
        if reading is not None:
            card["reading"] = reading.to_dict()
        return card

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str):
        if model_id != name:
            return JSONResponse(error_body(f"The model `{model_id}` does not exist.", 404,
                                           "NotFoundError", "model"), status_code=404)
        return model_card()

    @app.get("/health")
    async def health():
        return JSONResponse({})

    @app.get("/version")
    async def version():
        return {"version": vtc_lab.__version__}

    @app.get("/metrics")
    async def prometheus():
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/metrics/batches")
    async def batch_stats():
        """How the batcher has grouped requests (the perf script reads it)."""
        return {"batches": runner.batcher.batches, "rows": runner.batcher.rows}

    return app


def _scoring(request: ServedRequest, out: GenerationOutput) -> ServedRequest:
    """The request whose encoding is its prompt followed by what was generated."""
    return ServedRequest(messages=request.messages, prompt_ids=request.prompt_ids,
                         prefix_ids=list(request.prefix_ids) + list(out.token_ids))
