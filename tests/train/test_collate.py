"""The collator: exact label masking, image bookkeeping, truncation policy, bad images."""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image

from vtc_lab.data import REFERENCE_SYSTEM_PROMPT, build_messages
from vtc_lab.models import ModelConfig, TinySpec, get_backbone, load_backbone
from vtc_lab.models.registry import tiny_backbone_names
from vtc_lab.models.images import cap_pixels
from vtc_lab.train.collate import IGNORE_INDEX, BadSampleError, SFTEncoder, collate

torch.set_num_threads(1)
TARGET = "\n\nSo 3+4=7. Wait, check: 7.</think>\n<answer>7</answer>"


@pytest.fixture(scope="module", params=tiny_backbone_names())
def setup(request):
    spec = get_backbone(request.param)
    bb = load_backbone(ModelConfig(name=spec.name, arch=spec.name,
                                   tiny=TinySpec(patch_size=spec.vision.patch_size)))
    return bb, spec.tiny.chat.end_of_turn


def encoder(bb, **kw) -> SFTEncoder:
    return SFTEncoder(bb.processor, bb.stop_token_ids, REFERENCE_SYSTEM_PROMPT, "before",
                      **{"cutoff_len": 4096, **kw})


def row(n_images: int, target: str = TARGET, **kw) -> dict:
    from PIL import ImageDraw

    pages = []
    for i in range(n_images):
        img = Image.new("RGB", (160 + 40 * i, 48), "white")
        ImageDraw.Draw(img).text((4, 4), f"segment {i}", fill="black")
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        pages.append(buf.getvalue())
    return {"sample_id": "p1-k2", "problem_id": "p1", "question": "What is 3+4?", "target": target,
            "images": pages, **kw}


@pytest.mark.parametrize("n_images", [0, 1, 3])
def test_unmasked_labels_decode_to_target_plus_end_of_turn(setup, n_images):
    bb, eot = setup
    enc = encoder(bb)
    item = enc.encode(row(n_images))
    labels = item["labels"]
    kept = labels[labels != IGNORE_INDEX]
    assert bb.tokenizer.decode(kept) == TARGET + eot
    # supervised tokens are one contiguous tail; the prompt before it is exactly what
    # inference sends (generation prompt included), tokenized on its own
    start = int((labels != IGNORE_INDEX).nonzero()[0])
    assert torch.equal(item["input_ids"][start:], kept)
    images = [Image.open(io.BytesIO(b)).convert("RGB") for b in row(n_images)["images"]]
    prompt = bb.processor.apply_chat_template(
        build_messages("What is 3+4?", images, REFERENCE_SYSTEM_PROMPT), tokenize=False,
        add_generation_prompt=True)
    expected = bb.processor(text=[prompt], images=images or None, add_special_tokens=False,
                            return_tensors="pt")["input_ids"][0]
    assert torch.equal(item["input_ids"][:start], expected)
    image_id = bb.model.config.image_token_id
    if n_images:
        assert item["image_grid_thw"].shape == (n_images, 3)
        assert item["pixel_values"].shape[0] == int(item["image_grid_thw"].prod(-1).sum())
        assert int((item["input_ids"] == image_id).sum()) == int(
            item["image_grid_thw"].prod(-1).sum()) // bb.vision_spec.merge_size ** 2
    else:
        assert "pixel_values" not in item and int((item["input_ids"] == image_id).sum()) == 0
    assert item["mm_token_type_ids"].shape == item["input_ids"].shape
    assert int(item["mm_token_type_ids"].sum()) == int((item["input_ids"] == image_id).sum())


def test_batch_mixes_image_counts_and_pads(setup):
    bb, _ = setup
    enc = encoder(bb)
    items = [enc.encode(row(n)) for n in (2, 0, 1)]
    batch = collate(items, bb.tokenizer.pad_token_id)
    lengths = [len(i["input_ids"]) for i in items]
    assert batch["input_ids"].shape == (3, max(lengths))
    assert batch["attention_mask"].sum(1).tolist() == lengths
    assert batch["image_grid_thw"].shape[0] == 3  # 2 + 0 + 1 images, in order
    assert torch.equal(batch["image_grid_thw"], torch.cat([items[0]["image_grid_thw"], items[2]["image_grid_thw"]]))
    for i, n in enumerate(lengths):
        assert (batch["labels"][i, n:] == IGNORE_INDEX).all()
    with torch.no_grad():
        out = bb.model(**{k: batch[k] for k in ("input_ids", "attention_mask", "mm_token_type_ids",
                                                "pixel_values", "image_grid_thw")})
    assert torch.isfinite(out.logits).all()


def test_truncation_policy_counts_and_cuts(setup):
    bb, _ = setup
    full = encoder(bb).encode(row(1))
    prompt_len = int((full["labels"] == IGNORE_INDEX).sum())
    cut = encoder(bb, cutoff_len=prompt_len + 3)
    item = cut.encode(row(1))
    assert len(item["input_ids"]) == prompt_len + 3
    assert int((item["labels"] != IGNORE_INDEX).sum()) == 3
    assert cut.stats.truncated == 1 and cut.stats.target_tokens_cut == len(full["input_ids"]) - prompt_len - 3
    drop = encoder(bb, cutoff_len=prompt_len + 3, truncation="drop")
    assert drop.encode(row(1)) is None and drop.stats.dropped_too_long == 1
    # a prompt that does not fit (vision tokens are never cut) is dropped under either policy
    tiny = encoder(bb, cutoff_len=prompt_len - 1)
    assert tiny.encode(row(1)) is None and tiny.stats.dropped_too_long == 1


def test_image_pixel_cap():
    img = Image.new("RGB", (1000, 500), "white")
    capped = cap_pixels(img, 262144)
    assert capped.width * capped.height <= 262144
    assert abs(capped.width / capped.height - 2) < 0.01
    assert cap_pixels(img, None) is img and cap_pixels(img, 10**7) is img


def test_corrupt_png_names_the_sample(setup):
    bb, _ = setup
    bad = row(2)
    bad["images"][1] = b"\x89PNG\r\n\x1a\nthis is not a png"
    with pytest.raises(BadSampleError, match=r"sample_id='p1-k2'.*image 1"):
        encoder(bb).encode(bad)


def test_text_memory_form_is_what_the_text_loop_feeds(setup):
    """A text-memory sample: no pages; the earlier rounds open the assistant turn unsupervised,
    exactly the ids the text loop appends to the same prompt; only the new round is learnt."""
    bb, eot = setup
    memory = "Step 1: 3+4.\nStep 2: 7.\n"
    sample = row(2, memory_text=memory)
    item = encoder(bb, memory="text").encode(sample)
    assert "pixel_values" not in item
    labels = item["labels"]
    assert bb.tokenizer.decode(labels[labels != IGNORE_INDEX]) == TARGET + eot
    prompt = bb.processor.apply_chat_template(
        build_messages("What is 3+4?", [], REFERENCE_SYSTEM_PROMPT), tokenize=False,
        add_generation_prompt=True)
    prefix = bb.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    prefix += bb.tokenizer(memory, add_special_tokens=False)["input_ids"]
    start = int((labels != IGNORE_INDEX).nonzero()[0])
    assert item["input_ids"][:start].tolist() == prefix
    assert item["mm_token_type_ids"].shape == item["input_ids"].shape
    # the optical form of the same row: pages and all
    assert "pixel_values" in encoder(bb).encode(sample)


def test_text_memory_rounds_before_the_last_do_not_end_the_turn(setup):
    """Text memory is one long generation: a non-final round's target continues the turn (no
    end-of-turn), so round 1 alone and round 2 after round 1 never ask for different next tokens
    in the same context; the final round ends the turn. Optical rounds always end it."""
    bb, eot = setup
    middle = "Step 2: 7.\n"
    for memory_text in ("", "Step 1: 3+4.\n"):
        sample = row(0, target=middle, memory_text=memory_text)
        labels = encoder(bb, memory="text").encode(sample)["labels"]
        assert bb.tokenizer.decode(labels[labels != IGNORE_INDEX]) == middle
        optical = encoder(bb).encode(sample)["labels"]
        assert bb.tokenizer.decode(optical[optical != IGNORE_INDEX]) == middle + eot


def test_memory_mode_is_validated():
    from vtc_lab.train.config import OptimConfig

    with pytest.raises(ValueError, match=r"optim.memory must be one of \('optical', 'text'\), got 'pages'"):
        OptimConfig(memory="pages")
