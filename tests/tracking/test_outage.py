"""A tracking server that dies mid-run, for real (SIGKILL of a real `mlflow server`): writes
never stall the job, what could not be sent is spooled on disk, and it reaches the run when the
server is back (during the run, or afterwards by the resync command)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from mlflow.tracking import MlflowClient

from vtc_lab.tracking import TrackingConfig, finish_run, open_run, prepare
from vtc_lab.tracking.outage import PENDING

from ._helpers import child_env


def _steps(client, run_id, key):
    return sorted(m.step for m in client.get_metric_history(run_id, key))


@pytest.mark.slow
def test_server_killed_mid_run_never_stalls_and_everything_arrives_after_restart(
        tmp_path, mlflow_server_proc, capfd):
    server = mlflow_server_proc
    cfg = TrackingConfig(mode="server", uri=server.base, retry_after_s=1.0)
    prepare(cfg, tmp_path)
    run = open_run(cfg, server.base, run_name="outage", spool_root=tmp_path / "spool")
    for step in range(5):
        run.log_metrics({"train/loss": 1.0 / (step + 1)}, step=step)
    server.kill()

    started = time.monotonic()
    run.log_metrics({"train/loss": 0.1}, step=5)  # the failing write: bounded retries
    first = time.monotonic() - started
    started = time.monotonic()
    for step in range(6, 40):  # degraded: no network at all until the next probe
        run.log_metrics({"train/loss": 0.1}, step=step)
    run.log_params({"late_param": 3})
    run.log_text("missed while down", "notes/outage.txt")
    rest = time.monotonic() - started
    assert first < 30, first  # MLflow's defaults took minutes per write
    assert rest < 5, rest
    assert "tracking degraded" in capfd.readouterr().err
    spool = tmp_path / "spool" / run.run_id
    pending = [json.loads(line) for line in (spool / PENDING).read_text().splitlines()]
    assert len(pending) >= 35

    server.start()  # same port, same store
    time.sleep(1.1)
    run.log_metrics({"train/loss": 0.05}, step=40)  # probe answers: the spool is resent first
    err = capfd.readouterr().err
    assert "tracking restored" in err
    client = MlflowClient(server.base)
    assert _steps(client, run.run_id, "train/loss") == list(range(41))
    data = client.get_run(run.run_id).data
    assert data.params["late_param"] == "3" and "vtc.tracking_gap" in data.tags
    assert [a.path for a in client.list_artifacts(run.run_id, "notes")] == ["notes/outage.txt"]
    assert not spool.exists()
    finish_run(run)
    assert client.get_run(run.run_id).info.status == "FINISHED"


@pytest.mark.slow
def test_still_down_at_the_end_keeps_the_spool_and_the_resync_command_sends_it(
        tmp_path, mlflow_server_proc, capfd):
    server = mlflow_server_proc
    cfg = TrackingConfig(mode="server", uri=server.base, retry_after_s=1.0)
    prepare(cfg, tmp_path)
    run = open_run(cfg, server.base, run_name="ends-down", spool_root=tmp_path / "spool")
    run.log_metrics({"m": 1.0}, step=0)
    server.kill()
    run.log_metrics({"m": 2.0}, step=1)
    finish_run(run)  # the final status is spooled too
    spool = tmp_path / "spool" / run.run_id
    err = capfd.readouterr().err
    assert "tracking still down" in err and f"python -m vtc_lab.tracking.resync {spool}" in err
    assert (spool / PENDING).is_file()

    server.start()
    res = subprocess.run([sys.executable, "-m", "vtc_lab.tracking.resync", str(spool)],
                         capture_output=True, text=True, env=child_env(), timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "2 pending writes sent" in res.stdout
    client = MlflowClient(server.base)
    assert _steps(client, run.run_id, "m") == [0, 1]
    assert client.get_run(run.run_id).info.status == "FINISHED"
    assert not spool.exists()


LOCKER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], timeout=0)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
db.rollback()
"""


@pytest.fixture
def short_sqlite_busy_wait():
    """MLflow makes every sqlite session wait up to 20 s on a locked database (a fixed
    `PRAGMA busy_timeout = 20000`); here each wait is 0.3 s, so a real lock fails the write
    quickly. The lock, the failure and the recovery stay real. (SQLAlchemy's public event API;
    should MLflow word the pragma differently, the test only waits the full 20 s again.)"""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def shorten(conn, cursor, statement, parameters, context, executemany):
        if statement.replace(" ", "").lower().startswith("pragmabusy_timeout="):
            statement = "PRAGMA busy_timeout = 300;"
        return statement, parameters

    event.listen(Engine, "before_cursor_execute", shorten, retval=True)
    try:
        yield
    finally:
        event.remove(Engine, "before_cursor_execute", shorten)


@pytest.mark.parametrize("busy_wait", [
    "short",
    pytest.param("mlflow", marks=pytest.mark.slow),  # MLflow's own 20 s wait, unchanged
])
def test_locked_sqlite_store_degrades_then_resends(tmp_path, capfd, request, busy_wait):
    """Another process holds the sqlite store exclusively (as a stuck writer or a full disk
    would make it unwritable): writes degrade instead of failing the job, and arrive once the
    store is free."""
    if busy_wait == "short":
        request.getfixturevalue("short_sqlite_busy_wait")
    retry = 0.5 if busy_wait == "short" else 2.0
    cfg = TrackingConfig(mode="local", retry_after_s=retry)
    uri = prepare(cfg, tmp_path)
    run = open_run(cfg, uri, run_name="locked", spool_root=tmp_path / "spool")
    run.log_metrics({"m": 0.0}, step=0)
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(tmp_path / "mlflow.db")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout.readline().strip() == "locked"
        for step in range(1, 30):
            run.log_metrics({"m": float(step)}, step=step)
        assert "tracking degraded" in capfd.readouterr().err
        # none of the 29 writes waited for the locked store: each went to the spool (a check
        # of what happened, not of how long it took on a loaded machine)
        pending = (tmp_path / "spool" / run.run_id / PENDING).read_text().splitlines()
        spooled = [op for op in map(json.loads, pending) if op["op"] == "metrics"]
        assert sorted(step for op in spooled for _key, _value, _ts, step in op["items"]) == \
            list(range(1, 30))
    finally:
        locker.communicate("\n", timeout=30)
    time.sleep(retry + 0.1)
    run.log_metrics({"m": 30.0}, step=30)
    assert "tracking restored" in capfd.readouterr().err
    assert _steps(MlflowClient(uri), run.run_id, "m") == list(range(31))
    finish_run(run)


@pytest.mark.slow
def test_training_survives_its_tracking_server_dying(tmp_path, mlflow_server_proc):
    """The issue's case end to end: `vtc-lab train` logging to a real server that is killed
    mid-training finishes, checkpoints and exports on time; the spool it leaves is sent after
    the server is back, and the run then holds every step."""
    import os

    import torch

    server = mlflow_server_proc
    out = tmp_path / "out"
    args = [sys.executable, "-m", "vtc_lab.cli.main", "train", f"output_root={out}",
            "data.limit=8", "optim.batch_size=2", "optim.max_steps=16",
            "optim.checkpoint_every_n_steps=4", "optim.val_check_interval=8",
            "optim.val_max_samples=2", "optim.log_every_n_steps=1", "progress=false",
            "tracking=server", f"tracking.uri={server.base}", "tracking.experiment=outage",
            f"run_dir={tmp_path}/run", f"hydra.run.dir={tmp_path}/hydra"]
    env = {**child_env(), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    log = open(tmp_path / "train.log", "w")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    client = MlflowClient(server.base)
    try:
        deadline = time.time() + 900
        run_id = None
        while time.time() < deadline and proc.poll() is None:  # wait for step 2 on the server
            time.sleep(2)
            exp = client.get_experiment_by_name("outage")
            runs = client.search_runs([exp.experiment_id]) if exp else []
            if runs and len(client.get_metric_history(runs[0].info.run_id, "train/loss")) >= 2:
                run_id = runs[0].info.run_id
                break
        assert run_id, (tmp_path / "train.log").read_text()[-3000:]
        server.kill()
        killed = time.monotonic()
        proc.wait(timeout=900)
        after_kill = time.monotonic() - killed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    text = (tmp_path / "train.log").read_text()
    assert proc.returncode == 0, text[-3000:]
    assert "tracking degraded" in text and "steps          16" in text
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu",
                      weights_only=False)["global_step"] == 16
    assert (tmp_path / "run" / "export" / "model.safetensors").is_file()
    print(f"training finished {after_kill:.0f} s after its tracking server was killed")
    spool = out.resolve() / ".tracking-spool" / run_id
    assert (spool / PENDING).is_file()

    server.start()
    res = subprocess.run([sys.executable, "-m", "vtc_lab.tracking.resync", str(spool)],
                         capture_output=True, text=True, env=child_env(), timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    steps = sorted(m.step for m in client.get_metric_history(run_id, "train/loss"))
    assert steps == list(range(0, 32, 2))  # one point per optimizer step; step = samples seen
    assert client.get_run(run_id).info.status == "FINISHED"
    assert not os.path.exists(spool)
