"""The whole app config checked at once, before any run, directory or file is created.

The dataclass schemas validate their own fields (`__post_init__`), but two kinds of mistakes
slipped through them: a key the schema does not have (`+renderer.fontsize=20` - Hydra's own hint
for a misspelt key - was accepted and silently ignored) and a non-finite number (`lr=inf`).
`validate` reports those, then builds the typed config (running every `__post_init__`), then
asks what the machine rules out (an `output_root` that cannot be written, the app's own
`environment_problems()`: no GPU for a GPU trainer, a run directory another process writes), so
the Hydra tracking callback can refuse a bad config before it opens an MLflow run, and the apps
get the same error.

Below every stage package: only omegaconf and the standard library.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict, read_write


class ConfigError(ValueError):
    """A config value or key that cannot be right; the message names the key and the fix."""


def _unknown_keys(node: Any, prefix: str, out: list[str]) -> None:
    if isinstance(node, DictConfig):
        schema = OmegaConf.get_type(node)
        known = ({f.name for f in dataclasses.fields(schema)}
                 if schema is not None and dataclasses.is_dataclass(schema) else None)
        for key in node.keys():
            name = f"{prefix}{key}"
            if known is not None and key not in known:
                close = difflib.get_close_matches(str(key), sorted(known), n=1)
                hint = f"did you mean {prefix}{close[0]}?" if close else \
                    f"known keys: {', '.join(sorted(known))}"
                out.append(f"{name} is not a setting of {prefix.rstrip('.') or 'this app'} "
                           f"({hint})")
                continue
            if not OmegaConf.is_missing(node, key) and not OmegaConf.is_interpolation(node, key):
                _unknown_keys(node[key], name + ".", out)
    elif isinstance(node, ListConfig):
        for i, item in enumerate(node):
            _unknown_keys(item, f"{prefix.rstrip('.')}[{i}].", out)


def _non_finite(obj: Any, prefix: str, out: list[str]) -> None:
    if isinstance(obj, dict):
        for key, value in obj.items():
            _non_finite(value, f"{prefix}{key}.", out)
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            _non_finite(value, f"{prefix.rstrip('.')}[{i}].", out)
    elif isinstance(obj, float) and not math.isfinite(obj):
        out.append(f"{prefix.rstrip('.')} must be a finite number, got {obj}")


def unwritable(key: str, path: str | os.PathLike) -> str | None:
    """Why nothing can be created at `path` (config key `key`), or None: the nearest part of it
    that exists must be a directory this process may write, on a writable filesystem. Checked
    without creating anything (a read-only disk otherwise fails half-way through a job)."""
    target = Path(path).expanduser().absolute()
    existing = target
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{key}={path}: {existing} is a file, not a directory"
    try:
        read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    if read_only:
        return f"{key}={path}: {existing} is on a read-only file system; choose a writable {key}"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{key}={path}: {existing} is not writable (permission denied)"
    return None


def task_config(cfg: DictConfig) -> DictConfig:
    """`cfg` without its `hydra` node (a copy; the schema type is kept)."""
    if "hydra" not in cfg:
        return cfg
    task = copy.deepcopy(cfg)
    with read_write(task), open_dict(task):
        task.pop("hydra")
    return task


def problems(cfg: DictConfig) -> list[str]:
    """Unknown keys and non-finite numbers of a composed config (its `hydra` node ignored)."""
    found: list[str] = []
    task = task_config(cfg)
    _unknown_keys(task, "", found)
    plain = OmegaConf.to_container(task, resolve=True, throw_on_missing=False)
    _non_finite(plain, "", found)
    return found


def validate(cfg: DictConfig) -> Any:
    """The typed app config of `cfg`, or `ConfigError` listing every problem found.

    An app schema may also define `environment_problems() -> list[str]`: what the machine or
    the outputs already on disk rule out (no GPU for a GPU trainer, an output another process
    is writing). Those are checked here too, so they are refused like a bad value: before any
    side effect, exit 2."""
    found = problems(cfg)
    if found:
        raise ConfigError("invalid config: " + "; ".join(found))
    typed = OmegaConf.to_object(task_config(cfg))
    check = getattr(typed, "environment_problems", None)
    found = list(check()) if callable(check) else []
    output_root = getattr(typed, "output_root", None)
    if isinstance(output_root, str) and (problem := unwritable("output_root", output_root)):
        found.insert(0, problem)
    if found:
        raise ConfigError("cannot run: " + "; ".join(found))
    return typed
