"""The one prompt builder shared by SFT samples, the training collator and inference.

Training and inference must see byte-identical prompts, so nothing else in vtc-lab assembles
chat messages: everything calls `build_messages`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vtc_lab.data.special_tokens import neutralised

REFERENCE_SYSTEM_PROMPT: str = (
    "These images record your previous reasoning process. Based on this reasoning, continue and "
    "complete the final answer. Do not restart the reasoning.\n"
    "If no images are provided, start the reasoning from scratch."
)
"""The VTC-R1 paper's system prompt, verbatim."""

IMAGE_POSITIONS = ("before", "after")


def build_messages(
    question: str,
    images: Sequence[Any],
    system_prompt: str | None,
    image_position: str = "before",
) -> list[dict]:
    """Chat messages (HF multimodal format) for one round: optional system turn + one user turn.

    `images` are the optical memory (pages of all earlier segments, in order); each becomes a
    `{"type": "image", "image": img}` part, placed before the question text (the paper's
    layout) or after it. `system_prompt=None` means no system turn at all (an empty string is
    kept as an empty system turn: some chat templates insert a default system prompt otherwise).
    The assistant turn is not included: the caller appends the target (SFT) or lets the model
    generate (inference). The question goes through `vtc_lab.data.special_tokens.neutralise`:
    a benchmark question containing `<|image_pad|>` must not become a phantom image.
    """
    if not isinstance(question, str):
        raise TypeError(f"build_messages: question must be a str, got {type(question).__name__}")
    if image_position not in IMAGE_POSITIONS:
        raise ValueError(
            f"build_messages: image_position must be one of {IMAGE_POSITIONS}, got {image_position!r}"
        )
    if system_prompt is not None and not isinstance(system_prompt, str):
        raise TypeError(
            f"build_messages: system_prompt must be a str or None, got {type(system_prompt).__name__}"
        )
    image_parts = [{"type": "image", "image": img} for img in images]
    # data text never injects special tokens (idempotent: built datasets are already clean)
    text_part = [{"type": "text", "text": neutralised(question)}]
    content = image_parts + text_part if image_position == "before" else text_part + image_parts
    messages: list[dict] = []
    if system_prompt is not None:
        messages.append({"role": "system", "content": [{"type": "text", "text": system_prompt}]})
    messages.append({"role": "user", "content": content})
    return messages
