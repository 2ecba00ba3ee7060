"""`RenderConfig`: the one schema of the `renderer` config group.

Defaults are the VTC-R1 / Glyph reference settings (DejaVu Sans 9 pt, leading 10 pt, A4 at
72 dpi, 10 pt margins, black on white, left aligned, auto-cropped), so `RenderConfig()` renders
what the paper's models were trained to read. Every field is validated when the object is built,
and the error names the field, because a bad sweep value should fail before any work starts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import List, Optional

from PIL import ImageColor

from vtc_lab.render.adaptive import AdaptiveConfig, as_adaptive
from vtc_lab.render.degrade import DegradeConfig, as_degrade

ALIGNMENTS = ("left", "right", "center")
NEWLINE_MODES = ("break", "space")

# Bumped whenever a change to the layout or rasteriser changes pixels for an existing config,
# so cached renders keyed by `config_hash` are invalidated.
RENDERER_VERSION = "3"  # 3: last-page crop height = last ink row + margin_y (the reference rounding)


def _fail(name: str, message: str) -> None:
    raise ValueError(f"renderer.{name} {message}")


@dataclass
class RenderConfig:
    """Settings of the text -> page-image renderer (all lengths in points unless noted)."""

    font: str = "DejaVuSans"
    """Bundled font name (`DejaVuSans`, `DejaVuSansMono`) or a path to a .ttf/.otf file."""
    font_size: float = 9.0
    """Font size (em size) in points; at `dpi` it must be at least 1 pixel."""
    line_height: float = 10.0
    """Distance between baselines in points (reportlab's `leading`); must be >= font_size."""
    page_width: float = 595.0
    """Page width in points before auto-crop (A4 = 595)."""
    page_height: float = 842.0
    """Page height in points before auto-crop (A4 = 842)."""
    dpi: int = 72
    """Raster resolution; 72 dpi makes one point one pixel."""
    margin_x: float = 10.0
    """Left/right page margin in points; also the blank kept right of the ink by auto-crop."""
    margin_y: float = 10.0
    """Top/bottom page margin in points; also the blank kept below the ink by auto-crop."""
    padding: float = 6.0
    """Extra inset inside the margins, in points. The reference pipeline (reportlab's
    SimpleDocTemplate frame) adds 6 pt on every side; keep it for parity, 0 for a tight layout."""
    text_color: str = "#000000"
    """Ink colour: `#RRGGBB`, `#RGB` or a CSS colour name."""
    background_color: str = "#FFFFFF"
    """Page colour: `#RRGGBB`, `#RGB` or a CSS colour name."""
    alignment: str = "left"
    """Line alignment: left, right or center."""
    auto_crop_width: bool = True
    """Crop every page to its last ink column plus margin_x (the reference does)."""
    auto_crop_last_page: bool = True
    """Crop the last page to its last ink row plus margin_y (the reference does)."""
    max_pages: Optional[int] = 64
    """Stop after this many pages per text (the result says `truncated`; the builder, the
    render report and the optical loop count it). 64 A4 pages hold ~500k characters at the
    reference settings, far beyond one reasoning round, while one hostile text (a run of form
    feeds, a model round that degenerates) can no longer allocate without bound. None = no limit."""
    horizontal_scale: float = 1.0
    """Stretch (>1) or squeeze (<1) pages horizontally after layout, like the reference's
    `horizontal-scale` resize; 1.0 = off."""
    newline: str = "break"
    """What an explicit newline does: `break` (start a new line, the reference) or `space`."""
    tab_size: int = 1
    """Spaces a tab becomes. 1 matches the reference, where a tab is plain whitespace."""
    space_shrink: float = 0.05
    """Fraction of each inter-word space a line may give up to fit one more word
    (reportlab's `spaceShrinkage`, 0.05 by default); 0 = never overfill a line."""
    cell_width: int = 0
    """Grid mode (pixels): when > 0 every character takes exactly this many pixels and is centred
    in its cell, so characters sit at fixed positions relative to vision patches; 0 = off."""
    cell_height: int = 0
    """Grid mode (pixels): the row pitch when cell_width > 0 (replaces line_height)."""
    fallback_fonts: List[str] = field(default_factory=list)
    """Fonts tried, in order, for characters the main font lacks; what none has is drawn as the
    main font's .notdef box and counted in `missing_glyphs`."""
    degrade: DegradeConfig = field(default_factory=DegradeConfig)
    """Page degradations (blur, JPEG, jitter, rotation, ink fade, noise, resampling, a font
    per text), applied after layout, seeded per page: `vtc_lab.render.degrade`. All off by
    default (pages byte-identical to a render without it)."""
    adaptive: AdaptiveConfig = field(default_factory=AdaptiveConfig)
    """Adaptive rendering: per text, the densest of a ladder of grid settings whose degraded
    pages a reference reader still reads (`vtc_lab.render.adaptive`). Off by default."""

    def __post_init__(self) -> None:
        if not isinstance(self.font, str) or not self.font.strip():
            _fail("font", f"must be a font name or a path, got {self.font!r}")
        for name in ("font_size", "line_height", "page_width", "page_height", "horizontal_scale"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                _fail(name, f"must be > 0, got {value!r}")
        if isinstance(self.dpi, bool) or not isinstance(self.dpi, int) or self.dpi <= 0:
            _fail("dpi", f"must be a positive integer, got {self.dpi!r}")
        if self.dpi > 1200:
            _fail("dpi", f"must be <= 1200 (pages would not fit in memory), got {self.dpi}")
        if self.font_size * self.dpi / 72.0 < 1:  # FreeType refuses it ("invalid ppem value")
            _fail("font_size", f"must give glyphs at least 1 pixel high: {self.font_size:g} pt "
                  f"at {self.dpi} dpi is {self.font_size * self.dpi / 72.0:g} px (raise "
                  f"renderer.font_size or renderer.dpi)")
        for name in ("margin_x", "margin_y", "padding", "space_shrink"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                _fail(name, f"must be >= 0, got {value!r}")
        if self.space_shrink >= 1:
            _fail("space_shrink", f"must be < 1, got {self.space_shrink}")
        if self.line_height < self.font_size and not self.cell_width:
            _fail("line_height", f"({self.line_height}) must be >= font_size ({self.font_size})")
        inner_w = self.page_width - 2 * (self.margin_x + self.padding)
        if inner_w <= 0:
            _fail("margin_x", f"+ padding leave no room: page_width {self.page_width} - "
                  f"2 x ({self.margin_x} + {self.padding}) = {inner_w:g} pt")
        inner_h = self.page_height - 2 * (self.margin_y + self.padding)
        pitch = self.cell_height * 72.0 / self.dpi if self.cell_width else self.line_height
        if inner_h < pitch:
            _fail("margin_y", f"+ padding leave no room for one line: page_height "
                  f"{self.page_height} - 2 x ({self.margin_y} + {self.padding}) = {inner_h:g} pt "
                  f"< line pitch {pitch:g} pt")
        for name in ("text_color", "background_color"):
            try:
                ImageColor.getrgb(getattr(self, name))
            except (ValueError, AttributeError, TypeError):
                _fail(name, f"is not a colour: {getattr(self, name)!r}")
        if self.alignment not in ALIGNMENTS:
            _fail("alignment", f"must be one of {ALIGNMENTS}, got {self.alignment!r}")
        if self.newline not in NEWLINE_MODES:
            _fail("newline", f"must be one of {NEWLINE_MODES}, got {self.newline!r}")
        if isinstance(self.tab_size, bool) or not isinstance(self.tab_size, int) or self.tab_size < 0:
            _fail("tab_size", f"must be an integer >= 0, got {self.tab_size!r}")
        if self.max_pages is not None and (isinstance(self.max_pages, bool)
                                           or not isinstance(self.max_pages, int)
                                           or self.max_pages < 1):
            _fail("max_pages", f"must be None or an integer >= 1, got {self.max_pages!r}")
        for name in ("cell_width", "cell_height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                _fail(name, f"must be an integer >= 0 (pixels), got {value!r}")
        if bool(self.cell_width) != bool(self.cell_height):
            _fail("cell_height", "and cell_width must both be set (> 0) or both be 0, got "
                  f"cell_width={self.cell_width}, cell_height={self.cell_height}")
        if self.cell_width and self.cell_height < self.font_size * self.dpi / 72.0:
            _fail("cell_height", f"({self.cell_height} px) must be >= the font's pixel size "
                  f"({self.font_size * self.dpi / 72.0:g} px)")
        self.fallback_fonts = list(self.fallback_fonts)
        self.degrade = as_degrade(self.degrade)
        self.adaptive = as_adaptive(self.adaptive)
        self.candidates()  # every ladder setting validated now, naming its index

    def candidates(self) -> list["RenderConfig"]:
        """The adaptive ladder as full configs, densest first ([] when adaptive is off)."""
        out = []
        for i, overrides in enumerate(self.adaptive.settings):
            unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(self)})
            if unknown:
                _fail(f"adaptive.settings[{i}]", f"sets unknown renderer fields {unknown}")
            try:
                cand = dataclasses.replace(self, **overrides, adaptive=AdaptiveConfig())
            except ValueError as err:
                raise ValueError(f"renderer.adaptive.settings[{i}]: {err}") from None
            if not cand.cell_width:
                _fail(f"adaptive.settings[{i}]", "is not a grid layout (cell_width 0): the "
                      "reference reader that picks the setting reads fixed character cells")
            out.append(cand)
        return out

    @property
    def scale(self) -> float:
        """Pixels per point."""
        return self.dpi / 72.0


def config_hash(config: RenderConfig) -> str:
    """A short stable hash of everything that changes pixels: the fields, the renderer version,
    the bytes of every font file used (a font swapped under the same name changes it), the
    degradation settings when any is on and the adaptive ladder when it is on."""
    from vtc_lab.render.fonts import font_digest  # local: fonts imports this module

    payload = dataclasses.asdict(config)
    payload["_renderer_version"] = RENDERER_VERSION
    payload["_fonts"] = [font_digest(name) for name in [config.font, *config.fallback_fonts]]
    # no degradation = no key: clean renders keep the hash they had before degradations existed
    degrade = config.degrade.hash_payload()
    if degrade is None:
        del payload["degrade"]
    else:
        payload["degrade"] = degrade
        payload["_degrade_fonts"] = [font_digest(name) for name in config.degrade.fonts]
    adaptive = config.adaptive.hash_payload()
    if adaptive is None:
        del payload["adaptive"]  # off = no key: hashes of non-adaptive configs did not change
    else:
        payload["adaptive"] = adaptive
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
