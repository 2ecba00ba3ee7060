"""`vtc-lab serve` of an export feeds the model what it was trained to read (the export's
reading.json: pixel cap, system prompt, image position), as `vtc-lab eval` does: a served
answer equals the in-process engine's on the prompt `build_messages` makes with that spec."""

from __future__ import annotations

import base64
import io
import shutil

import httpx
import pytest
import torch
from PIL import Image

from tests.serve.conftest import Server
from vtc_lab.data.messages import build_messages
from vtc_lab.infer.engine import GenerationParams, GenerationRequest, HFEngine
from vtc_lab.models import ModelConfig, load_backbone
from vtc_lab.models.images import cap_pixels
from vtc_lab.models.reading import ReadingSpec
from vtc_lab.render import RenderConfig

SPEC = ReadingSpec(renderer=RenderConfig(), system_prompt="Read the pages, then answer.",
                   image_position="before", image_max_pixels=64 * 64)


@pytest.fixture(scope="module")
def reader(ckpt, tmp_path_factory):
    export = tmp_path_factory.mktemp("reader") / "reader-export"
    shutil.copytree(ckpt, export)
    SPEC.write(export)
    srv = Server(export, tmp_path_factory.mktemp("reader-server"))
    yield srv, export
    srv.stop()


def page(color: str) -> Image.Image:
    image = Image.new("RGB", (200, 120), "white")
    image.paste(Image.new("RGB", (80, 40), color), (20, 30))
    return image


def data_url(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def request(images: list[Image.Image], question: str) -> dict:
    """What a client that knows nothing of the spec sends: no system turn, images after the
    question, pages at full size."""
    content = [{"type": "text", "text": question}] + [
        {"type": "image_url", "image_url": {"url": data_url(im)}} for im in images]
    return {"messages": [{"role": "user", "content": content}], "max_tokens": 8,
            "temperature": 0, "return_token_ids": True}


def test_the_served_answer_is_the_offline_answer_under_the_reading_spec(reader, server):
    srv, export = reader
    card = httpx.get(srv.url + "/models", timeout=30).json()["data"][0]
    assert card["id"] == "reader-export" and card["reading"] == SPEC.to_dict()
    torch.set_num_threads(1)
    engine = HFEngine(load_backbone(ModelConfig(source="pretrained", path=str(export),
                                                arch="auto")))
    params = GenerationParams(max_new_tokens=8, do_sample=False)
    for images, question in [([page("black"), page("red")], "What is written? 3+4"),
                             ([page("blue")], "Solve x+1=2."), ([], "No pages: 2*3?")]:
        served = httpx.post(srv.url + "/chat/completions", json=request(images, question),
                            timeout=120).json()
        messages = build_messages(question, [cap_pixels(im, SPEC.image_max_pixels)
                                             for im in images],
                                  SPEC.system_prompt, SPEC.image_position)
        req = GenerationRequest(messages=messages)
        (offline,) = engine.generate([req], params)
        assert served["prompt_token_ids"] == engine.encode(req)["input_ids"][0].tolist()
        assert served["choices"][0]["token_ids"] == offline.token_ids
        assert served["choices"][0]["message"]["content"] == offline.text
        # the same request to a server of the weights without the spec reads another prompt
        plain = httpx.post(server.url + "/chat/completions", json=request(images, question),
                           timeout=120).json()
        assert plain["prompt_token_ids"] != served["prompt_token_ids"]
