"""Real processes: `vtc-lab train` with 2-process DDP on CPU (gloo), and kill -9 then resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vtc_lab.models.registry import tiny_backbone_names

pytestmark = pytest.mark.slow

VTC = [sys.executable, "-m", "vtc_lab.cli.main"]


def base_args(root: Path, *extra: str) -> list[str]:
    return [*VTC, "train", f"output_root={root}", "data.limit=8", "optim.batch_size=2",
            "optim.val_check_interval=4", "optim.val_max_samples=4", "progress=false",
            "optim.log_every_n_steps=1",
            f"hydra.run.dir={root}/hydra", *extra]


def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
            "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def mlflow_runs(root: Path):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db")
    exps = client.search_experiments()
    return client, client.search_runs([e.experiment_id for e in exps])


def test_ddp_two_cpu_processes(tmp_path):
    # through the console script: Lightning relaunches rank 1 from sys.argv, which under
    # `python -m vtc_lab.cli.main` has lost the sub-command (a known limitation, see docs/training.md)
    args = base_args(tmp_path, "trainer=ddp_cpu", "optim.max_steps=4", f"run_dir={tmp_path}/run")
    args[:len(VTC)] = [str(Path(sys.executable).with_name("vtc-lab"))]
    proc = subprocess.run(args,
                          capture_output=True, text=True, env=env(), timeout=600, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "Starting with 2 processes" in out and "distributed_backend=gloo" in out
    assert "steps          4" in out
    client, runs = mlflow_runs(tmp_path)
    assert len(runs) == 1, [r.info.run_name for r in runs]  # rank 1 logs nothing
    steps = [m.step for m in client.get_metric_history(runs[0].info.run_id, "train/loss")]
    assert sorted(steps) == [0, 4, 8, 12]  # step = samples seen: 2 per rank x 2 ranks
    assert (tmp_path / "run" / "export" / "model.safetensors").is_file()


def test_kill_then_resume_continues_at_the_saved_step(tmp_path):
    args = base_args(tmp_path, "optim.max_steps=24", "optim.checkpoint_every_n_steps=4",
                     f"run_dir={tmp_path}/run")
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env(),
                            cwd=tmp_path, start_new_session=True)
    saved = 0
    try:
        deadline = time.time() + 500
        while time.time() < deadline and proc.poll() is None:
            time.sleep(1)
            if last.exists():
                try:
                    saved = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
                except Exception:  # noqa: BLE001 - caught mid-write; retry
                    continue
                if saved >= 8:
                    break
        assert proc.poll() is None, "training ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        killed_at = time.time() * 1000
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    saved = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
    assert 8 <= saved < 24
    again = subprocess.run(args, capture_output=True, text=True, env=env(), timeout=600, cwd=tmp_path)
    out = again.stdout + again.stderr
    assert again.returncode == 0, out[-3000:]
    assert "steps          24" in out
    client, runs = mlflow_runs(tmp_path)
    finished = [r for r in runs if r.info.status == "FINISHED"]
    assert len(finished) == 1
    history = client.get_metric_history(finished[0].info.run_id, "train/loss")
    # logged at step = samples seen (batch 2): halved back into optimizer steps
    after = [m.step // 2 for m in history if m.timestamp > killed_at]
    before = [m.step // 2 for m in history if m.timestamp <= killed_at]
    # resumed from the saved step in the same run; the steps it replayed up to the kill were
    # already in the run and are not logged again
    assert saved <= max(before) + 1 and min(after) == max(before) + 1 and max(after) == 23
    # one point per step: the steps replayed after the checkpoint are not logged twice
    assert sorted(m.step for m in history) == list(range(0, 48, 2))
    for key in ("data/compression_ratio", "train_samples"):
        if key in finished[0].data.metrics:
            assert len(client.get_metric_history(finished[0].info.run_id, key)) == 1


@pytest.mark.parametrize("arch", [a for a in tiny_backbone_names() if a != "qwen3_vl"])
def test_each_tiny_family_trains_with_falling_loss(tmp_path, arch):
    """Every registered tiny family other than the default (trained by the tests above) trains
    through its preset, conf/model/tiny_<arch>.yaml."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    import vtc_lab.cli.train  # noqa: F401  registers train_schema (when run alone)
    from vtc_lab.cli._hydra import CONF_DIR
    from vtc_lab.train.run import train

    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        raw = compose("train", overrides=[
            f"model=tiny_{arch}", f"output_root={tmp_path}", "data.limit=8", "optim.max_steps=12",
            "optim.batch_size=2", "optim.log_every_n_steps=1", "optim.lr=3e-3",
            "optim.warmup_ratio=0", "optim.val_check_interval=6", "progress=false",
            f"run_dir={tmp_path}/run"])
    result = train(OmegaConf.to_object(raw))
    client, runs = mlflow_runs(tmp_path)
    losses = [m.value for m in sorted(client.get_metric_history(result["mlflow_run_id"], "train/loss"),
                                      key=lambda m: m.step)]
    assert len(losses) == 12 and sum(losses[-4:]) / 4 < sum(losses[:4]) / 4
    assert (Path(result["export"]) / "model.safetensors").is_file()


def _wait_for_checkpoint(last: Path, proc: subprocess.Popen, at_least: int) -> int:
    # a hang guard, not a speed claim: at a load average of ~20 on the shared 2-core box the
    # child had not written step 4 after the 500 s this used to allow
    deadline = time.time() + 1800
    while time.time() < deadline and proc.poll() is None:
        time.sleep(1)
        if last.exists():
            try:
                step = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
            except Exception:  # noqa: BLE001 - being replaced right now; look again
                continue
            if step >= at_least:
                return step
    ended = "the process ended" if proc.poll() is not None else "1800 s passed (hang guard)"
    raise AssertionError(f"no checkpoint of step >= {at_least} before {ended}")


def test_sigterm_saves_and_exits_non_zero(tmp_path):
    args = base_args(tmp_path, "optim.max_steps=16", "optim.checkpoint_every_n_steps=4",
                     f"run_dir={tmp_path}/run")
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env(), cwd=tmp_path)
    try:
        _wait_for_checkpoint(last, proc, 4)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err[-3000:]
    assert "training terminated by SIGTERM at step" in err
    saved = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
    assert 4 <= saved < 16
    client, runs = mlflow_runs(tmp_path)
    assert [r.info.status for r in runs] == ["KILLED"]
    again = subprocess.run(args, capture_output=True, text=True, env=env(), timeout=600, cwd=tmp_path)
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert "steps          16" in again.stdout
    steps = sorted(m.step for m in client.get_metric_history(runs[0].info.run_id, "train/loss"))
    assert steps == list(range(0, 32, 2))  # step = samples seen (batch 2)
