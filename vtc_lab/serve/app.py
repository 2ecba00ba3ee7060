"""The FastAPI app of `vtc-lab serve`: the OpenAI routes vtc-lab's client uses, in vLLM's shape.

Routes (request and response fields follow vLLM's protocol classes in
vllm/entrypoints/openai/{chat_completion,completion}/protocol.py and vLLM's /tokenize,
/detokenize; SGLang's per-choice `prompt_token_ids` is returned as well):

- `POST /v1/chat/completions`: `messages` with text and `image_url` parts (data URLs only: this
  server fetches nothing), `max_completion_tokens`/`max_tokens`, `temperature` (0 = greedy),
  `top_p`, `top_k` (0 or -1 = off), `seed`, `n`, `repetition_penalty`, `add_generation_prompt`,
  `continue_final_message` (the final assistant message is continued: its text is tokenized
  and appended to the templated prompt), `return_token_ids`, `return_prompt_token_ids`.
- `POST /v1/completions`: `prompt` as a string or token ids, same sampling fields.
- `POST /tokenize` (`prompt` or `messages`), `POST /detokenize`, `GET /v1/models`, `GET /health`.

Anything the in-process engine cannot honour (streaming, stop strings, logprobs, tools, min_p)
is refused with HTTP 400 and says so, rather than silently ignored.
"""

from __future__ import annotations

import asyncio
import base64
import io
import random
import time
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from vtc_lab.infer.engine import GenerationParams
from vtc_lab.serve.batcher import Batcher, ServedRequest, ServingEngine


class RequestError(ValueError):
    """A request the server refuses (HTTP `status`, OpenAI error body)."""

    def __init__(self, message: str, status: int = 400, kind: str = "BadRequestError"):
        super().__init__(message)
        self.status, self.kind = status, kind


def _error(message: str, status: int = 400, kind: str = "BadRequestError") -> JSONResponse:
    return JSONResponse(status_code=status,
                        content={"error": {"message": message, "type": kind, "param": None,
                                           "code": status}})


def decode_image(url: str) -> Any:
    """An `image_url` data URL -> PIL image (RGB). Remote URLs are refused: nothing is fetched."""
    from PIL import Image

    if not url.startswith("data:image/") or ";base64," not in url:
        raise RequestError("image_url must be a base64 data URL (data:image/png;base64,...); "
                           "this server fetches nothing")
    try:
        raw = base64.b64decode(url.split(";base64,", 1)[1], validate=True)
        image = Image.open(io.BytesIO(raw))
        image.load()
    except Exception as err:  # noqa: BLE001 - any undecodable payload is the client's error
        raise RequestError(f"image_url: not a decodable image ({type(err).__name__})") from None
    return image.convert("RGB")


def from_openai_messages(messages: Any, max_images: int) -> list[dict]:
    """OpenAI chat messages -> the HF multimodal format `build_messages` produces."""
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages must be a non-empty list")
    out, images = [], 0
    for msg in messages:
        if not isinstance(msg, dict) or msg.get("role") not in ("system", "user", "assistant"):
            raise RequestError("each message needs a role of system, user or assistant")
        content = msg.get("content")
        if isinstance(content, list):
            parts = []
            for part in content:
                kind = part.get("type") if isinstance(part, dict) else None
                if kind == "text":
                    parts.append({"type": "text", "text": str(part.get("text", ""))})
                elif kind == "image_url":
                    images += 1
                    url = (part.get("image_url") or {}).get("url", "")
                    parts.append({"type": "image", "image": decode_image(url)})
                else:
                    raise RequestError(f"unsupported content part type {kind!r}")
            content = parts
        elif not isinstance(content, str):
            raise RequestError("message content must be a string or a list of parts")
        out.append({"role": msg["role"], "content": content})
    if images > max_images:
        raise RequestError(f"{images} images in one prompt; this server's limit is {max_images}")
    return out


def _message_text(msg: dict) -> str:
    content = msg["content"]
    if isinstance(content, str):
        return content
    if any(p["type"] != "text" for p in content):
        raise RequestError("continue_final_message: the final message must be text only")
    return "".join(p["text"] for p in content)


def sampling(body: dict, default_max_tokens: int) -> tuple[GenerationParams, int, int]:
    """(params, seed, n) of a chat or completion request."""
    for name, ok in (("stream", (None, False)), ("stop", (None, [], "")),
                     ("stop_token_ids", (None, [])), ("logprobs", (None, False, 0)),
                     ("tools", (None, [])), ("best_of", (None, 1)),
                     ("use_beam_search", (None, False)), ("ignore_eos", (None, False)),
                     ("min_tokens", (None, 0)), ("echo", (None, False))):
        if body.get(name) not in ok:
            raise RequestError(f"{name}={body.get(name)!r} is not supported by vtc-lab serve")
    if body.get("min_p") not in (None, 0, 0.0):
        raise RequestError("min_p is not supported by vtc-lab serve (send 0 or nothing)")
    if body.get("skip_special_tokens") is False:
        raise RequestError("skip_special_tokens=false is not supported by vtc-lab serve")
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or default_max_tokens
    temperature = body.get("temperature")
    temperature = 1.0 if temperature is None else float(temperature)
    top_p = 1.0 if body.get("top_p") is None else float(body["top_p"])
    top_k = 0 if body.get("top_k") in (None, -1) else int(body["top_k"])
    rep = 1.0 if body.get("repetition_penalty") is None else float(body["repetition_penalty"])
    n = int(body.get("n") or 1)
    if not (isinstance(max_tokens, int) and max_tokens >= 1) or temperature < 0 \
            or not 0 < top_p <= 1 or top_k < 0 or rep <= 0 or n < 1:
        raise RequestError("invalid sampling parameters (max_tokens >= 1, temperature >= 0, "
                           "0 < top_p <= 1, top_k >= -1, repetition_penalty > 0, n >= 1)")
    greedy = temperature == 0
    params = GenerationParams(max_new_tokens=max_tokens, do_sample=not greedy,
                              temperature=1.0 if greedy else temperature,
                              top_p=1.0 if greedy else top_p, top_k=0 if greedy else top_k,
                              repetition_penalty=rep)
    seed = body.get("seed")
    seed = random.getrandbits(62) if seed is None else int(seed)
    return params, seed, n


def create_app(engine: ServingEngine, model_name: str, *, max_batch_size: int = 8,
               batch_wait_s: float = 0.005, default_max_tokens: int = 1024,
               max_images_per_prompt: int = 64, root: str | None = None,
               on_startup: Callable[[], None] | None = None) -> FastAPI:
    """The app over `engine` (already on its device, in eval mode); `on_startup` runs once the
    server accepts connections."""
    batcher = Batcher(engine, max_batch_size=max_batch_size, wait_s=batch_wait_s)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        if on_startup is not None:
            on_startup()
        yield
        batcher.close()

    app = FastAPI(title="vtc-lab serve", lifespan=lifespan)
    app.state.batcher = batcher
    max_len = int(getattr(engine.model.config.get_text_config(), "max_position_embeddings", 0)
                  or 0) if hasattr(engine.model.config, "get_text_config") else 0

    def check_model(body: dict) -> None:
        name = body.get("model")
        if name not in (None, model_name):
            raise RequestError(f"The model `{name}` does not exist.", 404, "NotFoundError")

    async def run(requests: list[ServedRequest], params: GenerationParams):
        futures = [asyncio.wrap_future(batcher.submit(r, params)) for r in requests]
        return await asyncio.gather(*futures)

    def usage(prompt: list[int], outs: list) -> dict:
        vision = sum(o.context_vision_tokens for o in outs[:1])
        completion = sum(len(o.token_ids) for o in outs)
        return {"prompt_tokens": len(prompt), "completion_tokens": completion,
                "total_tokens": len(prompt) + completion,
                "prompt_tokens_details": {"image_tokens": vision} if vision else None}

    def finish(out) -> str:
        return "stop" if out.stopped else "length"

    async def guarded(handler, raw: Request) -> JSONResponse:
        try:
            body = await raw.json()
        except Exception:  # noqa: BLE001
            return _error("request body is not JSON")
        if not isinstance(body, dict):
            return _error("request body must be a JSON object")
        try:
            check_model(body)
            return JSONResponse(await handler(body))
        except RequestError as err:
            return _error(str(err), err.status, err.kind)
        except Exception as err:  # noqa: BLE001 - report, keep serving
            return _error(f"{type(err).__name__}: {err}", 500, "InternalServerError")

    async def chat(body: dict) -> dict:
        messages = from_openai_messages(body.get("messages"), max_images_per_prompt)
        params, seed, n = sampling(body, default_max_tokens)
        prefix: list[int] = []
        if body.get("continue_final_message"):
            if body.get("add_generation_prompt") is True:
                raise RequestError("continue_final_message and add_generation_prompt cannot "
                                   "both be true")
            if messages[-1]["role"] != "assistant":
                raise RequestError("continue_final_message needs a final assistant message")
            prefix = engine.tokenize(_message_text(messages[-1]))
            messages = messages[:-1]
        elif body.get("add_generation_prompt") is False:
            raise RequestError("add_generation_prompt=false is only supported together with "
                               "continue_final_message=true")
        requests = [ServedRequest(messages=messages, prefix_ids=prefix, seed=seed + i)
                    for i in range(n)]
        outs = await run(requests, params)
        prompt = requests[0].encoded_ids
        choices = []
        for i, out in enumerate(outs):
            choice: dict[str, Any] = {"index": i, "message": {"role": "assistant",
                                                              "content": out.text},
                                      "logprobs": None, "finish_reason": finish(out),
                                      "stop_reason": None}
            if body.get("return_token_ids"):
                choice["token_ids"] = out.token_ids
            if body.get("return_prompt_token_ids") or body.get("return_token_ids"):
                choice["prompt_token_ids"] = prompt
            choices.append(choice)
        resp = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
                "created": int(time.time()), "model": model_name, "choices": choices,
                "usage": usage(prompt, outs)}
        if body.get("return_token_ids"):
            resp["prompt_token_ids"] = prompt
        return resp

    async def completion(body: dict) -> dict:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (list, str)):
            prompt = prompt[0]
        if isinstance(prompt, str):
            ids = engine.tokenize(prompt, add_special_tokens=body.get("add_special_tokens", True))
        elif isinstance(prompt, list) and prompt and all(
                isinstance(t, int) and 0 <= t < len(engine.tokenizer) for t in prompt):
            ids = list(prompt)
        else:
            raise RequestError("prompt must be one string or one non-empty list of token ids "
                               "of this model's vocabulary")
        body = {**body, "max_tokens": body.get("max_tokens") or 16}
        params, seed, n = sampling(body, 16)
        requests = [ServedRequest(messages=[], prompt_ids=ids, seed=seed + i) for i in range(n)]
        outs = await run(requests, params)
        choices = []
        for i, out in enumerate(outs):
            choice: dict[str, Any] = {"index": i, "text": out.text, "logprobs": None,
                                      "finish_reason": finish(out), "stop_reason": None}
            if body.get("return_token_ids"):
                choice["token_ids"] = out.token_ids
                choice["prompt_token_ids"] = ids
            choices.append(choice)
        return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion",
                "created": int(time.time()), "model": model_name, "choices": choices,
                "usage": usage(ids, outs)}

    async def tokenize(body: dict) -> dict:
        if "messages" in body:
            messages = from_openai_messages(body["messages"], max_images_per_prompt)
            if body.get("continue_final_message") or body.get("add_generation_prompt") is False:
                raise RequestError("/tokenize supports messages with add_generation_prompt=true")
            enc = engine.encode(ServedRequest(messages=messages))
            ids = enc["input_ids"][0].tolist()
        elif isinstance(body.get("prompt"), str):
            ids = engine.tokenize(body["prompt"], body.get("add_special_tokens", True))
        else:
            raise RequestError("/tokenize needs `prompt` (a string) or `messages`")
        return {"count": len(ids), "max_model_len": max_len, "tokens": ids}

    async def detokenize(body: dict) -> dict:
        tokens = body.get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
            raise RequestError("/detokenize needs `tokens`, a list of token ids")
        return {"prompt": engine.detokenize(tokens)}

    @app.post("/v1/chat/completions")
    async def chat_route(raw: Request):
        return await guarded(chat, raw)

    @app.post("/v1/completions")
    async def completion_route(raw: Request):
        return await guarded(completion, raw)

    @app.post("/tokenize")
    async def tokenize_route(raw: Request):
        return await guarded(tokenize, raw)

    @app.post("/detokenize")
    async def detokenize_route(raw: Request):
        return await guarded(detokenize, raw)

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": model_name, "object": "model",
                                            "created": int(time.time()), "owned_by": "vtc-lab",
                                            "root": root or model_name, "parent": None,
                                            "max_model_len": max_len}]}

    @app.get("/health")
    async def health():
        return JSONResponse({})

    @app.get("/metrics/batches")
    async def batch_stats():
        """How the batcher has grouped requests (the perf script reads it)."""
        return {"batches": batcher.batches, "rows": batcher.rows}

    return app
