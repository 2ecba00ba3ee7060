"""One dataset spec for build-data and train (issue 22 §1): a dataset built with every
non-default builder setting is the dataset `train` reads with the same settings, under
`dataset_dir=` and in the default per-config directory alike; neither refused nor rebuilt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from vtc_lab.cli._hydra import CONF_DIR
import vtc_lab.cli.build_data  # noqa: F401 - registers build_data_schema
import vtc_lab.cli.train  # noqa: F401 - registers train_schema
from vtc_lab.data.build import build_dataset

torch.set_num_threads(1)

SHARED = ["data.limit=6", "segmentation=small"]


def _builder(tmp: Path) -> list[str]:
    """Every builder setting away from its default (render_cache off, so its directory must
    stay unused by both apps)."""
    return ["data.problems_per_shard=2", "data.token_counter=qwen", "data.render_cache=false",
            f"data.render_cache_dir={tmp}/render-cache"]


def _compose(app: str, overrides: list[str]):
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        return OmegaConf.to_object(compose(app, overrides=overrides))


def _snapshot(path: Path) -> dict[str, int]:
    return {str(p.relative_to(path)): p.stat().st_mtime_ns for p in sorted(path.rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


@pytest.mark.parametrize("where", ["dataset_dir", "default"])
def test_train_reads_a_dataset_built_with_every_non_default_builder_setting(tmp_path, where):
    from vtc_lab.train.run import train

    root = tmp_path / "runs"
    build = _compose("build_data", [*SHARED, *_builder(tmp_path), f"output_root={root}",
                                    "tracking.mode=off", "progress=false"])
    built = build_dataset(build)
    path = Path(built["path"])
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["counts"]["shards"] == 3  # 6 problems, 2 per shard
    before = _snapshot(path)
    where_args = [f"dataset_dir={path}"] if where == "dataset_dir" else []
    cfg = _compose("train", [*SHARED, *_builder(tmp_path), *where_args, f"output_root={root}",
                             f"run_dir={tmp_path}/run", "tracking.mode=off", "progress=false",
                             "optim.max_steps=2", "optim.batch_size=2", "optim.val_fraction=0",
                             "export=false"])
    result = train(cfg)
    assert result["steps"] == 2
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert Path(run["dataset"]) == path.resolve()
    assert _snapshot(path) == before  # reused as built: nothing rewritten
    assert [p.name for p in (root / "datasets").iterdir()] == [path.name]  # no second dataset
    assert not (tmp_path / "render-cache").exists() and not (root / "cache").exists()


BUILD_DATA_ONLY = {"stats_only", "export", "overwrite"}
"""build-data settings with no meaning for training (a stats-only or exported or overwritten
dataset is a build-data decision); every other BuildDataConfig field must come from train's."""


def test_every_builder_setting_of_train_reaches_the_dataset_spec(tmp_path):
    """A builder field added later cannot be left out of `TrainConfig.dataset_spec` (the bug:
    train rebuilt the builder config by hand and dropped three fields)."""
    import dataclasses

    from vtc_lab.data.build import config_hash, dataset_dir, identity_config
    from vtc_lab.data.config import BuildDataConfig

    cfg = _compose("train", [*SHARED, *_builder(tmp_path), f"output_root={tmp_path}",
                             f"dataset_dir={tmp_path}/ds", "build_workers=3", "progress=false"])
    spec = cfg.dataset_spec()
    carried = {"data": cfg.data, "segmentation": cfg.segmentation, "renderer": cfg.renderer,
               "model": cfg.model, "tracking": cfg.tracking, "output_root": cfg.output_root,
               "output_dir": cfg.dataset_dir, "num_workers": cfg.build_workers,
               "progress": cfg.progress}
    names = {f.name for f in dataclasses.fields(BuildDataConfig)}
    assert names == set(carried) | BUILD_DATA_ONLY
    for name, value in carried.items():
        assert getattr(spec, name) == value, name
    build = _compose("build_data", [*SHARED, *_builder(tmp_path), f"output_root={tmp_path}",
                                    f"output_dir={tmp_path}/ds"])
    assert identity_config(spec) == identity_config(build)
    assert config_hash(spec) == config_hash(build) and dataset_dir(spec) == dataset_dir(build)
    assert identity_config(spec)["problems_per_shard"] == 2
    assert identity_config(spec)["token_counter"] == "qwen"
