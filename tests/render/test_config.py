"""RenderConfig rejects bad values when it is built, naming the field."""

from __future__ import annotations

import pytest

from vtc_lab.render import RenderConfig, render_text


@pytest.mark.parametrize("kwargs, field", [
    ({"font_size": 0}, "font_size"),
    ({"font_size": -1}, "font_size"),
    ({"line_height": 0}, "line_height"),
    ({"line_height": 8.0}, "line_height"),          # smaller than the 9 pt font
    ({"page_width": -595}, "page_width"),
    ({"page_height": 0}, "page_height"),
    ({"dpi": 0}, "dpi"),
    ({"dpi": -72}, "dpi"),
    ({"dpi": 72.5}, "dpi"),
    ({"margin_x": -1}, "margin_x"),
    ({"margin_x": 300}, "margin_x"),                # leaves no room on a 595 pt page
    ({"margin_y": 420}, "margin_y"),
    ({"text_color": "not-a-colour"}, "text_color"),
    ({"background_color": "#12"}, "background_color"),
    ({"alignment": "justify"}, "alignment"),
    ({"newline": "keep"}, "newline"),
    ({"max_pages": 0}, "max_pages"),
    ({"tab_size": -2}, "tab_size"),
    ({"horizontal_scale": 0}, "horizontal_scale"),
    ({"cell_width": 8}, "cell_height"),             # grid needs both
    ({"cell_width": 8, "cell_height": 4}, "cell_height"),  # row shorter than the font
    ({"space_shrink": 1.5}, "space_shrink"),
    ({"font": ""}, "font"),
    ({"font_size": 0.01, "line_height": 10}, "font_size"),  # FreeType: "invalid ppem value"
    ({"font_size": 1.4, "dpi": 36, "line_height": 10}, "font_size"),  # 0.7 px glyphs
])
def test_invalid_values_name_the_field(kwargs, field) -> None:
    with pytest.raises(ValueError, match=rf"renderer\.{field}\b"):
        RenderConfig(**kwargs)


def test_missing_font_path_names_the_font(tmp_path) -> None:
    cfg = RenderConfig(font=str(tmp_path / "nope.ttf"))  # validated lazily: paths may be remote
    with pytest.raises(FileNotFoundError, match=r"renderer\.font: .*nope\.ttf"):
        render_text("hi", cfg)


def test_unreadable_font_file_is_a_clear_error(tmp_path) -> None:
    bad = tmp_path / "broken.ttf"
    bad.write_bytes(b"not a font at all")
    with pytest.raises(ValueError, match=r"renderer\.font: cannot read font file .*broken\.ttf"):
        render_text("hi", RenderConfig(font=str(bad)))


def test_bundled_names_and_paths_resolve() -> None:
    from vtc_lab.render import resolve_font

    assert resolve_font("DejaVuSans").name == "DejaVuSans.ttf"
    assert resolve_font("dejavusansmono.ttf").name == "DejaVuSansMono.ttf"
    assert resolve_font(str(resolve_font("DejaVuSans"))).is_file()
