"""Vision tokens against transformers' own image processors; text tokenizers; ratios."""

from __future__ import annotations

import random

import pytest
from PIL import Image

from vtc_lab.render import (VISION_SPECS, Compression, HFTextTokenizer, TextTokenizer,
                            compression, image_grid, median_ratio, pooled_ratio, qwen_tokenizer,
                            vision_tokens)

pytest.importorskip("transformers")
from transformers.models.glm4v import image_processing_pil_glm4v as glm_mod  # noqa: E402
from transformers.models.qwen2_vl import image_processing_pil_qwen2_vl as qwen_mod  # noqa: E402


def _processor(name: str, min_pixels: int | None = None, max_pixels: int | None = None):
    spec = VISION_SPECS[name]
    lo = spec.min_pixels if min_pixels is None else min_pixels
    hi = spec.max_pixels if max_pixels is None else max_pixels
    if name == "glm4v":  # GLM's processor reads the bounds from `size`
        return glm_mod.Glm4vImageProcessorPil(size={"shortest_edge": lo, "longest_edge": hi})
    return qwen_mod.Qwen2VLImageProcessorPil(patch_size=spec.patch_size, min_pixels=lo,
                                             max_pixels=hi)


SIZES = [(578, 185), (595, 842), (30, 20), (27, 27), (1000, 37), (56, 56), (57, 83),
         (451, 267), (96, 32), (300, 2), (2, 300), (589, 842), (123, 457)]
CAPS = [(None, None), (3136, 262_144), (65_536, 262_144)]


@pytest.mark.parametrize("backbone", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl", "glm4v"])
@pytest.mark.parametrize("caps", CAPS)
def test_image_grid_matches_processor_image_grid_thw(backbone, caps) -> None:
    proc = _processor(backbone, *caps)
    for w, h in SIZES:
        out = proc(images=[Image.new("RGB", (w, h), "white")], return_tensors="np")
        expected = tuple(int(v) for v in out["image_grid_thw"][0])
        assert image_grid(w, h, VISION_SPECS[backbone], *caps) == expected, (w, h)


@pytest.mark.parametrize("backbone", ["qwen2_vl", "qwen3_vl", "glm4v"])
def test_vision_tokens_match_processor_count_on_many_sizes(backbone) -> None:
    """Thousands of sizes through the processors' own patch-count function (no pixels)."""
    rng = random.Random(0)
    spec = VISION_SPECS[backbone]
    proc = _processor(backbone, 3136 if backbone != "qwen3_vl" else None, 262_144)
    for _ in range(3000):
        w, h = rng.randint(1, 4000), rng.randint(1, 4000)
        if max(w, h) / min(w, h) > 150:
            continue
        patches = proc.get_number_of_image_patches(h, w, {})
        lo = 3136 if backbone != "qwen3_vl" else None
        assert vision_tokens(w, h, backbone, lo, 262_144) == patches // spec.merge_size ** 2, (w, h)


def test_glm_temporal_factor_halves_the_pixel_bounds() -> None:
    # 2 frames count against max_pixels: a 1000x1000 still is capped near 500k pixels
    t, gh, gw = image_grid(1000, 1000, "glm4v", max_pixels=1_000_000)
    assert (gh * 14) * (gw * 14) * 2 <= 1_000_000
    t2, qh, qw = image_grid(1000, 1000, "qwen2_vl", max_pixels=1_000_000)
    assert qh * qw > gh * gw


def test_vision_tokens_with_delimiters_and_errors() -> None:
    assert vision_tokens(578, 185, "qwen2_vl", delimiters=True) == 14 * 42 // 4 + 2
    with pytest.raises(KeyError, match="unknown backbone"):
        vision_tokens(10, 10, "llava")
    with pytest.raises(ValueError, match="positive"):
        vision_tokens(0, 10, "qwen3_vl")
    with pytest.raises(ValueError, match="aspect ratio"):  # the processors refuse these too
        vision_tokens(3000, 10, "qwen3_vl")


def test_qwen_tokenizer_known_ids_and_lossless_offsets() -> None:
    tok = qwen_tokenizer()
    assert isinstance(tok, TextTokenizer)
    assert tok.encode("Hello, world!") == [9707, 11, 1879, 0]
    text = "Let $x^2$ be 42.\n\n  Héllo 世界 😀 <|im_end|> done"
    ids = tok.encode(text)
    assert tok.count(text) == len(ids)
    spans = tok.offsets(text)
    assert len(spans) == len(ids)
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert "".join(text[s:e] for s, e in spans) == text
    assert tok.encoding.decode(ids) == text  # special-token text is plain text


def test_qwen_tokenizer_long_text_is_chunked_losslessly() -> None:
    tok = qwen_tokenizer()
    text = ("word " * 30_000) + "x" * 1000
    assert tok.encoding.decode(tok.encode(text)) == text
    spans = tok.offsets(text)
    assert spans[-1][1] == len(text) and len(spans) == tok.count(text)


def _tiny_fast_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "hello": 1, "world": 2, ",": 3, "!": 4, "x": 5}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]")


def test_hf_wrapper_covers_the_text() -> None:
    tok = HFTextTokenizer(_tiny_fast_tokenizer())
    text = "  hello,   world! x"
    assert tok.encode(text) == [1, 3, 2, 4, 5]
    spans = tok.offsets(text)
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert "".join(text[s:e] for s, e in spans) == text
    assert text[spans[2][0]:spans[2][1]].strip() == "world"


def test_compression_ratios_pooled_and_median() -> None:
    a = compression(100, [(578, 185)], "qwen2_vl")      # 147 vision tokens
    b = compression(300, [(595, 842), (56, 56)], "qwen2_vl")
    assert a == Compression(100, 1, 147, 149)
    assert b.vision_tokens == 630 + 4 and b.vision_tokens_delim == 634 + 4
    assert pooled_ratio([a, b]) == pytest.approx(400 / (147 + 634))
    assert pooled_ratio([a, b], delimiters=True) == pytest.approx(400 / (149 + 638))
    assert median_ratio([a, b]) == pytest.approx((100 / 147 + 300 / 634) / 2)
