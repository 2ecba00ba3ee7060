"""`vtc-lab serve` keeps its memory bounded and answers malformed or oversized requests with
400 (413 for a body over the limit) and the OpenAI error body naming the field, before any
work; the server stays up. The hostile requests also run against a server whose address space
is capped (RLIMIT_AS): decoding what they declare would not fit there."""

from __future__ import annotations

import base64
import io
import resource

import httpx
import pytest
from PIL import Image

from tests.serve.conftest import Server

CAP_BYTES = 3 << 30
"""Address-space cap of the capped server: ~1.3 GB of it is the idle server (torch, threads);
65 decoded 16-megapixel images alone would take 3.2 GB."""


def png_url(side: int) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (side, side), "white").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def images_message(url: str, count: int) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}] * count
             + [{"type": "text", "text": "read"}]}]


def cap_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CAP_BYTES, CAP_BYTES))


@pytest.fixture(scope="module")
def capped(ckpt, tmp_path_factory):
    srv = Server(ckpt, tmp_path_factory.mktemp("capped"), preexec_fn=cap_address_space)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def big_images() -> dict[str, str]:
    return {"16mp": png_url(4096), "50mp": png_url(7072), "small": png_url(32)}


def post(srv: Server, path: str, body=None, content: bytes | None = None) -> httpx.Response:
    return httpx.post(srv.url + path, json=body, content=content, timeout=120,
                      headers={"content-type": "application/json"})


def error_of(resp: httpx.Response) -> str:
    body = resp.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == resp.status_code
    return body["error"]["message"]


def assert_serving(srv: Server) -> None:
    assert httpx.get(srv.root + "/health", timeout=30).status_code == 200
    resp = post(srv, "/chat/completions", {"messages": [{"role": "user", "content": "hi"}],
                                           "max_tokens": 2, "temperature": 0})
    assert resp.status_code == 200, resp.text


def vm_peak_kb(srv: Server) -> int:
    for line in open(f"/proc/{srv.proc.pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_hostile_requests_under_an_address_space_cap_get_4xx_and_the_server_stays_up(
        capped, big_images):
    before = vm_peak_kb(capped)
    cases = [
        (images_message(big_images["16mp"], 65), 400, "65 images in one prompt"),
        (images_message(big_images["50mp"], 64), 400, "max_image_pixels"),
        (images_message(big_images["16mp"], 5), 400, "max_request_pixels"),
        ([{"role": "user", "content": "x" * 10_000_000}], 400, "max_prompt_chars"),
    ]
    for messages, status, match in cases:
        resp = post(capped, "/chat/completions", {"messages": messages, "max_tokens": 2})
        assert resp.status_code == status, resp.text[:300]
        assert match in error_of(resp)
    resp = post(capped, "/completions", {"prompt": "x" * 10_000_000, "max_tokens": 2})
    assert resp.status_code == 400 and "max_prompt_chars" in error_of(resp)
    resp = post(capped, "/completions", content=b'{"prompt": "' + b"x" * (40 << 20) + b'"}')
    assert resp.status_code == 413 and "max_request_bytes" in error_of(resp)
    assert capped.proc.poll() is None
    assert_serving(capped)
    # nothing was decoded: the peak resident memory grew by far less than one decoded image set
    assert vm_peak_kb(capped) - before < 400_000


def test_the_image_count_is_refused_before_any_image_is_decoded(server):
    """65 images that are not even images: the count is checked first, so the answer names the
    count, not the undecodable payload."""
    junk = "data:image/png;base64," + base64.b64encode(b"not a png").decode()
    resp = post(server, "/chat/completions", {"messages": images_message(junk, 65),
                                              "max_tokens": 2})
    assert resp.status_code == 400 and "65 images" in error_of(resp)


def test_remote_image_urls_are_refused(server):
    resp = post(server, "/chat/completions", {
        "messages": images_message("https://example.com/a.png", 1), "max_tokens": 2})
    assert resp.status_code == 400 and "fetches nothing" in error_of(resp)


def test_the_advertised_context_length_is_enforced(server):
    models = httpx.get(server.url + "/models", timeout=30).json()["data"][0]
    limit = models["max_model_len"]
    assert limit == 32768
    cases = [("/completions", {"prompt": [5] * 40_000, "max_tokens": 15}, 40_015),
             ("/completions", {"prompt": [5] * 32_760, "max_tokens": 9}, 32_769),
             ("/chat/completions", {"messages": [{"role": "user", "content": "hi"}],
                                    "max_tokens": 40_000}, None)]
    for path, body, total in cases:
        resp = post(server, path, body)
        assert resp.status_code == 400, resp.text[:300]
        message = error_of(resp)
        assert message.startswith(f"This model's maximum context length is {limit} tokens.")
        if total is not None:
            assert f"you requested {total} tokens" in message
    # a chat prompt whose template + text goes over: counted after the chat template
    text = " ".join(f"w{i}" for i in range(12_000))
    resp = post(server, "/chat/completions", {"messages": [{"role": "user", "content": text}],
                                              "max_tokens": 4})
    tokens = httpx.post(server.root + "/tokenize", timeout=60, json={
        "messages": [{"role": "user", "content": text}]}).json()["count"]
    assert tokens + 4 > limit
    assert resp.status_code == 400
    assert f"you requested {tokens + 4} tokens ({tokens} in the messages, 4 in the completion)" \
        in error_of(resp)
    # exactly at the limit is served
    resp = post(server, "/completions", {"prompt": [5] * 30, "max_tokens": 2})
    assert resp.status_code == 200


CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


@pytest.mark.parametrize("raw,param", [
    (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', "temperature"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "repetition_penalty": NaN}',
     "repetition_penalty"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "top_p": Infinity}', "top_p"),
    ({**CHAT, "temperature": "0.5"}, "temperature"),
    ({**CHAT, "top_k": "5"}, "top_k"),
    ({**CHAT, "seed": "7"}, "seed"),
    ({**CHAT, "n": "2"}, "n"),
    ({**CHAT, "seed": 2**70}, "seed"),
    ({**CHAT, "max_tokens": -1}, "max_tokens"),
    ({**CHAT, "temperature": -0.5}, "temperature"),
    ({**CHAT, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": "data:image/png;base64,AAAA"}]}]},
     "messages.0.content.0.image_url"),
    ({**CHAT, "messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role"),
    ({**CHAT, "messages": []}, "messages"),
    ({**CHAT, "stop": [1, 2]}, "stop"),
    (b'{"messages": [', "body"),
    (b'[1, 2]', "body"),
])
def test_malformed_chat_requests_are_400_naming_the_field(server, raw, param):
    resp = post(server, "/chat/completions", content=raw) if isinstance(raw, bytes) \
        else post(server, "/chat/completions", raw)
    assert resp.status_code == 400, resp.text[:300]
    message = error_of(resp)
    if param != "body":
        assert resp.json()["error"]["param"].startswith(param)
        assert message.startswith(param)


@pytest.mark.parametrize("body,param", [
    ({"prompt": [1, 2, 2**40]}, "prompt"),
    ({"prompt": [1, 2, 100_000]}, "prompt"),
    ({"prompt": [[1, 2], [3, -1]]}, "prompt.1.1"),
    ({"prompt": [1, 2], "logprobs": 50}, "logprobs"),
    ({"prompt": "a", "max_tokens": 0}, "body"),
    ({"prompt": "a", "seed": 2**64}, "seed"),
    ({"prompt": "a", "best_of": 3}, "best_of"),
])
def test_malformed_completion_requests_are_400_naming_the_field(server, body, param):
    resp = post(server, "/completions", body)
    assert resp.status_code == 400, resp.text[:300]
    message = error_of(resp)
    if param != "body":
        assert resp.json()["error"]["param"] == param, message


def test_after_every_refusal_the_server_serves(server):
    assert_serving(server)
