"""`python -m vtc_lab.tracking.resync` never drops a write: each fault is injected for real (a
damaged spool line, a store nobody answers on, binary garbage, a mistyped path) and the command
runs as a real process against a real sqlite store."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from vtc_lab.tracking import TrackingConfig, open_run, prepare
from vtc_lab.tracking.outage import PENDING, QUARANTINE

from ._helpers import child_env
from .conftest import free_port


def _resync(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vtc_lab.tracking.resync", *map(str, args)],
                          capture_output=True, text=True, env=child_env(), timeout=180)


def _metric_line(run_id: str, uri: str, step: int) -> str:
    op = {"op": "metrics", "items": [["m", float(step), 1_700_000_000_000 + step, step]],
          "run_id": run_id, "uri": uri}
    return json.dumps(op) + "\n"


@pytest.fixture
def spooled_run(tmp_path):
    """A real run in a local store and a spool holding its steps 1..5 (as an outage leaves it)."""
    cfg = TrackingConfig(mode="local")
    uri = prepare(cfg, tmp_path)
    run = open_run(cfg, uri, run_name="spooled", spool_root=tmp_path / "spool")
    spool = tmp_path / "spool" / run.run_id
    spool.mkdir(parents=True)
    lines = [_metric_line(run.run_id, uri, step) for step in range(1, 6)]
    return uri, run.run_id, spool, lines


def _steps(uri, run_id):
    return sorted(m.step for m in MlflowClient(uri).get_metric_history(run_id, "m"))


def test_a_damaged_line_in_the_middle_is_quarantined_and_reported(spooled_run):
    uri, run_id, spool, lines = spooled_run
    damaged = lines[2][: len(lines[2]) // 2] + "\x00garbage\n"  # step 3, torn in the middle
    (spool / PENDING).write_text(lines[0] + lines[1] + damaged + lines[3] + lines[4])

    res = _resync(spool)

    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    assert _steps(uri, run_id) == [1, 2, 4, 5]  # the rest arrived
    quarantine = spool / QUARANTINE
    assert quarantine.read_text() == damaged  # the bad write is kept, byte for byte
    assert not (spool / PENDING).exists()  # what arrived is not sent twice
    assert str(quarantine) in res.stderr and "line 3" in res.stderr
    assert "4 pending writes sent" in res.stdout


def test_a_write_the_store_rejects_is_quarantined_and_the_rest_arrives(spooled_run):
    uri, run_id, spool, lines = spooled_run
    rejected = json.dumps({"op": "no-such-write", "run_id": run_id, "uri": uri}) + "\n"
    (spool / PENDING).write_text(lines[0] + rejected + lines[1])

    res = _resync(spool)

    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    assert _steps(uri, run_id) == [1, 2]
    assert (spool / QUARANTINE).read_text() == rejected
    assert "line 2" in res.stderr and "no-such-write" in res.stderr


def test_everything_sent_removes_the_spool(spooled_run):
    uri, run_id, spool, lines = spooled_run
    (spool / PENDING).write_text("".join(lines))
    res = _resync(spool)
    assert res.returncode == 0, res.stderr
    assert "5 pending writes sent" in res.stdout
    assert _steps(uri, run_id) == [1, 2, 3, 4, 5]
    assert not spool.exists()


def test_store_down_is_one_line_and_keeps_the_spool_intact(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    spool = tmp_path / "spool" / "run1"
    spool.mkdir(parents=True)
    text = "".join(_metric_line("run1", uri, step) for step in range(3))
    (spool / PENDING).write_text(text)

    res = _resync(spool)

    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    errors = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, res.stderr
    assert uri in errors[0] and "3 writes" in errors[0] and str(spool) in errors[0]
    assert (spool / PENDING).read_text() == text
    assert not (spool / QUARANTINE).exists()


def test_binary_garbage_names_the_file_and_touches_nothing(tmp_path):
    spool = tmp_path / "spool" / "run1"
    spool.mkdir(parents=True)
    garbage = bytes(range(256)) * 8
    (spool / PENDING).write_bytes(garbage)

    res = _resync(spool)

    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert str(spool / PENDING) in res.stderr and "not a tracking spool" in res.stderr
    assert (spool / PENDING).read_bytes() == garbage


def test_a_mistyped_spool_path_is_refused(tmp_path):
    res = _resync(tmp_path / "no-such-spool")
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert "pending writes sent" not in res.stdout
    assert f"no tracking spool at {tmp_path / 'no-such-spool'}" in res.stderr
    assert not (tmp_path / "no-such-spool").exists()


def test_a_directory_without_a_spool_file_is_refused(tmp_path):
    res = _resync(tmp_path)
    assert res.returncode == 2
    assert f"no tracking spool at {tmp_path}" in res.stderr
    assert os.listdir(tmp_path) == []
