"""Side-by-side cost of the three loops and of batching, on the tiny backbone (CPU).

What it measures (one process, same model, same problems, same budgets, greedy decoding):
  1. optical vs text vs none: samples/s, latency mean/p50/p90, peak and mean context tokens,
     KV-cache bytes, compression ratio of the rendered memory, render share of the time;
     ratios text/optical for context tokens and latency.
  2. batching: the `none` loop at batch_size=1 vs --batch-size (left-padded batched generate).

Workloads:
  --workload random     the random-init model's own (noise) output, full budget every round.
  --workload solutions  the model is forced (logits processor) to write real math text: the
                        problem's MATH500 reference solution, repeated to fill the rounds, then
                        `</think><answer>..</answer>` in the last round. The real model still runs
                        every prefill and decode step, and the real renderer draws real text, so
                        context tokens and compression are those of math reasoning text.
Either way this is a cost benchmark, not an accuracy one.

    python experiments/perf/infer_loops.py --problems 8 --rounds 4 --new-tokens 64
    python experiments/perf/infer_loops.py --workload solutions --rounds 4 --new-tokens 512
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _forced_engine_class():
    import torch

    from vtc_lab.infer.engine import HFEngine

    class Force:
        """Logits processor: row i must emit targets[i][t] at step t, then end its turn."""

        def __init__(self, targets: list[list[int]], eos: int, prompt_width: int):
            self.targets, self.eos, self.width = targets, eos, prompt_width

        def __call__(self, input_ids, scores):
            t = input_ids.shape[1] - self.width
            out = torch.full_like(scores, float("-inf"))
            for row, target in enumerate(self.targets):
                out[row, target[t] if t < len(target) else self.eos] = 0.0
            return out

    class ForcedEngine(HFEngine):
        """HFEngine whose output is each problem's reference solution, cut into rounds."""

        def __init__(self, backbone, problems, rounds: int, tokens_per_round: int, **kwargs):
            super().__init__(backbone, **kwargs)
            self.chunks: dict[str, list[list[int]]] = {}
            for p in problems:
                ids = self.tokenizer(p.meta.get("solution") or p.question,
                                     add_special_tokens=False)["input_ids"]
                ids = (ids * (rounds * tokens_per_round // max(len(ids), 1) + 1))
                chunks = [ids[r * tokens_per_round:(r + 1) * tokens_per_round] for r in range(rounds)]
                chunks[-1] = chunks[-1] + self.tokenizer(
                    f"</think>\n<answer>{p.gold}</answer>", add_special_tokens=False)["input_ids"]
                self.chunks[p.question] = chunks
            self.reset()

        def reset(self) -> None:
            self.calls: dict[str, int] = {}

        def logits_processors(self, requests, params, device):
            targets = []
            for r in requests:
                q = next(part["text"] for part in r.messages[-1]["content"] if part["type"] == "text")
                n = self.calls.get(q, 0)
                self.calls[q] = n + 1
                targets.append(self.chunks[q][min(n, len(self.chunks[q]) - 1)])
            widths = [self.encode(r)["input_ids"].shape[1] for r in requests]
            return [Force(targets, self.stop_ids[0], max(widths))]

    return ForcedEngine


def parity(engine, problems) -> None:
    """Batched vs alone, same seeds: identical tokens is what resumption relies on."""
    from vtc_lab.data.messages import build_messages
    from vtc_lab.infer.engine import GenerationParams, GenerationRequest

    reqs = [GenerationRequest(build_messages(p.question, [], None), seed=i)
            for i, p in enumerate(problems)]
    for sample in (False, True):
        params = GenerationParams(max_new_tokens=64, do_sample=sample, temperature=1.0, top_p=0.95)
        batched = engine.generate(reqs, params)
        same = sum(engine.generate([r], params)[0].token_ids == b.token_ids
                   for r, b in zip(reqs, batched))
        print(f"parity ({'sampled' if sample else 'greedy'}, 64 tokens): {same}/{len(reqs)} "
              "requests identical batched vs alone")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--model", default="tiny_qwen3_vl", choices=["tiny_qwen3_vl", "tiny_glm4v"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workload", default="random", choices=["random", "solutions"])
    parser.add_argument("--device", default="cpu", help="cpu | cuda (dtype: the model's auto)")
    parser.add_argument("--no-reuse", action="store_true",
                        help="engine without the cross-round caches (pixels, vision features, "
                             "KV prefix): the before of the reuse measurement")
    parser.add_argument("--parity", action="store_true",
                        help="also report how often a request's batched output equals its "
                             "output alone (greedy and sampled), the basis of exact resumption")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    ForcedEngine = _forced_engine_class()  # noqa: N806 - a class, built after torch is imported
    from vtc_lab.infer.config import LoopConfig
    from vtc_lab.infer.engine import HFEngine
    from vtc_lab.infer.evaluate import load_problems
    from vtc_lab.infer.loop import LoopStats, run_loop
    from vtc_lab.infer.metrics import efficiency_metrics
    from vtc_lab.models import ModelConfig, load_backbone
    from vtc_lab.render import RenderConfig

    arch = "glm4v" if args.model == "tiny_glm4v" else "qwen3_vl"
    backbone = load_backbone(ModelConfig(name=args.model, arch=arch))
    backbone.model.to(args.device).eval()
    problems = load_problems("math500", args.problems, 0)
    reuse = dict(reuse_vision=not args.no_reuse, reuse_prefix=not args.no_reuse)
    if args.workload == "solutions":
        engine = ForcedEngine(backbone, problems, args.rounds, args.new_tokens, **reuse)
    else:
        engine = HFEngine(backbone, **reuse)
    kv = engine.kv_bytes_per_token()

    def run(mode: str, batch_size: int) -> dict[str, float]:
        if isinstance(engine, ForcedEngine):
            engine.reset()
        budget = args.new_tokens + (64 if args.workload == "solutions" else 0)  # room for the answer
        cfg = LoopConfig(mode=mode, max_rounds=args.rounds, max_new_tokens=budget,
                         do_sample=False, batch_size=batch_size)
        stats = LoopStats()
        recs = run_loop(engine, problems, cfg, RenderConfig(), None, progress=False, stats=stats)
        m = efficiency_metrics(recs, args.rounds, kv, stats.wall_s)
        m["kv_cache_peak_bytes_batch"] = stats.kv_cache_peak_bytes_batch
        return m

    run("none", args.batch_size)  # warm-up (allocator, kernels, tokenizer caches)
    print(f"# workload={args.workload}, {args.model}, {args.problems} MATH500 problems, {args.rounds} rounds x "
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

    if torch.cuda.is_available() and args.device.startswith("cuda"):
        print(f"peak CUDA memory: {torch.cuda.max_memory_allocated() / 2**20:.1f} MiB, dtype "
              f"{next(backbone.model.parameters()).dtype}, {torch.cuda.get_device_name()}")
    if args.parity:
        parity(HFEngine(backbone), problems)
    single = run("none", 1)
    batched = results["none"]
    print(f"batching (none loop): batch 1 {single['samples_per_s']:.3f} samples/s, batch "
          f"{args.batch_size} {batched['samples_per_s']:.3f} samples/s -> "
          f"{batched['samples_per_s'] / single['samples_per_s']:.2f}x")


if __name__ == "__main__":
    main()
