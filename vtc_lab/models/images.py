"""Pixel capping: the one resize applied to memory pages before the processor sees them.

Training (`vtc_lab.train.collate`) and inference (`vtc_lab.infer.loop`) both call it, so a page
reaches the model at the same size whether it is read in a training sample or fed back by the
loop. It lives with the backbones because the cap is a property of how the model reads images.
"""

from __future__ import annotations

import math

from PIL import Image


def cap_pixels(image: Image.Image, max_pixels: int | None) -> Image.Image:
    """Downscale (aspect kept) so that width * height <= max_pixels; smaller images untouched."""
    w, h = image.size
    if not max_pixels or w * h <= max_pixels:
        return image
    scale = math.sqrt(max_pixels / (w * h))
    size = (max(1, math.floor(w * scale)), max(1, math.floor(h * scale)))
    return image.resize(size, Image.Resampling.BICUBIC)
