"""Fonts: name resolution, metrics straight from the font file, and a cached glyph atlas.

Line breaking uses the font's own advance widths (hmtx, unhinted, exactly what a PDF layout such
as reportlab's uses), never the hinted advances FreeType reports at small pixel sizes (those are
~6 % wider for DejaVu Sans at 9 px and would move every line break).

Glyph bitmaps are rasterised once per (font, pixel size, character, quarter-pixel phase) and
kept in a flat "atlas" of non-zero pixels, so drawing a page is a few vectorised numpy operations
instead of one FreeType call per character (see `renderer._compose`). Everything here is cached per font
file and size, so a font is loaded once per config, not per call.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vtc_lab.render.pagemem import grey_rgbx

FONT_DIR = Path(__file__).parent / "fonts"
BUNDLED_FONTS: dict[str, str] = {
    "DejaVuSans": "DejaVuSans.ttf",
    "DejaVuSansMono": "DejaVuSansMono.ttf",
}
PHASES = 4
"""Horizontal sub-pixel positions per pixel a glyph is rasterised at (quarter pixels)."""
SUPERSAMPLE = 8
"""Glyphs are rasterised at 8x the size and box-filtered down: near-unhinted, evenly
anti-aliased shapes whose ink extent matches a PDF rasteriser's (poppler's) to the pixel."""

_BMP = 0x10000


def resolve_font(font: str) -> Path:
    """A bundled font name (case-insensitive, with or without `.ttf`) or a path -> the file.

    Raises FileNotFoundError naming the font and the bundled choices when nothing matches.
    """
    key = font.strip()
    stem = key[:-4] if key.lower().endswith((".ttf", ".otf")) else key
    for name, filename in BUNDLED_FONTS.items():
        if stem.lower() == name.lower():
            return FONT_DIR / filename
    path = Path(key).expanduser()
    if path.is_file():
        return path.resolve()
    raise FileNotFoundError(
        f"renderer.font: {font!r} is neither a bundled font ({', '.join(BUNDLED_FONTS)}) "
        f"nor an existing font file")


@functools.lru_cache(maxsize=64)
def _digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def font_digest(font: str) -> str:
    """Content hash of the font file `font` resolves to (part of `config_hash`)."""
    return _digest(str(resolve_font(font)))


@dataclass(frozen=True)
class FontMetrics:
    """Size-independent metrics read from the font file."""

    path: str
    units_per_em: int
    ascent: int
    """OS/2 typographic ascender in font units (what reportlab places the first baseline by)."""
    descent: int
    """OS/2 typographic descender in font units (negative)."""
    advance: dict[int, int]
    """Code point -> advance width in font units, for every code point in the cmap."""
    notdef_advance: int
    """Advance of glyph 0 (.notdef), used for characters the font lacks."""
    mono: bool


@functools.lru_cache(maxsize=16)
def load_metrics(path: str) -> FontMetrics:
    """Read cmap + hmtx + OS/2 once per font file."""
    from fontTools.ttLib import TTFont, TTLibError

    try:
        tt = TTFont(path, lazy=True, fontNumber=0)
        cmap = tt.getBestCmap() or {}
        hmtx = tt["hmtx"].metrics
        upem = int(tt["head"].unitsPerEm)
        order = tt.getGlyphOrder()
    except (TTLibError, OSError, KeyError, AssertionError, ValueError, TypeError) as exc:
        raise ValueError(f"renderer.font: cannot read font file {path}: {exc}") from exc
    if "OS/2" in tt:
        ascent, descent = int(tt["OS/2"].sTypoAscender), int(tt["OS/2"].sTypoDescender)
    else:  # pragma: no cover - every sane TrueType font has OS/2
        ascent, descent = int(tt["hhea"].ascent), int(tt["hhea"].descent)
    advance = {cp: int(hmtx[name][0]) for cp, name in cmap.items()}
    # reportlab (and PDF viewers) give NO-BREAK SPACE the width of SPACE and vice versa.
    if 0x20 in advance:
        advance[0xA0] = advance[0x20]
    widths = {advance[cp] for cp in range(0x21, 0x7F) if cp in advance}
    return FontMetrics(path=path, units_per_em=upem, ascent=ascent, descent=descent,
                       advance=advance, notdef_advance=int(hmtx[order[0]][0]),
                       mono=len(widths) == 1)


class Face:
    """One font file at one pixel size: widths for layout plus the glyph atlas for drawing.

    Glyph id `(code_point * PHASES + phase)` keys the atlas; the atlas is append-only and guarded
    by a lock, so faces can be shared between threads.
    """

    def __init__(self, path: str, pixel_size: float) -> None:
        self.metrics = load_metrics(path)
        self.pixel_size = pixel_size
        self.pil = ImageFont.truetype(path, size=pixel_size * SUPERSAMPLE,
                                      layout_engine=ImageFont.Layout.BASIC)
        m = self.metrics
        # reportlab's width unit: 1/1000 em (advance * 1000 / unitsPerEm).
        self.width1000 = np.full(_BMP, np.nan)
        for cp, adv in m.advance.items():
            if cp < _BMP:
                self.width1000[cp] = adv * 1000.0 / m.units_per_em
        self.notdef1000 = m.notdef_advance * 1000.0 / m.units_per_em
        self.layout_width1000 = self.width1000.copy()
        """`width1000` with tab, newline and form feed at 0 (never drawn; the layout's table)."""
        self.layout_width1000[[0x09, 0x0A, 0x0C]] = 0.0
        self._lock = threading.Lock()
        self._slot: dict[int, int] = {}
        self._table = np.full(_BMP * PHASES, -1, np.int64)
        self._masks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._arrays: Atlas | None = None

    def has(self, cp: int) -> bool:
        return cp in self.metrics.advance

    def width1000_of(self, cp: int) -> float:
        adv = self.metrics.advance.get(cp)
        return self.notdef1000 if adv is None else adv * 1000.0 / self.metrics.units_per_em

    def _rasterise(self, cp: int, phase: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Non-zero pixels (dy, dx relative to the pen on the baseline, value) of one glyph with
        the pen `phase / PHASES` px right of a pixel edge."""
        ss = SUPERSAMPLE
        try:
            big, (ox, oy) = self._mask(chr(cp))
        except (ValueError, OSError, UnicodeEncodeError):  # unencodable (e.g. a lone surrogate)
            big, (ox, oy) = self._mask("\ufffd")
        empty = (np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.uint8))
        if big.size == 0:
            return empty
        big = big.astype(np.uint32)
        left = ox + phase * ss // PHASES  # in supersampled pixels from the pixel edge
        x0, y0 = (left // ss) * ss, (oy // ss) * ss
        pad_x, pad_y = left - x0, oy - y0
        h = -(-(big.shape[0] + pad_y) // ss) * ss
        w = -(-(big.shape[1] + pad_x) // ss) * ss
        canvas = np.zeros((h, w), np.uint32)
        canvas[pad_y:pad_y + big.shape[0], pad_x:pad_x + big.shape[1]] = big
        small = canvas.reshape(h // ss, ss, w // ss, ss).sum(axis=(1, 3))
        small = ((small + ss * ss // 2) // (ss * ss)).astype(np.uint8)
        ys, xs = np.nonzero(small)
        if len(ys) == 0:
            return empty
        return ((ys + y0 // ss).astype(np.int32), (xs + x0 // ss).astype(np.int32),
                small[ys, xs])

    def _mask(self, ch: str) -> tuple[np.ndarray, tuple[int, int]]:
        """Coverage of one glyph at the supersampled size, and its top-left offset from the pen
        on the baseline. Drawn with public Pillow API (`ImageDraw.text`, anchor "ls"), which
        pastes exactly FreeType's mask: each glyph is drawn once per phase and then cached in
        the atlas, so this path costs nothing measurable."""
        left, top, right, bottom = self.pil.getbbox(ch, mode="L", anchor="ls")
        if right <= left or bottom <= top:
            return np.zeros((0, 0), np.uint8), (left, top)
        canvas = Image.new("L", (right - left, bottom - top), 0)
        ImageDraw.Draw(canvas).text((-left, -top), ch, fill=255, font=self.pil, anchor="ls")
        return np.asarray(canvas), (left, top)

    def glyph_ids(self, cps: np.ndarray, phases: np.ndarray) -> np.ndarray:
        """Atlas ids for (code point, phase) pairs, rasterising the new ones.

        A dense table covers the Basic Multilingual Plane (one gather per page); other planes
        and first sightings go through the locked slow path."""
        keys = np.asarray(cps, np.int64) * PHASES + phases
        if len(keys) and int(keys.max()) < len(self._table):  # all in the BMP: one gather
            ids = self._table[keys]
        else:
            ids = np.full(len(keys), -1, np.int64)
            bmp = keys < len(self._table)
            ids[bmp] = self._table[keys[bmp]]
        todo = np.flatnonzero(ids < 0)
        if len(todo):
            uniq, inverse = np.unique(keys[todo], return_inverse=True)
            slots = np.empty(len(uniq), np.int64)
            with self._lock:
                for i, key in enumerate(uniq.tolist()):
                    slot = self._slot.get(key)
                    if slot is None:
                        slot = len(self._masks)
                        self._masks.append(self._rasterise(key // PHASES, key % PHASES))
                        self._slot[key] = slot
                        self._arrays = None
                        if key < len(self._table):
                            self._table[key] = slot
                    slots[i] = slot
            ids[todo] = slots[inverse]
        return ids

    def atlas(self) -> "Atlas":
        """Flat arrays over every glyph rasterised so far (rebuilt only after new glyphs)."""
        with self._lock:
            if self._arrays is None:
                self._arrays = Atlas(self._masks)
            return self._arrays


class Atlas:
    """All rasterised glyphs as flat numpy arrays, for vectorised page composition.

    Glyph g owns pixels `starts[g] : starts[g] + counts[g]` of `dy`, `dx`, `val`; its pixel
    extent relative to the pen is [xmin, xmax] x [ymin, ymax] (empty glyphs: xmax < xmin).
    """

    def __init__(self, masks: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
        self.counts = np.array([len(v) for _, _, v in masks], np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64)
        cat = (lambda i, dt: np.concatenate([m[i] for m in masks]).astype(dt) if masks
               else np.zeros(0, dt))
        self.dy, self.dx, self.val = cat(0, np.int64), cat(1, np.int64), cat(2, np.uint8)
        self.inv = 255 - self.val  # drawn as darkness on a white (255) page
        self.inv32 = grey_rgbx(self.inv)  # the same as RGBX pixels (pagemem pages)
        self.xmin = np.array([m[1].min() if len(m[1]) else 0 for m in masks], np.int64)
        self.xmax = np.array([m[1].max() if len(m[1]) else -1 for m in masks], np.int64)
        self.ymin = np.array([m[0].min() if len(m[0]) else 0 for m in masks], np.int64)
        self.ymax = np.array([m[0].max() if len(m[0]) else -1 for m in masks], np.int64)
        self._rel: dict[tuple[int, str], np.ndarray] = {}
        self._ink: dict = {}
        self._extent: tuple[int, int, int, int] | None = None

    def rel(self, width: int, dtype: type = np.int64) -> np.ndarray:
        """Each pixel's flat offset from its pen position on a canvas `width` pixels wide."""
        key = (width, np.dtype(dtype).str)
        rel = self._rel.get(key)
        if rel is None:  # cheap to rebuild; keep a few so memory stays flat over many widths
            if len(self._rel) >= 8:
                self._rel.pop(next(iter(self._rel)))
            rel = self._rel[key] = (self.dy * width + self.dx).astype(dtype)
        return rel

    def rel_delta(self, width: int, dtype: type = np.int64) -> np.ndarray:
        """`rel(width)` as differences from the previous pixel (glyph starts are overwritten by
        the caller): the page offsets of a glyph's pixels are then one running sum."""
        key = (-width, np.dtype(dtype).str)
        rd = self._rel.get(key)
        if rd is None:
            if len(self._rel) >= 8:
                self._rel.pop(next(iter(self._rel)))
            rd = self._rel[key] = np.diff(self.rel(width, dtype), prepend=dtype(0)).astype(dtype)
        return rd

    def extent(self) -> tuple[int, int, int, int]:
        """(min xmin, max xmax, min ymin, max ymax) over all glyphs with pixels: a cheap
        conservative bound for a whole page's glyphs."""
        if self._extent is None:
            has = self.counts > 0
            self._extent = ((int(self.xmin[has].min()), int(self.xmax[has].max()),
                             int(self.ymin[has].min()), int(self.ymax[has].max()))
                            if has.any() else (0, -1, 0, -1))
        return self._extent

    def ink_extent(self, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """`ink`'s right-most column and lowest row per glyph, -2**40 for glyphs without ink (so
        a page's extent is one max, no mask)."""
        key = ("extent", threshold)
        if key not in self._ink:
            has, xr, yb = self.ink(threshold)
            self._ink[key] = (np.where(has, xr, -(1 << 40)), np.where(has, yb, -(1 << 40)))
        return self._ink[key]

    def ink(self, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per glyph: has a pixel > threshold, and the right-most / lowest such pixel."""
        if threshold not in self._ink:
            n = len(self.counts)
            has = np.zeros(n, bool)
            xr = np.full(n, -1, np.int64)
            yb = np.full(n, -1, np.int64)
            inked = self.val > threshold
            if inked.any():
                owner = np.repeat(np.arange(n), self.counts)[inked]
                has[owner] = True
                np.maximum.at(xr, owner, self.dx[inked])
                np.maximum.at(yb, owner, self.dy[inked])
            self._ink[threshold] = (has, xr, yb)
        return self._ink[threshold]


@functools.lru_cache(maxsize=32)
def get_face(path: str, pixel_size: float) -> Face:
    """The cached `Face` for a font file at a pixel size (loaded once per process)."""
    return Face(path, pixel_size)
