"""Vision-token accounting: how many tokens a backbone's processor makes of an image.

Each backbone resizes an image to a multiple of `patch_size * merge_size` pixels per side
(rounding to the nearest multiple), then, if the pixel count leaves [min_pixels, max_pixels],
rescales it (floor when shrinking, ceil when growing) while keeping the aspect ratio. One token
per merged `merge_size x merge_size` block of patches. GLM-4.1V stacks every still image into
`temporal_patch_size` (2) frames before the bounds are checked, so its effective pixel bounds are
halved. This module mirrors transformers' `smart_resize` for those processors (tested against
`Qwen2VLImageProcessorPil` / `Glm4vImageProcessorPil` `image_grid_thw`) without importing them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class VisionSpec:
    """What a backbone's image processor does to an image, in pixels."""

    name: str
    patch_size: int
    merge_size: int
    temporal_patch_size: int
    min_pixels: int
    max_pixels: int
    image_delimiters: int = 2
    """Extra tokens around each image in the prompt (Qwen: <|vision_start|> <|vision_end|>;
    GLM-4.1V: <|begin_of_image|> <|end_of_image|>)."""
    temporal_in_bounds: bool = False
    """True when the pixel bounds apply to all `temporal_patch_size` frames (GLM-4.1V)."""

    def __post_init__(self) -> None:
        for name in ("patch_size", "merge_size", "temporal_patch_size", "min_pixels", "max_pixels"):
            if getattr(self, name) <= 0:
                raise ValueError(f"VisionSpec.{name} must be > 0, got {getattr(self, name)}")
        if self.min_pixels > self.max_pixels:
            raise ValueError(f"VisionSpec.min_pixels ({self.min_pixels}) > max_pixels ({self.max_pixels})")

    @property
    def factor(self) -> int:
        """Pixels per merged token along one side."""
        return self.patch_size * self.merge_size


# Bounds are the released checkpoints' preprocessor_config.json values (not the class defaults).
VISION_SPECS: dict[str, VisionSpec] = {
    "qwen2_vl": VisionSpec("qwen2_vl", 14, 2, 2, 56 * 56, 28 * 28 * 16384),
    "qwen2_5_vl": VisionSpec("qwen2_5_vl", 14, 2, 2, 56 * 56, 28 * 28 * 16384),
    "qwen3_vl": VisionSpec("qwen3_vl", 16, 2, 2, 65_536, 16_777_216),
    "glm4v": VisionSpec("glm4v", 14, 2, 2, 112 * 112, 9_633_792, temporal_in_bounds=True),
}
VISION_SPECS["glyph"] = VISION_SPECS["glm4v"]


def get_spec(backbone: str | VisionSpec) -> VisionSpec:
    """A spec by name (`qwen2_vl`, `qwen2_5_vl`, `qwen3_vl`, `glm4v`/`glyph`) or as given."""
    if isinstance(backbone, VisionSpec):
        return backbone
    key = backbone.lower().replace("-", "_").replace(".", "_")
    if key not in VISION_SPECS:
        raise KeyError(f"unknown backbone {backbone!r}; known: {', '.join(VISION_SPECS)}")
    return VISION_SPECS[key]


def resized_size(width: int, height: int, spec: VisionSpec, min_pixels: int | None = None,
                 max_pixels: int | None = None) -> tuple[int, int]:
    """(width, height) the processor resizes an image to."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    lo = spec.min_pixels if min_pixels is None else min_pixels
    hi = spec.max_pixels if max_pixels is None else max_pixels
    if lo > hi:
        raise ValueError(f"min_pixels ({lo}) > max_pixels ({hi})")
    f = spec.factor
    frames = spec.temporal_patch_size if spec.temporal_in_bounds else 1
    if spec.temporal_in_bounds and (height < f or width < f):  # GLM upsizes tiny images first
        s = max(f / height, f / width)
        height, width = int(height * s), int(width * s)
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio must be < 200, got {width}x{height}")
    h_bar = round(height / f) * f
    w_bar = round(width / f) * f
    if frames * h_bar * w_bar > hi:
        beta = math.sqrt(frames * height * width / hi)
        h_bar = max(f, math.floor(height / beta / f) * f)
        w_bar = max(f, math.floor(width / beta / f) * f)
    elif frames * h_bar * w_bar < lo:
        beta = math.sqrt(lo / (frames * height * width))
        h_bar = math.ceil(height * beta / f) * f
        w_bar = math.ceil(width * beta / f) * f
    return w_bar, h_bar


def image_grid(width: int, height: int, spec: VisionSpec | str, min_pixels: int | None = None,
               max_pixels: int | None = None) -> tuple[int, int, int]:
    """(t, h, w) in patches, as the processor's `image_grid_thw` reports it for one image."""
    spec = get_spec(spec)
    w_bar, h_bar = resized_size(width, height, spec, min_pixels, max_pixels)
    return 1, h_bar // spec.patch_size, w_bar // spec.patch_size


def vision_tokens(width: int, height: int, backbone: str | VisionSpec,
                  min_pixels: int | None = None, max_pixels: int | None = None,
                  delimiters: bool = False) -> int:
    """Exact LLM-side tokens for one image (optionally + its delimiter tokens)."""
    spec = get_spec(backbone)
    t, h, w = image_grid(width, height, spec, min_pixels, max_pixels)
    return t * h * w // (spec.merge_size ** 2) + (spec.image_delimiters if delimiters else 0)
