"""The engine registry: which engines `engine.name` may name, and how `vtc-lab eval` builds one.

One `EngineSpec` per engine, registered with `register_engine` (the way `BackboneSpec`s,
segmentation policies and benchmarks are registered): nothing else branches on an engine's name,
and tests/infer/test_engine_contract.py runs the same contract over every registered engine.
The builder is a lazy `module:function` target, so this module (and `EngineConfig`, which
validates `engine.name` against it at compose time) stays torch-free: the `hf` builder imports
torch only when an in-process engine is built, `openai`'s never does (a client-only install).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vtc_lab.infer.config import EvalConfig
    from vtc_lab.infer.engine_api import Engine


@dataclass(frozen=True)
class EngineSpec:
    """A registered engine."""

    name: str
    """The value of `engine.name` (conf/engine/<name>.yaml is its preset)."""
    builder: str
    """`module:function` taking the `EvalConfig` and returning a ready `Engine` (loaded or
    connected and checked, so a misconfiguration fails before any work); imported on use."""
    servers: bool
    """True: the engine talks to the servers in `engine.base_urls`, which hold the weights (the
    `model` group is not loaded, `checkpoint=` does not apply, at least one URL is required).
    False: the `model` group's weights run in this process."""
    description: str = ""

    def build(self, cfg: EvalConfig) -> Engine:
        """The engine for `cfg` (its builder imported now, not at registration)."""
        module, _, function = self.builder.partition(":")
        return getattr(import_module(module), function)(cfg)


ENGINES: dict[str, EngineSpec] = {}


def register_engine(spec: EngineSpec) -> EngineSpec:
    """Add an engine to the registry; a second engine under a taken name is refused."""
    if not spec.name.isidentifier():
        raise ValueError(f"engine name must be an identifier, got {spec.name!r}")
    if ":" not in spec.builder:
        raise ValueError(f"engine {spec.name!r}: builder must be 'module:function', "
                         f"got {spec.builder!r}")
    if spec.name in ENGINES and ENGINES[spec.name] != spec:
        raise ValueError(f"engine {spec.name!r} is already registered")
    ENGINES[spec.name] = spec
    return spec


def engine_names() -> list[str]:
    """The registered engines, sorted."""
    return sorted(ENGINES)


def get_engine(name: str) -> EngineSpec:
    """The registered engine `name`; a ValueError naming the registered ones otherwise."""
    try:
        return ENGINES[name]
    except KeyError:
        raise ValueError(f"engine.name must be one of {engine_names()}, got {name!r}") from None


register_engine(EngineSpec(
    "hf", "vtc_lab.infer.engine:build_hf_engine", servers=False,
    description="Hugging Face generate in this process over the model group's checkpoint"))
register_engine(EngineSpec(
    "openai", "vtc_lab.infer.openai_engine:build_openai_engine", servers=True,
    description="any OpenAI-compatible server (vLLM, SGLang, vtc-lab serve); torch-free"))
