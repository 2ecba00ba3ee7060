"""The private APIs of other libraries that vtc-lab still uses, each behind one shim.

Every entry of `PRIVATE` names one private attribute (or attribute protocol) of a dependency,
the versions it was verified with, the shim that uses it, and what it buys: what would break,
or cost, without it. `private(name)` resolves an entry for its shim: a missing attribute is one
clear error naming the entry and the verified versions, and a dependency outside the verified
range logs a warning once (it may still work: the shim's own test says). tests/test_compat.py
fails on a dependency upgrade out of a verified range, so the next upgrade re-checks each shim.

Below every stage package: only the standard library and `packaging` (lazily).
"""

from __future__ import annotations

import functools
import importlib
import logging
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Private:
    name: str
    """Key in `PRIVATE`, what shims pass to `private`."""
    package: str
    """Distribution whose version is checked (`importlib.metadata` name)."""
    verified: str
    """PEP 440 specifier of the versions the shim was verified with."""
    module: str
    """Module holding the private attribute."""
    attr: str
    """Dotted attribute inside `module` (`Class.method`), or "" for an instance attribute
    (checked by the shim's own test, not here)."""
    shim: str
    """The one function or class that uses it."""
    buys: str
    """What it buys over the public API."""


PRIVATE: dict[str, Private] = {p.name: p for p in (
    Private("lightning.FSDPStrategy._setup_model", "lightning", ">=2.6,<2.7", "lightning.pytorch.strategies", "FSDPStrategy._setup_model",
            "vtc_lab.train.strategy.cpu_fsdp_strategy",
            "FSDP on the CPU (gloo): Lightning refuses strategy=fsdp with accelerator=cpu, so the "
            "2-process CPU run (trainer=fsdp_cpu) that tests sharding, sharded checkpoints, "
            "resume and export without a GPU needs the model wrapped with a CPU device_id"),
    Private("torch.dcp._load_state_dict", "torch", ">=2.11,<2.15",
            "torch.distributed.checkpoint.state_dict_loader",
            "_load_state_dict", "vtc_lab.models.checkpoint.sharded_weights",
            "reading the model weights of an FSDP sharded checkpoint in one process without "
            "allocating them first (public dcp.load fills only keys the caller already holds) "
            "and without reading the optimizer state; torch's own dcp_to_torch_save uses it"),
    Private("torch.dcp._EmptyStateDictLoadPlanner", "torch", ">=2.11,<2.15",
            "torch.distributed.checkpoint.default_planner",
            "_EmptyStateDictLoadPlanner", "vtc_lab.models.checkpoint.sharded_weights",
            "the planner that lets _load_state_dict allocate what it reads (model keys only)"),
    Private("transformers.rope_deltas", "transformers", "==5.23.*", "transformers", "",
            "vtc_lab.models.internals.reset_rope_deltas",
            "correct positions when generate() continues a reused prefix: Qwen-VL / GLM-4.1V "
            "models cache their M-RoPE offsets (`model.model.rope_deltas`) across calls and "
            "recompute them only when the attribute is None"),
    Private("transformers.visual", "transformers", "==5.23.*", "transformers", "",
            "vtc_lab.models.internals.vision_tower",
            "the character loss and the zero-weighted vision pass read the vision tower "
            "(`model.model.visual`) and its output's `pooler_output` (the merged vision tokens "
            "as the language model receives them) without a second vision forward"),
)}
"""Name -> one private API in use."""


def _resolve(entry: Private) -> Any:
    obj: Any = importlib.import_module(entry.module)
    for part in filter(None, entry.attr.split(".")):
        obj = getattr(obj, part)
    return obj


@functools.lru_cache(maxsize=None)
def _warn_unverified(name: str) -> None:
    entry = PRIVATE[name]
    if not is_verified(entry):
        log.warning("%s uses a private API of %s (%s), verified with %s %s; %s %s is installed",
                    entry.shim, entry.package, name, entry.package, entry.verified,
                    entry.package, version(entry.package))


def is_verified(entry: Private) -> bool:
    """Whether the installed `entry.package` is in the range the shim was verified with."""
    from packaging.specifiers import SpecifierSet

    return version(entry.package) in SpecifierSet(entry.verified)


def private(name: str) -> Any:
    """The private object `PRIVATE[name]` names (the module itself for instance attributes)."""
    entry = PRIVATE[name]
    _warn_unverified(name)
    try:
        return _resolve(entry)
    except (ImportError, AttributeError) as exc:
        raise ImportError(
            f"{entry.shim} needs {entry.module}.{entry.attr} ({entry.package} {entry.verified} has it; "
            f"{version(entry.package)} is installed): it buys {entry.buys}. Install a verified "
            f"{entry.package} or port the shim to this version.") from exc
