import pytest

from vtc_lab.data.config import DataConfig
from vtc_lab.segment import SegmentationConfig


@pytest.fixture
def make_cfg(tmp_path):
    """A small BuildDataConfig: MATH500 fixture, 96-token rounds, tiny Qwen3-VL tokenizer."""
    from vtc_lab.data.config import BuildDataConfig
    from vtc_lab.tracking.config import TrackingConfig

    def make(**overrides):
        limit = overrides.pop("limit", 10)
        data = overrides.pop("data", None) or DataConfig(limit=limit)
        seg = overrides.pop("segmentation", None) or SegmentationConfig(
            max_tokens=96, min_tokens=16, max_segments=8, on_overflow="merge")
        kwargs = dict(data=data, segmentation=seg, tracking=TrackingConfig(mode="off"),
                      output_root=str(tmp_path / "runs"), problems_per_shard=4, progress=False)
        kwargs.update(overrides)
        return BuildDataConfig(**kwargs)

    return make


def small_build_cfg(root, out, limit):
    """The config the kill-and-resume tests share between the child process and the test."""
    from vtc_lab.data.config import BuildDataConfig
    from vtc_lab.tracking.config import TrackingConfig

    return BuildDataConfig(
        data=DataConfig(limit=limit),
        segmentation=SegmentationConfig(max_tokens=96, min_tokens=16, max_segments=8, on_overflow="merge"),
        tracking=TrackingConfig(mode="off"), output_root=str(root), output_dir=str(out),
        problems_per_shard=4, progress=False, render_cache=False)
