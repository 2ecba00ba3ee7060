"""Dataset statistics: the compression ratio and rounds histogram users sweep configs by.

Compression ratio = text tokens of the rendered memory segments / vision tokens of their pages,
pooled (sum over sum), each segment counted once (segments 1..n-1 of every problem; the last
segment is never memory). "with delimiters" adds the image-boundary tokens of each page (2 for
Qwen and GLM).
Tokens saved = over all samples, memory text tokens minus memory vision tokens: the context the
model no longer reads as text.
"""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

from vtc_lab import atomic

from vtc_lab.data.samples import ShardStats


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def summarize(total: ShardStats, source_skips: Counter, shards: int) -> dict:
    """The stats.json object (deterministic: same data and config -> same file)."""
    hist = {str(k): v for k, v in sorted(total.segments_hist.items())}
    problems = total.problems
    delim = total.memory_delimiter_tokens
    sample_delim = total.sample_delimiter_tokens
    skipped = Counter(source_skips) + total.skipped
    return {
        "problems": problems,
        "samples": total.samples,
        "shards": shards,
        "segments_per_problem": hist,
        "mean_segments_per_problem": _ratio(total.samples, problems),
        "share_more_than_4_rounds": _ratio(sum(v for k, v in total.segments_hist.items() if k > 4), problems),
        "compression_ratio": _ratio(total.memory_text_tokens, total.memory_vision_tokens),
        "compression_ratio_with_delimiters": _ratio(total.memory_text_tokens, total.memory_vision_tokens + delim),
        "memory_segments": total.memory_segments,
        "memory_pages": total.memory_pages,
        "memory_text_tokens": total.memory_text_tokens,
        "memory_vision_tokens": total.memory_vision_tokens,
        "tokens_saved": total.sample_memory_text_tokens - total.sample_memory_vision_tokens,
        "tokens_saved_with_delimiters": total.sample_memory_text_tokens - total.sample_memory_vision_tokens - sample_delim,
        "sample_memory_text_tokens": total.sample_memory_text_tokens,
        "sample_memory_vision_tokens": total.sample_memory_vision_tokens,
        "sample_images": total.sample_images,
        "target_tokens": total.target_tokens,
        "mean_target_tokens": _ratio(total.target_tokens, total.samples),
        "trace_text_tokens": total.trace_text_tokens,
        "missing_glyphs": total.missing_glyphs,
        "dropped_chars": total.dropped_chars,
        "truncated_segments": total.truncated_segments,
        "invalid_utf8": total.invalid_utf8,
        "special_tokens": total.special_tokens,
        "skipped": dict(sorted(skipped.items())),
        "skipped_total": sum(skipped.values()),
        "image_delimiter_tokens": delim,
    }


def _x(value: float | None) -> str:
    return "n/a (no memory segments)" if value is None else f"{value}x"


def compression_warning(stats: dict) -> str | None:
    """The warning a build prints when its memory pages cost more tokens than their text (pooled
    compression ratio below 1): training on such data teaches the opposite of the method.
    None when the ratio is >= 1 or there is no memory."""
    ratio = stats.get("compression_ratio")
    if ratio is None or ratio >= 1:
        return None
    return (f"WARNING: this dataset's optical memory does not compress: pooled compression ratio "
            f"{ratio}x < 1 ({stats['memory_text_tokens']} text tokens rendered into "
            f"{stats['memory_vision_tokens']} vision tokens; {stats['tokens_saved']} tokens saved "
            f"over the samples). The pages cost more context than the text they replace. Longer "
            f"rounds (segmentation.max_tokens) or a lower pixel floor (model.min_pixels) make a "
            f"page cheaper than its text.")


def format_stats(stats: dict) -> str:
    """A short human-readable summary (printed at the end of a build)."""
    hist = "  ".join(f"{k}:{v}" for k, v in stats["segments_per_problem"].items()) or "-"
    skipped = ", ".join(f"{k}={v}" for k, v in stats["skipped"].items()) or "none"
    return "\n".join([
        f"problems {stats['problems']}  samples {stats['samples']}  shards {stats['shards']}",
        f"segments per problem: {hist}  (mean {stats['mean_segments_per_problem']}, "
        f">4 rounds {stats['share_more_than_4_rounds']})",
        f"compression ratio (pooled, memory segments): {_x(stats['compression_ratio'])} "
        f"({_x(stats['compression_ratio_with_delimiters'])} counting image delimiters)",
        f"memory tokens over samples: text {stats['sample_memory_text_tokens']} -> vision "
        f"{stats['sample_memory_vision_tokens']} (saved {stats['tokens_saved']})",
        f"skipped: {skipped}",
        *_warnings(stats),
    ])


def _warnings(stats: dict) -> list[str]:
    """Lines for what was changed in the data rather than skipped (never silent)."""
    out = []
    if stats.get("invalid_utf8"):
        out.append(f"invalid UTF-8 replaced by U+FFFD: {stats['invalid_utf8']} sequence(s) in kept traces")
    if stats.get("special_tokens"):
        out.append(f"special tokens / image placeholders made inert: {stats['special_tokens']}")
    if stats.get("truncated_segments"):
        out.append(f"memory segments cut at the renderer's page cap (renderer.max_pages): "
                   f"{stats['truncated_segments']}")
    bad = stats.get("skip_examples", {}).get("bad_input_file")
    if bad:
        out.append("unreadable input skipped: " + "; ".join(bad))
    return out


def plot_stats(stats: dict, path: Path, title: str = "") -> Path:
    """stats.png: rounds-per-problem histogram (the paper's Figure 3) with the pooled ratio."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hist = {int(k): v for k, v in stats["segments_per_problem"].items()}
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    if hist:
        xs = list(range(1, max(hist) + 1))
        ax.bar(xs, [hist.get(x, 0) for x in xs], color="#4C72B0")
        ax.set_xticks(xs if len(xs) <= 20 else xs[:: max(1, len(xs) // 20)])
    ax.set_xlabel("segments (rounds) per problem")
    ax.set_ylabel("problems")
    ratio = stats["compression_ratio"]
    ax.set_title((title + "\n" if title else "") +
                 f"{stats['problems']} problems, {stats['samples']} samples, "
                 f"compression {ratio if ratio is not None else '-'}x", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic.write_bytes(path, buf.getvalue())
    return path


#: Counts of a dataset recorded with its MLflow dataset input (the runs table's Dataset column).
INPUT_PROFILE_KEYS = ("problems", "samples", "memory_pages", "sample_images", "compression_ratio",
                      "skipped_total")


def dataset_input(path: str | Path) -> dict:
    """A built dataset as an MLflow dataset input (`RunHandle.log_dataset(**this, context=...)`):
    its data source name, its config hash (12 hex, as in the directory name) as the digest, its
    directory as the source, and its counts from stats.json, so runs can be filtered and grouped
    by the data they used."""
    import json

    path = Path(path)
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    stats_file = path / "stats.json"
    stats = json.loads(stats_file.read_text(encoding="utf-8")) if stats_file.exists() else {}
    name = (manifest.get("config") or {}).get("data", {}).get("name") or path.name
    return {"name": name, "digest": str(manifest["config_hash"])[:12], "source": path.resolve(),
            "profile": {k: stats[k] for k in INPUT_PROFILE_KEYS if stats.get(k) is not None}}
