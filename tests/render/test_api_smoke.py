"""The public render API other sub-packages import: shapes, types and the reference defaults."""

from __future__ import annotations

import numpy as np

from vtc_lab.render import (VISION_SPECS, CharBox, RenderConfig, RenderResult, config_hash,
                            image_grid, qwen_tokenizer, render_text, render_with_layout,
                            vision_tokens)


def test_defaults_are_the_reference_settings() -> None:
    cfg = RenderConfig()
    assert (cfg.font, cfg.font_size, cfg.line_height, cfg.page_width, cfg.page_height, cfg.dpi,
            cfg.margin_x, cfg.margin_y, cfg.alignment) == (
        "DejaVuSans", 9.0, 10.0, 595.0, 842.0, 72, 10.0, 10.0, "left")
    assert cfg.auto_crop_width and cfg.auto_crop_last_page


def test_render_text_returns_rgb_pages_with_ink() -> None:
    pages = render_text("Hello, world! $x^2 + y^2 = z^2$")
    assert len(pages) == 1 and pages[0].mode == "RGB"
    arr = np.asarray(pages[0])
    assert arr.min() < 10 and arr.max() == 255  # dark ink on white
    # auto-crop: 16 pt text inset + the line's width + 10 pt margin, one line high + margin
    assert 150 < pages[0].width < 250 and 30 <= pages[0].height <= 40


def test_render_with_layout_boxes_index_the_text() -> None:
    text = "ab cd\nef"
    res = render_with_layout(text)
    assert isinstance(res, RenderResult)
    boxes = res.boxes[0]
    assert all(isinstance(b, CharBox) for b in boxes)
    assert "".join(b.char for b in boxes) == "ab cdef"
    assert [b.index for b in boxes] == [0, 1, 2, 3, 4, 6, 7]
    assert boxes[5].y0 > boxes[0].y0  # "ef" is on the second line
    assert boxes[1].x0 == boxes[0].x1  # pen advances by the glyph's width


def test_config_hash_changes_with_settings() -> None:
    assert config_hash(RenderConfig()) == config_hash(RenderConfig())
    assert config_hash(RenderConfig()) != config_hash(RenderConfig(font_size=10))


def test_token_api() -> None:
    assert set(VISION_SPECS) >= {"qwen2_vl", "qwen2_5_vl", "qwen3_vl", "glm4v"}
    assert image_grid(56, 56, VISION_SPECS["qwen2_vl"]) == (1, 4, 4)
    assert vision_tokens(56, 56, "qwen2_vl") == 4
    assert qwen_tokenizer().encode("Hello, world!") == [9707, 11, 1879, 0]
