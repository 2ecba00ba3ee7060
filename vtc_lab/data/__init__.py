"""Traces -> SFT samples: the prompt builder, sources and the builder.

The completion format (`format_target`, `is_final`) is defined in vtc_lab.task.completion and
re-exported here.

`build_messages` and the format helpers import nothing heavy; the builder and reader (pyarrow,
the renderer) load on first use.
"""

from vtc_lab.data.config import DataConfig
from vtc_lab.data.messages import REFERENCE_SYSTEM_PROMPT, build_messages
from vtc_lab.task.completion import THINK_END, format_target, is_final, split_final  # re-exported

_LAZY = {
    "build_dataset": "vtc_lab.data.build",
    "ensure_dataset": "vtc_lab.data.build",
    "dataset_dir": "vtc_lab.data.build",
    "DatasetConfigMismatch": "vtc_lab.data.build",
    "Dataset": "vtc_lab.data.shards",
    "open_dataset": "vtc_lab.data.shards",
    "decode_images": "vtc_lab.data.shards",
    "export_llamafactory": "vtc_lab.data.export",
    "iter_traces": "vtc_lab.data.sources",
    "register_source": "vtc_lab.data.sources",
    "Trace": "vtc_lab.data.sources",
}

__all__ = [
    "REFERENCE_SYSTEM_PROMPT",
    "THINK_END",
    "DataConfig",
    "build_messages",
    "format_target",
    "is_final",
    "split_final",
    *sorted(_LAZY),
]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vtc_lab.data' has no attribute {name!r}")
