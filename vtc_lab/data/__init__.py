"""Traces -> SFT samples: the prompt builder, the target format, sources and the builder."""

from vtc_lab.data.config import DataConfig
from vtc_lab.data.format import (
    FINAL_RE,
    THINK_END,
    format_target,
    is_final,
    split_final,
)
from vtc_lab.data.messages import REFERENCE_SYSTEM_PROMPT, build_messages

__all__ = [
    "FINAL_RE",
    "REFERENCE_SYSTEM_PROMPT",
    "THINK_END",
    "DataConfig",
    "build_messages",
    "format_target",
    "is_final",
    "split_final",
]
