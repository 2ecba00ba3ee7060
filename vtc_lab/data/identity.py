"""What a dataset is: the config hash over everything that decides its samples, where a
config's dataset lives, and the checks before a directory is reused (same config, same input
files), plus the code version recorded in its manifest. `vtc_lab.data.build` builds; this module
decides whether what is on disk is the dataset a config asks for.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from vtc_lab.data import shards as sh
from vtc_lab.data.sources import input_fingerprint
from vtc_lab.tracking.provenance import config_diff

log = logging.getLogger(__name__)

FORMAT_VERSION = 4
"""Bumped when the row layout or the choice of traces changes (part of the config hash). 2:
pages stored once per shard in a page table, rows reference them (`page_ids`). 3: `memory_text`
(text-memory samples). 4: a generation's reasoning ends at its last `</think>` (the completion
format's one rule), so one with two is skipped as `bad_trace` instead of cut at the first; the
shards of a build begun before would not line up with those built after."""


CONFIG_HASH_FIELD = "{config_hash}"


class DatasetConfigMismatch(ValueError):
    """The output directory holds a dataset built with another config."""


class DatasetInputChanged(DatasetConfigMismatch):
    """The output directory holds a dataset built from other input data (same config)."""


def plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


TINY_DATA_FIELDS = ("vocab_size", "patch_size", "merge_size", "temporal_patch_size")
BUILDER_KEYS = ("token_counter", "problems_per_shard")
"""`data` settings that the hash records at its top level (where they lived before)."""


def _renderer_identity(render_cfg: Any) -> dict:
    """The renderer's settings; its `degrade` only when a degradation is on, so datasets of
    clean pages keep the hash they had before degradations existed (`vtc_lab.render.degrade`)."""
    out = plain(render_cfg)
    degrade = getattr(render_cfg, "degrade", None)
    if degrade is None or not getattr(degrade, "active", True):
        out.pop("degrade", None)
    return out


def identity_config(cfg: Any) -> dict:
    """The parts of a BuildDataConfig that decide the samples (what the hash covers).

    Left out: names, worker counts, tracking, export and cache settings: changing them does not
    change a single sample. Model training switches are left out too; only what the tokenizer
    and the vision-token rule depend on stays. The builder settings of `data`
    (`problems_per_shard`, `token_counter`) keep their top-level keys, so datasets built before
    they moved into `data` keep their hash.
    """
    data = plain(cfg.data)
    for name in ("name", "render_cache", "render_cache_dir", *BUILDER_KEYS):
        data.pop(name, None)
    model = plain(cfg.model)
    keep = {"source", "arch", "path", "min_pixels", "max_pixels", "trust_remote_code"}
    model_id = {k: v for k, v in model.items() if k in keep}
    if model.get("source") == "tiny":
        # Only what the tokenizer and the vision-token rule read: depth, widths and the weight
        # seed change the model, not one sample, so sweeping them reuses the dataset.
        tiny = dict(model.get("tiny") or {})
        model_id["tiny"] = {k: tiny[k] for k in TINY_DATA_FIELDS if k in tiny}
    return {
        "format_version": FORMAT_VERSION,
        "data": data,
        "segmentation": plain(cfg.segmentation),
        "renderer": _renderer_identity(cfg.renderer),
        "renderer_hash": render_hash(cfg.renderer),  # + renderer version and font bytes
        "model": model_id,
        **{name: getattr(cfg.data, name) for name in BUILDER_KEYS},
    }


def config_hash(cfg: Any) -> str:
    blob = json.dumps(identity_config(cfg), sort_keys=True, ensure_ascii=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def dataset_dir(cfg: Any) -> Path:
    """`output_dir`, else `<output_root>/datasets/<data.name>-<hash>` (stats-only: `stats/...`).

    A literal `{config_hash}` in output_dir becomes the first 12 hex digits of the config hash.
    The default carries the hash too: one directory per config, so a sweep over segmentation or
    renderer settings never meets a dataset built with another config, and rerunning the same
    config reuses its dataset.
    """
    if cfg.output_dir:
        return Path(str(cfg.output_dir).replace(CONFIG_HASH_FIELD, config_hash(cfg)[:12]))
    sub = "stats" if cfg.stats_only else "datasets"
    return Path(cfg.output_root) / sub / f"{cfg.data.name}-{config_hash(cfg)[:12]}"


def _describe_difference(old: dict, new: dict) -> str:
    diffs = config_diff(old, new)
    return "; ".join(diffs[:8]) + (f"; ... ({len(diffs)} differences)" if len(diffs) > 8 else "")


def check_directory(out: Path, cfg: Any, chash: str, fingerprint: dict | None = None,
                    check_input: bool = True, building_ok: bool = False) -> dict | None:
    """The existing manifest if `out` holds this config's dataset (built from the same input);
    raises on any other content. `fingerprint` defaults to `input_fingerprint(cfg.data)`.
    `building_ok`: files only the builder writes, without a manifest yet, are a build another
    process is running (the caller then waits for its lock and checks again), not a refusal."""
    manifest = sh.read_manifest(out)
    if manifest is None:
        if building_ok and out.exists() and not sh.foreign_files(out):
            return None
        if out.exists() and any(p.name not in sh.LOCK_FILES for p in out.iterdir()):
            raise DatasetConfigMismatch(
                f"{out} exists, is not empty and has no {sh.MANIFEST}: refusing to write a dataset "
                "into it; choose another output_dir")
        return None
    if not sh.is_dataset_manifest(manifest):
        raise DatasetConfigMismatch(
            f"{out / sh.MANIFEST} is not a vtc-lab dataset manifest: refusing to write (or delete) "
            "anything in that directory; choose another output_dir")
    if manifest.get("config_hash") != chash:
        raise DatasetConfigMismatch(
            f"{out} holds a dataset built with a different config (config_hash "
            f"{str(manifest.get('config_hash'))[:12]} != {chash[:12]}): "
            f"{_describe_difference(manifest.get('identity', {}), identity_config(cfg))}. "
            "Use another output_dir / data.name, or overwrite=true to delete and rebuild it.")
    if check_input:
        now = current_input(cfg) if fingerprint is None else fingerprint
        if "missing" in (now or {}):
            if manifest.get("status") != "complete":
                raise FileNotFoundError(now["missing"])
            log.warning("%s: cannot check that the dataset is current (%s); using it as built",
                        out, now["missing"])
        else:
            _check_input(out, manifest.get("input"), now)
    return manifest


def current_input(cfg: Any) -> dict | None:
    """`input_fingerprint(cfg.data)`, or {"missing": why} when the input files are gone (a
    complete dataset stays usable without its raw data; an unfinished one cannot be built)."""
    try:
        return input_fingerprint(cfg.data)
    except FileNotFoundError as exc:
        return {"missing": str(exc)}


def _check_input(out: Path, old: dict | None, new: dict | None) -> None:
    if (old or {}).get("sha256") == (new or {}).get("sha256"):
        return
    before = {f["path"]: f for f in (old or {}).get("files", [])}
    after = {f["path"]: f for f in (new or {}).get("files", [])}
    changed = [f"{p} (changed)" for p in sorted(set(before) & set(after))
               if before[p]["sha256"] != after[p]["sha256"] or before[p]["bytes"] != after[p]["bytes"]]
    changed += [f"{p} (new)" for p in sorted(set(after) - set(before))]
    changed += [f"{p} (gone)" for p in sorted(set(before) - set(after))]
    if not changed:  # same files under other names, or an input without files
        changed = ["the input as a whole"]
    raise DatasetInputChanged(
        f"{out} was built from other input data than data.path now holds: "
        f"{', '.join(changed[:5])}{' ...' if len(changed) > 5 else ''}. Its samples would be "
        "stale: rebuild with overwrite=true, or choose another output_dir.")


def code_version() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    try:
        pkg = version("vtc-lab")
    except PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
        pkg = "unknown"
    out = {"vtc_lab": pkg}
    try:
        from vtc_lab.tracking.provenance import git_state

        out["git_commit"], out["git_dirty"] = git_state()
    except Exception:  # noqa: BLE001 - provenance is best effort, never fails a build
        pass
    return out


def render_hash(render_cfg: Any) -> str:
    try:
        from vtc_lab.render import config_hash as render_config_hash

        return str(render_config_hash(render_cfg))
    except ImportError:  # pragma: no cover - the renderer always ships config_hash
        blob = json.dumps(plain(render_cfg), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()
