"""`render_text` / `render_with_layout`: laid-out pages -> RGB images (+ character boxes).

Drawing does not call FreeType per character: every glyph is rasterised once (per font, size and
quarter-pixel phase, see `fonts.Face`) and a page is composed by scattering the glyphs' non-zero
pixels straight into the cropped page array (`np.minimum.at`). That keeps rendering exact (glyphs
sit at the unhinted positions the layout computed, like a PDF viewer draws them), deterministic
(integer operations, no threads) and fast (a few vectorised passes per page). Black-on-white
pages (the default) are drawn straight into their final RGBX bytes in pooled buffers that Pillow
maps as the image (`pagemem`): no conversion pass and no fresh memory to page-fault per page.

Auto-crop follows the reference pipeline, rounding included: a page keeps `margin_x` pixels after
its last ink column (`auto_crop_width`: width = last ink column + 1 + margin_x), and the last page
is cut at its last ink row's index plus `margin_y` (`auto_crop_last_page`: height = last ink row
+ margin_y, so the margin below the ink is margin_y - 1 rows, as the reference's crop computes
it), where ink = a pixel differing from the background by more than 5 grey levels. A page with no ink
at all is cut to its margins (the reference would keep a blank full page).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from PIL import Image, ImageColor

from vtc_lab.render.adaptive import choose
from vtc_lab.render.config import RenderConfig
from vtc_lab.render.degrade import degrade_pages, pick_font
from vtc_lab.render.fonts import PHASES, Face, get_face, resolve_font
from vtc_lab.render.layout import Layout, Line, layout_text
from vtc_lab.render import pagemem

_INK_GREY_LEVELS = 5  # the reference crop's tolerance
_BLANK_ARR = np.array([0x09, 0x20, 0xA0, 0x0A, 0x0C])  # never drawn
_BLANK_LUT = np.zeros(0xA2, bool)  # code point (clipped to 0xA1, which is drawn) -> blank
_BLANK_LUT[_BLANK_ARR] = True
_NO_INK = -(1 << 40)
_PHASE_BITS = PHASES.bit_length() - 1
assert PHASES == 1 << _PHASE_BITS, "glyph phases must be a power of two"  # `Atlas.ink_extent` of a glyph without ink


@dataclass(frozen=True)
class CharBox:
    """Where one character was drawn, in pixels of its page (x1/y1 exclusive, line-box height)."""

    index: int
    """Index of the character in the original text."""
    char: str
    x0: float
    y0: float
    x1: float
    y1: float


@dataclass
class RenderResult:
    """Pages plus what a caller needs to trust them."""

    images: list[Image.Image]
    """The pages. Identical blank pages inside one text (runs of form feeds or newlines) are one
    shared image object, so memory does not grow with them: copy a page before drawing on it."""
    boxes: list[list[CharBox]] = field(default_factory=list)
    """Per page, the characters drawn on it (empty lists unless layout was requested)."""
    missing_glyphs: int = 0
    """Characters no font had, drawn as the .notdef box."""
    dropped_chars: int = 0
    """Control / zero-width / format characters removed before layout."""
    truncated: bool = False
    """True when `max_pages` cut the text short."""
    text_end: int = 0
    """Index in the original text up to which characters were laid out (len(text) unless truncated)."""
    fallback_glyphs: int = 0
    """Characters drawn from a fallback font."""
    adaptive_choice: Optional[int] = None
    """With `renderer.adaptive` on: the index of the ladder setting drawn (None when off)."""
    legibility: list[float] = field(default_factory=list)
    """With `renderer.adaptive` on: the reference reader's score of each setting tried."""


@functools.lru_cache(maxsize=64)
def _faces(cfg_key: tuple) -> list[Face]:
    font, fallbacks, pixel_size = cfg_key
    return [get_face(str(resolve_font(name)), pixel_size) for name in (font, *fallbacks)]


def faces_for(cfg: RenderConfig) -> list[Face]:
    """The main face then the fallbacks, cached per (fonts, pixel size)."""
    return _faces((cfg.font, tuple(cfg.fallback_fonts), cfg.font_size * cfg.scale))


def _grey(rgb: tuple[int, ...]) -> float:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


@dataclass
class _Placed:
    """The characters of one page as flat arrays (normalized-text index, pen x, baseline y) plus
    their boxes (the glyph's advance box, or its cell in grid mode)."""

    idx: np.ndarray
    x: np.ndarray  # pen position, pixels (float)
    base: np.ndarray  # baseline, pixels (int)
    box_x0: np.ndarray
    box_x1: np.ndarray | None
    """None until `boxes()` is asked for (the advance box costs passes nobody reads otherwise)."""
    box_y0: np.ndarray | None
    box_y1: np.ndarray | None
    adv: np.ndarray | None = None
    asc_px: float = 0.0
    desc_px: float = 0.0

    def boxes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if self.box_x1 is None:
            self.box_x1 = self.x + self.adv
            self.box_y0, self.box_y1 = self.base - self.asc_px, self.base + self.desc_px
        return self.box_x0, self.box_x1, self.box_y0, self.box_y1


def _place(layout: Layout, lines: list[Line], cfg: RenderConfig, face: Face,
           cps: np.ndarray, seps: np.ndarray | None = None) -> _Placed:
    """Pen positions of every character on a page (alignment, space squeezing, grid)."""
    scale = cfg.scale
    m = face.metrics
    left = (cfg.margin_x + cfg.padding) * scale
    top = (cfg.margin_y + cfg.padding) * scale
    width_px = (cfg.page_width - 2 * (cfg.margin_x + cfg.padding)) * scale
    asc_px = m.ascent / m.units_per_em * cfg.font_size * scale
    desc_px = -m.descent / m.units_per_em * cfg.font_size * scale
    counts = np.array([ln.end - ln.start for ln in lines], np.int64)
    starts = (np.cumsum(counts) - counts).astype(np.int64)
    text_starts = np.array([ln.start for ln in lines], np.int64)
    idx = np.arange(int(counts.sum())) + np.repeat(text_starts - starts, counts)
    line_of = np.repeat(np.arange(len(lines)), counts)
    adv = layout.widths[idx]
    if scale != 1.0:  # x * 1.0 is x: skip the pass at 72 dpi
        adv = adv * scale
    csum = np.concatenate([[0.0], np.cumsum(adv)])
    line_start = starts[line_of]
    offset = csum[:-1] - csum[line_start]
    shift = {"left": 0.0, "right": 1.0, "center": 0.5}[cfg.alignment]
    if cfg.cell_width:
        cols = math.floor(width_px / cfg.cell_width + 1e-9)
        slack = (cols - counts) * cfg.cell_width
        cell_x = left + np.floor(shift * slack)[line_of] + offset
        # the glyph's own advance, centred in its cell
        glyph = np.array([face.width1000_of(c) for c in cps[idx].tolist()]) * cfg.font_size * 1e-3 * scale
        x = cell_x + (cfg.cell_width - glyph) / 2
        row_top = top + np.arange(len(lines)) * cfg.cell_height
        baseline = np.round(row_top + (cfg.cell_height - asc_px - desc_px) / 2 + asc_px)
        return _Placed(idx, x, baseline[line_of].astype(np.int64), cell_x, cell_x + cfg.cell_width,
                       row_top[line_of], row_top[line_of] + cfg.cell_height)
    slack = width_px - np.array([ln.width for ln in lines]) * scale
    if len(idx) and (slack < 0).any():  # overfull (space-shrunk) line: squeeze its separators
        sep = (_separators(cps) if seps is None else seps)[idx]
        sep_before = np.cumsum(sep) - sep
        sep_before = sep_before - sep_before[line_start]
        gaps = np.array([max(ln.gaps, 1) for ln in lines], np.float64)
        offset = offset + (np.minimum(slack, 0.0) / gaps)[line_of] * sep_before
        slack = np.maximum(slack, 0.0)
    # left aligned: (left + 0.0) + offset is left + offset, bit for bit
    x = left + offset if shift == 0.0 else left + (shift * slack)[line_of] + offset
    # first baseline one font size below the text top (reportlab's offset for multi-line text)
    baseline = np.round(top + (cfg.font_size + np.arange(len(lines)) * cfg.line_height) * scale)
    base = baseline.astype(np.int64)[line_of]
    return _Placed(idx, x, base, x, None, None, None, adv, asc_px, desc_px)


def _separators(cps: np.ndarray) -> np.ndarray:
    """1 where a character is a single space (a break opportunity), else 0 (whole text)."""
    is_sp = cps == 0x20
    prev = np.concatenate([[False], is_sp[:-1]])
    nxt = np.concatenate([is_sp[1:], [False]])
    return (is_sp & ~prev & ~nxt).astype(np.int64)


def _compose(placed: _Placed, cps: np.ndarray, fonts: np.ndarray, faces: list[Face],
             cfg: RenderConfig, last_page: bool, threshold: float,
             rgbx: bool = False) -> tuple[np.ndarray, Image.Image | None]:
    """One page as a cropped uint8 array of 255 - coverage (white = 255: ready for black on
    white, and the inverse of the mask for other colours), and None; with `rgbx`, the page is
    drawn as black on white straight into a `pagemem` RGBX buffer and its RGB image comes back.

    First the crop box is found from the glyphs' precomputed ink extents, then the glyphs'
    pixels are scattered straight into the cropped page with `np.minimum.at` (overlapping
    anti-aliased edges keep the darker value). No full-page temporaries: at these sizes page
    faults on fresh arrays would cost more than the drawing.
    """
    scale = cfg.scale
    page_w, page_h = round(cfg.page_width * scale), round(cfg.page_height * scale)
    cp_page = cps[placed.idx]
    drawn = ~_BLANK_LUT[np.minimum(cp_page, 0xA1)]
    q = np.floor(placed.x * PHASES + 0.5).astype(np.int64)
    groups = []  # (atlas, ids, bx, by) per face
    ink_right = ink_bottom = -1
    for k, face in enumerate(faces):
        sel = drawn & (fonts[placed.idx] == k) if len(faces) > 1 else drawn
        if not sel.any():
            continue
        qs = q[sel]
        # PHASES is a power of two: & and >> are numpy's floor modulo / division, much cheaper
        ids = face.glyph_ids(cp_page[sel], qs & (PHASES - 1))
        atlas = face.atlas()
        bx, by = qs >> _PHASE_BITS, placed.base[sel]
        xr, yb = atlas.ink_extent(threshold)  # far negative for glyphs without ink
        r = int((bx + xr[ids]).max())
        if r > _NO_INK // 2:
            ink_right = max(ink_right, min(page_w - 1, r))
            ink_bottom = max(ink_bottom, min(page_h - 1, int((by + yb[ids]).max())))
        groups.append((atlas, ids, bx, by))
    right, lower = page_w, page_h
    if ink_right >= 0:
        if cfg.auto_crop_width:
            right = min(page_w, ink_right + 1 + round(cfg.margin_x * scale))
        if cfg.auto_crop_last_page and last_page:
            # the index of the last ink row + margin (no +1: the reference's rounding, see above)
            lower = min(page_h, ink_bottom + round(cfg.margin_y * scale))
    else:  # nothing visible: keep just the margins (and one line on the last page)
        if cfg.auto_crop_width:
            right = min(page_w, round((2 * cfg.margin_x + cfg.padding) * scale))
        if cfg.auto_crop_last_page and last_page:
            pitch = cfg.cell_height if cfg.cell_width else cfg.line_height * scale
            lower = min(page_h, round((2 * cfg.margin_y + cfg.padding) * scale + pitch))
    if rgbx:  # rows `page_w` apart whatever the crop: the atlas offsets stay cached per config
        stride = page_w
        out, image = pagemem.new_page(right, lower, stride)
    else:
        stride = right
        out, image = np.full((lower, right), 255, np.uint8), None
    flat_out = out.reshape(-1)
    for atlas, ids, bx, by in groups:
        n = atlas.counts[ids]
        # one bounds test for the whole page first (pens against the atlas-wide glyph extent,
        # then per glyph): usually every glyph lies inside the crop
        x_lo, x_hi, y_lo, y_hi = atlas.extent()
        if ((int(bx.min()) + x_lo >= 0 and int(bx.max()) + x_hi < right
             and int(by.min()) + y_lo >= 0 and int(by.max()) + y_hi < lower)
                or (int((bx + atlas.xmin[ids]).min()) >= 0
                    and int((bx + atlas.xmax[ids]).max()) < right
                    and int((by + atlas.ymin[ids]).min()) >= 0
                    and int((by + atlas.ymax[ids]).max()) < lower)):
            if int(n.min()) > 0:
                _scatter(flat_out, stride, atlas, ids, bx, by, n, rgbx)
            else:
                ok = n > 0
                _scatter(flat_out, stride, atlas, ids[ok], bx[ok], by[ok], n[ok], rgbx)
            continue
        inside = ((bx + atlas.xmin[ids] >= 0) & (bx + atlas.xmax[ids] < right)
                  & (by + atlas.ymin[ids] >= 0) & (by + atlas.ymax[ids] < lower))
        ok = inside & (n > 0)
        if ok.any():  # every pixel of these glyphs lands on the page
            _scatter(flat_out, stride, atlas, ids[ok], bx[ok], by[ok], n[ok], rgbx)
        for g in np.flatnonzero(~inside & (n > 0)).tolist():  # glyphs crossing the crop edge
            a, b = atlas.starts[ids[g]], atlas.starts[ids[g]] + n[g]
            ys, xs = by[g] + atlas.dy[a:b], bx[g] + atlas.dx[a:b]
            keep = (ys >= 0) & (ys < lower) & (xs >= 0) & (xs < right)
            vals = (atlas.inv32 if rgbx else atlas.inv)[a:b]
            np.minimum.at(flat_out, ys[keep] * stride + xs[keep], vals[keep])
    return out, image


def _scatter(flat_out: np.ndarray, stride: int, atlas, ids: np.ndarray, bx: np.ndarray,
             by: np.ndarray, n: np.ndarray, rgbx: bool) -> None:
    """Draw glyphs `ids` (each with n > 0 pixels, all inside the page) with pens at (bx, by) into
    `flat_out` (rows `stride` apart), keeping the darker value where pixels overlap.

    pix (atlas pixel of each drawn pixel) steps by 1 inside a glyph and jumps at each glyph
    start; flat (page pixel) steps by the atlas' own deltas inside a glyph and jumps to pen + rel
    at each start: two running sums in reused scratch arrays, then one `np.minimum.at`. Indices
    are intp: numpy's take and ufunc.at convert narrower ones on every call (measured slower
    than the extra memory traffic of int64).
    """
    it = np.intp
    n = n.astype(it, copy=False)
    ends = np.cumsum(n, dtype=it)
    total = int(ends[-1])
    first = ends - n
    st = atlas.starts[ids]
    pen = by * stride + bx
    rel = atlas.rel(stride, it)
    pix = pagemem.scratch.get("pix", total, it)
    pix.fill(1)
    last = st + (n - 1)
    jump = st.astype(it)  # st - last of the previous glyph (0 before the first)
    jump[1:] -= last[:-1]
    pix[first] = jump
    np.cumsum(pix, dtype=it, out=pix)
    # mode="clip": indices are valid by construction, and "raise" would buffer `out`
    flat = np.take(atlas.rel_delta(stride, it), pix, out=pagemem.scratch.get("flat", total, it),
                   mode="clip")
    end_at = pen + rel[last]
    jump = (pen + rel[st]).astype(it)
    jump[1:] -= end_at[:-1]
    flat[first] = jump
    np.cumsum(flat, dtype=it, out=flat)
    inv = atlas.inv32 if rgbx else atlas.inv
    vals = np.take(inv, pix, out=pagemem.scratch.get("val", total, inv.dtype), mode="clip")
    np.minimum.at(flat_out, flat, vals)


def _to_image(page: np.ndarray, fg: tuple[int, int, int], bg: tuple[int, int, int]) -> Image.Image:
    """RGB image of a `_compose` page (255 - coverage)."""
    if fg == (0, 0, 0) and bg == (255, 255, 255):
        grey = Image.fromarray(page, "L")
        return Image.merge("RGB", (grey, grey, grey))  # ~3x faster than .convert("RGB")
    mask = Image.fromarray(np.subtract(255, page, out=page), "L")
    return Image.composite(Image.new("RGB", mask.size, fg), Image.new("RGB", mask.size, bg), mask)


def _render(text: str, cfg: RenderConfig, want_boxes: bool) -> RenderResult:
    if not isinstance(text, str):
        raise TypeError(f"render_text expects str, got {type(text).__name__}")
    if not cfg.adaptive.active:
        return _render_one(text, cfg, want_boxes)

    def attempt(cand: RenderConfig) -> tuple[RenderResult, list, list, list]:
        # the candidate's pages exactly as `render_text(text, cand)` draws them, plus the
        # clean pages and boxes the reference reader needs
        result = _render_one(text, cand, want_boxes=True, degrade=False)
        clean = result.images
        bg = ImageColor.getrgb(cand.background_color)[:3]
        result.images = degrade_pages(clean, text, cand.degrade, bg)
        return result, clean, result.images, result.boxes

    index, result, scores = choose(cfg.candidates(), attempt, cfg.adaptive.min_legibility)
    if not want_boxes:
        result.boxes = [[] for _ in result.images]
    result.adaptive_choice, result.legibility = index, scores
    return result


def _render_one(text: str, cfg: RenderConfig, want_boxes: bool, degrade: bool = True) -> RenderResult:
    font = pick_font(cfg.degrade, text)
    if font is not None and font != cfg.font:
        cfg = dataclasses.replace(cfg, font=font)
    faces = faces_for(cfg)
    layout = layout_text(text, cfg, faces)
    norm, cps = layout.norm, layout.cps
    fg = ImageColor.getrgb(cfg.text_color)[:3]
    bg = ImageColor.getrgb(cfg.background_color)[:3]
    contrast = abs(_grey(fg) - _grey(bg))
    threshold = 255.0 if contrast == 0 else _INK_GREY_LEVELS * 255.0 / contrast
    result = RenderResult(images=[], missing_glyphs=layout.missing, dropped_chars=norm.dropped,
                          truncated=layout.truncated)
    hs = cfg.horizontal_scale
    rgbx = pagemem.AVAILABLE and fg == (0, 0, 0) and bg == (255, 255, 255)
    seps = None  # single-space flags of the whole text, computed once for all pages
    blank_page = None  # the one image of every blank non-last page (all have the same size)
    for p, lines in enumerate(layout.pages):
        if seps is None and len(layout.pages) > 1:
            seps = _separators(cps)
        placed = _place(layout, lines, cfg, faces[0], cps, seps)
        last = p == len(layout.pages) - 1
        blank = not last and not (~_BLANK_LUT[np.minimum(cps[placed.idx], 0xA1)]).any()
        if blank and blank_page is not None:
            img = blank_page
        else:
            cov, img = _compose(placed, cps, layout.fonts, faces, cfg, last, threshold, rgbx)
            if img is None:
                img = _to_image(cov, fg, bg)
            if hs != 1.0:
                img = img.resize((max(1, round(img.width * hs)), img.height), Image.Resampling.BICUBIC)
            if blank:
                blank_page = img
        result.images.append(img)
        if want_boxes:
            src = norm.src
            boxes = []
            bx0, bx1, by0, by1 = placed.boxes()
            for i, x0, y0, x1, y1 in zip(placed.idx.tolist(), bx0.tolist(), by0.tolist(),
                                         bx1.tolist(), by1.tolist()):
                orig = i if src is None else int(src[i])
                boxes.append(CharBox(orig, text[orig], round(x0 * hs, 3), round(y0, 3),
                                     round(x1 * hs, 3), round(y1, 3)))
            result.boxes.append(boxes)
        else:
            result.boxes.append([])
    if degrade:
        result.images = degrade_pages(result.images, text, cfg.degrade, bg)
    used = layout.fonts[: layout.chars_laid_out]
    result.fallback_glyphs = int((used > 0).sum())
    if layout.chars_laid_out >= len(norm.text):
        result.text_end = len(text)
    else:
        result.text_end = int(norm.src[layout.chars_laid_out]) if norm.src is not None else layout.chars_laid_out
    return result


def render_text(text: str, config: RenderConfig | None = None) -> list[Image.Image]:
    """Render `text` to RGB page images with `config` (default: the VTC-R1 reference settings).

    Deterministic: the same text and config give byte-identical pixels, in any process.
    """
    return _render(text, config or RenderConfig(), want_boxes=False).images


def render_with_layout(text: str, config: RenderConfig | None = None,
                       boxes: bool = True) -> RenderResult:
    """`render_text` plus per-page character boxes and the fallback / drop counters
    (`boxes=False` skips the boxes when only the counters are wanted: faster)."""
    return _render(text, config or RenderConfig(), want_boxes=boxes)
