"""The one PNG encoder of rendered pages: dataset shards, the render cache, `vtc-lab render` files.

Pages are lossless PNGs, single-channel when the renderer's text and background colours are both
greys (anti-aliasing only mixes the two, so every pixel is a grey: `Image.open(...).convert("RGB")`
gives back the same pixels, at about half the bytes and time of an RGB PNG).

zlib level 3, the level the dataset has always used: a dataset stores every page once per
sample that shows it and is read back every training epoch, so bytes on disk matter more than
encode time, while level 6 costs much more time for little. Measured on the default renderer's
pages (2-core dev box, load average ~13): MATH500 solutions 9.3 / 9.0 / 8.6 KiB per page and
3.1 / 3.4 / 5.1 ms at levels 1 / 3 / 6; 16k-character texts 81 / 78 / 75 KiB and 26 / 28 / 41 ms.
"""

from __future__ import annotations

import io
from typing import Any

from PIL import Image, ImageColor

PNG_COMPRESS_LEVEL = 3
"""zlib level of every page PNG (see the module docstring for the measurement)."""


def _is_grey(color: Any) -> bool:
    try:
        rgb = ImageColor.getrgb(color) if isinstance(color, str) else tuple(color)
    except (ValueError, TypeError):
        return False
    return len(set(rgb[:3])) == 1


def grey_colours(render_cfg: Any) -> bool:
    """True when a renderer config's text and background colours are both greys."""
    return all(_is_grey(getattr(render_cfg, name, None)) for name in ("text_color", "background_color"))


def png_bytes(image: Image.Image, config: Any = None, *, grey: bool | None = None) -> bytes:
    """PNG file bytes of a page, lossless. Single-channel when `grey` (default: decided from
    `config`'s colours, the default renderer's when None) and the page is RGB."""
    if grey is None:
        from vtc_lab.render.config import RenderConfig

        grey = grey_colours(config or RenderConfig())
    buf = io.BytesIO()
    (image.convert("L") if grey and image.mode == "RGB" else image).save(
        buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()
