"""What the OpenAI engine sends and reads: `build_messages` output as OpenAI chat messages
(pages as PNG data URLs), the image placeholder tokens, and the prompt ids of an answer.
Torch-free, like the engine (vtc_lab.infer.openai_engine)."""

from __future__ import annotations

import base64
from typing import Any

IMAGE_TOKENS = ("<|image_pad|>", "<|image|>")
"""Image placeholder tokens of the supported backbones (Qwen2/2.5/3-VL, GLM-4.1V/Glyph)."""



def image_data_url(image: Any) -> str:
    """A PIL image as a lossless PNG data URL (the OpenAI `image_url` content part), encoded by
    the project's one PNG encoder; kept in its own mode (the server sees the page's pixels)."""
    from vtc_lab.render.png import png_bytes

    return "data:image/png;base64," + base64.b64encode(png_bytes(image, grey=False)).decode("ascii")


def to_openai_messages(messages: list[dict]) -> list[dict]:
    """`build_messages` output -> OpenAI chat messages, part for part and in the same order.

    String contents stay strings and part lists stay part lists, so a server that maps the
    parts back (vtc-lab serve) renders exactly the template the in-process engine renders."""
    out = []
    for msg in messages:
        content = msg.get("content")
        if isinstance(content, list):
            parts = []
            for part in content:
                if part.get("type") == "image":
                    parts.append({"type": "image_url",
                                  "image_url": {"url": image_data_url(part["image"])}})
                elif part.get("type") == "text":
                    parts.append({"type": "text", "text": part["text"]})
                else:
                    raise ValueError(f"OpenAIEngine: unsupported content part {part.get('type')!r}")
            content = parts
        out.append({"role": msg["role"], "content": content})
    return out


def prompt_ids(resp: dict) -> list[int] | None:
    """The prompt token ids a chat answer carries (vLLM: on the response; SGLang: per choice),
    or None when the server returned none."""
    ids = resp.get("prompt_token_ids")  # vLLM: on the response
    if ids is None and resp.get("choices"):
        ids = resp["choices"][0].get("prompt_token_ids")  # SGLang: on each choice
    return [int(t) for t in ids] if ids is not None else None


def has_images(messages: list[dict]) -> bool:
    """Whether `build_messages` output holds an image part."""
    return any(isinstance(m.get("content"), list) and
               any(p.get("type") == "image" for p in m["content"]) for m in messages)
