"""Backbone contract: every registered family with a tiny recipe passes the same tests
(deterministic build, exact vision-token rule, chat markers, a train step, generation that stops
at the end of turn, save -> reload identity); plus the registry's own rules and errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image, ImageDraw

from vtc_lab.models import (ModelConfig, TinySpec, backbone_names, get_backbone, load_backbone,
                            load_tokenizer, save_backbone)
from vtc_lab.models.registry import tiny_backbone_names
from vtc_lab.render import VISION_SPECS, vision_tokens

torch.set_num_threads(1)

TINY = tiny_backbone_names()
CONF = Path(__file__).resolve().parents[2] / "conf" / "model"


def tiny_cfg(arch: str, **kw) -> ModelConfig:
    """The family's tiny backbone at its real checkpoint's patch size (same token counts)."""
    patch = get_backbone(arch).vision.patch_size
    return ModelConfig(name=f"tiny_{arch}", arch=arch, tiny=TinySpec(patch_size=patch, **kw))


@pytest.fixture(scope="module", params=TINY)
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


@pytest.mark.parametrize("arch", TINY)
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


def test_chat_markers_are_the_familys(backbone):
    """The template opens the assistant turn where the prompt ends, and the turn the template
    writes ends with the family's end-of-turn token, the one generation stops at."""
    chat = get_backbone(backbone.arch).tiny.chat
    tok = backbone.tokenizer
    for special in chat.special_tokens:  # each marker is one token, never split
        assert len(tok.encode(special, add_special_tokens=False)) == 1, special
    assert backbone.stop_token_ids == [tok.convert_tokens_to_ids(chat.end_of_turn)]
    user = [{"role": "user", "content": [{"type": "image", "image": page()},
                                         {"type": "text", "text": "2+2?"}]}]
    prompt = backbone.processor.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    full = backbone.processor.apply_chat_template(
        user + [{"role": "assistant", "content": [{"type": "text", "text": "4"}]}], tokenize=False)
    assert full.startswith(prompt)
    assert full[len(prompt):].rstrip("\n") == "4" + chat.end_of_turn
    image_token = tok.convert_ids_to_tokens(backbone.model.config.image_token_id)
    assert prompt.count(image_token) == 1  # one placeholder per image, expanded by the processor


def test_a_train_step_moves_every_part(backbone):
    """Loss on the assistant tokens reaches the language model, the projector and the vision
    tower (the page is read), and one optimizer step lowers it on the same batch."""
    import copy

    from vtc_lab.train.collate import SFTEncoder, collate

    model = copy.deepcopy(backbone.model).train()
    enc = SFTEncoder(backbone.processor, backbone.stop_token_ids, None, cutoff_len=4096)
    import io

    buf = io.BytesIO()
    page().save(buf, format="PNG")
    item = enc.encode({"sample_id": "s", "question": "2+2?", "target": "4</think>\n<answer>4</answer>",
                       "images": [buf.getvalue()]})
    batch = collate([item], backbone.tokenizer.pad_token_id)
    batch = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}
    keys = get_backbone(backbone.arch).projector_keys
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    loss = model(**batch).loss
    loss.backward()
    parts = {"vision": 0.0, "projector": 0.0, "language_model": 0.0}
    for n, p in model.named_parameters():
        part = ("projector" if any(k in n for k in keys) else "vision") if "visual" in n \
            else "language_model"
        parts[part] += float(p.grad.abs().sum()) if p.grad is not None else 0.0
    assert all(g > 0 for g in parts.values()), parts
    opt.step()
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters() if "visual" in n)
    with torch.no_grad():
        assert model(**batch).loss < loss


def test_generation_runs_and_stops_at_the_end_of_turn(backbone):
    """Greedy generation through the engine runs to the budget; a head that always says the
    family's end-of-turn ends the turn after exactly that token."""
    from vtc_lab.data import build_messages
    from vtc_lab.infer.engine import GenerationParams, GenerationRequest, HFEngine

    engine = HFEngine(backbone, reuse_prefix=False, reuse_vision=False)
    request = GenerationRequest(build_messages("2+2?", [page()], None))
    params = GenerationParams(max_new_tokens=5, do_sample=False)
    model = backbone.model.eval()
    head = model.get_output_embeddings()
    vocab = head.weight.shape[0]
    out = engine.generate([request], params)[0]
    assert out.context_vision_tokens > 0
    assert (len(out.token_ids) == 5 and not out.stopped) or out.token_ids[-1] in backbone.stop_token_ids
    eot = backbone.stop_token_ids[0]
    always_eot = torch.nn.Linear(head.weight.shape[1], vocab, bias=True)
    with torch.no_grad():
        always_eot.weight.zero_()
        always_eot.bias.fill_(-10.0)
        always_eot.bias[eot] = 10.0
    model.set_output_embeddings(always_eot)
    try:
        out = engine.generate([request], params)[0]
    finally:
        model.set_output_embeddings(head)
    assert out.token_ids == [eot] and out.stopped and out.text == ""


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


@pytest.mark.parametrize("arch", TINY)
def test_freeze_switches(arch):
    cfg = tiny_cfg(arch)
    cfg.freeze_vision, cfg.freeze_projector = True, False
    model = load_backbone(cfg).model
    keys = get_backbone(arch).projector_keys
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    projector = {n: g for n, g in grads.items() if "visual" in n and any(k in n for k in keys)}
    tower = {n: g for n, g in grads.items() if "visual" in n and n not in projector}
    assert projector and tower  # both parts exist, so the check below is not vacuous
    assert not any(tower.values()) and all(projector.values())
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


@pytest.mark.parametrize("arch", TINY)
def test_attn_implementation_reaches_text_and_vision_towers(arch):
    cfg = tiny_cfg(arch)
    cfg.attn_implementation = "eager"
    model = load_backbone(cfg).model
    assert {model.config.text_config._attn_implementation,
            model.config.vision_config._attn_implementation} == {"eager"}


@pytest.mark.parametrize("arch", TINY)
def test_each_tiny_family_has_its_preset(arch):
    """One YAML per family: conf/model/tiny_<arch>.yaml builds that family at the released
    checkpoint's patch size (so its token counts are the real model's)."""
    raw = OmegaConf.load(CONF / f"tiny_{arch}.yaml")
    cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ModelConfig), raw))
    assert (cfg.name, cfg.source, cfg.arch) == (f"tiny_{arch}", "tiny", arch)
    assert cfg.tiny.patch_size == get_backbone(arch).vision.patch_size


@pytest.mark.parametrize("arch", backbone_names())
def test_every_registered_family_names_real_classes(arch):
    """Every spec, pretrained-only ones included: its classes exist in this transformers, its
    image-only processor has no video slot, and its token rule is render's entry of that name."""
    import transformers

    from vtc_lab.models.processor import image_only

    spec = get_backbone(arch)
    assert hasattr(transformers, spec.model_class)
    processor_cls = image_only(spec.processor)
    assert "video_processor" not in processor_cls.get_attributes()
    assert spec.vision == VISION_SPECS[arch]
    assert ModelConfig(name="x", source="pretrained", arch=arch, path="/ckpt").arch == arch
    if spec.tiny is None:
        with pytest.raises(ValueError, match="model.source=tiny"):
            ModelConfig(arch=arch)


def test_the_registry_refuses_a_second_family_of_the_same_name_or_model_type():
    from vtc_lab.models.registry import _add

    spec = get_backbone("qwen3_vl")
    into, owners = {}, {}
    _add(spec, into, owners, "a")
    with pytest.raises(ValueError, match="'qwen3_vl' is already registered"):
        _add(spec, into, owners, "b")
    import dataclasses

    with pytest.raises(ValueError, match="model_type 'qwen3_vl' already belongs to 'qwen3_vl'"):
        _add(dataclasses.replace(spec, name="other"), into, owners, "c")
    with pytest.raises(KeyError, match="unknown backbone 'llava'; registered: glm4v"):
        get_backbone("llava")


def test_build_data_reads_the_vision_rule_without_weights(tmp_path):
    """`vision_spec_for`: the tiny patch sizes for a tiny config, the family's released rule for
    a checkpoint (`arch: auto` read off its config.json), a clear error for an unknown family."""
    import dataclasses
    import json

    from vtc_lab.models import vision_spec_for

    tiny = vision_spec_for(ModelConfig(arch="glm4v", tiny=TinySpec(patch_size=8, merge_size=3)))
    assert tiny == dataclasses.replace(VISION_SPECS["glm4v"], patch_size=8, merge_size=3)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl"}))
    auto = ModelConfig(name="local", source="pretrained", arch="auto", path=str(tmp_path))
    assert vision_spec_for(auto) == VISION_SPECS["qwen2_5_vl"]
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava"}))
    with pytest.raises(ValueError, match="model.arch='llava' has no vision-token rule"):
        vision_spec_for(auto)
