"""Data text never injects model special tokens or image placeholders.

A question or trace that contains `<|image_pad|>` (Qwen's vision placeholder) makes the
processor count an image the sample does not have and abort a whole run; `<image>` in a question
adds one more LLaMA-Factory image tag than there are images; `<|im_end|>` would close a chat
turn early. These strings are control syntax of the model or the export format, never content,
so every piece of data text (question, reasoning, answer; benchmark questions at evaluation) goes
through `neutralise` before it meets a tokenizer or an export: a space goes in after the opening
bracket (`<|image_pad|>` -> `< |image_pad|>`, `<image>` -> `< image>`), which keeps the text
readable, renders the same way, and can no longer match the token. The rewrite is idempotent,
and callers count how many it made.

Covered: every `<|name|>` token (Qwen2/2.5/3-VL, GLM-4.1V/Glyph, and most chat templates spell
their special tokens that way), the multimodal placeholders `<image>`, `<video>`, `<audio>`,
and GLM's bracket tokens (`[gMASK]`, `[sMASK]`, `<sop>`, `<eop>`). `<think>`, `</think>` and
`<answer>` are not special tokens here: the target format is built from them after this step,
and the sources already refuse reasoning that contains `</think>`.
"""

from __future__ import annotations

import re

_PATTERN = re.compile(
    r"<(?=\|[A-Za-z0-9_.:\-]{1,64}\|>)"  # <|image_pad|>, <|im_start|>, <|begin_of_image|> ...
    r"|<(?=/?(?:image|video|audio|sop|eop)>)"  # multimodal placeholders, GLM's <sop>/<eop>
    r"|\[(?=[gs]MASK\])"  # GLM's [gMASK] / [sMASK]
)


def neutralise(text: str) -> tuple[str, int]:
    """(text, count): `text` with every special token / placeholder made inert (see module)."""
    if "<" not in text and "[" not in text:
        return text, 0
    return _PATTERN.subn(lambda m: m.group(0) + " ", text)


def neutralised(text: str) -> str:
    """`neutralise(text)`'s text alone (where the caller counts elsewhere)."""
    return neutralise(text)[0]
