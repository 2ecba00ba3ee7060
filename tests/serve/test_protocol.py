"""`vtc-lab serve` speaks vLLM's request shape: what the OpenAI client sends is honoured
exactly, and what the in-process engine cannot honour is refused, not ignored."""

from __future__ import annotations

import base64
import io

import openai
import pytest
from PIL import Image


@pytest.fixture(scope="module")
def root(server):
    c = openai.OpenAI(base_url=server.url[: -len("/v1")], api_key="EMPTY", max_retries=0)
    yield c
    c.close()


def png_url(color: str = "white", size=(64, 40)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


MESSAGES = [{"role": "system", "content": [{"type": "text", "text": "sys"}]},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": png_url()}},
                                         {"type": "text", "text": "What is 1+1?"}]}]
GREEDY = dict(temperature=0.0, extra_body={"return_token_ids": True})


def chat(client, model, messages=MESSAGES, **kw):
    args = {**GREEDY, "max_completion_tokens": 6, **kw}
    return client.chat.completions.create(model=model, messages=messages, **args).to_dict()


def test_models_lists_the_served_name(client, ckpt):
    assert [m.id for m in client.models.list().data] == [ckpt.name]


def test_tokenize_of_messages_is_the_chat_prompt(client, root, ckpt):
    out = chat(client, ckpt.name)
    tok = root.post("/tokenize", body={"model": ckpt.name, "messages": MESSAGES},
                    cast_to=object)
    assert tok["tokens"] == out["prompt_token_ids"] == out["choices"][0]["prompt_token_ids"]
    assert out["usage"]["prompt_tokens"] == tok["count"] == len(tok["tokens"])
    assert out["usage"]["completion_tokens"] == len(out["choices"][0]["token_ids"])


def test_continue_final_message_continues_the_assistant_text(client, root, ckpt):
    """vLLM's continue_final_message: the template without a generation prompt end, the final
    assistant text appended; here equal to a token-id completion of template + prefix ids."""
    model = ckpt.name
    first = chat(client, model, max_completion_tokens=5)
    prefix_ids = first["choices"][0]["token_ids"]
    prefix_ids = prefix_ids[:-1] if first["choices"][0]["finish_reason"] == "stop" else prefix_ids
    prefix = root.post("/detokenize", body={"model": model, "tokens": prefix_ids}, cast_to=object)
    text_messages = [MESSAGES[0], {"role": "user", "content": "What is 1+1?"}]
    base = root.post("/tokenize", body={"model": model, "messages": text_messages},
                     cast_to=object)["tokens"]
    prefix_tok = root.post("/tokenize", body={"model": model, "prompt": prefix["prompt"],
                                              "add_special_tokens": False}, cast_to=object)
    cont = chat(client, model, text_messages + [{"role": "assistant", "content": prefix["prompt"]}],
                extra_body={"continue_final_message": True, "add_generation_prompt": False,
                            "return_token_ids": True})
    comp = client.completions.create(model=model, prompt=base + prefix_tok["tokens"],
                                     max_tokens=6, temperature=0.0,
                                     extra_body={"return_token_ids": True}).to_dict()
    assert cont["prompt_token_ids"] == base + prefix_tok["tokens"]
    assert cont["choices"][0]["token_ids"] == comp["choices"][0]["token_ids"]
    assert cont["choices"][0]["message"]["content"] == comp["choices"][0]["text"]


def test_seed_and_n_sample_reproducibly(client, ckpt):
    kw = dict(temperature=1.0, top_p=0.9, seed=11, extra_body={"top_k": 40, "return_token_ids": True})
    two = chat(client, ckpt.name, n=2, **kw)
    again = chat(client, ckpt.name, **kw)
    next_seed = chat(client, ckpt.name, **{**kw, "seed": 12})
    ids = [c["token_ids"] for c in two["choices"]]
    assert ids[0] == again["choices"][0]["token_ids"]  # same seed, same sample
    assert ids[1] == next_seed["choices"][0]["token_ids"]  # choice i uses seed + i


@pytest.mark.parametrize("change,status,match", [
    ({"stream": True, "logprobs": True}, 400, "logprobs with stream"),
    ({"extra_body": {"min_p": 0.1}}, 400, "min_p"),
    ({"logit_bias": {"5": 1}}, 400, "logit_bias"),
    ({"model": "other"}, 404, "does not exist"),
    ({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://example.com/a.png"}}]}]}, 400,
     "data URL"),
    ({"extra_body": {"add_generation_prompt": False}}, 400, "continue_final_message"),
])
def test_what_cannot_be_honoured_is_refused(server, ckpt, change, status, match):
    import httpx

    body = {"model": ckpt.name, "messages": MESSAGES, "max_tokens": 4, "temperature": 0}
    change = dict(change)
    body.update(change.pop("extra_body", {}))
    body.update(change)
    resp = httpx.post(server.url + "/chat/completions", json=body, timeout=60)
    assert resp.status_code == status
    assert match in resp.json()["error"]["message"]


def test_a_corrupt_image_is_a_client_error_and_the_server_keeps_serving(server, client, ckpt):
    import httpx

    bad = "data:image/png;base64," + base64.b64encode(b"not a png").decode()
    resp = httpx.post(server.url + "/chat/completions", timeout=60, json={
        "model": ckpt.name, "max_tokens": 2, "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": bad}}]}]})
    assert resp.status_code == 400 and "not a decodable image" in resp.json()["error"]["message"]
    assert chat(client, ckpt.name)["choices"][0]["finish_reason"] in ("stop", "length")
