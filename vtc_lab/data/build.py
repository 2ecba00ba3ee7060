"""`build_dataset`: traces -> segmented, rendered SFT shards (parallel, resumable, atomic).

The trace stream is deterministic, so shard i always holds the same `problems_per_shard`
traces. A run skips shards that already exist and rebuilds the rest; because every shard is
written under a temporary name and renamed, a build killed at any moment (kill -9) and started
again with the same config ends with exactly the samples of an uninterrupted build.

What a second run trusts, it checks first: a different config in the same directory is refused
(config hash in manifest.json); so is a changed input (the manifest's content fingerprint of
the input files); every shard it reuses must match the size and sha256 recorded when it was
written, and a damaged one is rebuilt. `overwrite=true` deletes only what the builder wrote
(its manifest, stats, shards and export) and refuses a directory holding anything else.
What counts as the same dataset (config hash, input check) is `vtc_lab.data.identity`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from vtc_lab import atomic
from vtc_lab.data import shards as sh
from vtc_lab.data.identity import (FORMAT_VERSION, DatasetConfigMismatch, DatasetInputChanged,
                                   plain, render_hash, check_directory, code_version,
                                   config_hash, current_input, dataset_dir, identity_config)
from vtc_lab.data.samples import SampleSettings, ShardStats, WorkerState, problem_samples
from vtc_lab.data.sources import Skip, Trace, iter_traces
from vtc_lab.data.stats import compression_warning, format_stats, plot_stats, summarize

# what this module offered before the dataset's identity had a module of its own
__all__ = ["DatasetConfigMismatch", "DatasetInputChanged", "FORMAT_VERSION", "build_dataset",
           "check_directory", "config_hash", "dataset_dir", "dataset_metrics", "ensure_dataset",
           "identity_config", "run_build_data"]

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------- workers

_STATE: WorkerState | None = None


def _init_worker(settings: SampleSettings) -> None:
    global _STATE
    _STATE = WorkerState.create(settings)
    _exit_with_parent()


def _exit_with_parent() -> None:
    """In a worker process: exit as soon as the parent dies (kill -9 of the build would
    otherwise leave idle workers behind, blocked on their task queue forever)."""
    import multiprocessing
    import os
    import threading
    from multiprocessing.connection import wait as wait_for

    parent = multiprocessing.parent_process()
    if parent is None or getattr(parent, "sentinel", None) is None:
        return  # not a multiprocessing child, or one whose parent handle has no sentinel (loky)

    def watch() -> None:
        wait_for([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _build_shard(index: int, traces: list[Trace], out: str | None) -> tuple[int, dict, int]:
    """Rows of one shard, written atomically unless stats-only; returns (index, stats, problems)."""
    assert _STATE is not None, "worker not initialised"
    stats = ShardStats()
    rows: list[dict] = []
    pages: list[dict] = []
    for trace in traces:
        problem_stats = ShardStats()  # merged only on success: a failed trace leaves no trace
        problem_pages: list[dict] = []
        try:
            result = problem_samples(trace, _STATE, problem_stats, problem_pages)
        except Exception as exc:  # noqa: BLE001 - one bad trace must not end a long build
            log.warning("skipped (error): %s %s: %s", trace.origin, type(exc).__name__, exc)
            result = Skip(f"error:{type(exc).__name__}", trace.origin, str(exc))
        if isinstance(result, Skip):
            stats.skipped[result.reason] += 1
            continue
        stats.add(problem_stats)
        offset = len(pages)  # the problem's page ids become shard-wide ids
        for page in problem_pages:
            page["page_id"] += offset
        for row in result:
            row["page_ids"] = [i + offset for i in row["page_ids"]]
        pages.extend(problem_pages)
        rows.extend(result)
    if out is not None:
        sh.write_shard(Path(out), index, rows, stats.to_json(), pages)
    return index, stats.to_json(), len(traces)


def _chunks(items: Iterator[Trace | Skip], size: int, skips: Counter,
            examples: dict[str, list[str]]) -> Iterator[tuple[int, list[Trace]]]:
    chunk: list[Trace] = []
    index = 0
    for item in items:
        if isinstance(item, Skip):
            skips[item.reason] += 1
            if len(examples.setdefault(item.reason, [])) < 3:
                examples[item.reason].append(f"{item.origin} {item.detail}".strip())
                log.warning("skipped (%s): %s %s", item.reason, item.origin, item.detail)
            elif item.reason == "bad_input_file":  # every unreadable file is named
                log.warning("skipped (%s): %s %s", item.reason, item.origin, item.detail)
            continue
        chunk.append(item)
        if len(chunk) == size:
            yield index, chunk
            index, chunk = index + 1, []
    if chunk:
        yield index, chunk


def _run_shards(cfg: Any, settings: SampleSettings, out: Path, done: set[int],
                skips: Counter, examples: dict[str, list[str]]) -> tuple[int, dict[int, dict]]:
    """Build every missing shard (in worker processes if num_workers > 1); returns (shards, stats)."""
    from tqdm.auto import tqdm

    write_to = None if cfg.stats_only else str(out)
    results: dict[int, dict] = {}
    bar = tqdm(total=cfg.data.limit, unit="problem", desc="build-data", disable=not cfg.progress)
    n_shards = 0
    chunks = _chunks(iter_traces(cfg.data), cfg.data.problems_per_shard, skips, examples)
    if cfg.num_workers <= 1:
        ready = False  # the tokenizer loads only if some shard is still missing
        for index, traces in chunks:
            n_shards = index + 1
            if index not in done:
                if not ready:
                    _init_worker(settings)
                    ready = True
                _, results[index], _ = _build_shard(index, traces, write_to)
            bar.update(len(traces))
    else:
        pool = ProcessPoolExecutor(max_workers=cfg.num_workers, mp_context=get_context("spawn"),
                                   initializer=_init_worker, initargs=(settings,))
        pending: set[Future] = set()
        try:
            for index, traces in chunks:
                n_shards = index + 1
                if index in done:
                    bar.update(len(traces))
                    continue
                if len(pending) >= 2 * cfg.num_workers:  # bounded memory: few chunks in flight
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        i, stats, count = fut.result()
                        results[i] = stats
                        bar.update(count)
                pending.add(pool.submit(_build_shard, index, traces, write_to))
            for fut in pending:
                i, stats, count = fut.result()
                results[i] = stats
                bar.update(count)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    bar.close()
    return n_shards, results


def build_dataset(cfg: Any) -> dict:
    """Build (or finish, or reuse) the dataset of a BuildDataConfig; returns metrics.

    Writes `dataset_dir(cfg)`: manifest.json, stats.json, stats.png and shards/ (none in
    stats-only mode), and the LLaMA-Factory export when `export=llamafactory`.
    """
    t0 = time.perf_counter()
    out = dataset_dir(cfg)
    chash = config_hash(cfg)
    fingerprint = current_input(cfg)
    if cfg.overwrite:
        _check_overwrite(out)  # refuse early, before taking the lock or deleting anything
    else:
        # refuse early, before taking the lock; a build in progress (its files, no manifest
        # yet) is checked again under the lock, once it has finished
        check_directory(out, cfg, chash, fingerprint, building_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    with _build_lock(out):
        if cfg.overwrite:
            # under the lock: a build still running in this directory finishes first
            _check_overwrite(out)
            removed = sh.remove_own_files(out)
            if removed:
                log.warning("overwrite=true: removed %d files of the previous dataset in %s", removed, out)
        return _build_locked(cfg, out, chash, t0, fingerprint)


def _check_overwrite(out: Path) -> None:
    """overwrite=true may delete only what the builder wrote: refuse anything else."""
    if not out.exists():
        return
    manifest = sh.read_manifest(out)
    if manifest is not None and not sh.is_dataset_manifest(manifest):
        raise DatasetConfigMismatch(
            f"overwrite=true: {out / sh.MANIFEST} is not a vtc-lab dataset manifest; refusing to "
            "delete anything in that directory. Choose another output_dir.")
    foreign = sh.foreign_files(out)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" ... ({len(foreign)} in all)" if len(foreign) > 5 else "")
        raise DatasetConfigMismatch(
            f"overwrite=true: {out} holds files vtc-lab build-data did not write ({shown}); "
            "refusing to delete anything. Move them away or choose another output_dir.")


@contextlib.contextmanager
def _build_lock(out: Path) -> Iterator[None]:
    """One builder per directory (e.g. every DDP rank calling ensure_dataset): the others wait,
    then find the dataset complete and reuse it. The OS drops the lock if its holder dies."""
    with open(out / sh.LOCK, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("%s is being built by another process; waiting for it", out)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _verify_shards(out: Path, indices: Any) -> set[int]:
    """The shards among `indices` whose files match their recorded checksums; damaged ones are
    named in a warning and deleted (the builder wrote them and rebuilds them)."""
    good = set()
    for i in sorted(indices):
        reason = sh.verify_shard(out, i)
        if reason is None:
            good.add(i)
        else:
            log.warning("shard %d is damaged and will be rebuilt: %s", i, reason)
            sh.remove_shard(out, i)
    return good


def _build_locked(cfg: Any, out: Path, chash: str, t0: float, fingerprint: dict | None) -> dict:
    manifest = check_directory(out, cfg, chash, fingerprint)
    verified: set[int] | None = None
    if (manifest is not None and manifest.get("status") == "complete"
            and manifest.get("mode") != "stats_only"):
        n = int(manifest.get("counts", {}).get("shards", 0))
        verified = _verify_shards(out, range(n))
        if len(verified) < n:
            manifest = None  # rebuild what is damaged; the rest is reused below
    if manifest is not None and manifest.get("status") == "complete":
        log.info("reusing %s (same config_hash %s, same input, shards verified)", out, chash[:12])
        stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
        _warn_if_not_compressing(stats, out)
        if cfg.export == "llamafactory" and not cfg.stats_only and not (out / "llamafactory").exists():
            from vtc_lab.data.export import export_llamafactory

            export_llamafactory(out)
        return _metrics(stats, out, chash, reused=True, seconds=time.perf_counter() - t0)
    removed = sh.remove_temporaries(out)
    if removed:
        log.info("removed %d temporary files of an interrupted build", removed)
    base = {
        "format_version": FORMAT_VERSION,
        "config_hash": chash,
        "identity": identity_config(cfg),
        "config": plain(cfg),
        "mode": "stats_only" if cfg.stats_only else "samples",
        "code_version": code_version(),
        "input": None if "missing" in (fingerprint or {}) else fingerprint,
    }
    atomic.write_json(out / sh.MANIFEST, {**base, "status": "building"})
    if cfg.stats_only:
        done: set[int] = set()
    else:
        done = verified if verified is not None else _verify_shards(out, sh.completed_shards(out))
    settings = SampleSettings(
        segmentation=cfg.segmentation, render=cfg.renderer, model=cfg.model,
        token_counter=cfg.data.token_counter, include_layouts=cfg.data.include_layouts,
        stats_only=cfg.stats_only, cache_dir=_cache_dir(cfg), render_hash=render_hash(cfg.renderer))
    skips: Counter = Counter()
    examples: dict[str, list[str]] = {}
    n_shards, fresh = _run_shards(cfg, settings, out, done, skips, examples)
    total = ShardStats()
    for i in range(n_shards):
        shard_stats = fresh.get(i)
        if shard_stats is None:
            shard_stats = sh.read_sidecar(out, i)["stats"]
        total.add(ShardStats.from_json(shard_stats))
    stale = [i for i in sh.completed_shards(out) if i >= n_shards]
    if stale:
        raise RuntimeError(f"{out}: shards {stale[:5]} beyond the {n_shards} this config produces; "
                           "the input data changed since the first run - rebuild with overwrite=true")
    stats = summarize(total, skips, 0 if cfg.stats_only else n_shards)
    stats["skip_examples"] = examples
    atomic.write_json(out / "stats.json", stats)
    plot_stats(stats, out / "stats.png", title=f"{cfg.data.name} / {cfg.segmentation.policy} "
                                               f"{cfg.segmentation.max_tokens} tok")
    seconds = time.perf_counter() - t0
    counts = {"problems": stats["problems"], "samples": stats["samples"], "shards": stats["shards"],
              "skipped": stats["skipped_total"]}
    files = {} if cfg.stats_only else sh.shard_checksums(out, range(n_shards))
    atomic.write_json(out / sh.MANIFEST, {**base, "status": "complete", "counts": counts,
                                             "files": files})
    print(format_stats(stats))
    _warn_if_not_compressing(stats, out)
    if cfg.export == "llamafactory" and not cfg.stats_only:
        from vtc_lab.data.export import export_llamafactory

        export_llamafactory(out)
    return _metrics(stats, out, chash, reused=False, seconds=seconds,
                    built_shards=len(fresh), resumed_shards=len(done))


def _warn_if_not_compressing(stats: dict, out: Path) -> None:
    """Loudly (logged at WARNING, and on stderr after the printed stats), on every build and
    reuse of a dataset whose pooled compression ratio is below 1."""
    message = compression_warning(stats)
    if message is not None:
        log.warning("%s: %s", out, message)
        print(f"\n{message}\n", file=sys.stderr)


def _cache_dir(cfg: Any) -> str | None:
    if not cfg.data.render_cache:
        return None
    return cfg.data.render_cache_dir or str(Path(cfg.output_root) / "cache" / "render")


DATASET_METRIC_KEYS = ("problems", "samples", "compression_ratio", "compression_ratio_with_delimiters",
                       "tokens_saved", "mean_segments_per_problem", "share_more_than_4_rounds",
                       "skipped_total", "truncated_segments", "invalid_utf8", "special_tokens")


def dataset_metrics(stats: dict) -> dict[str, float]:
    """The headline numbers of a dataset's stats.json as `data/<key>` metrics (what build-data
    logs, and what a training run logs about the dataset it trained on)."""
    return {f"data/{k}": stats[k] for k in DATASET_METRIC_KEYS if stats.get(k) is not None}


def _metrics(stats: dict, out: Path, chash: str, *, reused: bool, seconds: float,
             built_shards: int = 0, resumed_shards: int = 0) -> dict:
    metrics = dataset_metrics(stats)
    metrics.update({"data/seconds": round(seconds, 3), "data/built_shards": built_shards,
                    "data/resumed_shards": resumed_shards,
                    "data/samples_per_s": round(stats["samples"] / seconds, 3) if seconds > 0 else 0.0})
    return {**metrics, "path": str(out), "config_hash": chash, "reused": reused}


def ensure_dataset(build_cfg: Any) -> Path:
    """The dataset directory for `build_cfg`: reused if built with the same config from the same
    input (shards verified), built if missing, unfinished or damaged, refused
    (DatasetConfigMismatch / DatasetInputChanged) if it holds another config or input."""
    if build_cfg.stats_only:
        raise ValueError("ensure_dataset: stats_only=true builds no samples to train on")
    out = dataset_dir(build_cfg)
    manifest = check_directory(out, build_cfg, config_hash(build_cfg))
    if manifest is None or manifest.get("status") != "complete" or not build_cfg.overwrite:
        build_dataset(build_cfg)  # reuses a complete dataset after verifying its shards
    return out


def run_build_data(cfg: Any) -> dict:
    """`vtc-lab build-data`: build the dataset (`cfg`: a `BuildDataConfig`) and record the run
    (params, metrics, stats plot) in MLflow."""
    from vtc_lab.data.stats import dataset_input
    from vtc_lab.outputlock import OutputLock
    from vtc_lab.tracking import start_run

    # A second `vtc-lab build-data` into the same directory (an overwrite=true under a running
    # build included) is refused at once, naming the holder; training ranks that call
    # `ensure_dataset` instead wait on the builder's own lock and reuse what it built.
    with start_run(cfg.tracking, cfg, cfg.output_root, run_name=cfg.tracking.run_name) as run, \
            OutputLock(dataset_dir(cfg), job="vtc-lab build-data"):
        metrics = build_dataset(cfg)
        out = Path(metrics["path"])
        run.log_metrics({k: v for k, v in metrics.items() if k.startswith("data/")})
        stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
        run.log_metrics({f"data/segments_hist/{n}": count
                         for n, count in stats["segments_per_problem"].items()})
        run.log_metrics({f"data/skipped/{reason}": count for reason, count in stats["skipped"].items()})
        run.set_tags({"dataset_path": str(out.resolve()), "dataset_config_hash": metrics["config_hash"]})
        run.log_dataset(**dataset_input(out), context="build")
        for name in ("stats.json", "stats.png", "manifest.json"):
            if (out / name).exists():
                run.log_artifact(out / name, subdir="dataset")
    return metrics
