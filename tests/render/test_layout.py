"""Layout behaviour beyond the reference: alignment, the toy grid, options, character boxes."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from vtc_lab.render import RenderConfig, png_bytes, render_text, render_with_layout, vision_tokens
from vtc_lab.render.layout import _ACT_RE

CONF = Path(__file__).resolve().parents[2] / "conf" / "renderer"


def _preset(name: str) -> RenderConfig:
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(RenderConfig),
                                               OmegaConf.load(CONF / f"{name}.yaml")))


def _ink_cols(img) -> np.ndarray:
    return np.flatnonzero((np.asarray(img.convert("L")) < 200).any(axis=0))


def test_every_preset_builds_and_renders() -> None:
    for path in sorted(CONF.glob("*.yaml")):
        cfg = _preset(path.stem)
        assert render_text("x = 1 + 2", cfg)


def test_toy_grid_puts_characters_in_patch_aligned_cells() -> None:
    cfg = _preset("toy_grid")
    res = render_with_layout("1:17+23=40\n2:40+5=45\n3:45+6=51", cfg)
    assert [im.size for im in res.images] == [(96, 32), (96, 32)]  # 2 rows per page, no crop
    assert vision_tokens(96, 32, "qwen3_vl", min_pixels=1) == 3  # 32-px tokens: 3x1
    boxes = res.boxes[0]
    for b in boxes:  # every character owns one 8x16 cell
        assert (b.x1 - b.x0, b.y1 - b.y0) == (8, 16) and b.x0 % 8 == 0 and b.y0 % 16 == 0
    # right-aligned: each line's last character sits in the last column
    last_per_row = {}
    for b in boxes:
        last_per_row[b.y0] = max(last_per_row.get(b.y0, 0), b.x1)
    assert set(last_per_row.values()) == {96}
    # ink stays inside its cell
    arr = np.asarray(res.images[0].convert("L")) < 128
    for b in boxes:
        inside = arr[int(b.y0):int(b.y1), int(b.x0):int(b.x1)].sum()
        assert inside > 0


@pytest.mark.parametrize("cols", [8, 10, 12])
def test_toy_grid_keeps_full_width_lines_on_one_row(cols: int) -> None:
    # Widths summed in font units are not exact in binary: full-width lines used to wrap their
    # last character from the third or fourth line on.
    cfg = RenderConfig(**{**OmegaConf.to_container(OmegaConf.load(CONF / "toy_grid.yaml")),
                          "page_width": 8.0 * cols, "page_height": 16.0 * 12})
    lines = ["ABCDEFGHIJKL"[:cols], "A.B.C.D.E.F."[:cols]] * 6
    res = render_with_layout("\n".join(lines) + "\n", cfg)
    rows: dict[float, str] = {}
    for b in res.boxes[0]:
        rows[b.y0] = rows.get(b.y0, "") + b.char
    assert len(res.images) == 1 and list(rows.values()) == lines


def test_right_and_center_alignment_move_ink() -> None:
    text = "short\n" + "a much much longer line of text"
    left = render_text(text, RenderConfig(auto_crop_width=False))[0]
    right = render_text(text, RenderConfig(alignment="right", auto_crop_width=False))[0]
    center = render_text(text, RenderConfig(alignment="center", auto_crop_width=False))[0]
    first_line = slice(10, 30)
    ink = lambda im: np.flatnonzero((np.asarray(im.convert("L"))[first_line] < 200).any(axis=0))
    assert ink(left)[0] < ink(center)[0] < ink(right)[0]
    assert abs(ink(right)[-1] - (595 - 16)) <= 2  # flush with the right text edge


def test_newline_as_space_and_tabs_as_spaces() -> None:
    as_space = render_with_layout("a\nb", RenderConfig(newline="space"))
    assert len({b.y0 for b in as_space.boxes[0]}) == 1
    tabbed = render_with_layout("a\tb", RenderConfig(tab_size=4))
    a, b = tabbed.boxes[0][0], tabbed.boxes[0][-1]
    space = render_with_layout("a b").boxes[0][1]
    assert b.x0 - a.x1 == pytest.approx(4 * (space.x1 - space.x0), abs=0.01)


def test_horizontal_scale_stretches_pages_and_boxes() -> None:
    plain = render_with_layout("stretch me", RenderConfig())
    wide = render_with_layout("stretch me", RenderConfig(horizontal_scale=1.5))
    assert wide.images[0].width == round(plain.images[0].width * 1.5)
    assert wide.images[0].height == plain.images[0].height
    assert wide.boxes[0][3].x0 == pytest.approx(plain.boxes[0][3].x0 * 1.5, abs=0.01)


def test_max_pages_reports_where_it_stopped() -> None:
    text = "\n".join(f"line {i}" for i in range(300))
    res = render_with_layout(text, RenderConfig(max_pages=1))
    assert len(res.images) == 1 and res.truncated
    assert text[:res.text_end].endswith("line 80")  # 81 lines per A4 page at leading 10


def test_boxes_cover_the_drawn_ink() -> None:
    res = render_with_layout("Mixed widths: iiii WWWW 0123 {x^2}")
    img = np.asarray(res.images[0].convert("L")) < 128
    covered = np.zeros_like(img)
    for b in res.boxes[0]:
        covered[max(0, int(b.y0) - 1):int(b.y1) + 2, max(0, int(b.x0) - 1):int(b.x1) + 2] = True
    assert not (img & ~covered).any()


def test_png_bytes_round_trip_is_lossless() -> None:
    import io

    from PIL import Image

    for cfg in (RenderConfig(), RenderConfig(text_color="#1f5fbf", background_color="#fffbe6")):
        page = render_text("colour $x$", cfg)[0]
        back = Image.open(io.BytesIO(png_bytes(page, cfg))).convert("RGB")
        assert np.array_equal(np.asarray(back), np.asarray(page))


def test_normalisation_pattern_covers_every_control_and_format_character() -> None:
    for cp in range(0x110000):
        ch = chr(cp)
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs") and ch not in "\t\n\f":
            assert _ACT_RE.match(ch), hex(cp)
