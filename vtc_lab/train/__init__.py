"""Lightning SFT of a VLM backbone on a built dataset (`vtc-lab train`).

`TrainerConfig` imports without torch; everything else is loaded on first use.
"""

from vtc_lab.train.config import TrainerConfig

_LAZY = {
    "SFTEncoder": "vtc_lab.train.collate",
    "collate": "vtc_lab.train.collate",
    "SFTDataModule": "vtc_lab.train.datamodule",
    "SFTModule": "vtc_lab.train.module",
    "CharLabeler": "vtc_lab.train.char_loss",
    "train": "vtc_lab.train.run",
    "export_from_checkpoint": "vtc_lab.train.export",
}

__all__ = ["TrainerConfig", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vtc_lab.train' has no attribute {name!r}")
