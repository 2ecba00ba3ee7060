"""Text -> page images (the optical memory) and token accounting. Imports no torch.

Public API (docs/architecture.md): `RenderConfig` (with its `DegradeConfig`), `config_hash`, `render_text`,
`render_with_layout` -> `RenderResult` (per-page `CharBox` lists), `VisionSpec`, `VISION_SPECS`,
`image_grid`, `vision_tokens`, the `TextTokenizer` protocol, `HFTextTokenizer`, `qwen_tokenizer`,
and the compression-ratio helpers.
"""

from vtc_lab.render.compression import (Compression, compression, image_vision_tokens,
                                        median_ratio, pooled_ratio)
from vtc_lab.render.config import RenderConfig, config_hash
from vtc_lab.render.degrade import DegradeConfig
from vtc_lab.render.fonts import BUNDLED_FONTS, resolve_font
from vtc_lab.render.png import png_bytes
from vtc_lab.render.renderer import CharBox, RenderResult, render_text, render_with_layout
from vtc_lab.render.text_tokens import (HFTextTokenizer, TextTokenizer, TiktokenTextTokenizer,
                                        qwen_tokenizer)
from vtc_lab.render.vision import VISION_SPECS, VisionSpec, get_spec, image_grid, vision_tokens

__all__ = [
    "BUNDLED_FONTS", "CharBox", "Compression", "DegradeConfig", "HFTextTokenizer", "RenderConfig", "RenderResult",
    "TextTokenizer", "TiktokenTextTokenizer", "VISION_SPECS", "VisionSpec", "compression",
    "config_hash", "get_spec", "image_grid", "image_vision_tokens", "median_ratio",
    "png_bytes", "pooled_ratio", "qwen_tokenizer", "render_text", "render_with_layout", "resolve_font",
    "vision_tokens",
]
