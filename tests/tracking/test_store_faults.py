"""Broken or surprising stores, for real: a corrupt mlflow.db, a URI that answers but is not
MLflow, output roots whose names hold URI syntax; a resumed run's replayed steps; runs left
RUNNING by a killed process."""

from __future__ import annotations

import http.server
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from vtc_lab.tracking import TrackingConfig, TrackingUnavailableError, finish_run, open_run, prepare
from vtc_lab.tracking.report import collect_runs

from ._helpers import child_env, run_sweep_app, runs_by_role


def test_corrupt_mlflow_db_names_the_file_and_the_fix(tmp_path):
    (tmp_path / "mlflow.db").write_bytes(b"this is not sqlite at all " * 100)
    with pytest.raises(TrackingUnavailableError) as err:
        prepare(TrackingConfig(), tmp_path)
    msg = str(err.value)
    assert f"{tmp_path / 'mlflow.db'} is not a usable MLflow database" in msg
    assert f"mv '{tmp_path / 'mlflow.db'}'" in msg


def test_uri_that_answers_but_is_not_mlflow_is_named_with_its_answer(tmp_path):
    (tmp_path / "health").write_text("OK")  # even /health answers 200 here
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    uri = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        with pytest.raises(TrackingUnavailableError) as err:
            prepare(TrackingConfig(mode="server", uri=uri), tmp_path)
    finally:
        httpd.shutdown()
        httpd.server_close()
    msg = str(err.value)
    assert f"tracking.uri={uri} answers, but is not an MLflow tracking server" in msg
    assert "HTTP 404" in msg


@pytest.mark.parametrize("name", ["what?x=1", "A%41B", "sp ace#frag"])
def test_output_root_with_uri_syntax_keeps_the_store_inside_it(tmp_path, name):
    root = tmp_path / name
    cfg = TrackingConfig()
    uri = prepare(cfg, root)
    run = open_run(cfg, uri, run_name="r")
    run.log_metrics({"m": 1.0})
    finish_run(run)
    assert (root / "mlflow.db").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # nothing stray beside it
    runs = MlflowClient(uri).search_runs([run.experiment_id])
    assert [r.info.run_id for r in runs] == [run.run_id]


def test_resumed_run_does_not_log_replayed_steps_twice(tmp_path):
    """A job killed after its step-6 checkpoint logged steps 0..9; the resumed job replays
    6..9 and continues: each step is in the curve once; a constant re-logged at step 0 (the
    dataset's statistics) once; a changed summary value is updated."""
    cfg = TrackingConfig()
    uri = prepare(cfg, tmp_path)
    run = open_run(cfg, uri, run_name="killed")
    run.log_metrics({"data/ratio": 3.5, "objective": 1.0})
    for step in range(10):
        run.log_metrics({"train/loss": 10.0 - step}, step=step)
    resumed = open_run(TrackingConfig(resume_run_id=run.run_id), uri, run_name=None)
    resumed.log_metrics({"data/ratio": 3.5})
    for step in range(6, 14):
        resumed.log_metrics({"train/loss": 10.0 - step}, step=step)
    resumed.log_metrics({"objective": 2.0})
    client = MlflowClient(uri)
    hist = client.get_metric_history(run.run_id, "train/loss")
    assert sorted(m.step for m in hist) == list(range(14))
    assert len(client.get_metric_history(run.run_id, "data/ratio")) == 1
    assert client.get_run(run.run_id).data.metrics["objective"] == 2.0


OPENER = """
import sys, time
from vtc_lab.tracking import TrackingConfig, open_run, prepare
cfg = TrackingConfig()
uri = prepare(cfg, sys.argv[1])
run = open_run(cfg, uri, run_name=sys.argv[2])
print(run.run_id, flush=True)
time.sleep(300)
"""


def test_report_marks_runs_of_dead_processes_killed_and_leaves_live_ones(tmp_path, seed_store):
    seed_store(tmp_path / "mlflow.db")
    procs = [subprocess.Popen([sys.executable, "-c", OPENER, str(tmp_path), name],
                              stdout=subprocess.PIPE, text=True, env=child_env())
             for name in ("dead", "alive")]
    try:
        dead_id, alive_id = (p.stdout.readline().strip() for p in procs)
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait()
        uri = prepare(TrackingConfig(), tmp_path)
        client = MlflowClient(uri)
        assert client.get_run(dead_id).info.status == "RUNNING"  # nobody could end it
        collect_runs(uri, "vtc-lab")  # what `vtc-lab report` reads with
        dead = client.get_run(dead_id)
        assert dead.info.status == "KILLED"
        assert dead.data.tags["vtc.ended_by"].startswith("vtc-lab report: process")
        assert client.get_run(alive_id).info.status == "RUNNING"
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
            p.stdout.close()


def test_killed_sweep_is_marked_by_the_next_sweep(tmp_path, seed_store):
    seed_store(tmp_path / "out" / "mlflow.db")
    cmd = [sys.executable, str(Path(__file__).with_name("sweep_app.py")), "-m", "x=1,2",
           "sleep_s=300", f"output_root={tmp_path / 'out'}"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=child_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        for line in proc.stdout:
            if "job x=1 running" in line:
                break
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep's own process group
    finally:
        proc.wait()
        proc.stdout.close()
    uri = f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}"
    parents, children = runs_by_role(uri)
    assert [r.info.status for r in parents + children] == ["RUNNING", "RUNNING"]
    res = run_sweep_app(tmp_path, "x=3")
    assert res.returncode == 0, res.stderr[-2000:]
    client = MlflowClient(uri)
    for old in parents + children:
        run = client.get_run(old.info.run_id)
        assert run.info.status == "KILLED"
        assert run.data.tags["vtc.ended_by"].startswith("the next sweep")
