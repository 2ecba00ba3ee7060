"""Offline tokenizers and chat templates for the tiny random-init backbones.

A tiny backbone needs a tokenizer that exists without any download, is identical on every
machine (build-data counts tokens with it, training and eval must agree), and knows every token
the processor and the chat template use. We train a small byte-level BPE on the packaged MATH500
text: byte-level means any text encodes (no unknown token) and decodes back exactly.
"""

from __future__ import annotations

from functools import lru_cache

from vtc_lab.eval.completion import MARKERS

# Tags of the VTC-R1 completion format: single, non-special tokens (decoded like text) so the
# model emits `</think>` / `<answer>` in one step and a stop check needs no sub-word logic.
FORMAT_TAGS = MARKERS

QWEN_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                 "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
GLM_SPECIALS = ("<|endoftext|>", "[gMASK]", "<sop>", "<|system|>", "<|user|>", "<|assistant|>",
                "<|begin_of_image|>", "<|end_of_image|>", "<|image|>", "<|begin_of_video|>",
                "<|end_of_video|>", "<|video|>")

# Chat templates in the families' own shapes (Qwen ChatML; GLM-4.1V role tags). Only used for
# the tiny backbones: a pretrained checkpoint always brings its own template.
QWEN_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}"
)
GLM_TEMPLATE = (
    "{{- '[gMASK]<sop>' -}}"
    "{%- for message in messages -%}"
    "{{- '<|' + message['role'] + '|>\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{- '<|begin_of_image|><|image|><|end_of_image|>' -}}"
    "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- if message['role'] == 'assistant' -%}{{- '<|endoftext|>' -}}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|assistant|>\n' -}}{%- endif -%}"
)

ARCH_TOKENS = {
    # arch: (special tokens, chat template, end-of-turn token, pad token)
    "qwen3_vl": (QWEN_SPECIALS, QWEN_TEMPLATE, "<|im_end|>", "<|endoftext|>"),
    "glm4v": (GLM_SPECIALS, GLM_TEMPLATE, "<|endoftext|>", "<|endoftext|>"),
}


def _training_corpus() -> list[str]:
    """Problems and solutions of the packaged MATH500 file, in file order (deterministic)."""
    from vtc_lab.eval.benchmarks import packaged_rows

    return [str(row[key]) for row in packaged_rows("math500.jsonl")
            for key in ("problem", "solution", "answer") if row.get(key)]


@lru_cache(maxsize=8)
def _tokenizer_json(arch: str, vocab_size: int) -> str:
    """Serialized `tokenizers` BPE (cached: training takes ~1 s, and every call must agree)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    specials, _, _, _ = ARCH_TOKENS[arch]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(specials) - len(FORMAT_TAGS),
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tokenizer.train_from_iterator(_training_corpus(), trainer=trainer)
    tokenizer.add_special_tokens([AddedToken(tok, special=True, normalized=False) for tok in specials])
    tokenizer.add_tokens([AddedToken(tag, special=False, normalized=False) for tag in FORMAT_TAGS])
    return tokenizer.to_str()


def build_tiny_tokenizer(arch: str, vocab_size: int):
    """A transformers fast tokenizer for a tiny backbone of `arch`, with its chat template."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    if arch not in ARCH_TOKENS:
        raise ValueError(f"model.arch={arch!r} has no tiny tokenizer; choose one of {tuple(ARCH_TOKENS)}")
    specials, template, eot, pad = ARCH_TOKENS[arch]
    backend = Tokenizer.from_str(_tokenizer_json(arch, vocab_size))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=eot,
        pad_token=pad,
        additional_special_tokens=[tok for tok in specials if tok not in {eot, pad}],
        clean_up_tokenization_spaces=False,
        model_max_length=1 << 20,
    )
    tokenizer.chat_template = template
    tokenizer.padding_side = "right"
    return tokenizer
