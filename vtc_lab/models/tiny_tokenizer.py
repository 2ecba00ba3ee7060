"""Offline tokenizers for the tiny random-init backbones (their chat formats: the specs).

A tiny backbone needs a tokenizer that exists without any download, is identical on every
machine (build-data counts tokens with it, training and eval must agree), and knows every token
the processor and the chat template use. We train a small byte-level BPE on the packaged MATH500
text: byte-level means any text encodes (no unknown token) and decodes back exactly.
"""

from __future__ import annotations

from functools import lru_cache

from vtc_lab.task.completion import MARKERS
from vtc_lab.models.registry import get_backbone
from vtc_lab.models.spec import ChatFormat

# Tags of the VTC-R1 completion format: single, non-special tokens (decoded like text) so the
# model emits `</think>` / `<answer>` in one step and a stop check needs no sub-word logic.
FORMAT_TAGS = MARKERS


def _training_corpus() -> list[str]:
    """Problems and solutions of the packaged MATH500 file, in file order (deterministic)."""
    from vtc_lab.eval.benchmarks import packaged_rows

    return [str(row[key]) for row in packaged_rows("math500.jsonl")
            for key in ("problem", "solution", "answer") if row.get(key)]


@lru_cache(maxsize=8)
def _tokenizer_json(specials: tuple[str, ...], vocab_size: int) -> str:
    """Serialized `tokenizers` BPE (cached: training takes ~1 s, and every call must agree)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

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


def build_tiny_tokenizer(chat: ChatFormat | str, vocab_size: int):
    """A transformers fast tokenizer with `chat`'s tokens and template (or those of the tiny
    recipe of the backbone named `chat`)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    if isinstance(chat, str):
        recipe = get_backbone(chat).tiny
        if recipe is None:
            raise ValueError(f"model.arch={chat!r} has no tiny recipe (pretrained checkpoints only)")
        chat = recipe.chat
    specials, template, eot, pad = chat.special_tokens, chat.template, chat.end_of_turn, chat.pad
    backend = Tokenizer.from_str(_tokenizer_json(tuple(specials), vocab_size))
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
