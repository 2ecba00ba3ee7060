"""Text-token counting with a backbone's own tokenizer, behind one small protocol.

`HFTextTokenizer` wraps any transformers fast tokenizer; `qwen_tokenizer()` builds the Qwen BPE
(151,643 regular tokens, shared by Qwen2/2.5/3 and Qwen3-VL) offline from the vocabulary that
ships inside the `dashscope` package, with tiktoken (extra `qwen`). Offsets always cover the text
losslessly (token spans are contiguous, first starts at 0, last ends at len(text)), because the
segmenter cuts text at token boundaries and must get back exactly what it was given.
"""

from __future__ import annotations

import base64
import functools
from importlib.resources import files
from typing import Any, Protocol, runtime_checkable

# Qwen2's pre-tokenizer split pattern (also dashscope's), tiktoken/regex syntax.
QWEN_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN_SPECIAL_START = 151_643
_CHUNK = 50_000  # tiktoken's recursive BPE can overflow the stack on huge inputs


@runtime_checkable
class TextTokenizer(Protocol):
    """What the renderer, segmenter and data builder need from a tokenizer."""

    def encode(self, text: str) -> list[int]: ...

    def count(self, text: str) -> int: ...

    def offsets(self, text: str) -> list[tuple[int, int]]: ...


def _cover(spans: list[tuple[int, int]], n: int) -> list[tuple[int, int]]:
    """Make spans contiguous and covering [0, n): each token owns the text up to the next one."""
    if not spans:
        return [(0, n)] if n else []
    starts = [min(max(s, 0), n) for s, _ in spans]
    for i in range(1, len(starts)):  # non-decreasing starts
        starts[i] = max(starts[i], starts[i - 1])
    starts[0] = 0
    ends = starts[1:] + [n]
    return list(zip(starts, ends))


class HFTextTokenizer:
    """A transformers fast tokenizer as a `TextTokenizer` (no special tokens added)."""

    def __init__(self, tokenizer: Any) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise TypeError("HFTextTokenizer needs a fast tokenizer (offset mapping); "
                            f"got {type(tokenizer).__name__}")
        self.tokenizer = tokenizer

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def count(self, text: str) -> int:
        return len(self.encode(text))

    def offsets(self, text: str) -> list[tuple[int, int]]:
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return _cover([tuple(o) for o in enc["offset_mapping"]], len(text))


class TiktokenTextTokenizer:
    """A tiktoken `Encoding` as a `TextTokenizer`; special-token text is encoded as plain text."""

    def __init__(self, encoding: Any) -> None:
        self.encoding = encoding

    def _chunks(self, text: str) -> list[str]:
        if len(text) <= _CHUNK:
            return [text]
        out, start = [], 0
        while start < len(text):  # cut at a newline or space so BPE words stay whole
            end = min(start + _CHUNK, len(text))
            if end < len(text):
                cut = max(text.rfind("\n", start, end), text.rfind(" ", start, end))
                end = cut if cut > start else end
            out.append(text[start:end])
            start = end
        return out

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for chunk in self._chunks(text):
            ids.extend(self.encoding.encode_ordinary(chunk))
        return ids

    def count(self, text: str) -> int:
        return len(self.encode(text))

    def offsets(self, text: str) -> list[tuple[int, int]]:
        spans: list[tuple[int, int]] = []
        base = 0
        for chunk in self._chunks(text):
            ids = self.encoding.encode_ordinary(chunk)
            # decode_with_offsets gives character starts (a token inside a multi-byte character
            # gets the character's start), exactly what _cover needs.
            _, starts = self.encoding.decode_with_offsets(ids)
            spans.extend((base + s, base + s) for s in starts)
            base += len(chunk)
        return _cover(spans, len(text))


@functools.lru_cache(maxsize=1)
def qwen_tokenizer() -> TiktokenTextTokenizer:
    """The Qwen2/2.5/3 (and Qwen3-VL) text tokenizer, offline: "Hello, world!" -> [9707, 11, 1879, 0].

    Needs the `qwen` extra (`pip install vtc-lab[qwen]`: tiktoken + dashscope).
    """
    try:
        import tiktoken
        vocab = files("dashscope").joinpath("resources", "qwen.tiktoken").read_bytes()
    except (ImportError, ModuleNotFoundError, FileNotFoundError) as exc:
        raise ImportError("qwen_tokenizer() needs the `qwen` extra: pip install 'vtc-lab[qwen]' "
                          f"(tiktoken + dashscope) [{exc}]") from exc
    ranks = {base64.b64decode(tok): int(rank)
             for tok, rank in (line.split() for line in vocab.splitlines() if line)}
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    encoding = tiktoken.Encoding(
        name="qwen", pat_str=QWEN_PATTERN, mergeable_ranks=ranks,
        special_tokens={tok: QWEN_SPECIAL_START + i for i, tok in enumerate(specials)})
    return TiktokenTextTokenizer(encoding)
