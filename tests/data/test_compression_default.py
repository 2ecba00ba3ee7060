"""The plain `vtc-lab train` default demonstrates the method (its memory compresses), and any
build whose memory costs more tokens than its text says so loudly."""

from __future__ import annotations

import logging

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from vtc_lab.cli._hydra import CONF_DIR
import vtc_lab.cli.build_data  # noqa: F401 - registers build_data_schema
import vtc_lab.cli.train  # noqa: F401 - registers train_schema
from vtc_lab.data.config import BuildDataConfig
from vtc_lab.data.build import build_dataset


def _compose(app: str, *overrides: str):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return OmegaConf.to_object(compose(app, overrides=list(overrides)))


def test_plain_train_default_builds_memory_that_compresses(tmp_path, capsys) -> None:
    """`vtc-lab train` with no experiment: the dataset it builds (same data, segmentation,
    renderer and model as train's composed default) saves tokens."""
    train = _compose("train", f"output_root={tmp_path}", "tracking=off")
    build = BuildDataConfig(data=train.data, segmentation=train.segmentation,
                            renderer=train.renderer, model=train.model, tracking=train.tracking,
                            output_root=str(tmp_path), stats_only=True, progress=False)
    m = build_dataset(build)
    assert train.data.limit == 64 and m["data/mean_segments_per_problem"] > 2  # memory is used
    assert m["data/compression_ratio"] > 2 and m["data/tokens_saved"] > 0
    assert "does not compress" not in capsys.readouterr().err


def test_a_build_that_does_not_compress_warns_loudly(tmp_path, capsys, caplog) -> None:
    cfg = _compose("build_data", f"output_root={tmp_path}", "tracking=off", "stats_only=true",
                   "progress=false", "data.limit=6", "segmentation=small",
                   "model.min_pixels=262144")  # every page upscaled to >= 256 vision tokens
    with caplog.at_level(logging.WARNING, logger="vtc_lab.data.build"):
        m = build_dataset(cfg)
    assert m["data/compression_ratio"] < 1
    err = capsys.readouterr().err
    assert f"pooled compression ratio {m['data/compression_ratio']}x < 1" in err
    assert any("does not compress" in r.getMessage() for r in caplog.records)
    build_dataset(cfg)  # reusing the finished dataset warns again
    assert "does not compress" in capsys.readouterr().err
