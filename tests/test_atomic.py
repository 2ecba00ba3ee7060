"""vtc_lab.atomic: a reader sees the old content or the new, never a mix; no temporaries remain."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from vtc_lab import atomic


def test_round_trips_and_leaves_no_temporaries(tmp_path):
    atomic.write_bytes(tmp_path / "a.bin", b"\x00\x01")
    atomic.write_text(tmp_path / "b.txt", "héllo")
    atomic.write_json(tmp_path / "c.json", {"b": 1, "a": "é"})
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "b.txt").read_bytes() == "héllo".encode()
    assert (tmp_path / "c.json").read_text(encoding="utf-8") == '{\n  "a": "é",\n  "b": 1\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.txt", "c.json"]


def test_file_mode_follows_umask_like_a_plain_write(tmp_path):
    (tmp_path / "plain").write_bytes(b"x")
    atomic.write_bytes(tmp_path / "atomic", b"x")
    assert (tmp_path / "atomic").stat().st_mode == (tmp_path / "plain").stat().st_mode


def test_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path, monkeypatch):
    target = tmp_path / "m.json"
    atomic.write_json(target, {"v": 1})

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        atomic.write_json(target, {"v": 2})
    assert target.read_text() == '{\n  "v": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_kill_9_during_rewrites_never_exposes_a_partial_file(tmp_path):
    """A writer rewriting a 2 MiB file in a loop is killed; every read along the way was whole."""
    target = tmp_path / "blob"
    size = 2 << 20
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        from vtc_lab import atomic
        i = 0
        while True:
            atomic.write_bytes({str(target)!r}, bytes([65 + i % 2]) * {size})
            i += 1
    """)])
    try:
        deadline = time.monotonic() + 20
        reads = 0
        while reads < 40 and time.monotonic() < deadline:
            if target.exists():
                data = target.read_bytes()
                assert len(data) == size and data in (b"A" * size, b"B" * size)
                reads += 1
        assert reads == 40
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    data = target.read_bytes()
    assert len(data) == size and data in (b"A" * size, b"B" * size)


def test_directory_swaps_in_on_success(tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with atomic.directory(out) as tmp:
        assert tmp.parent == tmp_path and tmp != out
        (tmp / "new.txt").write_text("new")
        assert (out / "old.txt").exists()  # not published until the block ends
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["export"]


def test_directory_failure_leaves_the_old_one_and_no_temporary(tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic.directory(out) as tmp:
            (tmp / "half.txt").write_text("half")
            raise RuntimeError("died while writing")
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["export"]
