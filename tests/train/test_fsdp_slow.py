"""Real processes: `vtc-lab train trainer=fsdp_cpu` (FSDP full shard over 2 CPU processes,
gloo), resumed from its sharded checkpoint, and its export reloaded with identical logits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

# Lightning's launcher re-runs the command line for rank 1; `python -m vtc_lab.cli.main` loses
# the subcommand there, the console script does not (the DDP test launches it the same way)
VTC = str(Path(sys.executable).with_name("vtc-lab"))


def run_train(root: Path, max_steps: int, *overrides: str) -> str:
    args = [VTC, "train", f"output_root={root}", "data.limit=8", "trainer=fsdp_cpu",
            "optim.batch_size=2", f"optim.max_steps={max_steps}",
            "optim.checkpoint_every_n_steps=2", "optim.val_check_interval=4",
            "optim.val_max_samples=4", "optim.log_every_n_steps=1", "progress=false",
            f"run_dir={root}/run", f"hydra.run.dir={root}/hydra", *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    # a hang guard, not a speed claim: a stalled collective waits forever without it. The
    # process group kills rank 1 with rank 0 (Lightning's launcher), so one kill ends both.
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=root, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=900)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"the 2-process run hung (killed after 900 s):\n{out[-6000:]}")
    assert proc.returncode == 0, out[-12000:]
    return out


def trained_model_config():
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    import vtc_lab.cli.train  # noqa: F401 - registers the train schema
    from vtc_lab.cli._hydra import CONF_DIR

    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = OmegaConf.to_object(compose("train", overrides=["trainer=fsdp_cpu"]))
    cfg.model.dtype = "float32"
    return cfg.model


def test_fsdp_two_cpu_processes_resume_and_export(tmp_path):
    import mlflow
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    from vtc_lab.models import ModelConfig, load_backbone

    out = run_train(tmp_path, max_steps=4)
    assert "Starting with 2 processes" in out and "distributed_backend=gloo" in out
    assert "steps          4" in out
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    # sharded: a torch.distributed.checkpoint directory with one file per rank
    assert sorted(p.name for p in last.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    assert torch.load(last / "meta.pt", weights_only=False)["global_step"] == 4

    out = run_train(tmp_path, max_steps=6)  # same run_dir: resumes from the sharded last.ckpt
    assert "Restoring states from the checkpoint path" in out and "steps          6" in out
    assert torch.load(last / "meta.pt", weights_only=False)["global_step"] == 6
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1  # the resumed run continued in the same MLflow run; rank 1 logged none
    steps = [m.step for m in client.get_metric_history(runs[0].info.run_id, "train/loss")]
    assert sorted(steps) == list(range(0, 24, 4))  # step = samples seen: 2 per rank x 2 ranks

    # the export equals the checkpoint's weights, read back by torch's own DCP converter
    export = tmp_path / "run" / "export"
    dcp_to_torch_save(last, tmp_path / "consolidated.pt")
    full = torch.load(tmp_path / "consolidated.pt", weights_only=False)["model"]
    reloaded = load_backbone(ModelConfig(name="e", source="pretrained", arch="auto",
                                         path=str(export))).model.eval()
    fresh = load_backbone(trained_model_config()).model.eval()  # the run's random init
    changed = 0
    for name, tensor in reloaded.state_dict().items():
        assert torch.equal(tensor, full["model." + name]), name
        changed += not torch.equal(tensor, fresh.state_dict()[name])
    assert changed > len(full) // 2  # training moved most weights away from the random init

    fresh.load_state_dict({k[len("model."):]: v for k, v in full.items()}, strict=False)
    ids = torch.randint(0, reloaded.config.text_config.vocab_size, (2, 24),
                        generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = reloaded(input_ids=ids).logits
        b = fresh(input_ids=ids).logits
    assert torch.equal(a, b)


def test_fsdp_validation_split_uneven_across_ranks_does_not_hang(tmp_path):
    """5 validation samples over 2 ranks at batch 2: rank 0 has 3 (2 batches), rank 1 has 2
    (1 batch). Before the padding, rank 0's second validation forward waited in FSDP's
    all-gather for a rank that had moved on to the epoch-end barrier: the job hung for good
    (both stacks seen with py-spy). Now rank 1 runs a zero-weight padding batch; the job
    finishes, resumes, and validates again."""
    from vtc_lab.data.shards import open_dataset
    from vtc_lab.train.datamodule import count_split

    uneven = ["optim.val_fraction=0.2", "optim.val_max_samples=64", "optim.val_check_interval=2"]
    out = run_train(tmp_path, 2, *uneven)
    (dataset,) = (tmp_path / "datasets").iterdir()
    n_val = count_split(open_dataset(dataset), 0.2, 0)[1]
    assert n_val % 2 == 1 and (n_val + 1) // 2 % 2 == 1  # the ranks' batch counts differ
    assert "steps          2" in out and "val/loss" in out
    out = run_train(tmp_path, 4, *uneven)  # resumed from the sharded checkpoint, validated again
    assert "Restoring states from the checkpoint path" in out and "steps          4" in out
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    history = client.get_metric_history(run.info.run_id, "val/loss")
    assert len(history) == 2 and all(0 < m.value < 100 for m in history)
