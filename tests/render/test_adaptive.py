"""Adaptive rendering (`renderer.adaptive`, issue 23 §4): the reference reader scores exactly what
it should, the renderer keeps the densest setting the reader can read through the page damage
(and draws it exactly as that setting alone would), off changes nothing, and bad ladders are
refused naming the entry."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest
import yaml
from PIL import ImageChops

from vtc_lab.render import RenderConfig, config_hash, render_text, render_with_layout
from vtc_lab.render.adaptive import AdaptiveConfig, legibility

CONF = Path(__file__).resolve().parents[2] / "conf" / "renderer"
TOY = "P4.8.2.1\nO1.2.3.4\nN5.6.7.8\nM9.0.1.2"
SMALL = {"cell_width": 8, "cell_height": 16, "font_size": 12.0, "page_width": 64.0, "page_height": 64.0}
LARGE = {"cell_width": 16, "cell_height": 32, "font_size": 24.0, "line_height": 32.0,
         "page_width": 128.0, "page_height": 128.0}


def toy(**fields) -> RenderConfig:
    base = yaml.safe_load((CONF / "toy_task.yaml").read_text())
    return RenderConfig(**{**base, **fields})


def digest(images) -> str:
    h = hashlib.sha256()
    for im in images:
        h.update(f"{im.mode}{im.size}".encode())
        h.update(im.tobytes())
    return h.hexdigest()


def test_the_reader_reads_clean_pages_perfectly_and_counts_each_wrong_cell():
    cfg = toy()
    clean = render_with_layout(TOY, cfg)
    assert legibility(clean.images, clean.images, clean.boxes) == 1.0
    # pages of another text with the same alphabet in the same cells: exactly the cells whose
    # character differs are misread, so the score is the fraction of agreeing positions
    other = "P4.8.2.1\nO1.2.3.4\nN5.6.7.8\nM9.0.2.1"   # the last line's 1 and 2 swapped
    shown = render_with_layout(other, cfg)
    visible = [(a, b) for a, b in zip(TOY, other) if a.strip()]
    want = sum(a == b for a, b in visible) / len(visible)
    assert want == 30 / 32
    assert legibility(clean.images, shown.images, clean.boxes) == pytest.approx(want)
    # a page shifted by two pixels each way is still read: the reader searches small offsets
    shifted = [ImageChops.offset(im, 2, 2) for im in clean.images]
    assert legibility(clean.images, shifted, clean.boxes) == 1.0


def test_clean_pages_keep_the_densest_setting_drawn_exactly_as_it_alone_draws():
    cfg = toy(adaptive={"settings": [SMALL, LARGE], "min_legibility": 1.0})
    result = render_with_layout(TOY, cfg, boxes=False)
    assert result.adaptive_choice == 0 and result.legibility == [1.0]
    assert digest(result.images) == digest(render_text(TOY, cfg.candidates()[0]))
    assert result.images[0].size == (64, 64)
    assert result.boxes == [[]]


def test_a_page_the_reader_cannot_read_through_the_damage_takes_the_wider_setting():
    cfg = toy(degrade={"level": "severe"}, adaptive={"settings": [SMALL, LARGE], "min_legibility": 0.9})
    result = render_with_layout(TOY, cfg)
    assert result.adaptive_choice == 1
    small_score, large_score = result.legibility
    assert small_score < 0.9 <= large_score
    # exactly the pages the large setting draws, damage included (same seeded draws)
    assert digest(result.images) == digest(render_text(TOY, cfg.candidates()[1]))
    assert result.images[0].size == (128, 128)
    assert [b.char for b in result.boxes[0]] == [c for c in TOY if c != "\n"]
    # the target decides: 0 keeps the densest whatever the damage
    lax = dataclasses.replace(cfg, adaptive=AdaptiveConfig([SMALL, LARGE], 0.0))
    assert render_with_layout(TOY, lax).adaptive_choice == 0
    # no setting reaches the target: the most legible one
    strict = dataclasses.replace(cfg, adaptive=AdaptiveConfig([LARGE, SMALL], 1.0),
                                 degrade=dataclasses.replace(cfg.degrade, noise=120.0))
    res = render_with_layout(TOY, strict)
    assert max(res.legibility) < 1.0
    assert res.adaptive_choice == max(range(2), key=lambda i: (res.legibility[i], -i))


def test_same_text_same_choice_and_pixels_and_the_ladder_is_part_of_the_hash():
    cfg = toy(degrade={"level": "severe"}, adaptive={"settings": [SMALL, LARGE], "min_legibility": 0.9})
    texts = [TOY, "Q0.0.0.0\nP1.1.1.1\nO2.2.2.2\nN3.3.3.3"]
    first = [render_with_layout(t, cfg, boxes=False) for t in texts]
    again = [render_with_layout(t, cfg, boxes=False) for t in texts]
    assert [r.adaptive_choice for r in first] == [r.adaptive_choice for r in again]
    assert [digest(r.images) for r in first] == [digest(r.images) for r in again]
    off = toy(degrade={"level": "severe"})
    assert config_hash(cfg) != config_hash(off)
    assert config_hash(cfg) != config_hash(dataclasses.replace(cfg, adaptive=AdaptiveConfig([SMALL, LARGE], 0.8)))
    # a recorded config (run.json, reading.json, the dataset manifest) reads back as the same
    recorded = RenderConfig(**dataclasses.asdict(cfg))
    assert recorded == cfg and config_hash(recorded) == config_hash(cfg)
    # off: no key in the hash, pages untouched (the pinned hashes of test_degrade hold too)
    assert config_hash(dataclasses.replace(off, adaptive=AdaptiveConfig())) == config_hash(off)


@pytest.mark.parametrize("adaptive,needle", [
    ({"settings": [SMALL, {"cell_width": 0, "cell_height": 0}]}, "renderer.adaptive.settings[1] is not a grid"),
    ({"settings": [{"font_sise": 10.0}]}, "renderer.adaptive.settings[0] sets unknown renderer fields ['font_sise']"),
    ({"settings": [{"degrade": {"level": "mild"}}]}, "renderer.adaptive.settings[0] may not set ['degrade']"),
    ({"settings": [{"cell_height": 8}]}, "renderer.adaptive.settings[0]: renderer.cell_height"),
    ({"settings": [SMALL], "min_legibility": 1.5}, "renderer.adaptive.min_legibility must be a number in [0, 1]"),
    ({"settings": SMALL}, "renderer.adaptive.settings must be a list"),
])
def test_bad_ladders_are_refused_naming_the_entry(adaptive, needle):
    with pytest.raises(ValueError) as err:
        toy(adaptive=adaptive)
    assert needle in str(err.value)


def test_the_compression_report_counts_each_setting_and_its_vision_tokens():
    from vtc_lab.render import qwen_tokenizer
    from vtc_lab.render.report import format_table, measure

    cfg = toy(degrade={"level": "severe"}, adaptive={"settings": [SMALL, LARGE], "min_legibility": 0.9})
    texts = [TOY, "Q0.0.0.0\nP1.1.1.1\nO2.2.2.2\nN3.3.3.3", "AAAAAAAA"]
    choices = [render_with_layout(t, cfg, boxes=False).adaptive_choice for t in texts]
    assert sorted(set(choices)) == [0, 1]  # the texts exercise both settings
    # at the toy model's pixel floor (4,096 px), so the small pages are not upsized
    rows, m = measure(texts, cfg, qwen_tokenizer(), ["qwen3_vl"], min_pixels=4096, progress=False)
    assert [r.adaptive_choice for r in rows] == choices
    assert m["render/adaptive/setting_0_texts"] == choices.count(0)
    assert m["render/adaptive/setting_1_texts"] == choices.count(1)
    # Qwen3-VL's 32-px merged patches: a 64x64 px page is 4 tokens, a 128x128 px page 16
    assert [r.vision_tokens["qwen3_vl"] for r in rows] == [(4, 16)[c] for c in choices]
    assert "adaptive: texts per ladder setting 0: " in format_table(m, ["qwen3_vl"], "t")
    off_rows, off = measure(texts, toy(), qwen_tokenizer(), ["qwen3_vl"], progress=False)
    assert not any(k.startswith("render/adaptive") for k in off) and off_rows[0].adaptive_choice is None
