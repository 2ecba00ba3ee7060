"""Atomic writes: a reader sees the old file or the new one, never half of one.

Every file vtc-lab publishes (dataset manifests and shards, predictions headers, metrics,
reports, sweep state, the render cache, exported models) goes through this module, which sits
below every stage package so that any layer may import it.

A file is written to a temporary name in the *same directory* (so the final `os.replace` is a
rename on one filesystem, which POSIX makes atomic), flushed and fsync'ed (so a power cut after
the rename cannot leave an empty file under the final name), then renamed over the target. A
directory is built under a temporary name beside the target and swapped in the same way.

Temporary names contain `TMP_MARK`, so a resumable job can sweep up what a killed process left
(see `vtc_lab.data.shards.remove_temporaries`).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

TMP_MARK = ".tmp"
"""Part of every temporary name this module makes (files and directories)."""

def _tmp_name(path: Path, infix: str = TMP_MARK, prefix: str = "") -> Path:
    # pid + random part: two processes (or two threads of one) never share a temporary name.
    # Made by hand rather than by tempfile so that the file mode follows the umask as for
    # any other file (mkstemp/mkdtemp would make it private to the user).
    return path.with_name(f"{prefix}{path.name}{infix}{os.getpid()}-{uuid.uuid4().hex[:8]}")


def write_bytes(path: str | os.PathLike[str], data: bytes, *, durable: bool = True) -> Path:
    """Write `data` to `path` atomically; returns the path.

    `durable=False` skips the fsync: for caches whose reader validates entries and recomputes a
    bad one, where a torn entry after a power cut costs one recomputation, not correctness.
    """
    path = Path(path)
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.filename is None:  # a failed write() names no file: say which (a full disk...)
            raise type(exc)(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` atomically (UTF-8 unless told otherwise)."""
    return write_bytes(path, text.encode(encoding))


def write_json(path: str | os.PathLike[str], obj: Any, *, indent: Optional[int] = 2,
               sort_keys: bool = True, default: Optional[Callable[[Any], Any]] = None) -> Path:
    """Write `obj` as JSON (non-ASCII kept as is, trailing newline) to `path` atomically."""
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, ensure_ascii=False, default=default)
    return write_text(path, text + "\n")


@contextmanager
def directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Build a directory under a temporary name, then swap it in for `path` on success.

    ```
    with atomic.directory(out) as tmp:
        (tmp / "weights.bin").write_bytes(...)
    ```
    If the block raises, the temporary directory is removed and `path` is left as it was. An
    existing `path` is replaced: renamed aside, the new one renamed in, the old one removed (two
    renames, so there is an instant where `path` is absent, but never one where it is partial).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(target, prefix=".")  # hidden: a half-built directory is not a result
    tmp.mkdir()
    try:
        yield tmp
        if target.exists():
            old = _tmp_name(target, ".old", prefix=".")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
