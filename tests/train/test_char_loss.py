"""Auxiliary character loss: labels land on the merged vision token that shows the glyph."""

from __future__ import annotations

import io
import json

import pytest
import torch
from PIL import Image, ImageDraw

from vtc_lab.models import ModelConfig, TinySpec, load_backbone
from vtc_lab.train.char_loss import CharLabeler
from vtc_lab.train.collate import IGNORE_INDEX, SFTEncoder, collate
from vtc_lab.train.module import SFTModule

torch.set_num_threads(1)


@pytest.mark.parametrize("arch,patch", [("qwen3_vl", 16), ("glm4v", 14)])
def test_label_sits_on_the_token_whose_pixels_show_the_glyph(arch, patch):
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
    assert labels.shape == (120,)
    x_id = bb.tokenizer.encode("X", add_special_tokens=False)[0]
    assert labels[r * 12 + c] == x_id
    assert int((labels == bb.tokenizer.pad_token_id).sum()) == 119
    # the processor's patch order: the only non-white patches belong to that merged token
    pixels = item["pixel_values"]
    white = pixels.max(dim=0).values
    dark = (pixels < white - 1e-3).any(dim=1).nonzero().flatten()
    assert set((dark // 4).tolist()) == {r * 12 + c}


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
