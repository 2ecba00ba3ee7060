"""A small OpenAI-compatible server on 127.0.0.1 (standard library only): a test double for a
vLLM server, real HTTP, no torch.

Its "model" is a deterministic function of the prompt's token ids (and the seed when sampling):
each round either ends the turn with `</think><answer>..</answer>` or fills the budget with
filler, so the loops run several rounds. Tokens are characters (`ord`), except the image
placeholder `<|image_pad|>` (one id, four per image in a chat prompt) and the end-of-turn id.
It answers what the OpenAI engine asks of vLLM: /v1/models, /tokenize (text or chat messages),
chat completions with `token_ids` / `prompt_token_ids`, completions with a token-id prompt.

Faults for the client's error handling, each real HTTP:
- `max_model_len`: a prompt + budget past it is refused with HTTP 400 and the server's message
  (`overflow_style`: the wording of a server in `OVERFLOW_MESSAGES`);
- `faults`: a marker string -> what to answer when a prompt holds it: `html` (200 text/html),
  `no_choices` (200 JSON without `choices`), `overflow` (the 400 above, whatever the length).
`replies`: a marker string -> the text to answer (ending the turn) when a prompt holds it, for a
known transcript (the transcription eval). `latency_s` + a uniform `jitter_s` delay each generation (deterministic per prompt), to stand in
for a busy server in the pipelining benchmark (experiments/perf/openai_pipeline.py); `slow`
(marker -> seconds) adds a delay to the generations whose prompt holds the marker.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

IMAGE = "<|image_pad|>"
IMAGE_ID = 151655
EOS_ID = 151645
VISION_PER_IMAGE = 4

OVERFLOW_MESSAGES = {
    # vLLM >= 0.11 (vllm/renderers/params.py, the token-length check of the renderer)
    "vllm": ("This model's maximum context length is {limit} tokens. However, you requested "
             "{new} output tokens and your prompt contains {prompt} input tokens, for a total of "
             "{total} tokens. Please reduce the length of the input prompt or the number of "
             "requested output tokens."),
    # older vLLM OpenAI servers (serving_engine.py, _validate_input)
    "vllm_legacy": ("This model's maximum context length is {limit} tokens. However, you "
                    "requested {total} tokens ({prompt} in the messages, {new} in the "
                    "completion). Please reduce the length of the messages or completion."),
    # vLLM's engine-side check (v1 processor, _validate_model_input)
    "vllm_decoder": ("The decoder prompt (length {prompt}) is longer than the maximum model "
                     "length of {limit}. Make sure that `max_model_len` is no smaller than the "
                     "number of text tokens plus multimodal tokens."),
    # SGLang (srt/managers/tokenizer_manager.py, _validate_one_request): prompt alone too long
    "sglang_input": ("The input ({prompt} tokens) is longer than the model's context length "
                     "({limit} tokens)."),
    # ... prompt + budget too long
    "sglang_total": ("Requested token count exceeds the model's maximum context length of "
                     "{limit} tokens. You requested a total of {total} tokens: {prompt} tokens "
                     "from the input messages and {new} tokens for the completion. Please "
                     "reduce the number of tokens in the input messages or the completion to "
                     "fit within the limit."),
    # api.openai.com (the error's code is `context_length_exceeded`)
    "openai": ("This model's maximum context length is {limit} tokens. However, your messages "
               "resulted in {total} tokens. Please reduce the length of the messages."),
}


def tokenize(text: str) -> list[int]:
    """Characters as ids; `<|image_pad|>` is one token."""
    ids: list[int] = []
    for i, chunk in enumerate(text.split(IMAGE)):
        if i:
            ids.append(IMAGE_ID)
        ids.extend(ord(c) for c in chunk)
    return ids


def detokenize(ids: list[int]) -> str:
    return "".join(IMAGE if t == IMAGE_ID else chr(t) for t in ids if t != EOS_ID)


def template(messages: list[dict]) -> list[int]:
    """A chat template: role headers, text parts, `VISION_PER_IMAGE` placeholders per image."""
    ids: list[int] = []
    for msg in messages:
        ids += tokenize(f"<|im_start|>{msg['role']}\n")
        content = msg["content"]
        for part in ([{"type": "text", "text": content}] if isinstance(content, str) else content):
            if part["type"] == "text":
                ids += tokenize(part["text"])
            else:
                ids += [IMAGE_ID] * VISION_PER_IMAGE
        ids += tokenize("<|im_end|>\n")
    return ids + tokenize("<|im_start|>assistant\n")


def generate(prompt: list[int], budget: int, seed: int | None) -> tuple[list[int], bool]:
    """(new ids, ended the turn) for a prompt: a pure function of its inputs."""
    h = int.from_bytes(hashlib.sha256(f"{prompt}|{seed}".encode()).digest()[:8], "little")
    if h % 3 == 0:
        ids = tokenize(f"so</think><answer>{h % 7}</answer>")[:budget]
        return (ids + [EOS_ID], True) if len(ids) < budget else (ids, False)
    filler = f"step {h % 97} then "
    return tokenize((filler * (budget // len(filler) + 1))[:budget]), False


class FakeOpenAIServer:
    """The server, serving in a daemon thread until `stop()`; `url` is its OpenAI base URL and
    `calls` counts requests per path."""

    def __init__(self, *, model: str = "fake-vl", latency_s: float = 0.0, jitter_s: float = 0.0,
                 max_model_len: int | None = None, overflow_style: str = "vllm",
                 faults: dict[str, str] | None = None, slow: dict[str, float] | None = None,
                 replies: dict[str, str] | None = None):
        self.model = model
        self.slow = dict(slow or {})
        self.latency_s, self.jitter_s = latency_s, jitter_s
        self.max_model_len = max_model_len
        self.overflow_style = overflow_style
        self.faults = dict(faults or {})
        self.replies = dict(replies or {})
        self.calls: Counter[str] = Counter()
        self.in_flight = self.peak_in_flight = 0
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                owner._count(self.path)
                if self.path == "/v1/models":
                    self._send(200, {"object": "list", "data": [
                        {"id": owner.model, "object": "model", "owned_by": "fake"}]})
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self) -> None:
                owner._count(self.path)
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                status, payload, ctype = owner._answer(self.path, body)
                self._send(status, payload, ctype)

            def _send(self, status: int, payload, ctype: str = "application/json") -> None:
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def _count(self, path: str) -> None:
        with self._lock:
            self.calls[path] += 1

    def _answer(self, path: str, body: dict) -> tuple[int, object, str]:
        if path == "/tokenize":
            ids = template(body["messages"]) if "messages" in body else tokenize(body["prompt"])
            return 200, {"tokens": ids, "count": len(ids), "max_model_len": self.max_model_len}, \
                "application/json"
        if path == "/v1/chat/completions":
            prompt = template(body["messages"])
        elif path == "/v1/completions":
            prompt = [int(t) for t in body["prompt"]]
        else:
            return 404, {"error": {"message": f"no route {path}"}}, "application/json"
        if body.get("model") != self.model:
            return 404, {"error": {"message": f"The model `{body.get('model')}` does not exist.",
                                   "type": "NotFoundError", "code": 404}}, "application/json"
        budget = int(body.get("max_completion_tokens") or body.get("max_tokens") or 16)
        text = detokenize(prompt)
        fault = next((kind for marker, kind in self.faults.items() if marker in text), None)
        if fault == "html":
            return 200, b"<html><body><h1>Welcome to nginx!</h1></body></html>", "text/html"
        if fault == "no_choices":
            return 200, {"id": "x", "object": "chat.completion", "created": 0,
                         "model": self.model}, "application/json"
        limit = self.max_model_len
        if fault == "overflow" or (limit is not None and len(prompt) + budget > limit):
            limit = limit if limit is not None else len(prompt)
            msg = OVERFLOW_MESSAGES[self.overflow_style].format(
                limit=limit, total=len(prompt) + budget, prompt=len(prompt), new=budget)
            err = {"message": msg, "type": "BadRequestError", "param": None, "code": 400}
            if self.overflow_style == "openai":
                err.update(type="invalid_request_error", param="messages",
                           code="context_length_exceeded")
            # vLLM and SGLang answer their ErrorResponse at the top level, OpenAI under "error"
            return 400, {"error": err} if self.overflow_style == "openai" \
                else {"object": "error", **err}, "application/json"
        sampled = float(body.get("temperature") or 0.0) > 0
        ids, stopped = generate(prompt, budget, body.get("seed") if sampled else None)
        reply = next((r for marker, r in self.replies.items() if marker in text), None)
        if reply is not None:
            ids, stopped = tokenize(reply)[:budget] + [EOS_ID], True
        with self._lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            rng = random.Random(hashlib.sha256(repr(prompt).encode()).digest())
            extra = sum(delay for marker, delay in self.slow.items() if marker in text)
            time.sleep(self.latency_s + self.jitter_s * rng.random() + extra)
        finally:
            with self._lock:
                self.in_flight -= 1
        usage = {"prompt_tokens": len(prompt), "completion_tokens": len(ids),
                 "total_tokens": len(prompt) + len(ids)}
        finish = "stop" if stopped else "length"
        if path == "/v1/completions":
            return 200, {"id": "c", "object": "text_completion", "created": 0, "model": self.model,
                         "choices": [{"index": 0, "text": detokenize(ids), "token_ids": ids,
                                      "finish_reason": finish}], "usage": usage}, \
                "application/json"
        return 200, {"id": "c", "object": "chat.completion", "created": 0, "model": self.model,
                     "choices": [{"index": 0, "finish_reason": finish, "token_ids": ids,
                                  "message": {"role": "assistant", "content": detokenize(ids)}}],
                     "prompt_token_ids": prompt, "usage": usage}, "application/json"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)

    def __enter__(self) -> "FakeOpenAIServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
