"""Validated chat messages -> the engine's messages, with the request's memory bounded first.

Everything that costs memory is counted and sized before anything is decoded: the number of
images, each image's base64 length, then each image's width and height read from its header
(`Image.open` is lazy: it parses the header, not the pixels), checked per image and summed over
the request, and only then the pixels of each image decoded in turn. A request that would not
fit is refused whole (400), so a hostile request costs the server its JSON body and nothing more.
Remote URLs are refused: this server fetches nothing it is handed.

The export's reading spec (`vtc_lab.models.reading`) is applied here, as `vtc-lab eval` applies
it to its own prompts: each image capped to the trained pixel count, the trained system prompt
when the client sends none, and each user turn's images on the trained side of its text.
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass
from typing import Any

from vtc_lab.models.images import cap_pixels
from vtc_lab.models.reading import ReadingSpec
from vtc_lab.serve.config import ServeConfig
from vtc_lab.serve.protocol import ImagePart, Message, RequestError

_DATA_PREFIX = "data:image/"


@dataclass(frozen=True)
class _Pending:
    """An image part whose header has been read but whose pixels have not."""

    raw: bytes
    where: str


def _image_bytes(url: str, where: str, limit: int) -> bytes:
    if not url.startswith(_DATA_PREFIX) or ";base64," not in url[:64]:
        raise RequestError(f"{where}: image_url must be a base64 data URL "
                           "(data:image/png;base64,...); this server fetches nothing", param=where)
    payload = url.split(";base64,", 1)[1]
    if len(payload) // 4 * 3 > limit:
        raise RequestError(f"{where}: image of about {len(payload) // 4 * 3} bytes; this "
                           f"server's limit is {limit} (max_image_bytes)", param=where)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(f"{where}: image_url is not valid base64", param=where) from None


def _size(raw: bytes, where: str) -> tuple[int, int]:
    """(width, height) from the image header; no pixel is decoded."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(raw)) as image:
            return image.size
    except Exception as err:  # noqa: BLE001 - any unreadable header is the client's error
        raise RequestError(f"{where}: image_url is not a decodable image ({type(err).__name__})",
                           param=where) from None


def _decode(raw: bytes, where: str, cap: int | None) -> Any:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(raw)) as image:
            image.load()
            rgb = image.convert("RGB")
    except Exception as err:  # noqa: BLE001 - truncated or corrupt pixels: the client's error
        raise RequestError(f"{where}: image_url is not a decodable image ({type(err).__name__})",
                           param=where) from None
    return cap_pixels(rgb, cap)


def prompt_chars(messages: list[Message]) -> int:
    return sum(len(m.content) if isinstance(m.content, str) else
               sum(len(p.text) for p in m.content if p.type == "text") for m in messages)


def to_engine_messages(messages: list[Message], cfg: ServeConfig,
                       reading: ReadingSpec | None) -> list[dict]:
    """The HF multimodal messages `build_messages` produces, images decoded within the limits."""
    parts = [(i, j, p) for i, m in enumerate(messages) if isinstance(m.content, list)
             for j, p in enumerate(m.content) if isinstance(p, ImagePart)]
    if len(parts) > cfg.max_images_per_prompt:
        raise RequestError(f"{len(parts)} images in one prompt; this server's limit is "
                           f"{cfg.max_images_per_prompt} (max_images_per_prompt)",
                           param="messages")
    chars = prompt_chars(messages)
    if chars > cfg.max_prompt_chars:
        raise RequestError(f"prompt of {chars} characters; this server's limit is "
                           f"{cfg.max_prompt_chars} (max_prompt_chars)", param="messages")
    pending: dict[tuple[int, int], _Pending] = {}
    total = 0
    for i, j, part in parts:
        where = f"messages.{i}.content.{j}.image_url"
        raw = _image_bytes(part.image_url.url, where, cfg.max_image_bytes)
        w, h = _size(raw, where)
        if w * h > cfg.max_image_pixels:
            raise RequestError(f"{where}: image of {w}x{h} = {w * h} pixels; this server's "
                               f"limit is {cfg.max_image_pixels} (max_image_pixels)", param=where)
        total += w * h
        if total > cfg.max_request_pixels:
            raise RequestError(f"the request's images hold more than {cfg.max_request_pixels} "
                               "pixels together (max_request_pixels)", param="messages")
        pending[(i, j)] = _Pending(raw, where)
    cap = reading.image_max_pixels if reading else None
    out: list[dict] = []
    for i, msg in enumerate(messages):
        if isinstance(msg.content, str):
            content: Any = msg.content
        else:
            content = []
            for j, part in enumerate(msg.content):
                if isinstance(part, ImagePart):
                    p = pending.pop((i, j))
                    content.append({"type": "image", "image": _decode(p.raw, p.where, cap)})
                else:
                    content.append({"type": "text", "text": part.text})
            if reading is not None and msg.role == "user":
                content = _place_images(content, reading.image_position)
        out.append({"role": msg.role, "content": content})
    if reading is not None and reading.system_prompt is not None \
            and not any(m["role"] == "system" for m in out):
        out.insert(0, {"role": "system",
                       "content": [{"type": "text", "text": reading.system_prompt}]})
    return out


def _place_images(content: list[dict], position: str) -> list[dict]:
    images = [p for p in content if p["type"] == "image"]
    texts = [p for p in content if p["type"] != "image"]
    return images + texts if position == "before" else texts + images


def message_text(msg: dict) -> str:
    """The text of a text-only message (continue_final_message continues it)."""
    content = msg["content"]
    if isinstance(content, str):
        return content
    if any(p["type"] != "text" for p in content):
        raise RequestError("continue_final_message: the final message must be text only",
                           param="messages")
    return "".join(p["text"] for p in content)
