"""Tiny backbones: deterministic build, exact vision-token rule, save -> reload identity, errors."""

from __future__ import annotations

import pytest
import torch
from PIL import Image, ImageDraw

from vtc_lab.render import VISION_SPECS, vision_tokens

from vtc_lab.models import ModelConfig, TinySpec, load_backbone, load_tokenizer, save_backbone

torch.set_num_threads(1)

ARCHS = {"qwen3_vl": 16, "glm4v": 14}


def tiny_cfg(arch: str, **kw) -> ModelConfig:
    return ModelConfig(name=f"tiny_{arch}", arch=arch, tiny=TinySpec(patch_size=ARCHS[arch], **kw))


@pytest.fixture(scope="module", params=list(ARCHS))
def backbone(request):
    return load_backbone(tiny_cfg(request.param))


def page(width: int = 300, height: int = 90, text: str = "x = 2 + 2 = 4") -> Image.Image:
    img = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(img).text((5, 5), text, fill="black")
    return img


def encode(bb, images, answer="It is 4</think>\n<answer>4</answer>"):
    content = [{"type": "image", "image": im} for im in images] + [{"type": "text", "text": "2+2?"}]
    messages = [{"role": "user", "content": content},
                {"role": "assistant", "content": [{"type": "text", "text": answer}]}]
    text = bb.processor.apply_chat_template(messages, tokenize=False)
    return bb.processor(text=[text], images=images or None, return_tensors="pt")


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="model.arch"):
        ModelConfig(arch="llava")
    with pytest.raises(ValueError, match="model.path"):
        ModelConfig(source="pretrained", hub_id="Qwen/Qwen3-VL-8B-Instruct")
    with pytest.raises(ValueError, match="model.tiny.num_heads"):
        TinySpec(num_heads=3, num_kv_heads=2)
    with pytest.raises(ValueError, match="model.dtype"):
        ModelConfig(dtype="fp8")


@pytest.mark.parametrize("arch", list(ARCHS))
def test_tokenizer_is_deterministic_lossless_and_has_atomic_tags(arch):
    a, b = load_tokenizer(tiny_cfg(arch)), load_tokenizer(tiny_cfg(arch))
    assert a.get_vocab() == b.get_vocab() and len(a) == 512
    text = "Wait, let me check: $\\frac{1}{2}$ + 日本語 😀\n\n</think>\n<answer>7</answer>"
    ids = a.encode(text, add_special_tokens=False)
    assert a.decode(ids) == text
    for tag in ("<think>", "</think>", "<answer>", "</answer>", a.eos_token, a.pad_token):
        assert len(a.encode(tag, add_special_tokens=False)) == 1, tag


def test_vision_tokens_match_the_processor_grid(backbone):
    images = [page(), page(200, 700), page(30, 20), page(1500, 900)]
    enc = encode(backbone, images)
    spec = backbone.vision_spec
    merged = (enc["image_grid_thw"].prod(-1) // spec.merge_size**2).tolist()
    image_id = backbone.model.config.image_token_id
    assert int((enc["input_ids"] == image_id).sum()) == sum(merged)
    # the renderer's token rule (used by build-data) agrees with this processor, image by image
    for img, n in zip(images, merged):
        assert vision_tokens(img.width, img.height, spec) == n
    assert spec == VISION_SPECS[backbone.arch]  # tiny = the real backbone's token count
    assert "mm_token_type_ids" in enc


def test_same_seed_same_weights_other_seed_differs():
    one = load_backbone(tiny_cfg("qwen3_vl")).model.state_dict()
    two = load_backbone(tiny_cfg("qwen3_vl")).model.state_dict()
    other = load_backbone(tiny_cfg("qwen3_vl", seed=1)).model.state_dict()
    assert all(torch.equal(one[k], two[k]) for k in one)
    assert not all(torch.equal(one[k], other[k]) for k in one)


def test_save_then_reload_gives_identical_logits(backbone, tmp_path):
    enc = encode(backbone, [page()])
    backbone.model.eval()
    with torch.no_grad():
        logits = backbone.model(**enc).logits
    out = save_backbone(backbone, tmp_path / "export")
    again = load_backbone(ModelConfig(name="local", source="pretrained", arch="auto", path=str(out)))
    assert again.arch == backbone.arch and again.stop_token_ids == backbone.stop_token_ids
    assert again.vision_spec == backbone.vision_spec
    enc2 = encode(again, [page()])
    assert all(torch.equal(enc[k], enc2[k]) for k in enc)
    again.model.eval()
    with torch.no_grad():
        assert torch.equal(again.model(**enc2).logits, logits)
    assert not list(tmp_path.glob(".export.*"))  # atomic: no temp dir left behind


def test_missing_checkpoint_says_what_to_download(tmp_path):
    cfg = ModelConfig(name="qwen3_vl_8b", source="pretrained", arch="qwen3_vl",
                      path=str(tmp_path / "nope"), hub_id="Qwen/Qwen3-VL-8B-Instruct")
    with pytest.raises(FileNotFoundError, match=r"Qwen/Qwen3-VL-8B-Instruct.*model.path"):
        load_backbone(cfg)


def test_checkpoint_of_another_arch_is_refused(tmp_path):
    bb = load_backbone(tiny_cfg("glm4v"))
    out = save_backbone(bb, tmp_path / "glm")
    with pytest.raises(ValueError, match="model_type='glm4v'"):
        load_backbone(ModelConfig(name="x", source="pretrained", arch="qwen3_vl", path=str(out)))


def test_freeze_switches():
    cfg = tiny_cfg("qwen3_vl")
    cfg.freeze_vision, cfg.freeze_projector = True, False
    model = load_backbone(cfg).model
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    assert not any(g for n, g in grads.items() if "visual" in n and "merger" not in n)
    assert all(g for n, g in grads.items() if "merger" in n)
    assert all(g for n, g in grads.items() if "language_model" in n or "lm_head" in n)


def test_lora_adapts_the_language_model_and_exports_merged(tmp_path):
    pytest.importorskip("peft")
    cfg = tiny_cfg("qwen3_vl")
    cfg.lora_rank, cfg.freeze_vision, cfg.freeze_projector = 4, True, False
    bb = load_backbone(cfg)
    trainable = [n for n, p in bb.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or "merger" in n for n in trainable)
    assert any("language_model" in n and "lora_A" in n for n in trainable)
    assert not any("visual" in n and "lora_" in n for n in trainable)
    with torch.no_grad():  # make the adapters do something (lora_B starts at zero)
        for n, p in bb.model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    enc = encode(bb, [page()])
    bb.model.eval()
    with torch.no_grad():
        logits = bb.model(**enc).logits
    out = save_backbone(bb, tmp_path / "lora_export")
    again = load_backbone(ModelConfig(name="local", source="pretrained", arch="auto", path=str(out)))
    again.model.eval()
    with torch.no_grad():
        merged = again.model(**encode(again, [page()])).logits
    assert torch.allclose(merged, logits, atol=1e-4)
    assert any("lora_" in n for n, _ in bb.model.named_parameters())  # training model untouched


def test_export_names_the_stock_processor_class(tmp_path):
    import json

    bb = load_backbone(tiny_cfg("glm4v"))
    out = save_backbone(bb, tmp_path / "e")
    assert json.loads((out / "processor_config.json").read_text())["processor_class"] == "Glm4vProcessor"
    tok = json.loads((out / "tokenizer_config.json").read_text())
    assert tok.get("processor_class", "Glm4vProcessor") == "Glm4vProcessor"


@pytest.mark.parametrize("arch", ["qwen3_vl", "glm4v"])
def test_attn_implementation_reaches_text_and_vision_towers(arch):
    cfg = ModelConfig(name=f"tiny_{arch}", arch=arch, attn_implementation="eager",
                      tiny=TinySpec(patch_size=ARCHS[arch]))
    model = load_backbone(cfg).model
    assert {model.config.text_config._attn_implementation,
            model.config.vision_config._attn_implementation} == {"eager"}
