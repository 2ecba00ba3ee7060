"""Lossless segmentation of reasoning traces into rounds (no torch)."""

from vtc_lab.segment.config import DEFAULT_MARKERS, POLICIES, SegmentationConfig
from vtc_lab.segment.policies import TokenCounter, TooManySegmentsError, segment_text

__all__ = [
    "DEFAULT_MARKERS",
    "POLICIES",
    "SegmentationConfig",
    "TokenCounter",
    "TooManySegmentsError",
    "segment_text",
]
