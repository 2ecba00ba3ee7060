"""What every run records about itself: provenance tags and a flat, readable set of key params.

No mlflow here: these are plain dicts the run handle logs. The key-param table is the one place
that knows which config fields matter most when comparing runs side by side in the MLflow UI.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

# Short readable name -> config paths tried in order (first one present wins). Apps without a
# group simply do not get that param. One name per quantity in every app, and no name equal to a
# config group (`data=openr1` is an override param of its own: the preset chosen, not its name).
# `evaluator.*` paths count only when the evaluator is enabled (see key_params). Every path is
# a field of some app's schema (tests/tracking/test_provenance.py checks it).
KEY_PARAMS: dict[str, tuple[str, ...]] = {
    "memory": ("optim.memory", "memory"),
    "backbone": ("model.name",),
    "arch": ("model.arch",),
    "model_source": ("model.source",),
    "font": ("renderer.font",),
    "font_size": ("renderer.font_size",),
    "dpi": ("renderer.dpi",),
    "page_width": ("renderer.page_width",),
    "degrade": ("renderer.degrade.level",),
    "seg_policy": ("segmentation.policy",),
    "seg_budget": ("segmentation.max_tokens",),
    "dataset": ("data.name",),
    "system_prompt": ("data.system_prompt",),
    "image_position": ("data.image_position",),
    "max_pixels": ("model.max_pixels",),
    "min_pixels": ("model.min_pixels",),
    "image_max_pixels": ("model.image_max_pixels",),
    "benchmarks": ("benchmark.name", "evaluator.benchmarks"),
    "loops": ("loops", "evaluator.loops", "loop.mode"),
    "max_rounds": ("loop.max_rounds", "evaluator.loop.max_rounds"),
    "max_new_tokens": ("loop.max_new_tokens", "evaluator.loop.max_new_tokens"),
    "lr": ("optim.lr",),
    "max_steps": ("optim.max_steps",),
    "precision": ("trainer.precision",),
    "strategy": ("trainer.strategy",),
    "seed": ("optim.seed", "loop.seed"),
    "task": ("task",),
    "context_cap": ("loop.max_context_tokens", "evaluator.loop.max_context_tokens"),
    "context_policy": ("loop.context_policy", "evaluator.loop.context_policy"),
    "min_render_tokens": ("loop.min_render_tokens", "evaluator.loop.min_render_tokens"),
}

_SHORT = {path: name for name, paths in KEY_PARAMS.items() for path in paths}


def short_name(key: str) -> str:
    """The KEY_PARAMS name of config path `key` (`optim.memory` -> `memory`), else `key`: the
    one name a swept value is logged, tagged and shown under."""
    return _SHORT.get(key, key)


def to_plain(obj: Any) -> Any:
    """Dataclass / DictConfig / nested containers -> plain JSON/YAML-safe python values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(obj, (DictConfig, ListConfig)):
            return to_plain(OmegaConf.to_container(obj, resolve=True))
    except ImportError:  # pragma: no cover - omegaconf is a core dependency
        pass
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mapping -> `{"a.b.c": leaf}`; lists stay leaves (one readable param each)."""
    plain = to_plain(obj)
    out: dict[str, Any] = {}
    if not isinstance(plain, dict):
        return {prefix or "value": plain}
    for key, value in plain.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


def config_diff(old: Any, new: Any) -> list[str]:
    """`"a.b: old -> new"` for every flattened key whose value differs (`<unset>` when absent),
    sorted by key: how a refusal to mix two configurations names what changed."""
    a, b = flatten(old), flatten(new)
    missing = "<unset>"
    return [f"{k}: {a.get(k, missing)!r} -> {b.get(k, missing)!r}"
            for k in sorted(set(a) | set(b)) if a.get(k, missing) != b.get(k, missing)]


def key_params(app_cfg: Any) -> dict[str, Any]:
    """The short, comparable params of a run (`font_size`, `seg_budget`, `backbone`, ...)."""
    flat = flatten(app_cfg)
    if not flat.get("evaluator.enabled", True):  # a train run without the evaluator
        flat = {k: v for k, v in flat.items() if not k.startswith("evaluator.")}
    out: dict[str, Any] = {}
    for name, paths in KEY_PARAMS.items():
        for path in paths:
            if path in flat and flat[path] not in ([], ""):  # an unset list falls through
                value = flat[path]
                if name == "system_prompt":  # the prompt text is long; on/off is what varies
                    value = "on" if value else "off"
                out[name] = value
                break
    return out


def override_params(overrides: list[str]) -> dict[str, str]:
    """Hydra override strings -> params (`renderer.font_size=7` -> {renderer.font_size: 7})."""
    out: dict[str, str] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            continue
        out[key.lstrip("+~")] = value
    return out


def run_params(overrides: Mapping[str, str]) -> dict[str, str]:
    """Overrides as run params, each quantity under one name: an override of a key param's
    config path (`optim.memory=text`) is left out, because `key_params` logs that value under
    its short name (`memory`) from the effective config (`1e-4` typed, `0.0001` used: one
    value, not two spellings); the other overrides (`renderer=toy_task`) as typed."""
    return {k: v for k, v in overrides.items() if short_name(k) == k}


@functools.lru_cache(maxsize=1)
def git_state() -> tuple[str, str]:
    """(commit, dirty) of the source tree vtc_lab is imported from; 'unknown' outside git."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                cwd=root, capture_output=True, text=True, timeout=10,
                                check=True).stdout
        return commit, "true" if status.strip() else "false"
    except (OSError, subprocess.SubprocessError):
        return "unknown", "unknown"


def device_description() -> str:
    """GPU name(s) when torch is loaded and sees CUDA; otherwise the CPU. Never imports torch
    itself, so torch-free apps (render) stay fast."""
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_available():
                n = torch.cuda.device_count()
                return f"cuda x{n} ({torch.cuda.get_device_name(0)})"
        except Exception:  # noqa: BLE001 - a broken driver must not kill tracking
            pass
    return f"cpu ({os.cpu_count()} cores, {platform.machine()})"


def provenance_tags() -> dict[str, str]:
    """Tags every run carries: code version, host and device."""
    from vtc_lab import __version__

    commit, dirty = git_state()
    return {
        "git.commit": commit,
        "git.dirty": dirty,
        "mlflow.source.git.commit": commit,
        "vtc_lab.version": __version__,
        "host": socket.gethostname(),
        "device": device_description(),
        "python": platform.python_version(),
    }
