"""Lossless segmentation of reasoning traces into rounds (no torch)."""

from vtc_lab.segment.config import DEFAULT_MARKERS, SegmentationConfig
from vtc_lab.segment.policies import (TokenCounter, TooManySegmentsError, policy_names,
                                      register_policy, segment_text)

__all__ = [
    "DEFAULT_MARKERS",
    "SegmentationConfig",
    "TokenCounter",
    "TooManySegmentsError",
    "policy_names",
    "register_policy",
    "segment_text",
]
