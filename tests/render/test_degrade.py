"""Page degradations (`renderer.degrade`): zero settings change nothing (pixels and hashes are
the ones recorded before degradations existed), the same text + config gives the same pixels
in any process, every knob changes pixels on its own, and bad settings name their field."""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from vtc_lab.render import RenderConfig, config_hash, render_text, render_with_layout
from vtc_lab.render.degrade import KNOBS, LEVELS, DegradeConfig, pick_font

CONF = Path(__file__).resolve().parents[2] / "conf" / "renderer"
TEXT = "Let x = 3.\nThen 2x + 1 = 7, so the answer is \\boxed{7}. " * 5
TOY = "P4.8.2.1\nO1.2.3.4\nN5.6.7.8\nM9.0.1.2"

# Recorded with the renderer of commit 45457f4, before `degrade` existed (/tmp script: render,
# sha256 over mode, size and bytes of every page; config_hash of the preset).
BEFORE = {
    "vtcr1": ("46a6bbe8780a07dd", "3c0a9d5109f81b600293f1d66ff300ccbbcedc6ccbb92613bcb1e9ce1cc6b880"),
    "toy_task": ("93f1c497a5e83a6d", "be35aac38290e54fa53f5d241b650bfd5f3f2fd9055e73d5a9f47d5de68f4252"),
}


def preset(name: str, **degrade) -> RenderConfig:
    fields = yaml.safe_load((CONF / f"{name}.yaml").read_text()) or {}
    return RenderConfig(**fields, degrade=DegradeConfig(**degrade))


def digest(images) -> str:
    h = hashlib.sha256()
    for im in images:
        h.update(im.mode.encode())
        h.update(str(im.size).encode())
        h.update(im.tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_zero_settings_are_byte_identical_to_the_render_before_degradations(name):
    text = TEXT if name == "vtcr1" else TOY
    want_hash, want_pixels = BEFORE[name]
    explicit_zero = dict(blur_sigma=0, jpeg_quality=0, jitter_px=0, rotation_deg=0, contrast=0,
                         noise=0, downscale=1.0, fonts=[])
    for cfg in (preset(name), preset(name, level="none"), preset(name, level="severe", **explicit_zero)):
        assert not cfg.degrade.active
        assert config_hash(cfg) == want_hash  # datasets, caches, eval dirs keep their names
        assert digest(render_text(text, cfg)) == want_pixels
    # the identity is not vacuous: the smallest setting of any knob changes pixels
    assert digest(render_text(text, preset(name, noise=0.5))) != want_pixels


@pytest.mark.parametrize("knob,value", [("blur_sigma", 0.6), ("jpeg_quality", 50), ("jitter_px", 0.7),
                                        ("rotation_deg", 2.0), ("contrast", 0.5), ("noise", 8.0),
                                        ("downscale", 0.5), ("fonts", ["DejaVuSans"])])
def test_each_knob_alone_changes_pixels_and_keeps_size_and_grey(knob, value):
    clean = render_text(TOY, preset("toy_task"))
    cfg = preset("toy_task", **{knob: value})
    pages = render_text(TOY, cfg)
    assert [p.size for p in pages] == [p.size for p in clean] and pages[0].mode == "RGB"
    assert digest(pages) != digest(clean)
    arr = np.asarray(pages[0])
    assert (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all()  # still grey
    assert config_hash(cfg) != config_hash(preset("toy_task"))


def test_same_text_and_config_same_pixels_and_the_seed_and_text_decide_the_draws():
    cfg = preset("toy_task", level="moderate")
    first = digest(render_text(TOY, cfg))
    render_text("O9.9.9.9\n" * 3, cfg)  # other pages in between change nothing
    assert digest(render_text(TOY, cfg)) == first
    assert digest(render_text(TOY, preset("toy_task", level="moderate", seed=1))) != first
    # a page's draws come from its own text: the same line on another page is degraded differently
    a = np.asarray(render_text("A1.2.3.4", preset("toy_task", jitter_px=2.0))[0])
    b = np.asarray(render_text("A1.2.3.4 ", preset("toy_task", jitter_px=2.0))[0])
    assert not np.array_equal(a, b)


def test_same_pixels_in_a_fresh_process():
    code = ("import hashlib, sys; sys.path.insert(0, %r); from test_degrade import preset, digest, TEXT; "
            "from vtc_lab.render import render_text; "
            "print(digest(render_text(TEXT, preset('vtcr1', level='severe', "
            "fonts=['DejaVuSans', 'DejaVuSansMono'], downscale=0.7))))" % str(Path(__file__).parent))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    here = digest(render_text(TEXT, preset("vtcr1", level="severe",
                                           fonts=["DejaVuSans", "DejaVuSansMono"], downscale=0.7)))
    assert out.stdout.strip() == here


def test_levels_fill_unset_knobs_and_set_knobs_win():
    mild = DegradeConfig(level="mild")
    assert mild.settings() == LEVELS["mild"]
    custom = DegradeConfig(level="mild", blur_sigma=2.0)
    assert custom.settings() == {**LEVELS["mild"], "blur_sigma": 2.0}
    # the hash covers what is drawn, not how it was spelled
    spelled = DegradeConfig(level="none", **{k: LEVELS["mild"][k] for k in KNOBS})
    base = preset("toy_task")
    assert (config_hash(dataclasses.replace(base, degrade=spelled))
            == config_hash(dataclasses.replace(base, degrade=mild)))
    hashes = {config_hash(dataclasses.replace(base, degrade=DegradeConfig(level=lv))) for lv in LEVELS}
    assert len(hashes) == len(LEVELS)
    # stronger levels move further from the clean page (mean absolute pixel difference)
    clean = np.asarray(render_text(TOY, base)[0], np.float32)
    dist = [np.abs(np.asarray(render_text(TOY, preset("toy_task", level=lv))[0], np.float32)
                   - clean).mean() for lv in ("mild", "moderate", "severe")]
    assert dist[0] < dist[1] < dist[2]


def test_font_per_text_is_drawn_from_the_list_and_seeded():
    cfg = DegradeConfig(fonts=["DejaVuSans", "DejaVuSansMono"])
    texts = [f"A{i}.{i}.{i}.{i}" for i in range(10)]
    picks = [pick_font(cfg, t) for t in texts]
    assert set(picks) == {"DejaVuSans", "DejaVuSansMono"}
    assert picks == [pick_font(DegradeConfig(fonts=["DejaVuSans", "DejaVuSansMono"]), t) for t in texts]
    # the drawn font lays the text out: the page equals a clean render in that font
    for text, font in zip(texts[:4], picks):
        got = render_text(text, preset("vtcr1", fonts=["DejaVuSans", "DejaVuSansMono"]))
        want = render_text(text, dataclasses.replace(preset("vtcr1"), font=font))
        assert digest(got) == digest(want)


def test_boxes_and_counters_still_come_back():
    res = render_with_layout(TOY, preset("toy_task", level="severe"))
    clean = render_with_layout(TOY, preset("toy_task"))
    assert res.boxes == clean.boxes and res.text_end == clean.text_end == len(TOY)


@pytest.mark.parametrize("bad,field", [
    ({"level": "extreme"}, "level"), ({"blur_sigma": -1}, "blur_sigma"),
    ({"jpeg_quality": 100}, "jpeg_quality"), ({"jpeg_quality": 50.5}, "jpeg_quality"),
    ({"jitter_px": -0.1}, "jitter_px"), ({"rotation_deg": 90}, "rotation_deg"),
    ({"contrast": 1.0}, "contrast"), ({"noise": "lots"}, "noise"), ({"downscale": 0}, "downscale"),
    ({"downscale": 1.5}, "downscale"), ({"fonts": "DejaVuSans"}, "fonts"), ({"seed": 1.5}, "seed"),
    ({"fonts": ["DejaVuSans", "NoSuchFont"]}, "fonts"),
])
def test_bad_settings_name_the_field(bad, field):
    with pytest.raises(ValueError, match=rf"^renderer\.degrade\.{field} "):
        DegradeConfig(**bad)


def test_recorded_renderer_dicts_round_trip():
    """run.json / reading.json store the renderer as a dict: degrade comes back as a config,
    and records from before degradations existed read as clean."""
    from vtc_lab.models.reading import ReadingSpec

    cfg = preset("toy_task", level="moderate", downscale=0.5)
    spec = ReadingSpec(renderer=cfg, system_prompt=None, image_position="after", image_max_pixels=None)
    back = ReadingSpec.from_dict(spec.to_dict(), "reading.json")
    assert back.renderer == cfg and config_hash(back.renderer) == config_hash(cfg)
    old = spec.to_dict()
    del old["renderer"]["degrade"]
    assert not ReadingSpec.from_dict(old, "reading.json").renderer.degrade.active
    with pytest.raises(ValueError, match="renderer.degrade"):
        RenderConfig(degrade=["blur"])
