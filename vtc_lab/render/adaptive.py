"""Adaptive rendering (issue 23 §4): per text, the densest renderer setting that stays legible.

`AdaptiveConfig` is the `renderer.adaptive` sub-config: a ladder of renderer settings, densest
first, and a legibility target. For each text (one reasoning round), the renderer draws it with
each setting in turn, page degradations included, and keeps the first whose pages a reference
reader still reads at `min_legibility`; if none does, the most legible one. So pages that come
through the channel well stay dense, and only the ones that would be misread pay for wider
cells. Off (an empty ladder) by default: pages and `config_hash` are what they were without it.

Why a reference reader and not the model: the renderer must decide before any model sees the
page, on a CPU, in milliseconds (4-36 ms per toy round and rung here). The reader is
nearest-template classification of each grid cell: templates are the clean cells of the
characters on the page (the reader knows the alphabet it is reading), a degraded cell is read
as the template it correlates with best (normalized, over small offsets), and legibility is the
fraction of non-blank cells read right. It is a proxy, and a poor one for a trained model
(experiments/adaptive/README.md: models read perfectly the pages it scores 0.61): a template
reader and a VLM fail on different pages. It is measured on the very damage the
page will carry (the renderer simulates the channel, so it sees its draw; a deployed renderer
facing an unknown channel would use the frontier's measured read rate per setting instead).
Grid pages only (every ladder setting must set `cell_width`), because only there is "the cell
of a character" well defined; proportional layouts are refused with an error that says so.

This module imports no torch (the render package's rule): numpy and Pillow only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List

import numpy as np
from PIL import Image

FORBIDDEN = ("degrade", "adaptive")
"""Renderer fields a ladder setting may not set: the page channel and the ladder are shared."""


def _fail(name: str, message: str) -> None:
    raise ValueError(f"renderer.adaptive.{name} {message}")


@dataclass
class AdaptiveConfig:
    """Per-text choice among renderer settings (off while `settings` is empty)."""

    settings: List[Dict[str, Any]] = field(default_factory=list)
    """Renderer overrides, densest first (e.g. `[{cell_width: 8}, {cell_width: 16, page_width:
    128}]`): each is the renderer config with these fields replaced. Every one must be a grid
    layout (`cell_width` > 0); `degrade` and `adaptive` cannot be overridden. Empty = off."""
    min_legibility: float = 0.95
    """Keep the densest setting whose pages the reference reader reads at this fraction of
    non-blank characters or better, in [0, 1]. 0 = always the densest; 1 = only perfect pages."""

    def __post_init__(self) -> None:
        value = self.min_legibility
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            _fail("min_legibility", f"must be a number in [0, 1], got {value!r}")
        if isinstance(self.settings, (str, dict)) or not all(isinstance(s, dict) for s in self.settings):
            _fail("settings", f"must be a list of mappings of renderer fields, got {self.settings!r}")
        self.settings = [dict(s) for s in self.settings]
        for i, s in enumerate(self.settings):
            bad = [k for k in s if k in FORBIDDEN]
            if bad:
                _fail(f"settings[{i}]", f"may not set {bad}: every setting shares the renderer's "
                      "degradation, and ladders do not nest")

    @property
    def active(self) -> bool:
        return bool(self.settings)

    def hash_payload(self) -> dict[str, Any] | None:
        """What of this config changes pixels (None when off)."""
        if not self.active:
            return None
        return {"settings": self.settings, "min_legibility": float(self.min_legibility)}


def as_adaptive(value: Any) -> AdaptiveConfig:
    """`value` as an AdaptiveConfig: itself, or a recorded dict (run.json, reading.json)."""
    if isinstance(value, AdaptiveConfig):
        return value
    if isinstance(value, dict) or hasattr(value, "keys"):
        try:
            return AdaptiveConfig(**dict(value))
        except TypeError as err:
            raise ValueError(f"renderer.adaptive: unreadable settings {value!r} ({err})") from None
    raise ValueError(f"renderer.adaptive must be a mapping, got {value!r}")


SHIFT_FRACTION = 0.25
"""The reader searches offsets up to this fraction of a cell (each axis) for its best match, so
a page shifted or rotated by a pixel or two is not counted as unreadable: a VLM sees whole
patches, not fixed cells, and is not thrown off by a small shift either."""


def _normalized(x: np.ndarray) -> np.ndarray:
    """Rows minus their mean over unit norm (zero rows stay zero): correlation is invariant to
    faded ink and a brighter paper."""
    x = x - x.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 1e-6)


def legibility(clean: list[Image.Image], degraded: list[Image.Image], boxes: list[list]) -> float:
    """Fraction of the non-blank characters on `degraded` that template reading gets right:
    each cell is read as the character whose clean cell (its first occurrence on these pages)
    correlates best with it, over offsets up to `SHIFT_FRACTION` of a cell. 1.0 for a text with
    no visible character (nothing can be misread)."""
    templates: dict[str, np.ndarray] = {}
    for page, page_boxes in zip(clean, boxes):
        grey = np.asarray(page.convert("L"), np.float32)
        for b in page_boxes:
            if b.char.strip() and b.char not in templates:
                templates[b.char] = grey[round(b.y0):round(b.y1), round(b.x0):round(b.x1)]
    if not templates:
        return 1.0
    chars = list(templates)
    h, w = templates[chars[0]].shape
    if any(t.shape != (h, w) for t in templates.values()):
        raise ValueError("renderer.adaptive: the reference reader needs cells of one size "
                         "(a grid layout: renderer.cell_width > 0)")
    bank = _normalized(np.stack([templates[c].ravel() for c in chars]))      # (k, h*w)
    sy, sx = max(1, round(h * SHIFT_FRACTION)), max(1, round(w * SHIFT_FRACTION))
    right = total = 0
    for page, page_boxes in zip(degraded, boxes):
        wanted = [b for b in page_boxes if b.char.strip()]
        if not wanted:
            continue
        grey = np.asarray(page.convert("L"), np.float32)
        padded = np.pad(grey, ((sy, sy), (sx, sx)), mode="edge")
        best = np.full((len(wanted), len(chars)), -np.inf, np.float32)
        for dy in range(-sy, sy + 1):
            for dx in range(-sx, sx + 1):
                cells = np.stack([padded[round(b.y0) + sy + dy:round(b.y0) + sy + dy + h,
                                         round(b.x0) + sx + dx:round(b.x0) + sx + dx + w].ravel()
                                  for b in wanted])
                np.maximum(best, _normalized(cells) @ bank.T, out=best)
        read = best.argmax(axis=1)
        right += sum(chars[j] == b.char for j, b in zip(read.tolist(), wanted))
        total += len(wanted)
    return right / total if total else 1.0


def choose(candidates: list, render: Callable[[Any], tuple[Any, list, list, list]],
           min_legibility: float) -> tuple[int, Any, list[float]]:
    """(index, result, legibility of each setting tried) of the first candidate whose pages
    read at `min_legibility`, else of the most legible (the densest among ties).
    `render(candidate)` returns (result, clean pages, degraded pages, boxes)."""
    scores: list[float] = []
    results: list[Any] = []
    for i, cand in enumerate(candidates):
        result, clean, degraded, boxes = render(cand)
        score = legibility(clean, degraded, boxes)
        scores.append(score)
        results.append(result)
        if score >= min_legibility:
            return i, result, scores
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    return best, results[best], scores
