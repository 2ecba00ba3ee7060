"""The one JSONL reader (`vtc_lab.textio.read_jsonl`) and the UTF-8 rule it applies."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

import vtc_lab
from vtc_lab.textio import (JsonlFileError, clean_value, decode_utf8, read_jsonl,
                            replace_surrogates)

BODY = (b'{"a": 1}\n'
        b'\n'                                  # blank: skipped, still counted
        b'{"a": 2, "s": "x\xe2\x80\xa8y"}\n'   # U+2028 inside a string: one line
        b'{"a": \n'                            # invalid JSON
        b'[1, 2]\n'                            # not an object
        b'{"a": "\xff\xfe"}\n')                # two invalid UTF-8 bytes


@pytest.mark.parametrize("gz", [False, True])
def test_lines_errors_and_replacements_name_file_and_line(tmp_path, gz):
    path = tmp_path / ("t.jsonl.gz" if gz else "t.jsonl")
    path.write_bytes(gzip.compress(BODY) if gz else BODY)
    lines = list(read_jsonl(path))
    assert [(x.lineno, x.where) for x in lines] == [(n, f"{path}:{n}") for n in (1, 3, 4, 5, 6)]
    assert [x.row for x in lines] == [{"a": 1}, {"a": 2, "s": "x\u2028y"}, None, None,
                                      {"a": "\ufffd\ufffd"}]
    assert lines[2].error.startswith("invalid JSON (") and lines[3].error == \
        "not a JSON object (list)"
    assert [x.replaced for x in lines] == [0, 0, 0, 0, 2]


def test_lines_in_memory_are_read_the_same_way():
    from_bytes = list(read_jsonl(BODY.split(b"\n"), label="gen"))
    from_text = list(read_jsonl(BODY.decode("utf-8", "replace").split("\n"), label="gen"))
    assert [x.where for x in from_bytes] == ["gen:1", "gen:3", "gen:4", "gen:5", "gen:6"]
    assert [x.row for x in from_bytes][:2] == [x.row for x in from_text][:2]
    assert [x.replaced for x in from_text] == [0] * 5  # str lines: nothing was decoded


def test_a_line_counts_invalid_bytes_and_lone_surrogate_escapes_together():
    (line,) = read_jsonl([b'{"a": "\\ud800", "b": "\xff"}'], label="x")
    assert line.row == {"a": "\ufffd", "b": "\ufffd"} and line.replaced == 2


def test_the_utf8_rule():
    """Each invalid sequence and each lone surrogate becomes one U+FFFD and is counted; a
    U+FFFD that was in the input is not a replacement; values inside lists and dicts and
    bytes values get the same rule."""
    assert decode_utf8(b"ok") == ("ok", 0)
    assert decode_utf8(b"\xef\xbf\xbd\xff") == ("\ufffd\ufffd", 1)
    assert replace_surrogates("plain") == ("plain", 0)
    assert replace_surrogates("a\ud800b") == ("a\ufffdb", 1)
    assert clean_value("a\ud800") == ("a\ufffd", 1)
    assert clean_value(b"\xffok") == ("\ufffdok", 1)
    assert clean_value(["\ud800", "x", b"\xff"]) == (["\ufffd", "x", "\ufffd"], 2)
    assert clean_value({"k": "\ud800", "n": 3, "l": ["\udfff"]}) == (
        {"k": "\ufffd", "n": 3, "l": ["\ufffd"]}, 2)
    assert clean_value(7) == (7, 0)


def test_a_truncated_gzip_names_the_file_after_yielding_what_it_could(tmp_path):
    good = tmp_path / "good.jsonl.gz"
    good.write_bytes(gzip.compress(b"".join(b'{"i": %d, "pad": "%s"}\n' % (i, b"z" * 40)
                                            for i in range(2000))))
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    got = []
    with pytest.raises(JsonlFileError, match=rf"{re.escape(str(cut))}: the gzip file is "
                                             r"truncated after line \d+"):
        for line in read_jsonl(cut):
            got.append(line.row["i"])
    assert got == list(range(len(got))) and len(got) > 0
    not_gz = tmp_path / "plain.jsonl.gz"
    not_gz.write_bytes(b'{"i": 1}\n')
    with pytest.raises(JsonlFileError, match="not a readable gzip file after line 0"):
        list(read_jsonl(not_gz))


def test_no_other_module_reads_jsonl_or_gzip_itself():
    """Traces, render files and benchmarks all go through read_jsonl: nothing else in the
    package opens a gzip stream or parses a file's lines with json.loads."""
    root = Path(vtc_lab.__file__).parent
    readers = sorted(str(p.relative_to(root)) for p in root.rglob("*.py")
                     if re.search(r"gzip\.(open|decompress)\b", p.read_text(encoding="utf-8")))
    assert readers == ["textio.py"]
