"""`OpenAIEngine`: the loops' `Engine` over any OpenAI-compatible server (vLLM, SGLang,
`vtc-lab serve`), through the `openai` client.

What travels over the wire (see docs/engines.md for the server-by-server table):

- Rounds without an assistant prefix (optical, none, and round 1 of text) are chat completions:
  `build_messages`' system and user turns, each memory page a PNG data-URL `image_url` part in
  the order `build_messages` put it, and the loop's sampling settings (`temperature`, `top_p`,
  `seed`; `top_k`, `repetition_penalty`, `min_p` as vLLM/SGLang extra body fields; greedy is
  `temperature=0`). `return_token_ids` (vLLM) and `return_prompt_token_ids` (SGLang) ask for the
  generated and prompt token ids: vLLM's `ChatCompletionRequest`
  (vllm/entrypoints/openai/chat_completion/protocol.py) returns `choices[i].token_ids` and a
  top-level `prompt_token_ids`; SGLang's (python/sglang/srt/entrypoints/openai/protocol.py)
  returns both per choice.
- The text-memory loop continues its own assistant turn from the exact ids it generated, as the
  in-process engine does: the templated prompt ids (from the round-1 response, or the server's
  `/tokenize` with `messages`) plus the prefix ids go to `/v1/completions` as a token-id `prompt`
  (both servers accept `prompt: list[int]`), so nothing the model wrote is re-tokenized.
  Continuing a final assistant message as text (`continue_final_message=true,
  add_generation_prompt=false`, the documented extra parameter of both servers) re-tokenizes the
  prefix, which need not give the same ids, so it is not used for the loop.
- `finish_reason == "stop"` is `stopped`; `usage.prompt_tokens` minus the image placeholders in
  the returned prompt ids are the text tokens; memory text tokens are counted with the server's
  `/tokenize` (vLLM's TokenizeCompletionRequest, at the server root, not under /v1).

Requests of one `generate` call run concurrently (at most `max_concurrency`), spread over the
servers by how many requests each has in flight; a transient failure (connection, timeout,
408/409/429/5xx) is retried on the next server after an exponential backoff
(`vtc_lab.infer.openai_servers.ServerPool`). Each request carries the loop's per-sample seed, so
which server answers does not change what is sampled. The wire format (messages, pages as PNG
data URLs, prompt ids) is `vtc_lab.infer.openai_wire`; answers are checked and failures
classified in `vtc_lab.infer.openai_answers`.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from vtc_lab.infer.engine_api import GenerationOutput, GenerationParams, GenerationRequest
from vtc_lab.infer.engine_config import EngineConfig
from vtc_lab.infer.openai_answers import (ContextOverflowError, checked_answer, checked_json,
                                          error_cause, error_message)
from vtc_lab.infer.openai_servers import EngineUnavailableError, ServerPool
from vtc_lab.infer.openai_wire import (IMAGE_TOKENS, has_images, image_data_url, prompt_ids,
                                       to_openai_messages)

if TYPE_CHECKING:
    from vtc_lab.infer.config import EvalConfig

# what this module offered before its wire format and server pool had modules of their own
__all__ = ["EngineUnavailableError", "IMAGE_TOKENS", "OpenAIEngine", "build_openai_engine",
           "image_data_url", "to_openai_messages"]


def build_openai_engine(cfg: EvalConfig) -> OpenAIEngine:
    """`vtc-lab eval`'s engine over servers (registered as `openai` in `vtc_lab.infer.engines`):
    connected and checked for what the configured loops need, so an unreachable server or a
    wrong model fails before any work."""
    engine = OpenAIEngine(cfg.engine)
    try:
        engine.check(cfg.engine_modes)
    except BaseException:
        engine.close()
        raise
    return engine


class OpenAIEngine:
    """The `Engine` protocol over one or more OpenAI-compatible servers (see the module doc)."""

    def __init__(self, cfg: EngineConfig):
        import logging

        import openai

        # The client's HTTP library logs every request at INFO: thousands of lines per eval.
        for name in ("httpx", "httpx2"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self.cfg = cfg
        self.urls = cfg.normalized_urls
        key = os.environ.get(cfg.api_key_env) or "EMPTY"
        self.clients = {u: openai.OpenAI(base_url=u, api_key=key, timeout=cfg.timeout_s,
                                         max_retries=0) for u in self.urls}
        # vLLM serves /tokenize at the root, next to /v1, not under it.
        self.roots = {u: openai.OpenAI(base_url=u[: -len("/v1")], api_key=key,
                                       timeout=cfg.connect_timeout_s, max_retries=0)
                      for u in self.urls}
        self.model: str | None = cfg.model
        self.image_token_ids: set[int] = set()
        self.can_tokenize = False
        self.servers = ServerPool(self.urls, cfg)
        self._lock = threading.Lock()  # guards the prompt-id cache
        self._pool = ThreadPoolExecutor(max_workers=cfg.max_concurrency,
                                        thread_name_prefix="openai-engine")
        # ConcurrentEngine: the loop drives samples one by one, this many in flight
        self.max_in_flight = cfg.max_concurrency if cfg.per_sample else 0
        self._prompt_ids: OrderedDict[str, list[int]] = OrderedDict()
        self._no_tokenize: list[str] = []

    # -- checks before any work -----------------------------------------------------------
    def check(self, modes: Sequence[str]) -> None:
        """Fail now, naming the URL, if a server is unreachable, does not serve the model, or
        cannot do what the loops in `modes` need (token ids back; token-id prompts for `text`;
        a countable image placeholder for `optical`)."""
        import openai

        served: dict[str, list[str]] = {}
        for url in self.urls:
            client = self.clients[url].with_options(timeout=self.cfg.connect_timeout_s)
            try:
                served[url] = [m.id for m in client.models.list().data]
            except openai.APIConnectionError as err:
                raise EngineUnavailableError(
                    f"engine=openai: cannot reach the server at {url} ({error_cause(err)}); start it "
                    "(vtc-lab serve / vllm serve) or fix engine.base_urls") from None
            except openai.APIStatusError as err:
                raise EngineUnavailableError(
                    f"engine=openai: {url}/models answered HTTP {err.status_code}: "
                    f"{error_message(err)} (an OpenAI-compatible server? wrong API key in "
                    f"${self.cfg.api_key_env}?)") from None
        if self.model is None:
            names = {tuple(v) for v in served.values()}
            if len(names) != 1 or len(next(iter(names))) != 1:
                raise EngineUnavailableError(
                    f"engine=openai: set engine.model; the servers list {served}")
            self.model = next(iter(names))[0]
        for url, names in served.items():
            if self.model not in names:
                raise EngineUnavailableError(
                    f"engine=openai: the server at {url} does not serve model {self.model!r} "
                    f"(it serves {names}); fix engine.model")
        self._no_tokenize = [url for url in self.urls if not self._tokenize_probe(url)]
        self.can_tokenize = not self._no_tokenize
        if self.can_tokenize:  # also kept out of text memory, as the HF engine does
            candidates = [self.cfg.image_token] if self.cfg.image_token else list(IMAGE_TOKENS)
            for text in candidates:
                ids = self._tokenize(text, url=self.urls[0])
                if len(ids) == 1:
                    self.image_token_ids.add(ids[0])
        for url in self.urls:
            self._probe_generation(url, text="text" in modes)
        if "optical" in modes:
            self._detect_image_token()

    def _tokenize_probe(self, url: str) -> bool:
        try:
            self._post_root(url, "/tokenize", {"model": self.model, "prompt": "a",
                                               "add_special_tokens": False})
            return True
        except Exception:  # noqa: BLE001 - an optional endpoint: absent is a valid answer
            return False

    def _detect_image_token(self) -> None:
        """Image placeholder ids (their count in the prompt ids is the vision tokens), checked
        with a one-page probe: a server whose prompt ids do not expand placeholders fails here."""
        if not self.can_tokenize:
            raise EngineUnavailableError(
                f"engine=openai: loop=optical counts vision and memory text tokens with the "
                f"server's /tokenize (vLLM, SGLang), which {self._no_tokenize[0]} does not serve")
        candidates = [self.cfg.image_token] if self.cfg.image_token else list(IMAGE_TOKENS)
        if not self.image_token_ids:
            raise EngineUnavailableError(
                f"engine=openai: none of {candidates} is a single token of {self.model!r} at "
                f"{self.urls[0]}; set engine.image_token to the model's image placeholder")
        from PIL import Image

        blank = Image.new("RGB", (64, 64), "white")
        page = [{"role": "user", "content": [{"type": "image", "image": blank},
                                             {"type": "text", "text": "1+1="}]}]
        for url in self.urls:
            try:
                out = self._chat(url, to_openai_messages(page),
                                 GenerationParams(max_new_tokens=1, do_sample=False), seed=0,
                                 timeout=self.cfg.connect_timeout_s * 6)
            except Exception as err:  # noqa: BLE001 - reported with the URL, then stop
                raise EngineUnavailableError(
                    f"engine=openai: a one-image chat completion at {url} failed (a vision "
                    f"model? multimodal limits?): {error_message(err)}") from None
            ids = prompt_ids(out) or []
            if not any(t in self.image_token_ids for t in ids):
                raise EngineUnavailableError(
                    f"engine=openai: the prompt ids {url} returns for an image hold no image "
                    f"placeholder ({sorted(self.image_token_ids)}); cannot count vision tokens")

    def _probe_generation(self, url: str, text: bool) -> None:
        """One tiny request per capability the loops rely on, against each server."""
        probe = [{"role": "user", "content": [{"type": "text", "text": "1+1="}]}]
        try:
            out = self._chat(url, probe, GenerationParams(max_new_tokens=1, do_sample=False),
                             seed=0, timeout=self.cfg.connect_timeout_s * 6)
        except Exception as err:  # noqa: BLE001 - reported with the URL, then stop
            raise EngineUnavailableError(f"engine=openai: a 1-token chat completion at {url} "
                                         f"failed: {error_message(err)}") from None
        choice = out["choices"][0]
        if choice.get("token_ids") is None or prompt_ids(out) is None:
            raise EngineUnavailableError(
                f"engine=openai: {url} does not return token ids (vLLM needs `return_token_ids`, "
                ">= 0.10.2; SGLang `return_token_ids`/`return_prompt_token_ids`); the loops need "
                "them for exact token counts and the text-memory baseline")
        if text:
            try:
                comp = self._completion(url, prompt_ids(out), GenerationParams(
                    max_new_tokens=1, do_sample=False), seed=0,
                    timeout=self.cfg.connect_timeout_s * 6)
            except Exception as err:  # noqa: BLE001
                raise EngineUnavailableError(
                    f"engine=openai: loop=text continues its own turn from token ids through "
                    f"{url}/completions with a token-id prompt, which failed: "
                    f"{error_message(err)}") from None
            if comp["choices"][0].get("token_ids") is None:
                raise EngineUnavailableError(
                    f"engine=openai: {url}/completions does not return token ids "
                    "(return_token_ids); loop=text needs them")

    # -- Engine ----------------------------------------------------------------------------
    def generate(self, requests: Sequence[GenerationRequest],
                 params: GenerationParams) -> list[GenerationOutput]:
        if self.model is None:
            raise RuntimeError("OpenAIEngine.generate before check(): call engine.check(modes)")
        futures = [self.submit(r, params) for r in requests]
        return [f.result() for f in futures]

    def submit(self, request: GenerationRequest,
               params: GenerationParams) -> Future[GenerationOutput]:
        """One request, run on the engine's pool (`ConcurrentEngine`: the loop's per-sample
        schedule keeps at most `max_in_flight` of these pending)."""
        if self.model is None:
            raise RuntimeError("OpenAIEngine.submit before check(): call engine.check(modes)")
        return self._pool.submit(self._one, request, params)

    def _one(self, request: GenerationRequest, params: GenerationParams) -> GenerationOutput:
        start = time.perf_counter()
        try:
            return self._generate_one(request, params, start)
        except ContextOverflowError as err:  # this sample cannot go on; the others can
            return GenerationOutput(text="", token_ids=[], context_text_tokens=0,
                                    context_vision_tokens=0, stopped=False,
                                    generate_s=time.perf_counter() - start, overflow=str(err))

    def _generate_one(self, request: GenerationRequest, params: GenerationParams,
                      start: float) -> GenerationOutput:
        key = json.dumps(request.messages, sort_keys=True, default=repr) \
            if not has_images(request.messages) else None
        if request.prefix_ids:
            base = self._base_ids(request.messages, key)
            resp = self.servers.run(lambda url: self._completion(
                url, base + list(request.prefix_ids), params, request.seed))
            choice = resp["choices"][0]
            text, prompt = choice.get("text") or "", base + list(request.prefix_ids)
        else:
            messages = to_openai_messages(request.messages)
            resp = self.servers.run(lambda url: self._chat(url, messages, params, request.seed))
            choice = resp["choices"][0]
            text = (choice.get("message") or {}).get("content") or ""
            prompt = prompt_ids(resp)
            if key is not None and prompt is not None:
                self._remember_prompt(key, prompt)
        return self._output(resp, choice, text, prompt, time.perf_counter() - start)

    def _output(self, resp: dict, choice: dict, text: str, prompt: list[int] | None,
                elapsed: float) -> GenerationOutput:
        ids = [int(t) for t in choice.get("token_ids") or []]
        stopped = choice.get("finish_reason") == "stop"
        usage = resp.get("usage") or {}
        prompt_tokens = int(usage.get("prompt_tokens") or (len(prompt) if prompt else 0))
        vision = sum(1 for t in prompt or () if t in self.image_token_ids)
        # The stop token ends the ids when the model ended its turn (vLLM and SGLang both keep
        # the EOS in token_ids); image placeholders never go back into a prompt as text memory.
        memory = ids[:-1] if stopped and ids else list(ids)
        memory = [t for t in memory if t not in self.image_token_ids]
        return GenerationOutput(text=text, token_ids=ids,
                                context_text_tokens=prompt_tokens - vision,
                                context_vision_tokens=vision, stopped=stopped, generate_s=elapsed,
                                memory_ids=memory)

    def _base_ids(self, messages: list[dict], key: str | None) -> list[int]:
        """The templated prompt ids of a text-only request (cached from its round-1 response;
        else the server's /tokenize with `messages`, vLLM's TokenizeChatRequest)."""
        if key is not None:
            with self._lock:
                if key in self._prompt_ids:
                    self._prompt_ids.move_to_end(key)
                    return list(self._prompt_ids[key])
        if not self.can_tokenize or key is None:
            where = self._no_tokenize[0] if self._no_tokenize else self.urls[0]
            raise EngineUnavailableError(
                "engine=openai: continuing an assistant turn needs its prompt's token ids; the "
                f"server at {where} has no /tokenize to template them")
        body = {"model": self.model, "messages": to_openai_messages(messages),
                "add_generation_prompt": True, "add_special_tokens": False}
        ids = self.servers.run(lambda url: self._post_root(url, "/tokenize", body))["tokens"]
        self._remember_prompt(key, ids)
        return list(ids)

    def _remember_prompt(self, key: str, ids: list[int]) -> None:
        with self._lock:
            self._prompt_ids[key] = list(ids)
            self._prompt_ids.move_to_end(key)
            while len(self._prompt_ids) > 65536:
                self._prompt_ids.popitem(last=False)

    def count_text_tokens(self, text: str) -> int:
        """Tokens of `text` by the server's own tokenizer (/tokenize), as the in-process engine
        counts with the backbone's; `check` refuses loop=optical on a server without it."""
        if not self.can_tokenize:
            raise EngineUnavailableError(
                f"engine=openai: {self._no_tokenize[0]} has no /tokenize endpoint to count "
                "text tokens")
        return len(self._tokenize(text))

    def _tokenize(self, text: str, url: str | None = None) -> list[int]:
        body = {"model": self.model, "prompt": text, "add_special_tokens": False}
        if url is not None:
            return list(self._post_root(url, "/tokenize", body)["tokens"])
        return list(self.servers.run(lambda u: self._post_root(u, "/tokenize", body))["tokens"])

    @property
    def served_model(self) -> str | None:
        """The served model's name (`engine.model`, or the one the servers list, once checked):
        part of the predictions' identity, in place of the in-process model's config."""
        return self.model

    def kv_bytes_per_token(self) -> int | None:
        """Unknown behind an API (the server holds the cache): KV metrics are not reported."""
        return None

    def logits_processors(self, requests, params, device) -> list:
        """No local logits: sampling happens on the server."""
        return []

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        for client in (*self.clients.values(), *self.roots.values()):
            client.close()

    # -- wire --------------------------------------------------------------------------------
    def _sampling(self, params: GenerationParams, seed: int) -> tuple[dict, dict]:
        """(standard fields, extra body fields) of one request."""
        std: dict[str, Any] = {"seed": int(seed) % (2**63)}
        # top_k / min_p / repetition_penalty always sent: a server otherwise falls back to the
        # model's generation_config.json (Qwen3-VL ships top_k=20), not to "off".
        extra: dict[str, Any] = {"top_k": -1, "min_p": 0.0,
                                 "repetition_penalty": params.repetition_penalty,
                                 "skip_special_tokens": True}
        if params.do_sample:
            std.update(temperature=params.temperature, top_p=params.top_p)
            if params.top_k > 0:
                extra["top_k"] = params.top_k
        else:
            std.update(temperature=0.0, top_p=1.0)
        return std, extra

    def _chat(self, url: str, messages: list[dict], params: GenerationParams, seed: int,
              timeout: float | None = None) -> dict:
        std, extra = self._sampling(params, seed)
        extra.update(return_token_ids=True, return_prompt_token_ids=True)
        client = self._client(url, timeout)
        raw = client.chat.completions.with_raw_response.create(
            model=self.model, messages=messages, max_completion_tokens=params.max_new_tokens,
            n=1, extra_body=extra, **std)
        return checked_answer(raw, "/chat/completions", "choices")

    def _completion(self, url: str, prompt: list[int], params: GenerationParams, seed: int,
                    timeout: float | None = None) -> dict:
        std, extra = self._sampling(params, seed)
        extra.update(return_token_ids=True)
        client = self._client(url, timeout)
        raw = client.completions.with_raw_response.create(
            model=self.model, prompt=prompt, max_tokens=params.max_new_tokens, n=1,
            extra_body=extra, **std)
        return checked_answer(raw, "/completions", "choices")

    def _client(self, url: str, timeout: float | None):
        client = self.clients[url]
        return client if timeout is None else client.with_options(timeout=timeout)

    def _post_root(self, url: str, path: str, body: dict) -> dict:
        # cast_to=object: the client hands back the decoded JSON, or the body text when the
        # answer is not JSON (checked like any other answer)
        return checked_json(self.roots[url].post(path, body=body, cast_to=object), path, "tokens")
