"""Auxiliary character loss: labels land on the merged vision token that shows the glyph."""

from __future__ import annotations

import io
import json

import pytest
import torch
from PIL import Image, ImageDraw

from vtc_lab.models import ModelConfig, TinySpec, get_backbone, load_backbone
from vtc_lab.models.registry import tiny_backbone_names
from vtc_lab.train.char_loss import CharLabeler
from vtc_lab.train.collate import IGNORE_INDEX, SFTEncoder, collate
from vtc_lab.train.module import SFTModule

torch.set_num_threads(1)


@pytest.mark.parametrize("arch", tiny_backbone_names())
def test_label_sits_on_the_token_whose_pixels_show_the_glyph(arch):
    patch = get_backbone(arch).vision.patch_size
    bb = load_backbone(ModelConfig(arch=arch, tiny=TinySpec(patch_size=patch)))
    cell = patch * 2
    w, h = cell * 12, cell * 10  # no resize: exactly 12 x 10 merged tokens
    r, c = 3, 7
    img = Image.new("RGB", (w, h), "white")
    box = [c * cell + 4, r * cell + 4, (c + 1) * cell - 4, (r + 1) * cell - 4]
    ImageDraw.Draw(img).rectangle(box, fill="black")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    layout = json.dumps([[0, "X", *box], [1, " ", 0, 0, 4, 4]])
    sample = {"sample_id": "s", "question": "q", "target": "X", "images": [buf.getvalue()],
              "layouts": [layout]}
    enc = SFTEncoder(bb.processor, bb.stop_token_ids, None, cutoff_len=4096,
                     char_labels=CharLabeler(bb.tokenizer, bb.vision_spec))
    item = enc.encode(sample)
    labels = item["char_labels"]
    assert item["image_grid_thw"].tolist() == [[1, 20, 24]]
    assert labels.shape == (120, 1)
    labels = labels[:, 0]
    x_id = bb.tokenizer.encode("X", add_special_tokens=False)[0]
    assert labels[r * 12 + c] == x_id
    assert int((labels == bb.tokenizer.pad_token_id).sum()) == 119
    # the processor's patch order: the only non-white patches belong to that merged token
    pixels = item["pixel_values"]
    white = pixels.max(dim=0).values
    dark = (pixels < white - 1e-3).any(dim=1).nonzero().flatten()
    assert set((dark // 4).tolist()) == {r * 12 + c}


def test_grid_slots_label_both_characters_of_a_token():
    from vtc_lab.render import RenderConfig, png_bytes, render_with_layout
    from vtc_lab.train.char_loss import grid_slots

    bb = load_backbone(ModelConfig(min_pixels=256, tiny=TinySpec(patch_size=8, temporal_patch_size=1)))
    render = RenderConfig(font="DejaVuSansMono", font_size=12.0, line_height=16.0, page_width=64.0,
                          page_height=32.0, dpi=72, margin_x=0.0, margin_y=0.0, padding=0.0,
                          alignment="right", auto_crop_width=False, auto_crop_last_page=False,
                          space_shrink=0.0, cell_width=8, cell_height=16)
    assert grid_slots(render, bb.vision_spec) == (2, 1)
    res = render_with_layout("P4.8.2.1\nO2.0.3", render)
    layout = json.dumps([[b.index, b.char, b.x0, b.y0, b.x1, b.y1] for b in res.boxes[0]])
    sample = {"sample_id": "s", "question": "q", "target": "X",
              "images": [png_bytes(res.images[0])], "layouts": [layout]}
    labeler = CharLabeler(bb.tokenizer, bb.vision_spec, grid_slots(render, bb.vision_spec))
    enc = SFTEncoder(bb.processor, bb.stop_token_ids, None, cutoff_len=4096, char_labels=labeler)
    item = enc.encode(sample)
    assert item["image_grid_thw"].tolist() == [[1, 4, 8]]  # 64x32 px: 4 x 2 tokens of 16 px
    blank = bb.tokenizer.pad_token_id
    read = ["".join("_" if i == blank else bb.tokenizer.decode([i]) for i in row)
            for row in item["char_labels"].tolist()]
    # row-major tokens, two characters each; the second line is right-aligned (2 cells blank)
    assert read == ["P4", ".8", ".2", ".1", "__", "O2", ".0", ".3"]


def test_char_loss_trains_the_head(make_png):
    bb = load_backbone(ModelConfig())
    module = SFTModule(bb, lr=1e-3, char_loss_weight=1.0)
    enc = SFTEncoder(bb.processor, bb.stop_token_ids, None, cutoff_len=4096,
                     char_labels=CharLabeler(bb.tokenizer, bb.vision_spec))
    page = make_png("ab", 64, 64)
    rows = [{"sample_id": "a", "question": "q", "target": "t", "images": [page],
             "layouts": [json.dumps([[0, "a", 2, 2, 10, 14], [1, "b", 40, 40, 50, 54]])]},
            {"sample_id": "b", "question": "q", "target": "t", "images": [], "layouts": []}]
    batch = collate([enc.encode(r) for r in rows], bb.tokenizer.pad_token_id)
    assert "char_labels" in batch and (batch["char_labels"] != IGNORE_INDEX).all()
    module.train()
    loss, parts = module.loss(batch)
    assert "char_loss" in parts and float(parts["char_loss"]) > 0
    loss.backward()
    assert module.char_head.weight.grad is not None and module.char_head.weight.grad.abs().sum() > 0


def _char_cfg(weight):
    from types import SimpleNamespace

    return SimpleNamespace(model=ModelConfig(), optim=SimpleNamespace(char_loss_weight=weight))


def test_checkpoint_signature_holds_the_char_heads_slots():
    """The head's size (vocab x slots) is part of what a checkpoint must match; runs without
    the head keep the signature they always had."""
    from vtc_lab.train.run import model_signature

    assert model_signature(_char_cfg(1.0), 2)["char_slots"] == 2
    assert model_signature(_char_cfg(1.0), 2) != model_signature(_char_cfg(1.0), 1)
    assert "char_slots" not in model_signature(_char_cfg(0.0), 1)


def test_char_head_checkpoint_resumes_only_into_the_same_head_and_exports(tmp_path):
    from vtc_lab.train.run import export_from_checkpoint, model_signature

    bb = load_backbone(ModelConfig())
    module = SFTModule(bb, lr=1e-3, char_loss_weight=1.0, char_slots=2,
                       model_signature=model_signature(_char_cfg(1.0), 2))
    with torch.no_grad():
        module.char_head.weight.normal_()
    ckpt = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(ckpt)
    assert ckpt["vtc_lab_model_signature"]["char_slots"] == 2
    torch.save(ckpt, tmp_path / "last.ckpt")

    loaded = torch.load(tmp_path / "last.ckpt", weights_only=False)
    same = SFTModule(load_backbone(ModelConfig()), lr=1e-3, char_loss_weight=1.0, char_slots=2,
                     model_signature=model_signature(_char_cfg(1.0), 2))
    same.on_load_checkpoint(loaded)
    same.load_state_dict(loaded["state_dict"])  # the round trip: head included
    assert torch.equal(same.char_head.weight, module.char_head.weight)
    fewer = SFTModule(load_backbone(ModelConfig()), lr=1e-3, char_loss_weight=1.0, char_slots=1,
                      model_signature=model_signature(_char_cfg(1.0), 1))
    with pytest.raises(ValueError, match="char_slots"):
        fewer.on_load_checkpoint(loaded)
    old = dict(loaded, vtc_lab_model_signature=model_signature(_char_cfg(1.0), 1))
    old["vtc_lab_model_signature"].pop("char_slots")  # written before char_slots was recorded
    legacy = SFTModule(load_backbone(ModelConfig()), lr=1e-3, char_loss_weight=1.0, char_slots=1,
                       model_signature=old["vtc_lab_model_signature"])
    with pytest.raises(ValueError, match="char_head.weight"):
        legacy.on_load_checkpoint(old)
    without = SFTModule(load_backbone(ModelConfig()), lr=1e-3,
                        model_signature=model_signature(_char_cfg(0.0), 1))
    with pytest.raises(ValueError, match="char_head"):
        without.on_load_checkpoint(loaded)

    out = export_from_checkpoint(ModelConfig(), tmp_path / "last.ckpt", tmp_path / "export")
    exported = load_backbone(ModelConfig(source="pretrained", path=str(out))).model.state_dict()
    for key, value in bb.model.state_dict().items():
        assert torch.equal(exported[key], value), key
