"""Bad input never crashes or hangs: a clear error, or a visible fallback that is counted."""

from __future__ import annotations

import time

import numpy as np
import pytest

from vtc_lab.render import RenderConfig, render_text, render_with_layout
from vtc_lab.render.fonts import load_metrics, resolve_font

MAX_W = 595 - 2 * 16  # text width in pixels at 72 dpi


def _ink(img) -> int:
    return int((np.asarray(img.convert("L")) < 250).sum())


@pytest.mark.parametrize("text", ["", " ", "   \n \t \n\n  ", "\u200b\u00ad\ufeff"])
def test_empty_and_blank_text_give_one_small_blank_page(text) -> None:
    res = render_with_layout(text)
    assert len(res.images) == 1
    img = res.images[0]
    assert _ink(img) == 0
    assert img.size == (26, 36)  # margins + padding, one line high: not a blank A4 page


def test_one_megabyte_text_renders_and_max_pages_truncates() -> None:
    text = ("The quick brown fox jumps over the lazy dog 12345. " * 20 + "\n") * 1000
    text = text[:1_000_000]
    t0 = time.process_time()  # CPU time, not wall: the bound holds on a loaded machine
    res = render_with_layout(text, RenderConfig(max_pages=2))
    assert time.process_time() - t0 < 20
    assert len(res.images) == 2 and res.truncated
    assert 0 < res.text_end < len(text)
    drawn = "".join(b.char for page in res.boxes for b in page)
    # exactly the text up to text_end was drawn (spaces at line breaks are not drawn)
    assert "".join(drawn.split()) == "".join(text[:res.text_end].split())


@pytest.mark.slow
def test_one_megabyte_text_renders_every_page() -> None:
    text = ("The quick brown fox jumps over the lazy dog 12345. " * 20 + "\n") * 1000
    pages = render_text(text[:1_000_000], RenderConfig(max_pages=None))  # no default page cap
    assert len(pages) > 100 and all(_ink(p) > 0 for p in pages)


def test_single_5000_char_word_wraps_inside_the_page() -> None:
    word = "abcdefghij" * 500
    res = render_with_layout(word)
    boxes = [b for page in res.boxes for b in page]
    assert "".join(b.char for b in boxes) == word  # every character drawn, in order
    assert max(b.x1 for b in boxes) <= 16 + MAX_W + 1e-6
    assert all(img.width <= 595 for img in res.images)
    rows: dict[float, list] = {}
    for b in boxes:
        rows.setdefault((b.y0, id(res.boxes)), []).append(b)
    rows_list = list(rows.values())
    assert len(rows_list) > 30
    for row, nxt in zip(rows_list, rows_list[1:]):  # greedy: the next glyph would not have fit
        width = row[-1].x1 - row[0].x0
        assert width <= MAX_W + 1e-6 < width + (nxt[0].x1 - nxt[0].x0)


def test_line_endings_tabs_form_feed_and_controls() -> None:
    text = "a\r\nb\rc\td\fe\x00f\x07g\x1bh\x7fi"
    res = render_with_layout(text)
    assert len(res.images) == 2  # \f forces a page break
    first = [b.char for b in res.boxes[0]]
    second = [b.char for b in res.boxes[1]]
    assert [c for c in first if c.strip()] == ["a", "b", "c", "d"]
    assert second == ["e", "f", "g", "h", "i"]
    assert res.dropped_chars == 5  # \r of \r\n, \x00, \x07, \x1b, \x7f
    ys = sorted({b.y0 for b in res.boxes[0]})
    assert len(ys) == 3  # a / b / c d : \r\n and \r are one newline each
    # indices point back into the original text
    assert all(text[b.index] == b.char for page in res.boxes for b in page)


def test_zero_width_and_soft_hyphen_are_dropped_and_counted() -> None:
    text = "co\u00adop\u200beration\u200d\u2060x"
    res = render_with_layout(text)
    assert "".join(b.char for b in res.boxes[0]) == "cooperationx"
    assert res.dropped_chars == 4


def test_missing_glyphs_are_drawn_as_boxes_and_counted() -> None:
    res = render_with_layout("中文😀\U0001F9E0 ok")
    assert res.missing_glyphs == 3  # 中 文 🧠 (DejaVu Sans has 😀)
    box = res.boxes[0][0]
    img = np.asarray(res.images[0].convert("L"))
    cell = img[int(box.y0):int(box.y1) + 1, int(box.x0):int(box.x1) + 1]
    assert (cell < 128).sum() > 5  # the .notdef box is visible


def test_fallback_font_supplies_missing_glyphs() -> None:
    main = set(load_metrics(str(resolve_font("DejaVuSans"))).advance)
    mono = set(load_metrics(str(resolve_font("DejaVuSansMono"))).advance)
    only_mono = chr(sorted(mono - main)[0])
    text = f"x{only_mono}y"
    plain = render_with_layout(text)
    with_fb = render_with_layout(text, RenderConfig(fallback_fonts=["DejaVuSansMono"]))
    assert plain.missing_glyphs == 1 and plain.fallback_glyphs == 0
    assert with_fb.missing_glyphs == 0 and with_fb.fallback_glyphs == 1


def test_rtl_and_combining_marks_render_without_error() -> None:
    text = "שלום عربي e\u0301 a\u0308"  # Hebrew, Arabic (logical order, unshaped), marks
    res = render_with_layout(text)
    assert res.missing_glyphs == 0 and _ink(res.images[0]) > 0
    marks = [b for b in res.boxes[0] if b.char in "\u0301\u0308"]
    assert len(marks) == 2 and all(b.x0 == b.x1 for b in marks)  # zero advance: on the base


def test_lone_surrogate_is_dropped() -> None:
    res = render_with_layout("a\ud800b")
    assert "".join(b.char for b in res.boxes[0]) == "ab" and res.dropped_chars == 1


def test_non_string_input_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="expects str"):
        render_text(b"bytes")  # type: ignore[arg-type]
