"""`train(cfg)` end to end on the real composed config: the builder makes the data, the loss
falls, MLflow has the metrics, the export reloads exactly, resume continues, bad input fails."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from vtc_lab.cli._hydra import CONF_DIR
import vtc_lab.cli.train  # noqa: F401 - registers train_schema
from vtc_lab.train.config import TrainConfig
from vtc_lab.data.build import DatasetConfigMismatch
from vtc_lab.train.collate import BadSampleError
from vtc_lab.train.run import train

torch.set_num_threads(1)


def make_cfg(root: Path, *overrides: str) -> TrainConfig:
    base = [f"output_root={root}", "data.limit=8", "optim.max_steps=8", "optim.batch_size=2",
            "optim.val_check_interval=4", "optim.checkpoint_every_n_steps=4",
            "optim.val_max_samples=4", "optim.lr=3e-3", "optim.warmup_ratio=0",
            "optim.log_every_n_steps=1", "progress=false", f"run_dir={root}/run"]
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        raw = compose("train", overrides=[*base, *overrides])
    return OmegaConf.to_object(raw)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    return root, train(make_cfg(root))


def _history(root: Path, run_id: str, key: str) -> list[tuple[int, float]]:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db")
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_default_recipe_trains_logs_and_exports(trained):
    root, result = trained
    assert result["steps"] == 8 and not result["resumed"]
    losses = [v for _, v in _history(root, result["mlflow_run_id"], "train/loss")]
    assert len(losses) == 8
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3  # falling
    for key in ("train/lr", "train/tokens_per_s", "val/loss"):
        assert _history(root, result["mlflow_run_id"], key), key
    assert Path(result["checkpoint"]).is_file()
    assert sorted(p.name for p in (root / "run" / "checkpoints").iterdir()) == ["last.ckpt", "step-8.ckpt"]
    # the run also carries the dataset's own statistics (what a sweep report plots)
    stats = json.loads((_dataset_of(root) / "stats.json").read_text())
    assert _history(root, result["mlflow_run_id"], "data/compression_ratio") == [
        (0, pytest.approx(stats["compression_ratio"]))]
    info = json.loads((root / "run" / "run.json").read_text())
    assert info["mlflow_run_id"] == result["mlflow_run_id"]
    # ...and records it as its training dataset input: name, config hash, where, counts
    import mlflow

    run = mlflow.MlflowClient(f"sqlite:///{root}/mlflow.db").get_run(result["mlflow_run_id"])
    [entry] = run.inputs.dataset_inputs
    ds = entry.dataset
    assert (ds.name, f"{ds.name}-{ds.digest}", [(t.key, t.value) for t in entry.tags]) == (
        "math500_fixture", _dataset_of(root).name, [("mlflow.data.context", "training")])
    assert json.loads(ds.source) == {"uri": str(_dataset_of(root).resolve())}
    assert json.loads(ds.profile)["samples"] == stats["samples"]


def test_export_reloads_with_identical_logits(trained):
    from vtc_lab.models import ModelConfig, load_backbone

    root, result = trained
    bb = load_backbone(ModelConfig(name="local", source="pretrained", arch="auto", path=result["export"]))
    ckpt = torch.load(result["checkpoint"], map_location="cpu", weights_only=False)
    state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    for name, tensor in bb.model.state_dict().items():
        assert torch.equal(tensor, state[name]), name


def test_resume_continues_in_the_same_run(trained):
    root, first = trained
    again = train(make_cfg(root, "optim.max_steps=11"))
    assert again["resumed"] and again["steps"] == 11
    assert again["mlflow_run_id"] == first["mlflow_run_id"]
    steps = [s for s, _ in _history(root, first["mlflow_run_id"], "train/loss")]
    # step = samples seen (batch 2): optimizer steps 0..7 from the first run, 8..10 after resuming
    assert steps == [2 * s for s in range(11)]
    # the final state is checkpointed even off the every-4-steps cadence
    assert torch.load(again["checkpoint"], map_location="cpu", weights_only=False)["global_step"] == 11
    assert sorted(p.name for p in (root / "run" / "checkpoints").iterdir()) == ["last.ckpt", "step-8.ckpt"]


def test_checkpoint_of_another_model_config_is_refused(trained):
    root, _ = trained
    with pytest.raises(ValueError, match="different model config"):
        train(make_cfg(root, "optim.max_steps=16", "model.tiny.num_layers=2", "data.name=fixture_l2"))


def _dataset_of(root: Path) -> Path:
    """The dataset the `trained` fixture built (default directory: one per config hash)."""
    (path,) = (root / "datasets").glob("math500_fixture-*")
    return path


def test_dataset_of_another_config_is_refused(trained):
    root, _ = trained
    with pytest.raises(DatasetConfigMismatch, match="different config"):
        train(make_cfg(root, "segmentation.max_tokens=64", f"run_dir={root}/other",
                       f"dataset_dir={_dataset_of(root)}"))


def test_corrupt_png_in_a_shard_names_the_sample(trained, tmp_path):
    root, _ = trained
    copy = tmp_path / "ds"
    shutil.copytree(_dataset_of(root), copy)
    shard = sorted((copy / "shards").glob("*.parquet"))[0]
    victim = next(r for r in pq.read_table(shard).to_pylist() if r["page_ids"])
    pages_file = copy / "pages" / shard.name  # the shard's page table: each page stored once
    pages = pq.read_table(pages_file).to_pylist()
    pages[victim["page_ids"][0]]["png"] = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
    import pyarrow as pa
    pq.write_table(pa.Table.from_pylist(pages, schema=pq.read_schema(pages_file)), pages_file)
    # as if the builder itself had written the bad page: the manifest's checksum matches
    data = pages_file.read_bytes()
    digest = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    sidecar = shard.with_name(shard.name.replace(".parquet", ".stats.json"))
    for path, files in ((copy / "manifest.json", "files"), (sidecar, "files")):
        obj = json.loads(path.read_text())
        obj[files][f"pages/{shard.name}"] = digest
        path.write_text(json.dumps(obj))
    with pytest.raises(BadSampleError, match=victim["sample_id"]):
        train(make_cfg(root, f"dataset_dir={copy}", f"run_dir={tmp_path}/run", "optim.val_fraction=0",
                       "optim.shuffle_buffer=0", "optim.max_steps=40", "export=false"))


def test_nothing_fits_the_cutoff(trained, tmp_path):
    root, _ = trained
    with pytest.raises(ValueError, match="fits optim.cutoff_len=16"):
        train(make_cfg(root, "optim.cutoff_len=16", f"run_dir={tmp_path}/run", "export=false"))


def test_export_from_checkpoint_matches_the_direct_export(trained, tmp_path):
    """The path used after FSDP / DeepSpeed (sharded weights): rebuild from the checkpoint."""
    from vtc_lab.models import ModelConfig, load_backbone
    from vtc_lab.train.run import export_from_checkpoint

    root, result = trained
    cfg = make_cfg(root)
    out = export_from_checkpoint(cfg.model, Path(result["checkpoint"]), tmp_path / "export")
    a = load_backbone(ModelConfig(name="a", source="pretrained", arch="auto", path=str(out))).model
    ckpt = torch.load(result["checkpoint"], map_location="cpu", weights_only=False)["state_dict"]
    for name, tensor in a.state_dict().items():
        assert torch.equal(tensor, ckpt["model." + name]), name
