"""Rendering of segments for the dataset, with a content-addressed cache.

Key = (sha256 of the segment text, the render config hash, whether layouts are stored). A
resumed build, a second generation sharing a segment, or a sweep that only changes the
segmentation of some traces reuses pages instead of re-rasterising them. Entries are written
to a temporary name and renamed, so a killed build never leaves a half entry behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from vtc_lab import atomic
from vtc_lab.render.png import grey_colours, png_bytes

_MAGIC = b"VTCR1"


@dataclass
class RenderedSegment:
    """The pages of one segment: sizes always, PNG bytes and layouts unless stats-only."""

    sizes: list[tuple[int, int]]
    pngs: list[bytes] | None
    layouts: list[str] | None
    missing_glyphs: int = 0
    dropped_chars: int = 0
    truncated: bool = False
    """The renderer's page cap (`max_pages`) cut the segment short."""


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _layout_json(boxes) -> str:
    """Char boxes of one page as compact JSON rows [index, char, x0, y0, x1, y1]."""
    rows = [[b.index, b.char, b.x0, b.y0, b.x1, b.y1] for b in boxes]
    return json.dumps(rows, ensure_ascii=False, separators=(",", ":"))


def render_segment(text: str, render_cfg, *, encode: bool, layouts: bool) -> RenderedSegment:
    """Render one segment on its own pages (a segment may span several pages)."""
    from vtc_lab.render import render_with_layout

    result = render_with_layout(text, render_cfg, boxes=layouts)
    images, page_boxes = result.images, (result.boxes if layouts else None)
    missing, dropped = int(result.missing_glyphs), int(result.dropped_chars)
    return RenderedSegment(
        sizes=[(int(im.width), int(im.height)) for im in images],
        pngs=[png_bytes(im, grey=grey_colours(render_cfg)) for im in images] if encode else None,
        layouts=[_layout_json(b) for b in page_boxes] if (layouts and encode) else None,
        missing_glyphs=missing,
        dropped_chars=dropped,
        truncated=bool(result.truncated),
    )


class RenderCache:
    """Directory cache `<root>/<render config hash>/<ab>/<text hash>[.L]`; None root = memory only."""

    def __init__(self, root: str | os.PathLike | None, render_hash: str, max_memory_entries: int = 256):
        self.dir = Path(root) / render_hash if root is not None else None
        self._memory: dict[str, RenderedSegment] = {}
        self._max = max_memory_entries
        self.hits = 0
        self.misses = 0

    def _path(self, key: str, layouts: bool) -> Path:
        assert self.dir is not None
        return self.dir / key[:2] / (key + (".L" if layouts else ""))

    def get_or_render(self, text: str, render_cfg, *, encode: bool, layouts: bool) -> RenderedSegment:
        key = text_key(text) + (":L" if layouts else "")
        if key in self._memory and (self._memory[key].pngs is not None or not encode):
            self.hits += 1
            return self._memory[key]
        path = self._path(key.split(":")[0], layouts) if self.dir is not None else None
        seg = _read(path) if path is not None and path.exists() else None
        if seg is None:
            self.misses += 1
            seg = render_segment(text, render_cfg, encode=encode, layouts=layouts)
            if path is not None and encode:
                _write(path, seg)
        else:
            self.hits += 1
        if len(self._memory) >= self._max:
            self._memory.pop(next(iter(self._memory)))
        self._memory[key] = seg
        return seg


def _write(path: Path, seg: RenderedSegment) -> None:
    assert seg.pngs is not None
    header = json.dumps({"sizes": seg.sizes, "lengths": [len(p) for p in seg.pngs],
                         "layouts": seg.layouts, "missing_glyphs": seg.missing_glyphs,
                         "dropped_chars": seg.dropped_chars, "truncated": seg.truncated}).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    # No fsync: `_read` rejects a torn entry and the segment is simply rendered again.
    atomic.write_bytes(path, _MAGIC + struct.pack("<I", len(header)) + header + b"".join(seg.pngs),
                       durable=False)


def _read(path: Path) -> RenderedSegment | None:
    """A cache entry, or None if it is unreadable (then it is simply rendered again)."""
    try:
        blob = path.read_bytes()
        if not blob.startswith(_MAGIC):
            return None
        (n,) = struct.unpack("<I", blob[5:9])
        header = json.loads(blob[9:9 + n])
        pngs, pos = [], 9 + n
        for length in header["lengths"]:
            pngs.append(blob[pos:pos + length])
            pos += length
        if pos != len(blob):
            return None
        return RenderedSegment([tuple(s) for s in header["sizes"]], pngs, header["layouts"],
                               header["missing_glyphs"], header["dropped_chars"],
                               bool(header.get("truncated", False)))
    except (OSError, ValueError, KeyError, struct.error):
        return None
