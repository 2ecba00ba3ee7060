import re

import pytest


class WordPieceTokenizer:
    """A deterministic stand-in for a BPE: words, single spaces+word, runs of punctuation/space.

    Tokens never cross a newline and long words are chopped every 4 characters, so token
    counts of slices can differ from the whole text's tokenisation (like a real BPE).
    """

    _pattern = re.compile(r" ?[A-Za-z]{1,4}| ?\d| ?[^\sA-Za-z\d]+|\n+|[^\S\n]+")

    def offsets(self, text):
        spans, pos = [], 0
        for m in self._pattern.finditer(text):
            if m.start() != pos:  # anything the pattern skipped becomes its own token
                spans.append((pos, m.start()))
            spans.append((m.start(), m.end()))
            pos = m.end()
        if pos != len(text):
            spans.append((pos, len(text)))
        return spans

    def count(self, text):
        return len(self.offsets(text))

    def encode(self, text):
        return [hash(text[a:b]) % 1000 for a, b in self.offsets(text)]


@pytest.fixture
def tok():
    return WordPieceTokenizer()
