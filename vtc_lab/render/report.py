"""The compression report: render texts, count text and vision tokens, summarise.

One pass per text: render once, then count vision tokens for every backbone from the page
sizes (cheap), so adding backbones costs nothing. Timing covers rendering only (`render_s`) and
the whole pass (`total_s`), so the renderer's speed is visible next to the tokenizer's.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from PIL import Image
from tqdm import tqdm

from vtc_lab.render.compression import compression, median_ratio, pooled_ratio
from vtc_lab.render.config import RenderConfig
from vtc_lab.render.renderer import render_with_layout
from vtc_lab.render.text_tokens import TextTokenizer
from vtc_lab.render.vision import get_spec


@dataclass
class TextRow:
    """One text's numbers (what `per_text.jsonl` holds)."""

    index: int
    chars: int
    text_tokens: int
    pages: int
    page_sizes: list[tuple[int, int]]
    vision_tokens: dict[str, int]
    ratio: dict[str, float]
    missing_glyphs: int
    dropped_chars: int
    truncated: bool
    adaptive_choice: int | None = None
    """With `renderer.adaptive` on: the ladder setting drawn (its index)."""
    legibility: float | None = None
    """With `renderer.adaptive` on: the reference reader's score of the drawn pages."""


def measure(texts: Sequence[str], render_cfg: RenderConfig, tokenizer: TextTokenizer,
            backbones: Sequence[str], min_pixels: int | None = None, max_pixels: int | None = None,
            progress: bool = True,
            on_pages: Callable[[int, list[Image.Image]], None] | None = None
            ) -> tuple[list[TextRow], dict[str, float]]:
    """Render + count every text; returns per-text rows and a flat metrics dict."""
    specs = [get_spec(b) for b in backbones]
    rows: list[TextRow] = []
    per_backbone: dict[str, list] = {s.name: [] for s in specs}
    render_s = 0.0
    t_all = time.perf_counter()
    for i, text in enumerate(tqdm(texts, desc="render", unit="text", disable=not progress)):
        t0 = time.perf_counter()
        res = render_with_layout(text, render_cfg, boxes=False)
        render_s += time.perf_counter() - t0
        if on_pages is not None:
            on_pages(i, res.images)
        n_text = tokenizer.count(text)
        sizes = [im.size for im in res.images]
        vis, ratio = {}, {}
        for spec in specs:
            c = compression(n_text, sizes, spec, min_pixels, max_pixels)
            per_backbone[spec.name].append(c)
            vis[spec.name], ratio[spec.name] = c.vision_tokens, c.ratio
        rows.append(TextRow(i, len(text), n_text, len(sizes), sizes, vis, ratio,
                            res.missing_glyphs, res.dropped_chars, res.truncated,
                            res.adaptive_choice,
                            res.legibility[res.adaptive_choice] if res.legibility else None))
    total_s = time.perf_counter() - t_all
    pages = sum(r.pages for r in rows)
    m: dict[str, float] = {
        "render/texts": len(rows),
        "render/pages": pages,
        "render/chars": sum(r.chars for r in rows),
        "render/text_tokens": sum(r.text_tokens for r in rows),
        "render/pages_per_text_median": statistics.median(r.pages for r in rows) if rows else 0,
        "render/missing_glyphs": sum(r.missing_glyphs for r in rows),
        "render/dropped_chars": sum(r.dropped_chars for r in rows),
        "render/truncated_texts": sum(r.truncated for r in rows),
        "render/render_s": render_s,
        "render/total_s": total_s,
        "render/texts_per_s": len(rows) / render_s if render_s else 0.0,
        "render/pages_per_s": pages / render_s if render_s else 0.0,
    }
    if render_cfg.adaptive.active:  # how often each ladder setting was drawn, and how legibly
        for k in range(len(render_cfg.adaptive.settings)):
            m[f"render/adaptive/setting_{k}_texts"] = sum(r.adaptive_choice == k for r in rows)
        scores = [r.legibility for r in rows if r.legibility is not None]
        m["render/adaptive/legibility_mean"] = statistics.fmean(scores) if scores else 0.0
    for spec in specs:
        items = per_backbone[spec.name]
        key = f"render/{spec.name}"
        m[f"{key}/vision_tokens"] = sum(c.vision_tokens for c in items)
        m[f"{key}/vision_tokens_delim"] = sum(c.vision_tokens_delim for c in items)
        m[f"{key}/ratio_pooled"] = pooled_ratio(items)
        m[f"{key}/ratio_pooled_delim"] = pooled_ratio(items, delimiters=True)
        m[f"{key}/ratio_median"] = median_ratio(items)
        m[f"{key}/ratio_median_delim"] = median_ratio(items, delimiters=True)
    return rows, m


def format_table(m: dict[str, float], backbones: Sequence[str], title: str) -> str:
    """The human-readable report printed by `vtc-lab render`."""
    lines = [title, ""]
    lines.append(f"  texts {int(m['render/texts']):>8}   pages {int(m['render/pages']):>8}   "
                 f"chars {int(m['render/chars']):>10}   text tokens {int(m['render/text_tokens']):>10}")
    lines.append(f"  render {m['render/render_s']:.2f} s ({m['render/texts_per_s']:.0f} texts/s, "
                 f"{m['render/pages_per_s']:.0f} pages/s); whole pass {m['render/total_s']:.2f} s")
    if m["render/missing_glyphs"] or m["render/dropped_chars"] or m["render/truncated_texts"]:
        lines.append(f"  missing glyphs {int(m['render/missing_glyphs'])}, dropped chars "
                     f"{int(m['render/dropped_chars'])}, truncated texts {int(m['render/truncated_texts'])}")
    settings = sorted(k for k in m if k.startswith("render/adaptive/setting_"))
    if settings:
        drawn = ", ".join(f"setting {k.split('_')[1]}: {int(m[k])}" for k in settings)
        lines.append(f"  adaptive: texts per ladder {drawn}; reference-reader legibility "
                     f"of the drawn pages {m['render/adaptive/legibility_mean']:.3f}")
    lines += ["", "  compression = text tokens / vision tokens "
                  "(pooled = sum/sum; +delim = with 2 image delimiter tokens per page)", ""]
    head = f"  {'backbone':<12}{'vision tok':>12}{'+delim':>12}{'pooled':>9}{'+delim':>9}{'median':>9}{'+delim':>9}"
    lines += [head, "  " + "-" * (len(head) - 2)]
    for b in backbones:
        k = f"render/{get_spec(b).name}"
        lines.append(f"  {get_spec(b).name:<12}{int(m[k + '/vision_tokens']):>12}"
                     f"{int(m[k + '/vision_tokens_delim']):>12}{m[k + '/ratio_pooled']:>9.2f}"
                     f"{m[k + '/ratio_pooled_delim']:>9.2f}{m[k + '/ratio_median']:>9.2f}"
                     f"{m[k + '/ratio_median_delim']:>9.2f}")
    return "\n".join(lines)
