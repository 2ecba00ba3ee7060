import dataclasses

import pytest

from vtc_lab.data.config import DataConfig
from vtc_lab.segment import SegmentationConfig


BUILDER_SETTINGS = ("problems_per_shard", "token_counter", "render_cache", "render_cache_dir")


@pytest.fixture
def make_cfg(tmp_path):
    """A small BuildDataConfig: MATH500 fixture, 96-token rounds, tiny Qwen3-VL tokenizer."""
    from vtc_lab.data.config import BuildDataConfig
    from vtc_lab.tracking.config import TrackingConfig

    def make(**overrides):
        limit = overrides.pop("limit", 10)
        data = overrides.pop("data", None) or DataConfig(limit=limit)
        # the builder settings live in `data`; 4 problems per shard unless a test says otherwise
        data = dataclasses.replace(data, **{"problems_per_shard": 4, **{
            k: overrides.pop(k) for k in BUILDER_SETTINGS if k in overrides}})
        seg = overrides.pop("segmentation", None) or SegmentationConfig(
            max_tokens=96, min_tokens=16, max_segments=8, on_overflow="merge")
        kwargs = dict(data=data, segmentation=seg, tracking=TrackingConfig(mode="off"),
                      output_root=str(tmp_path / "runs"), progress=False)
        kwargs.update(overrides)
        return BuildDataConfig(**kwargs)

    return make


def small_build_cfg(root, out, limit):
    """The config the kill-and-resume tests share between the child process and the test."""
    from vtc_lab.data.config import BuildDataConfig
    from vtc_lab.tracking.config import TrackingConfig

    return BuildDataConfig(
        data=DataConfig(limit=limit, problems_per_shard=4, render_cache=False),
        segmentation=SegmentationConfig(max_tokens=96, min_tokens=16, max_segments=8, on_overflow="merge"),
        tracking=TrackingConfig(mode="off"), output_root=str(root), output_dir=str(out),
        progress=False)
