"""One writer per output: the lock that build-data, train and eval take on what they write.

Two processes writing the same dataset directory, run directory or predictions folder produce
results that belong to neither (duplicated records, two runs finishing into one `run.json`, a
rebuild deleting shards under a running build). Each long job therefore holds an exclusive
`flock` on `<output>/.vtc-lab.lock` for its whole life; a second writer is refused at once with
an error naming the holder (command, pid, host, start time) instead of waiting or interleaving.

Why `flock` on a file inside the output: the kernel releases it when the holder dies, however
it dies (kill -9 included), so there is never a stale lock to clean up by hand; and the lock
file survives everything the jobs delete (they only remove their own files). The holder's
identity is written into the file for the error message only: the lock itself is the flock.
`flock` is per host on some network filesystems (older NFS): there, two hosts are not excluded
from each other, which the message of a refused writer cannot detect either.

This module sits below every stage package (standard library only), so `data/`, `infer/` and
`train/` use the same one.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Optional

LOCK_NAME = ".vtc-lab.lock"


class OutputLockedError(RuntimeError):
    """Another live process holds the lock on this output."""

    def __init__(self, path: Path, holder: dict[str, Any]):
        self.path, self.holder = path, holder
        who = _describe(holder)
        super().__init__(
            f"{path} is being written by another vtc-lab process ({who}); two writers would "
            f"corrupt it. Wait for that process to finish (or stop it: kill {holder.get('pid', '?')}"
            f"{' on ' + str(holder['host']) if holder.get('host') else ''}), or choose another "
            f"output directory.")


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "holder unknown: its lock file is empty"
    parts = [str(holder.get("job") or "a job")]
    parts.append(f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}")
    if holder.get("since"):
        parts.append(f"since {holder['since']}")
    return ", ".join(parts)


def read_holder(path: str | os.PathLike) -> dict[str, Any]:
    """Who holds (or last held) the lock of output `path`: {} when unknown."""
    try:
        data = json.loads((Path(path) / LOCK_NAME).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def locked_by_other(path: str | os.PathLike) -> Optional[OutputLockedError]:
    """The error a writer of output `path` would get right now, or None; creates nothing (a
    directory or lock file that does not exist is free). For the config checks that refuse a
    job before it creates anything; the job itself still takes the lock (`OutputLock`)."""
    lock_file = Path(path) / LOCK_NAME
    try:
        if str(Path(path).resolve()) in OutputLock._held:
            return None
        fd = os.open(lock_file, os.O_RDONLY)
    except OSError:  # no lock file (or no directory): nobody holds it
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        return OutputLockedError(Path(path), read_holder(path))
    finally:
        os.close(fd)  # closing drops the probe's shared lock
    return None


class OutputLock:
    """`with OutputLock(dir, job="train"):` - exclusive, non-blocking, released on exit/death.

    Re-entrant within one process: taking the lock of a directory this process already holds
    just nests (released when the outermost holder exits)."""

    # resolved path -> [fd, depth] for the locks this process holds
    _held: dict[str, list[int]] = {}

    def __init__(self, path: str | os.PathLike, job: Optional[str] = None):
        self.path = Path(path)
        self.job = job or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300]
        self._key: Optional[str] = None

    def acquire(self) -> "OutputLock":
        self.path.mkdir(parents=True, exist_ok=True)
        key = str(self.path.resolve())
        if key in OutputLock._held:
            OutputLock._held[key][1] += 1
            self._key = key
            return self
        lock_file = self.path / LOCK_NAME
        while True:
            fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                raise OutputLockedError(self.path, read_holder(self.path)) from None
            # the file may have been unlinked/replaced between open and flock: then this lock
            # guards an orphan inode and the next writer would lock the new file. Retry.
            try:
                same = os.fstat(fd).st_ino == os.stat(lock_file).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        holder = {"job": self.job, "pid": os.getpid(), "host": socket.gethostname(),
                  "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        OutputLock._held[key] = [fd, 1]
        self._key = key
        return self

    def release(self) -> None:
        if self._key is None:
            return
        entry = OutputLock._held.get(self._key)
        self._key, key = None, self._key
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] > 0:
            return
        del OutputLock._held[key]
        try:
            os.ftruncate(entry[0], 0)  # the holder's identity is no longer true
        finally:
            fcntl.flock(entry[0], fcntl.LOCK_UN)
            os.close(entry[0])

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, exc_type: Optional[type], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.release()
