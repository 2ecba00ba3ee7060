"""Text -> lines -> pages, in points, with the same line breaks as the reference reportlab layout.

The reference pipeline (Glyph / VTC-R1) feeds the text to one reportlab `Paragraph` with runs of
two or more spaces turned into no-break spaces and newlines into `<br/>`. Its line breaking,
reproduced here with our own code from the rules it follows:

- words are maximal runs of non-space characters, where a run of >= 2 spaces counts as part of
  the word (it became `&nbsp;`s); a single space is a break opportunity and is dropped at a line
  start or end;
- a word joins the line if `width + space + word <= max_width + shrink * space * gaps`, where
  `gaps` is the number of inter-word spaces the line would then have (reportlab's
  `spaceShrinkage` = 0.05); an overfull line is drawn with its spaces squeezed to fit;
- a word wider than a whole line is split character by character: the first piece fills what is
  left of the current line, the next pieces fill whole lines, the last one continues normally;
- widths are the font's own advances in 1/1000 em, summed per word, times the size;
- a page holds floor(inner height / line height) lines; the first baseline sits one font size
  below the top of the text area (reportlab's offset for a paragraph with `<br/>`s; without any
  it would use the font's ascent, ~2 px higher at 9 pt: we keep one rule);
- a page that follows a page ending in an explicit newline starts with one blank line (the
  `<br/>` is carried over by reportlab's paragraph split).

Beyond the reference: `\\f` forces a page break, tabs become `tab_size` spaces, control and
zero-width characters are dropped (and counted), missing glyphs come from fallback fonts or are
drawn as the font's .notdef box (counted).
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
import unicodedata
from dataclasses import dataclass, field

import numpy as np

from vtc_lab.render.config import RenderConfig
from vtc_lab.render.fonts import Face

_TOKEN_RE = re.compile(r"(?P<w>(?:[^ \t\n\f]| {2,})+)|(?P<nl>\n)|(?P<ff>\f)")
# Characters normalize() must act on: controls (Cc) except \t \n \f, format characters (Cf,
# Unicode 15 ranges), surrogates, and the other line separators. Text without any of them (and
# without tabs when tab_size != 1) is used as is: the fast path.
_ACT_RE = re.compile(
    "[\x00-\x08\x0b\x0d-\x1f\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891"
    "\u08e2\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
    "\ud800-\udfff\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f]")
_NEWLINES = {"\n", "\x0b", "\x85", "\u2028", "\u2029"}


@dataclass
class Normalized:
    """The text as laid out: `text[i]` was `source[src[i]]` (src None = identity)."""

    text: str
    src: np.ndarray | None
    dropped: int


_ACT_BMP: np.ndarray | None = None


def _needs_action(text: str, cps: np.ndarray | None) -> bool:
    """`_ACT_RE.search(text)`, vectorised over the code points when they are at hand (a table
    of the Basic Multilingual Plane built once from the same regex; other planes: the regex)."""
    global _ACT_BMP
    if cps is None or len(cps) < 64:
        return _ACT_RE.search(text) is not None
    if _ACT_BMP is None:
        table = np.zeros(0x10000, bool)
        every = "".join(map(chr, range(0x10000)))
        table[[m.start() for m in _ACT_RE.finditer(every)]] = True
        _ACT_BMP = table
    if int(cps.max()) >= 0x10000:
        return _ACT_RE.search(text) is not None
    return bool(_ACT_BMP[cps].any())


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), "<u4").astype(np.int64)


def normalize(text: str, cfg: RenderConfig, cps: np.ndarray | None = None) -> Normalized:
    """Map line breaks, tabs and invisible characters to what the layout understands
    (`cps`: the text's code points, if already computed)."""
    if not _needs_action(text, cps) and (cfg.tab_size == 1 or "\t" not in text):
        if cfg.newline == "space":
            text = text.replace("\n", " ")
        return Normalized(text, None, 0)
    out: list[str] = []
    src: list[int] = []
    dropped = 0
    newline = "\n" if cfg.newline == "break" else " "
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\r":
            if i + 1 < n and text[i + 1] == "\n":  # \r\n is one newline
                dropped += 1
            else:
                out.append(newline)
                src.append(i)
        elif ch in _NEWLINES:
            out.append(newline)
            src.append(i)
        elif ch == "\f":
            out.append("\f")
            src.append(i)
        elif ch == "\t" and cfg.tab_size == 1:
            out.append("\t")  # plain whitespace like in the reference; see _TAB_GAP_RE
            src.append(i)
        elif ch == "\t":
            out.extend(" " * cfg.tab_size)
            src.extend([i] * cfg.tab_size)
            dropped += cfg.tab_size == 0
        elif ch < " " or "\x7f" <= ch < "\xa0" or unicodedata.category(ch) in ("Cc", "Cf", "Cs"):
            dropped += 1  # control, format (zero-width, soft hyphen, bidi marks), surrogates
        else:
            out.append(ch)
            src.append(i)
        i += 1
    return Normalized("".join(out), np.asarray(src, np.int64), dropped)


@dataclass
class Line:
    """One laid-out line: characters `start:end` of the normalized text."""

    start: int
    end: int
    width: float
    """Natural width in points (before any space squeezing)."""
    gaps: int
    """Inter-word spaces on the line (the ones squeezed when it is overfull)."""
    hard: bool = False
    """Ended by an explicit newline (not by wrapping)."""


@dataclass
class Layout:
    """Pages of lines plus the per-character widths they were measured with."""

    norm: Normalized
    widths: np.ndarray
    """Advance of each normalized character in points."""
    fonts: np.ndarray
    """Face index per normalized character (0 = main font, i = fallback_fonts[i-1])."""
    pages: list[list[Line]] = field(default_factory=list)
    missing: int = 0
    """Characters no font has (drawn as .notdef)."""
    truncated: bool = False
    chars_laid_out: int = 0
    """Normalized characters placed on the kept pages."""
    cps: np.ndarray | None = None
    """Code points of the normalized text."""


def char_widths(text: str, faces: list[Face], cfg: RenderConfig,
                cps: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-character advance (points), face index and the count of characters no face has."""
    if cps is None:
        cps = _code_points(text)
    main = faces[0]
    if len(cps) and int(cps.max()) < 0x10000:  # one gather; \t \n \f are 0 in this table
        w1000 = main.layout_width1000[cps]
    else:
        w1000 = np.full(len(cps), np.nan)
        bmp = cps < 0x10000
        w1000[bmp] = main.width1000[cps[bmp]]
        w1000[(cps == 0x0A) | (cps == 0x0C) | (cps == 0x09)] = 0.0  # never drawn (tab gaps: below)
    font_idx = np.zeros(len(cps), np.int8)
    missing = 0
    for i in np.flatnonzero(np.isnan(w1000)).tolist():
        cp = int(cps[i])
        for k, face in enumerate(faces):
            if face.has(cp):
                w1000[i], font_idx[i] = face.width1000_of(cp), k
                break
        else:
            w1000[i] = main.notdef1000
            missing += text[i] not in "\n\f\t"
    if "\t" in text:  # whitespace between words that holds a tab is drawn as one space
        space, prev_end = main.width1000_of(0x20), -1
        for m in _TOKEN_RE.finditer(text):
            if m.lastgroup != "w":
                prev_end = -1
                continue
            if prev_end >= 0 and "\t" in text[prev_end:m.start()]:
                w1000[prev_end] = space
                w1000[prev_end + 1:m.start()] = 0.0
            prev_end = m.end()
    widths = w1000 * (cfg.font_size * 0.001)
    if cfg.cell_width:
        widths[:] = cfg.cell_width / cfg.scale
    return widths, font_idx, missing


def _split_long(widths: list[float], s: int, first_avail: float, max_w: float) -> list[int]:
    """Cut points of the word starting at text index s with these character widths: the first
    piece fits `first_avail`, the others `max_w` (greedy; a character wider than a line goes
    alone). Returns the piece ends as text indices."""
    ends: list[int] = []
    avail, piece_w, i, e = first_avail, 0.0, 0, len(widths)
    while i < e:
        cw = widths[i]
        if piece_w + cw > avail and (piece_w > 0 or cw <= max_w):
            ends.append(s + i)
            avail, piece_w = max_w, 0.0
            continue
        piece_w += cw
        i += 1
    ends.append(s + e)
    return ends


_BREAK_LUT = np.zeros(0x0E, bool)  # tab, newline, form feed (code points clipped to 0x0D)
_BREAK_LUT[[0x09, 0x0A, 0x0C]] = True


def _words(cps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Word spans: maximal runs of characters other than single spaces, tabs, \\n and \\f
    (a run of >= 2 spaces belongs to the word, like the reference's `&nbsp;`s)."""
    n = len(cps)
    pad = np.zeros(n + 2, bool)  # single-space test with a blank cell on both sides
    pad[1:-1] = cps == 0x20
    single = pad[1:-1] & ~pad[:-2] & ~pad[2:]
    pad[1:-1] = ~(single | _BREAK_LUT[np.minimum(cps, 0x0D)])  # now: is a word character
    edges = np.flatnonzero(pad[1:] != pad[:-1])  # alternating word starts and ends
    return edges[0::2], edges[1::2]


def break_lines(norm: str, cps: np.ndarray, w1000_cum: np.ndarray, size: float, max_w: float,
                space_w: float, shrink: float) -> list[tuple[list[Line], bool]]:
    """Greedy line breaking. Returns (lines, page_break_after) blocks separated by form feeds.

    `w1000_cum[i]` is the summed width (1/1000 em) of norm[:i]; `size` is the font size / 1000,
    so a word's width is `(cum[e] - cum[s]) * size` points, like reportlab's per-word
    `stringWidth`. The loop runs over words with plain Python floats (numpy scalars are slow).
    """
    cum = w1000_cum
    ws_arr, we_arr = _words(cps)
    ww_arr = (cum[we_arr] - cum[ws_arr]) * size
    ww_l = ww_arr.tolist()
    ws_l, we_l = ws_arr.tolist(), we_arr.tolist()
    breaks = np.flatnonzero((cps == 0x0A) | (cps == 0x0C)).tolist()
    blocks: list[tuple[list[Line], bool]] = []
    lines: list[Line] = []
    ls = le = -1  # current line span, -1 = no word yet
    cur, n = 0.0, 0

    def pieces(s: int, e: int, first_avail: float) -> list[int]:
        return _split_long(((cum[s + 1:e + 1] - cum[s:e]) * size).tolist(), s, first_avail, max_w)

    def on_break(p: int) -> None:
        nonlocal ls, le, cur, n, lines
        if norm[p] == "\n":
            lines.append(Line(p, p, 0.0, 0, hard=True) if ls < 0
                         else Line(ls, le, cur, n - 1, hard=True))
        else:  # form feed: finish the line if any, then a page break
            if ls >= 0:
                lines.append(Line(ls, le, cur, n - 1, hard=True))
            blocks.append((lines, True))
            lines = []
        ls = le = -1
        cur, n = 0.0, 0

    # Jump ahead at each line start: with P the prefix sums of word widths and
    # G[j] = P[j+1] + (1 - shrink) * space * j, words k..j fit on one line iff
    # G[j] <= max_w + P[k] + (1 - shrink) * space * k, and G is non-decreasing, so one
    # searchsorted finds the line; the word after it goes through the exact rules below.
    nw = len(ws_l)
    c = space_w * (1.0 - shrink)
    prefix = np.concatenate([[0.0], np.cumsum(ww_arr)])
    g_arr = prefix[1:] + c * np.arange(nw)
    brk_arr = np.asarray(breaks + [len(norm)], np.int64)
    # first word after the break that ends each word's segment
    seg_end = np.searchsorted(ws_arr, brk_arr)[np.searchsorted(brk_arr, ws_arr)].tolist()
    prefix_l = prefix.tolist()
    g_l = g_arr.tolist()
    eps = 1e-6  # points: far above the float error of the prefix sums, far below any real gap

    bi, nb = 0, len(breaks)
    k = 0
    while k < nw:
        s, e, ww = ws_l[k], we_l[k], ww_l[k]
        k += 1
        while bi < nb and breaks[bi] < s:
            p = breaks[bi]
            bi += 1
            if norm[p] == "\n":  # on_break's common case, inline
                lines.append(Line(p, p, 0.0, 0, True) if ls < 0 else Line(ls, le, cur, n - 1, True))
                ls = le = -1
                cur, n = 0.0, 0
            else:
                on_break(p)
        if n == 0:
            if ww <= max_w and seg_end[k - 1] > k:  # jump to the last word that surely fits
                # As for the jump after a wrap below: only when no word boundary lies within
                # `eps` of the limit, and the width summed in the per-word rule's order, so
                # the line is exactly the one that rule gives (else: word by word).
                i, end = k - 1, seg_end[k - 1]
                bound = max_w + prefix_l[i] + c * i
                j = max(i, bisect_right(g_l, bound - eps, i, end) - 1)
                if j == max(i, bisect_right(g_l, bound + eps, i, end) - 1):
                    cur = ww
                    for m in range(k, j + 1):
                        cur = cur + space_w + ww_l[m]
                    ls, le, n = s, we_l[j], j - i + 1
                    k = j + 1
                    continue
            if ww > max_w:
                ends = pieces(s, e, max_w)
                start = s
                for end in ends[:-1]:
                    lines.append(Line(start, end, float(cum[end] - cum[start]) * size, 0))
                    start = end
                ls, le, cur, n = start, e, float(cum[e] - cum[start]) * size, 1
            else:
                ls, le, cur, n = s, e, ww, 1
            continue
        new = cur + space_w + ww
        if new <= max_w + shrink * space_w * n:
            le, cur, n = e, new, n + 1
        elif ww > max_w:  # a long word fills the rest of this line, then whole lines
            ends = pieces(s, e, max_w - space_w - cur)
            if ends[0] > s:
                le, cur, n = ends[0], cur + space_w + float(cum[ends[0]] - cum[s]) * size, n + 1
            lines.append(Line(ls, le, cur, n - 1))
            start = ends[0]
            for end in ends[1:-1]:
                lines.append(Line(start, end, float(cum[end] - cum[start]) * size, 0))
                start = end
            ls, le, cur, n = start, e, float(cum[e] - cum[start]) * size, 1
        else:
            lines.append(Line(ls, le, cur, n - 1))
            ls, le, cur, n = s, e, ww, 1
            # Jump over the words that surely fit on this new line: when no word boundary lies
            # within `eps` of the limit, the exact per-word rule would accept words k..j and
            # reject j+1, so only the width is summed, in the same order as that rule does.
            i, end = k - 1, seg_end[k - 1]
            if end > k:
                bound = max_w + prefix_l[i] + c * i
                j = bisect_right(g_l, bound - eps, i, end) - 1
                if j > i and j == bisect_right(g_l, bound + eps, i, end) - 1:
                    for m in range(k, j + 1):
                        cur = cur + space_w + ww_l[m]
                    le, n = we_l[j], j - i + 1
                    k = j + 1
    while bi < nb:
        on_break(breaks[bi])
        bi += 1
    if ls >= 0:
        lines.append(Line(ls, le, cur, n - 1))
    blocks.append((lines, False))
    return blocks


def paginate(lines: list[Line], per_page: int) -> list[list[Line]]:
    """Cut lines into pages. Like the reference, a page that follows a page ending in an
    explicit newline starts with one blank line (reportlab carries the `<br/>` over)."""
    pages: list[list[Line]] = []
    page: list[Line] = []
    for ln in lines:
        if len(page) == per_page:
            pages.append(page)
            prev = page[-1]
            page = [Line(prev.end, prev.end, 0.0, 0)] if prev.hard and per_page > 1 else []
        page.append(ln)
    if page:
        pages.append(page)
    return pages


def layout_text(text: str, cfg: RenderConfig, faces: list[Face]) -> Layout:
    """Normalize, measure, break into lines and paginate."""
    cps = _code_points(text)
    norm = normalize(text, cfg, cps)
    if norm.text is not text:
        cps = _code_points(norm.text)
    widths, fonts, missing = char_widths(norm.text, faces, cfg, cps)
    size = cfg.font_size
    w1000 = widths / (size * 0.001)
    cum = np.concatenate([[0.0], np.cumsum(w1000)])
    if cfg.cell_width:
        scale = cfg.scale
        cols = math.floor((cfg.page_width - 2 * (cfg.margin_x + cfg.padding)) * scale / cfg.cell_width + 1e-9)
        # Widths are summed in font units (cell / size * 1000: not exact in binary), so a line
        # that fills the grid exactly can come out a hair over; a tolerance far below one cell
        # keeps full-width lines on one row.
        max_w = max(cols, 1) * cfg.cell_width / scale * (1 + 1e-9)
        space_w, shrink = cfg.cell_width / scale, 0.0
        per_page = math.floor((cfg.page_height - 2 * (cfg.margin_y + cfg.padding)) * scale
                              / cfg.cell_height + 1e-9)
    else:
        max_w = cfg.page_width - 2 * (cfg.margin_x + cfg.padding)
        space_w = faces[0].width1000_of(0x20) * size * 0.001
        shrink = cfg.space_shrink
        per_page = math.floor((cfg.page_height - 2 * (cfg.margin_y + cfg.padding)) / cfg.line_height + 1e-8)
    per_page = max(per_page, 1)
    layout = Layout(norm=norm, widths=widths, fonts=fonts, missing=missing, cps=cps)
    for lines, page_break in break_lines(norm.text, cps, cum, size * 0.001, max_w, space_w, shrink):
        layout.pages.extend(paginate(lines, per_page) if lines else ([[]] if page_break else []))
    if not layout.pages:
        layout.pages.append([])
    if cfg.max_pages is not None and len(layout.pages) > cfg.max_pages:
        layout.pages = layout.pages[:cfg.max_pages]
        layout.truncated = True
    last = [ln for page in layout.pages for ln in page]
    layout.chars_laid_out = last[-1].end if last else 0
    if not layout.truncated:
        layout.chars_laid_out = len(norm.text)
    return layout
