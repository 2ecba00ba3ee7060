"""Character error rate: exact edit distances, whitespace rule, the prefix/suffix shortcut."""

from __future__ import annotations

import itertools
import random

from vtc_lab.eval.cer import cer, edit_distance, normalize_space


def reference_distance(a: str, b: str) -> int:
    """The textbook full table (no shortcuts), to check the fast one against."""
    table = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i, j in itertools.product(range(1, len(a) + 1), range(1, len(b) + 1)):
        table[i][j] = min(table[i - 1][j] + 1, table[i][j - 1] + 1,
                          table[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
    return table[-1][-1]


def test_known_distances():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == edit_distance("abc", "") == 3
    assert edit_distance("abc", "abc") == 0
    assert edit_distance("flaw", "lawn") == 2
    assert edit_distance("aaaa", "aa") == 2   # prefix cut must not over-count repeats
    assert edit_distance("abcabc", "abc") == 3


def test_matches_the_full_table_on_random_strings():
    rng = random.Random(0)
    for _ in range(300):
        a = "".join(rng.choice("ab c") for _ in range(rng.randint(0, 12)))
        b = "".join(rng.choice("ab c") for _ in range(rng.randint(0, 12)))
        assert edit_distance(a, b) == reference_distance(a, b) == edit_distance(b, a), (a, b)


def test_cer_ignores_where_lines_wrap():
    assert normalize_space("  one\ntwo\t\tthree \n") == "one two three"
    assert cer("one two\nthree", "one two three") == (0, 13)
    assert cer("one two three", "one tw0 three\n") == (1, 13)
    assert cer("", "xy") == (2, 0)
