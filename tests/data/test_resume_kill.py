"""A build killed with SIGKILL in a real subprocess, then restarted, equals an uninterrupted one."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from vtc_lab.data.build import build_dataset
from vtc_lab.data.shards import open_dataset

CHILD = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from tests.data.conftest import small_build_cfg
    from vtc_lab.data.build import build_dataset
    build_dataset(small_build_cfg({root!r}, {out!r}, {limit}))
""")


# The child holds still after its second shard is on disk (the marker file says so), so the
# test kills it at that event, however loaded the machine is, instead of racing a poll loop
# against a build that may finish in the meantime.
HOLD_AFTER_TWO_SHARDS = textwrap.dedent("""
    import signal
    from pathlib import Path
    from vtc_lab.data import shards
    _write = shards.write_shard
    def write_shard(root, index, *args, **kwargs):
        path = _write(root, index, *args, **kwargs)
        if len(shards.completed_shards(Path(root))) >= 2:
            Path({marker!r}).write_text(str(index))
            while True:
                signal.pause()
        return path
    shards.write_shard = write_shard
""")


def _spawn(root, out, limit, hold_marker=None):
    code = CHILD.format(tests=str(Path(__file__).parents[2]), root=str(root), out=str(out), limit=limit)
    if hold_marker is not None:
        code = HOLD_AFTER_TWO_SHARDS.format(marker=str(hold_marker)) + code
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", code], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_for_shards(out, count, proc, timeout=600):  # a hang guard, not a speed claim
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(list((out / "shards").glob("*.parquet"))) >= count if (out / "shards").exists() else False:
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    return False


def _wait_for_file(path, proc, hang_guard_s=900):
    """Wait for `path` to appear (the event) while the child lives; the deadline only turns a
    hang into a failure, it is no claim about speed."""
    deadline = time.monotonic() + hang_guard_s
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists():
            return True
        time.sleep(0.05)
    return path.exists()


def _rows(path):
    return list(open_dataset(path).iter_samples())


def _kill(proc):
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def test_kill_mid_build_then_resume_is_identical(tmp_path):
    from tests.data.conftest import small_build_cfg

    out = tmp_path / "killed"
    marker = tmp_path / "two-shards-written"
    proc = _spawn(tmp_path, out, 24, hold_marker=marker)
    assert _wait_for_file(marker, proc), proc.stderr.read().decode()[-2000:]
    _kill(proc)
    assert proc.returncode == -signal.SIGKILL
    assert len(list((out / "shards").glob("*.parquet"))) == 2  # of 6: killed mid-build
    resumed = build_dataset(small_build_cfg(tmp_path, out, 24))
    assert resumed["data/resumed_shards"] >= 2
    reference = build_dataset(small_build_cfg(tmp_path, tmp_path / "whole", 24))
    assert _rows(out) == _rows(reference["path"])
    assert (out / "stats.json").read_text() == (Path(reference["path"]) / "stats.json").read_text()


@pytest.mark.slow
def test_killed_at_many_moments(tmp_path):
    """Kill again and again at varied moments (between and during shard writes), then finish."""
    from tests.data.conftest import small_build_cfg

    out = tmp_path / "killed"
    for delay in (0.3, 1.1, 1.7, 2.3, 2.9, 3.6):
        proc = _spawn(tmp_path, out, 40)
        time.sleep(delay)
        if proc.poll() is None:
            _kill(proc)
    build_dataset(small_build_cfg(tmp_path, out, 40))
    reference = build_dataset(small_build_cfg(tmp_path, tmp_path / "whole", 40))
    assert _rows(out) == _rows(reference["path"])
    assert not list(out.rglob("*.tmp*"))


def _children(pid):
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").exists(), reason="needs /proc")
def test_kill_of_a_parallel_build_leaves_no_workers_and_resumes(tmp_path):
    from tests.data.conftest import small_build_cfg

    out = tmp_path / "killed"
    code = CHILD.replace("build_dataset(small_build_cfg({root!r}, {out!r}, {limit}))",
                         "import dataclasses\n"
                         "build_dataset(dataclasses.replace(small_build_cfg({root!r}, {out!r}, {limit}), num_workers=2))")
    code = code.format(tests=str(Path(__file__).parents[2]), root=str(tmp_path), out=str(out), limit=40)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert _wait_for_shards(out, 2, proc), proc.stderr.read().decode()[-2000:]
    workers = [p for p in _children(proc.pid) if _alive(p)]
    assert workers, "the build runs worker processes"
    _kill(proc)
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in workers), "workers outlived their killed parent"
    build_dataset(small_build_cfg(tmp_path, out, 40))
    reference = build_dataset(small_build_cfg(tmp_path, tmp_path / "whole", 40))
    assert _rows(out) == _rows(reference["path"])
