"""Page degradations: what a scanned, photographed or resampled page does to rendered text.

`DegradeConfig` is the `renderer.degrade` sub-config. The renderer applies it after layout and
drawing, before anything else sees the page (the dataset builder, the optical loop, the
processor), so one setting degrades training pages (augmentation) and evaluation pages alike;
`vtc-lab eval eval_degrade=<level>` replaces it for evaluation only (a model trained on clean
pages read degraded ones, and the other way round).

Why these operations: each is one way a page reaches a VLM less than perfect. Gaussian blur
(defocus, a downsampled scan), JPEG re-encoding (every photo and web image), sub-pixel jitter
of the text origin (glyphs no longer aligned to the vision patches), small rotation (a skewed
scan), faded ink and pixel noise (contrast and ink variation), downscale-then-upscale (a page
rendered at one resolution and resampled to another pixel budget: the "dynamic resolution"
path, which aliases thin strokes), and a font drawn from a list (a model must not depend on one
typeface).

Determinism: every random draw comes from a numpy PCG64 generator seeded by sha256 of (the
config's seed, the text's sha256, the page index), never Python's `hash()`, so the same text and
config give the same pixels in any process, and a page's degradation does not depend on which
other pages were rendered before it. A config whose settings are all zero leaves the renderer's
images untouched (the very same objects: byte-identical to a render without degradation), and
`config_hash` leaves it out, so datasets, render caches and eval directories of clean pages keep
their names.

`level` names a row of `LEVELS` (none, mild, moderate, severe): a sweep axis of one value.
Knobs left unset (null) take the level's value; a knob that is set wins (and is recorded as the
override it is). This module imports no torch (the render package's rule): Pillow and numpy only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
from dataclasses import dataclass, field
from typing import Any, List, Optional

import numpy as np
from PIL import Image, ImageFilter

from vtc_lab.render.fonts import BUNDLED_FONTS, resolve_font

KNOBS = ("blur_sigma", "jpeg_quality", "jitter_px", "rotation_deg", "contrast", "noise", "downscale")
"""The numeric settings a level fills in (fonts are never part of a level)."""

LEVELS: dict[str, dict[str, float]] = {
    "none": {"blur_sigma": 0.0, "jpeg_quality": 0, "jitter_px": 0.0, "rotation_deg": 0.0,
             "contrast": 0.0, "noise": 0.0, "downscale": 1.0},
    "mild": {"blur_sigma": 0.5, "jpeg_quality": 75, "jitter_px": 0.5, "rotation_deg": 0.5,
             "contrast": 0.2, "noise": 4.0, "downscale": 1.0},
    "moderate": {"blur_sigma": 0.8, "jpeg_quality": 40, "jitter_px": 1.0, "rotation_deg": 1.5,
                 "contrast": 0.4, "noise": 10.0, "downscale": 1.0},
    "severe": {"blur_sigma": 1.2, "jpeg_quality": 20, "jitter_px": 2.0, "rotation_deg": 3.0,
               "contrast": 0.6, "noise": 20.0, "downscale": 1.0},
}
"""Strength scale, in pixels and grey levels of the rendered page (the toy pages' glyphs are
12 px high: severe blurs across a third of a stroke gap and rotates a 64-px page by 3 px at its
edge). Downscaling is its own axis (the resolution frontier), so it is 1.0 in every level."""

def _fail(name: str, message: str) -> None:
    raise ValueError(f"renderer.degrade.{name} {message}")


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(name, f"must be a number, got {value!r}")
    return value


@dataclass
class DegradeConfig:
    """Page degradations applied after layout, seeded per page (all off by default)."""

    level: str = "none"
    """Strength preset: none, mild, moderate or severe (`vtc_lab.render.degrade.LEVELS`): the
    value of every knob left null. A knob that is set wins over its level."""
    seed: int = 0
    """Seed of the per-page draws (jitter, rotation, contrast, noise, font); each page's
    generator is seeded by (seed, sha256 of the text, page index)."""
    blur_sigma: Optional[float] = None
    """Gaussian blur standard deviation in pixels (Pillow's GaussianBlur); 0 = off."""
    jpeg_quality: Optional[int] = None
    """Re-encode every page as JPEG at this quality (1-95, Pillow's scale); 0 = off."""
    jitter_px: Optional[float] = None
    """Shift the page content by a uniform draw in [-jitter_px, jitter_px] pixels on each axis
    (sub-pixel: bilinear resampling), moving the text origin off the vision-patch grid; 0 = off."""
    rotation_deg: Optional[float] = None
    """Rotate the page content about its centre by a uniform draw in [-rotation_deg,
    rotation_deg] degrees (bilinear, background fill); 0 = off."""
    contrast: Optional[float] = None
    """Fade the ink toward the background by a uniform draw in [0, contrast] of the ink-paper
    difference (faded print), in [0, 1); 0 = off."""
    noise: Optional[float] = None
    """Standard deviation, in grey levels, of Gaussian noise added to every pixel (ink and
    paper texture); 0 = off."""
    downscale: Optional[float] = None
    """Resample every page to this fraction of its size and back (bilinear both ways): the page
    keeps its size and vision-token count but carries only the detail of the smaller one,
    like a page rendered at one resolution and resized to a processor's pixel budget; in (0, 1],
    1 = off."""
    fonts: List[str] = field(default_factory=list)
    """Fonts (bundled names or .ttf/.otf paths) one of which is drawn, seeded, for each rendered
    text, replacing `renderer.font`; empty = off. The font decides the layout, so a text that
    spans several pages keeps one font over them (a toy round is one page)."""

    def __post_init__(self) -> None:
        if not isinstance(self.level, str) or self.level not in LEVELS:
            _fail("level", f"must be one of {list(LEVELS)}, got {self.level!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            _fail("seed", f"must be an integer, got {self.seed!r}")
        s = self.settings()  # validates each knob
        if s["blur_sigma"] < 0 or s["blur_sigma"] > 20:
            _fail("blur_sigma", f"must be in [0, 20] pixels, got {s['blur_sigma']}")
        if not isinstance(s["jpeg_quality"], int) or not 0 <= s["jpeg_quality"] <= 95:
            _fail("jpeg_quality", f"must be an integer in [0, 95] (0 = off), got {s['jpeg_quality']!r}")
        for name in ("jitter_px", "rotation_deg"):
            if not 0 <= s[name] <= 45:
                _fail(name, f"must be in [0, 45], got {s[name]}")
        if not 0 <= s["contrast"] < 1:
            _fail("contrast", f"must be in [0, 1), got {s['contrast']}")
        if not 0 <= s["noise"] <= 128:
            _fail("noise", f"must be in [0, 128] grey levels, got {s['noise']}")
        if not 0 < s["downscale"] <= 1:
            _fail("downscale", f"must be in (0, 1] (1 = off), got {s['downscale']}")
        if isinstance(self.fonts, str) or not all(isinstance(f, str) and f.strip() for f in self.fonts):
            _fail("fonts", f"must be a list of font names or paths, got {self.fonts!r}")
        self.fonts = list(self.fonts)
        for font in self.fonts:  # a typo fails here, naming this field, not at the first page
            try:
                resolve_font(font)
            except FileNotFoundError:
                _fail("fonts", f"entry {font!r} is neither a bundled font "
                      f"({', '.join(BUNDLED_FONTS)}) nor an existing font file")

    def settings(self) -> dict[str, float]:
        """The effective knobs: each set one, else the level's value."""
        base = LEVELS[self.level]
        out = {}
        for name in KNOBS:
            value = getattr(self, name)
            out[name] = base[name] if value is None else _number(name, value)
        return out

    @property
    def pixel_ops(self) -> bool:
        """Whether a page operation is on (blur, JPEG, jitter, rotation, fade, noise, resample)."""
        s = self.settings()
        return any(s[name] for name in KNOBS if name != "downscale") or s["downscale"] != 1.0

    @property
    def active(self) -> bool:
        """Whether any setting changes pixels (False: the renderer's pages pass untouched)."""
        return self.pixel_ops or bool(self.fonts)

    def hash_payload(self) -> dict[str, Any] | None:
        """What of this config changes pixels (None when nothing does): the effective knobs,
        the seed and the fonts, not how they were spelled (a level or its values)."""
        if not self.active:
            return None
        return {"seed": self.seed, "fonts": list(self.fonts), **self.settings()}


def as_degrade(value: Any) -> DegradeConfig:
    """`value` as a DegradeConfig: itself, or a recorded dict (run.json, reading.json)."""
    if isinstance(value, DegradeConfig):
        return value
    if isinstance(value, dict):
        try:
            return DegradeConfig(**value)
        except TypeError as err:
            raise ValueError(f"renderer.degrade: unreadable settings {value!r} ({err})") from None
    raise ValueError(f"renderer.degrade must be a mapping of degradation settings, got {value!r}")


def _generator(cfg: DegradeConfig, text_digest: str, page: int | str) -> np.random.Generator:
    digest = hashlib.sha256(f"{cfg.seed}|{text_digest}|{page}".encode()).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest[:16], "little")))


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def pick_font(cfg: DegradeConfig, text: str) -> str | None:
    """The font drawn for `text` from `cfg.fonts` (None when the list is empty)."""
    if not cfg.fonts:
        return None
    return cfg.fonts[int(_generator(cfg, text_digest(text), "font").integers(len(cfg.fonts)))]


def _affine(img: Image.Image, angle_deg: float, dx: float, dy: float, fill: Any) -> Image.Image:
    """Content rotated by `angle_deg` about the page centre and shifted by (dx, dy) pixels."""
    w, h = img.size
    cx, cy = w / 2.0, h / 2.0
    a = np.deg2rad(angle_deg)
    cos, sin = float(np.cos(a)), float(np.sin(a))
    # output pixel p -> input R(-a) (p - c - t) + c (Pillow's AFFINE maps output to input)
    ox, oy = cx + dx, cy + dy
    coeffs = (cos, sin, cx - cos * ox - sin * oy, -sin, cos, cy + sin * ox - cos * oy)
    return img.transform((w, h), Image.Transform.AFFINE, coeffs,
                         resample=Image.Resampling.BILINEAR, fillcolor=fill)


def degrade_page(img: Image.Image, cfg: DegradeConfig, rng: np.random.Generator,
                 background: tuple[int, int, int]) -> Image.Image:
    """One page through every active degradation, in a fixed order: ink fade, jitter +
    rotation, blur, down/up-scale, noise, JPEG. Same size and mode as `img`. Grey pages (all
    bands equal) are processed as one band, so they stay grey (single-channel PNGs)."""
    s = cfg.settings()
    mode = img.mode
    grey = mode == "RGB" and background[0] == background[1] == background[2] and \
        img.getchannel(0).tobytes() == img.getchannel(1).tobytes() == img.getchannel(2).tobytes()
    work = img.getchannel(0) if grey else img.convert("RGB")
    bg = background[0] if grey else tuple(background)
    # draws in a fixed order, whether or not a knob is on: a knob's draw never shifts another's
    fade = rng.uniform(0.0, s['contrast']) if s['contrast'] else 0.0
    shift = rng.uniform(-s['jitter_px'], s['jitter_px'], 2) if s['jitter_px'] else np.zeros(2)
    angle = rng.uniform(-s['rotation_deg'], s['rotation_deg']) if s['rotation_deg'] else 0.0
    if fade:
        arr = np.asarray(work, np.float32)
        paper = np.asarray(bg, np.float32)
        arr = arr + fade * (paper - arr)
        work = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), work.mode)
    if shift.any() or angle:
        work = _affine(work, float(angle), float(shift[0]), float(shift[1]), bg)
    if s['blur_sigma']:
        work = work.filter(ImageFilter.GaussianBlur(radius=s['blur_sigma']))
    if s['downscale'] != 1.0:
        w, h = work.size
        small = (max(1, round(w * s['downscale'])), max(1, round(h * s['downscale'])))
        work = work.resize(small, Image.Resampling.BILINEAR).resize((w, h), Image.Resampling.BILINEAR)
    if s['noise']:
        arr = np.asarray(work, np.float32)
        noise = rng.normal(0.0, s['noise'], arr.shape[:2]).astype(np.float32)
        arr = arr + (noise if arr.ndim == 2 else noise[..., None])
        work = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), work.mode)
    if s['jpeg_quality']:
        buf = io.BytesIO()
        work.save(buf, format="JPEG", quality=s['jpeg_quality'])
        buf.seek(0)
        with Image.open(buf) as decoded:
            work = decoded.convert(work.mode)
    if grey:
        return Image.merge("RGB", (work, work, work))
    return work if work.mode == mode else work.convert(mode)


def degrade_pages(images: list[Image.Image], text: str, cfg: DegradeConfig,
                  background: tuple[int, int, int]) -> list[Image.Image]:
    """Every page of `text` degraded with its own seeded generator; `images` itself when no
    pixel-changing setting is on (fonts act before layout, see `pick_font`)."""
    if not cfg.pixel_ops:
        return images
    digest = text_digest(text)
    return [degrade_page(img, cfg, _generator(cfg, digest, p), background)
            for p, img in enumerate(images)]
