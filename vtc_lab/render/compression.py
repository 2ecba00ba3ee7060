"""Compression ratio = text tokens / vision tokens, per text and pooled.

Two conventions are reported everywhere, because papers differ: `vision_tokens` counts only the
merged image tokens; `vision_tokens_delim` adds each image's delimiter tokens (Qwen's
<|vision_start|>/<|vision_end|>, GLM's <|begin_of_image|>/<|end_of_image|>: +2 per image).
Pooled = sum(text) / sum(vision) over a corpus (what a context budget sees); the median of
per-text ratios describes a typical text.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Iterable, Sequence

from PIL import Image

from vtc_lab.render.vision import VisionSpec, get_spec, vision_tokens


@dataclass(frozen=True)
class Compression:
    """Token accounting of one rendered text for one backbone."""

    text_tokens: int
    images: int
    vision_tokens: int
    vision_tokens_delim: int

    @property
    def ratio(self) -> float:
        """text tokens / vision tokens (delimiters not counted); inf for zero vision tokens."""
        return self.text_tokens / self.vision_tokens if self.vision_tokens else float("inf")

    @property
    def ratio_delim(self) -> float:
        """text tokens / (vision tokens + delimiters)."""
        return self.text_tokens / self.vision_tokens_delim if self.vision_tokens_delim else float("inf")


def image_vision_tokens(images: Iterable[Image.Image | tuple[int, int]], backbone: str | VisionSpec,
                        min_pixels: int | None = None, max_pixels: int | None = None) -> tuple[int, int]:
    """(vision tokens, number of images) for page images or (width, height) pairs."""
    spec = get_spec(backbone)
    total = n = 0
    for im in images:
        w, h = im.size if isinstance(im, Image.Image) else im
        total += vision_tokens(w, h, spec, min_pixels, max_pixels)
        n += 1
    return total, n


def compression(text_tokens: int, images: Sequence[Image.Image | tuple[int, int]],
                backbone: str | VisionSpec, min_pixels: int | None = None,
                max_pixels: int | None = None) -> Compression:
    """Accounting for one text already tokenized and rendered."""
    spec = get_spec(backbone)
    vis, n = image_vision_tokens(images, spec, min_pixels, max_pixels)
    return Compression(text_tokens, n, vis, vis + n * spec.image_delimiters)


def pooled_ratio(items: Sequence[Compression], delimiters: bool = False) -> float:
    """sum(text tokens) / sum(vision tokens) over many texts."""
    text = sum(c.text_tokens for c in items)
    vis = sum(c.vision_tokens_delim if delimiters else c.vision_tokens for c in items)
    return text / vis if vis else float("inf")


def median_ratio(items: Sequence[Compression], delimiters: bool = False) -> float:
    """Median of the per-text ratios."""
    if not items:
        return float("nan")
    return statistics.median(c.ratio_delim if delimiters else c.ratio for c in items)
