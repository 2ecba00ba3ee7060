"""Faults injected between the OpenAI engine and a real `vtc-lab serve`: a proxy on loopback
that fails requests (HTTP 503, 400) or strips fields, so retries, backoff and capability checks
run against real HTTP."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.serve.test_openai_engine import PROBLEMS, comparable
from vtc_lab.infer.config import LoopConfig
from vtc_lab.infer.engine_config import EngineConfig
from vtc_lab.infer.loop import run_loop
from vtc_lab.infer.openai_engine import EngineUnavailableError, OpenAIEngine


class Proxy:
    """Forwards to `upstream`; `fail(path, n, status)` makes the next n requests to `path` fail;
    `strip_token_ids` removes the token ids from chat responses (a server without them)."""

    def __init__(self, upstream: str):
        self.upstream = upstream[: -len("/v1")]
        self.failures: dict[str, list[int]] = {}
        self.calls: dict[str, int] = {}
        self.strip_token_ids = False
        app = FastAPI()

        @app.api_route("/{path:path}", methods=["GET", "POST"])
        async def forward(path: str, request: Request):
            path = "/" + path
            self.calls[path] = self.calls.get(path, 0) + 1
            pending = self.failures.get(path)
            if pending:
                status = pending.pop(0)
                return JSONResponse(status_code=status, content={"error": {
                    "message": f"injected {status}", "type": "Injected", "code": status}})
            async with httpx.AsyncClient(timeout=120) as client:
                resp = await client.request(request.method, self.upstream + path,
                                            content=await request.body(),
                                            headers={"content-type": "application/json"})
            body = resp.json()
            if self.strip_token_ids and path.endswith("/chat/completions"):
                body.pop("prompt_token_ids", None)
                for choice in body.get("choices", []):
                    choice.pop("token_ids", None)
                    choice.pop("prompt_token_ids", None)
            return JSONResponse(status_code=resp.status_code, content=body)

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]},
                                       daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)

    def fail(self, path: str, n: int, status: int) -> None:
        self.failures[path] = [status] * n

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture()
def proxy(server):
    p = Proxy(server.url)
    yield p
    p.stop()


def engine_for(url: str, **kw) -> OpenAIEngine:
    return OpenAIEngine(EngineConfig(name="openai", base_urls=[url], retry_backoff_s=0.1, **kw))


def test_transient_errors_are_retried_with_backoff(proxy, server):
    cfg = LoopConfig(mode="none", max_rounds=2, max_new_tokens=6, do_sample=False, batch_size=3)
    direct = engine_for(server.url)
    direct.check(["none"])
    expected = run_loop(direct, PROBLEMS, cfg, None, "sys", progress=False)
    direct.close()

    flaky = engine_for(proxy.url)
    flaky.check(["none"])
    before = proxy.calls.get("/v1/chat/completions", 0)
    proxy.fail("/v1/chat/completions", 3, 503)
    start = time.perf_counter()
    got = run_loop(flaky, PROBLEMS, cfg, None, "sys", progress=False)
    elapsed = time.perf_counter() - start
    flaky.close()
    assert comparable(got) == comparable(expected)
    # 6 rounds answered + 3 injected failures, each retried after a backoff of >= 0.1 s
    assert proxy.calls["/v1/chat/completions"] - before == 6 + 3
    assert elapsed >= 0.1


def test_retries_give_up_naming_the_server(proxy):
    engine = engine_for(proxy.url, max_retries=2)
    engine.check(["none"])
    proxy.fail("/v1/chat/completions", 10, 503)
    cfg = LoopConfig(mode="none", max_rounds=1, max_new_tokens=4, do_sample=False, batch_size=1)
    with pytest.raises(EngineUnavailableError, match=f"after 3 attempts; last: {proxy.url}"):
        run_loop(engine, PROBLEMS[:1], cfg, None, "sys", progress=False)
    engine.close()


def test_a_client_error_stops_at_once_with_the_servers_message(proxy):
    engine = engine_for(proxy.url)
    engine.check(["none"])
    before = proxy.calls.get("/v1/chat/completions", 0)
    proxy.fail("/v1/chat/completions", 1, 400)
    cfg = LoopConfig(mode="none", max_rounds=1, max_new_tokens=4, do_sample=False, batch_size=1)
    with pytest.raises(EngineUnavailableError, match=f"{proxy.url}.*injected 400"):
        run_loop(engine, PROBLEMS[:1], cfg, None, "sys", progress=False)
    assert proxy.calls["/v1/chat/completions"] - before == 1  # not retried
    engine.close()


def test_a_server_without_token_ids_is_refused_before_any_work(proxy):
    proxy.strip_token_ids = True
    engine = engine_for(proxy.url)
    with pytest.raises(EngineUnavailableError, match=f"{proxy.url} does not return token ids"):
        engine.check(["optical", "text"])
    engine.close()


def test_a_server_without_token_id_prompts_is_refused_for_the_text_loop(proxy):
    proxy.fail("/v1/completions", 1, 400)
    engine = engine_for(proxy.url)
    with pytest.raises(EngineUnavailableError, match=f"loop=text .*{proxy.url}/completions"):
        engine.check(["text"])
    engine.check(["none"])  # the other loops do not need it
    engine.close()
