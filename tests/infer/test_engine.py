"""HFEngine on the real tiny Qwen3-VL: prompt parity with training, batching, seeds, counts."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from vtc_lab.data.messages import REFERENCE_SYSTEM_PROMPT, build_messages
from vtc_lab.infer.engine import Engine, GenerationParams, GenerationRequest, HFEngine
from vtc_lab.models import ModelConfig, load_backbone


@pytest.fixture(scope="module")
def engine() -> HFEngine:
    torch.set_num_threads(1)
    return HFEngine(load_backbone(ModelConfig()))


def page(width: int, height: int, shade: int = 255) -> Image.Image:
    img = Image.new("RGB", (width, height), (shade, shade, shade))
    for x in range(0, width, 7):  # some ink, so images differ from blank
        img.putpixel((x, height // 2), (0, 0, 0))
    return img


def test_engine_satisfies_protocol(engine):
    assert isinstance(engine, Engine)


def test_inference_prompt_is_the_training_prompt_prefix(engine):
    """Training tokenizes (messages + assistant target) with the same processor and template;
    the inference prompt must be exactly its prefix, ids and image placeholders included."""
    images = [page(300, 90), page(200, 64)]
    messages = build_messages("What is 2+2?", images, REFERENCE_SYSTEM_PROMPT)
    target = "first add </think>\n<answer>4</answer>"
    full_text = engine.processor.apply_chat_template(
        messages + [{"role": "assistant", "content": [{"type": "text", "text": target}]}],
        tokenize=False)
    train_ids = engine.processor(text=[full_text], images=images,
                                 return_tensors="pt")["input_ids"][0].tolist()
    infer_ids = engine.encode(GenerationRequest(messages))["input_ids"][0].tolist()
    assert len(infer_ids) < len(train_ids)
    assert train_ids[: len(infer_ids)] == infer_ids
    assert full_text.startswith(engine.prompt_text(messages))


def test_context_counts_split_text_and_vision(engine):
    images = [page(300, 90), page(640, 300)]
    req = GenerationRequest(build_messages("Q?", images, None))
    enc = engine.encode(req)
    merge = engine.processor.image_processor.merge_size
    expected_vision = int(enc["image_grid_thw"].prod(dim=1).sum()) // merge**2
    (out,) = engine.generate([req], GenerationParams(max_new_tokens=3, do_sample=False))
    assert out.context_vision_tokens == expected_vision > 0
    assert out.context_text_tokens + out.context_vision_tokens == enc["input_ids"].shape[1]
    assert len(out.token_ids) <= 3


@pytest.mark.parametrize("do_sample", [False, True])
def test_batched_left_padded_generation_matches_single(engine, do_sample):
    """A request's output does not depend on what else is in its batch (padding, seeds)."""
    reqs = [
        GenerationRequest(build_messages("short", [], None), seed=11),
        GenerationRequest(build_messages("a much longer question with more words in it",
                                         [page(300, 90)], "sys"), seed=12),
        GenerationRequest(build_messages("continue", [], None), prefix_ids=[40, 41, 42], seed=13),
    ]
    params = GenerationParams(max_new_tokens=6, do_sample=do_sample, temperature=1.0, top_p=1.0)
    batched = engine.generate(reqs, params)
    for req, out in zip(reqs, batched):
        (alone,) = engine.generate([req], params)
        assert alone.token_ids == out.token_ids
        assert alone.context_text_tokens == out.context_text_tokens


def test_seeds_reproduce_and_differ(engine):
    msgs = build_messages("pick anything", [], None)
    params = GenerationParams(max_new_tokens=8, do_sample=True, temperature=1.5, top_p=1.0)
    a, b, c = engine.generate([GenerationRequest(msgs, seed=1), GenerationRequest(msgs, seed=1),
                               GenerationRequest(msgs, seed=2)], params)
    assert a.token_ids == b.token_ids
    assert a.token_ids != c.token_ids


def test_prefix_is_appended_as_exact_ids(engine):
    msgs = build_messages("q", [], None)
    base = engine.encode(GenerationRequest(msgs))["input_ids"][0].tolist()
    ext = engine.encode(GenerationRequest(msgs, prefix_ids=[7, 8, 9]))
    assert ext["input_ids"][0].tolist() == base + [7, 8, 9]
    assert ext["attention_mask"][0].tolist() == [1] * (len(base) + 3)


def test_kv_bytes_from_model_config(engine):
    text = engine.model.config.get_text_config()
    assert engine.kv_bytes_per_token() == 2 * text.num_hidden_layers * text.num_key_value_heads \
        * text.head_dim * 4  # float32 on CPU


def test_top_p_keeps_only_the_nucleus(engine):
    """With a tiny top_p the sampler must pick the arg-max token, whatever the seed."""
    msgs = build_messages("nucleus", [], None)
    greedy = engine.generate([GenerationRequest(msgs)], GenerationParams(max_new_tokens=5,
                                                                         do_sample=False))[0]
    for seed in (1, 2, 3):
        out = engine.generate([GenerationRequest(msgs, seed=seed)],
                              GenerationParams(max_new_tokens=5, do_sample=True,
                                               temperature=1.0, top_p=1e-6))[0]
        assert out.token_ids == greedy.token_ids


def test_inference_prompt_equals_the_training_encoders_prompt(engine):
    """The SFT encoder's unmasked prefix (labels == -100) is exactly what inference feeds."""
    import io

    from vtc_lab.train.collate import IGNORE_INDEX, SFTEncoder

    images = [page(300, 90), page(220, 70, shade=240)]
    pngs = []
    for img in images:
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        pngs.append(buf.getvalue())
    encoder = SFTEncoder(processor=engine.processor, stop_token_ids=engine.stop_ids,
                         system_prompt=REFERENCE_SYSTEM_PROMPT, image_position="before")
    sample = {"sample_id": "s", "question": "What is 2+2?", "target": "so </think>\n<answer>4</answer>",
              "images": pngs}
    enc = encoder.encode(sample)
    prompt_len = int((enc["labels"] == IGNORE_INDEX).sum())
    train_prompt = enc["input_ids"][:prompt_len].tolist()
    decoded = [Image.open(io.BytesIO(b)).convert("RGB") for b in pngs]  # what training reads
    messages = build_messages("What is 2+2?", decoded, REFERENCE_SYSTEM_PROMPT)
    infer_prompt = engine.encode(GenerationRequest(messages))["input_ids"][0].tolist()
    assert infer_prompt == train_prompt


def test_glm4v_counts_and_batching():
    """The other tiny family (GLM-4.1V: `<|image|>` placeholders, 28 px per vision token)."""
    glm = HFEngine(load_backbone(ModelConfig(name="tiny_glm4v", arch="glm4v")))
    images = [page(300, 90), page(200, 120)]
    req = GenerationRequest(build_messages("Q?", images, "sys"), seed=5)
    enc = glm.encode(req)
    merge = glm.processor.image_processor.merge_size
    expected = int(enc["image_grid_thw"].prod(dim=1).sum()) // merge**2
    other = GenerationRequest(build_messages("a longer question without images", [], None), seed=6)
    params = GenerationParams(max_new_tokens=5, do_sample=True, temperature=1.0, top_p=0.9)
    out, _ = glm.generate([req, other], params)
    assert out.context_vision_tokens == expected > 0
    assert glm.generate([req], params)[0].token_ids == out.token_ids
