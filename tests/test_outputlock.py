"""The output lock with real processes: a live holder refuses a second writer by name; a holder
killed with SIGKILL leaves nothing stale behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest

from vtc_lab.outputlock import LOCK_NAME, OutputLock, OutputLockedError, read_holder

HOLD = """
import sys, time
from vtc_lab.outputlock import OutputLock
with OutputLock(sys.argv[1], job="holder-job"):
    print("held", flush=True)
    time.sleep(120)
"""


def _start_holder(path):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_writer_is_refused_naming_the_holder_then_kill9_frees_it(tmp_path):
    out = tmp_path / "out"
    proc = _start_holder(out)
    try:
        with pytest.raises(OutputLockedError) as err:
            OutputLock(out, job="second").acquire()
        message = str(err.value)
        assert f"pid {proc.pid} on host {socket.gethostname()}" in message
        assert "holder-job" in message and str(out) in message
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # the kernel dropped the dead holder's lock: no stale lock to clean up by hand
        with OutputLock(out, job="third"):
            assert read_holder(out)["pid"] == os.getpid()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    assert (out / LOCK_NAME).read_text() == ""  # released: no false holder left in the file


def test_lock_nests_in_one_process_and_excludes_after_the_outer_release(tmp_path):
    lock = OutputLock(tmp_path, job="outer")
    with lock:
        with OutputLock(tmp_path, job="inner"):
            assert read_holder(tmp_path)["job"] == "outer"
        assert read_holder(tmp_path)["job"] == "outer"  # still held by the outer one
        proc = subprocess.run([sys.executable, "-c", HOLD, str(tmp_path)], capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 1 and "OutputLockedError" in proc.stderr
    proc = _start_holder(tmp_path)  # released: another process gets it
    proc.kill()
    proc.wait()
    proc.stdout.close()
