"""Side-by-side cost of the three loops and of batching, on the tiny backbone (CPU).

What it measures (one process, same model, same problems, same budgets, greedy decoding):
  1. optical vs text vs none: samples/s, latency mean/p50/p90, peak and mean context tokens,
     KV-cache bytes, compression ratio of the rendered memory, render share of the time;
     ratios text/optical for context tokens and latency.
  2. batching: the `none` loop at batch_size=1 vs --batch-size (left-padded batched generate).

The tiny model is random-init, so its text is noise and it never finishes early: every sample
runs all rounds at the full budget, which makes this a cost benchmark, not an accuracy one.

    python experiments/perf/infer_loops.py --problems 8 --rounds 4 --new-tokens 64
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--model", default="tiny_qwen3_vl", choices=["tiny_qwen3_vl", "tiny_glm4v"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from vtc_lab.infer.config import LoopConfig
    from vtc_lab.infer.engine import HFEngine
    from vtc_lab.infer.evaluate import load_problems
    from vtc_lab.infer.loop import LoopStats, run_loop
    from vtc_lab.infer.metrics import efficiency_metrics
    from vtc_lab.models import ModelConfig, load_backbone
    from vtc_lab.render import RenderConfig

    arch = "glm4v" if args.model == "tiny_glm4v" else "qwen3_vl"
    engine = HFEngine(load_backbone(ModelConfig(name=args.model, arch=arch)))
    problems = load_problems("math500", args.problems, 0)
    kv = engine.kv_bytes_per_token()

    def run(mode: str, batch_size: int) -> dict[str, float]:
        cfg = LoopConfig(mode=mode, max_rounds=args.rounds, max_new_tokens=args.new_tokens,
                         do_sample=False, batch_size=batch_size)
        stats = LoopStats()
        recs = run_loop(engine, problems, cfg, RenderConfig(), None, progress=False, stats=stats)
        m = efficiency_metrics(recs, args.rounds, kv, stats.wall_s)
        m["kv_cache_peak_bytes_batch"] = stats.kv_cache_peak_bytes_batch
        return m

    run("none", args.batch_size)  # warm-up (allocator, kernels, tokenizer caches)
    print(f"# {args.model}, {args.problems} MATH500 problems, {args.rounds} rounds x "
          f"{args.new_tokens} new tokens, batch {args.batch_size}, greedy, "
          f"{args.threads} thread(s), torch {torch.__version__}")
    results = {}
    for mode in ("optical", "text", "none"):
        t0 = time.perf_counter()
        results[mode] = run(mode, args.batch_size)
        results[mode]["wall"] = time.perf_counter() - t0
    keys = [("samples_per_s", ".3f"), ("latency_mean_s", ".2f"), ("latency_p50_s", ".2f"),
            ("latency_p90_s", ".2f"), ("context_tokens_peak", ".0f"), ("context_tokens_mean", ".1f"),
            ("kv_cache_peak_bytes_per_sample", ".0f"), ("compression_ratio", ".2f"),
            ("render_share", ".3f"), ("generated_tokens_mean", ".1f")]
    print(f"{'metric':<32}{'optical':>12}{'text':>12}{'none':>12}")
    for key, fmt in keys:
        print(f"{key:<32}" + "".join(f"{results[m].get(key, 0):>12{fmt}}" for m in results))
    o, t = results["optical"], results["text"]
    print(f"text/optical peak context tokens : {t['context_tokens_peak'] / o['context_tokens_peak']:.2f}x")
    print(f"text/optical mean context tokens : {t['context_tokens_mean'] / o['context_tokens_mean']:.2f}x")
    print(f"text/optical mean latency        : {t['latency_mean_s'] / o['latency_mean_s']:.2f}x")

    single = run("none", 1)
    batched = results["none"]
    print(f"batching (none loop): batch 1 {single['samples_per_s']:.3f} samples/s, batch "
          f"{args.batch_size} {batched['samples_per_s']:.3f} samples/s -> "
          f"{batched['samples_per_s'] / single['samples_per_s']:.2f}x")


if __name__ == "__main__":
    main()
