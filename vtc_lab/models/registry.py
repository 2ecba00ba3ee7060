"""The backbone registry: every module in `vtc_lab/models/archs/` that defines `SPEC`.

Adding a backbone is one new module there (a `BackboneSpec`) plus one preset YAML in
conf/model/; the loader, the config validation, build-data's token rule and the contract tests
(tests/models/test_backbones.py, parametrized over `backbone_names()`) pick it up from here.
Modules whose name starts with `_` are helpers, not families. No torch is imported here.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import pkgutil
from functools import cache
from pathlib import Path
from typing import Any

from vtc_lab.models.spec import BackboneSpec

ARCHS_PACKAGE = "vtc_lab.models.archs"


@cache
def _registry() -> dict[str, BackboneSpec]:
    package = importlib.import_module(ARCHS_PACKAGE)
    found: dict[str, BackboneSpec] = {}
    owners: dict[str, str] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{ARCHS_PACKAGE}.{info.name}")
        spec = getattr(module, "SPEC", None)
        if not isinstance(spec, BackboneSpec):
            raise TypeError(f"{module.__name__} defines no SPEC = BackboneSpec(...)")
        _add(spec, found, owners, module.__name__)
    return found


def _add(spec: BackboneSpec, into: dict[str, BackboneSpec], owners: dict[str, str],
             where: str) -> None:
    """Add `spec` to `into`, refusing a second family with the same name or model_type."""
    if spec.name in into:
        raise ValueError(f"{where}: backbone {spec.name!r} is already registered")
    for model_type in spec.model_types:
        if model_type in owners:
            raise ValueError(f"{where}: model_type {model_type!r} already belongs to "
                             f"{owners[model_type]!r}")
        owners[model_type] = spec.name
    into[spec.name] = spec


def backbone_names() -> tuple[str, ...]:
    """Every registered family, sorted."""
    return tuple(sorted(_registry()))


def tiny_backbone_names() -> tuple[str, ...]:
    """The families that can build a tiny random-init backbone."""
    return tuple(name for name, spec in sorted(_registry().items()) if spec.tiny is not None)


def get_backbone(name: str) -> BackboneSpec:
    """The spec of `name`; a clear error naming the registered ones otherwise."""
    registry = _registry()
    if name not in registry:
        raise KeyError(f"unknown backbone {name!r}; registered: {', '.join(sorted(registry))} "
                       f"(add a module to vtc_lab/models/archs/)")
    return registry[name]


def find_backbone(name: str) -> BackboneSpec | None:
    """The spec of `name`, or None when no family of that name is registered."""
    return _registry().get(name)


def spec_for_model_type(model_type: str) -> BackboneSpec | None:
    """The family a checkpoint's `model_type` belongs to, or None (loaded generically)."""
    return next((s for s in _registry().values() if model_type in s.model_types), None)


def projector_keys() -> tuple[str, ...]:
    """Projector name parts of every family (for a checkpoint of an unregistered family)."""
    return tuple(sorted({k for s in _registry().values() for k in s.projector_keys}))


def checkpoint_arch(cfg: Any, path: Path) -> str:
    """The family of the checkpoint at `path` (its config.json `model_type`); an unregistered
    model_type is returned as is. Refuses a checkpoint of another family than `cfg.arch`."""
    model_type = json.loads((path / "config.json").read_text()).get("model_type", "")
    spec = spec_for_model_type(model_type)
    arch = spec.name if spec else (model_type or "unknown")
    if cfg.arch != "auto" and arch != cfg.arch:
        raise ValueError(f"model.arch={cfg.arch!r} but the checkpoint at {path} is "
                         f"model_type={model_type!r}; set model.arch=auto or fix model.path")
    return arch


def vision_spec_for(cfg: Any):
    """The vision-token rule of a model config without loading weights (what build-data counts
    with): the family's released rule, with the tiny patch sizes for `source: tiny`.
    `arch: auto` reads the family off the checkpoint's config.json."""
    arch = cfg.arch
    if arch == "auto" and getattr(cfg, "path", None):
        path = Path(cfg.path).expanduser()
        if (path / "config.json").is_file():
            arch = checkpoint_arch(cfg, path)
    try:
        spec = get_backbone(arch).vision
    except KeyError:
        raise ValueError(f"model.arch={arch!r} has no vision-token rule for build-data; "
                         f"set model.arch to one of {backbone_names()}") from None
    if getattr(cfg, "source", None) == "tiny":
        tiny = cfg.tiny
        spec = dataclasses.replace(spec, patch_size=tiny.patch_size, merge_size=tiny.merge_size,
                                   temporal_patch_size=tiny.temporal_patch_size)
    return spec
