"""`vtc-lab build-data`: the real Hydra config composes and runs (plain function and console script)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from vtc_lab.cli._hydra import CONF_DIR
import vtc_lab.cli.build_data  # noqa: F401 - registers build_data_schema
from vtc_lab.data.config import BuildDataConfig
from vtc_lab.data.build import build_dataset


def compose_cfg(*overrides):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return OmegaConf.to_object(compose("build_data", overrides=list(overrides)))


@pytest.mark.parametrize("seg", ["boundary", "fixed_tokens", "markers", "small"])
@pytest.mark.parametrize("data", ["math500_fixture", "openr1", "jsonl"])
def test_presets_compose(seg, data):
    cfg = compose_cfg(f"segmentation={seg}", f"data={data}", "data.path=/somewhere/x.jsonl")
    assert isinstance(cfg, BuildDataConfig)
    assert cfg.segmentation.policy in ("boundary", "fixed_tokens", "markers")
    assert cfg.data.source in ("math500_fixture", "openr1", "jsonl")


def test_default_is_the_reference_setup():
    cfg = compose_cfg()
    assert cfg.data.source == "math500_fixture" and cfg.segmentation.policy == "boundary"
    assert cfg.segmentation.max_tokens == 4096 and cfg.model.arch == "qwen3_vl"
    assert cfg.renderer.font_size == 9


def test_bad_override_names_the_field():
    with pytest.raises(Exception, match="max_tokens"):
        compose_cfg("segmentation.max_tokens=0")


def test_composed_config_builds(tmp_path):
    cfg = compose_cfg(f"output_root={tmp_path}", "segmentation=small", "data.limit=3", "tracking=off",
                      "progress=false")
    metrics = build_dataset(cfg)
    assert metrics["data/samples"] > 3 and Path(metrics["path"]) == (
        tmp_path / "datasets" / f"math500_fixture-{metrics['config_hash'][:12]}")


def test_console_script_stats_only(tmp_path):
    cmd = [sys.executable, "-m", "vtc_lab.cli.main", "build-data", f"output_root={tmp_path}",
           "segmentation=small", "data.limit=5", "stats_only=true", "tracking=off", "progress=false",
           f"hydra.run.dir={tmp_path / 'hydra'}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "compression ratio" in out.stdout
    (stats_dir,) = (tmp_path / "stats").iterdir()
    stats = json.loads((stats_dir / "stats.json").read_text())
    assert stats["problems"] == 5 and not (stats_dir / "shards").exists()


def _experiments_for(app):
    root = Path(CONF_DIR) / "experiment"
    for path in sorted(root.glob("*.yaml")):
        head = path.read_text().splitlines()[:3]
        if any(line.startswith("# apps:") and app in line for line in head):
            yield path.stem


@pytest.mark.parametrize("name", list(_experiments_for("build_data")))
def test_experiment_presets_for_build_data_compose(name):
    cfg = compose_cfg(f"experiment={name}")
    assert isinstance(cfg, BuildDataConfig)
