"""Latency of the text loop vs the optical loop on the real Qwen3-VL / GLM-4.1V classes.

The real transformers classes are built from configs with random weights (latency and memory do
not depend on the weights' values): `--scale cpu` divides the published 8B/9B widths by 8 and
the depths by 9 (same layer types, head layout as close as the division allows, the real vision
tower geometry: patch, merge and temporal sizes, so a page costs the real number of vision
tokens); `--scale paper` uses the published dimensions (a GPU with ~40 GB).

Reasoning lengths are forced: the engine is `HFEngine` with one extra logits processor that makes
generation emit the next tokens of real math text (MATH500 reference solutions, concatenated)
and never the end-of-turn token, so every round runs exactly its budget. Per total length T:
  text     one generation of T tokens (`run_loop`, mode text, 1 round of T)
  optical  T/S rounds of S tokens, each round rendered with the default renderer and fed back
           as pages (`run_loop`, mode optical), with the engine's cross-round reuse on and off
Same loop, engine, renderer and processor as `vtc-lab eval`; greedy, KV cache on; `--batch`
runs each configuration with that many problems in one batch (every row forced to its own text,
so no two rows render the same page).

Throughput mode (`--throughput-kv-mb M`): requests per second at a fixed K/V memory budget. For
each model, T and the first S, the batch-1 runs give each loop's peak K/V bytes per request; the
loop then runs floor(M MiB / that) problems at once (capped by `--max-batch`), and requests/s =
problems / wall time. The optical loop's smaller context fits more requests into the same memory:
the CPU-sized counterpart of the cost model's `throughput`.

Per configuration: wall latency and its split (render, preprocessing = chat template + image
preprocessing + tokenization, vision tower, prefill, decode), peak KV-cache bytes, peak memory
(RSS growth on CPU, allocated on GPU), tokens prefilled / reused / generated, compression ratio;
speedup = text latency / optical latency. Results go to a JSON file (the cost model's validation
reads it: `python -m vtc_lab.infer.costmodel validate <json>`) and, unless --tracking off, to
MLflow (experiment `perf-loop-latency`, one run per point) where `vtc-lab report
tracking.experiment=perf-loop-latency` plots the speedup curve.

    python experiments/perf/loop_latency.py --quick
    python experiments/perf/loop_latency.py --quick --batch 1,4 --throughput-kv-mb 2
    python experiments/perf/loop_latency.py --total 1024,2048,4096 --round 1024
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Published dimensions (config.json of Qwen/Qwen3-VL-8B-Instruct and THUDM/GLM-4.1V-9B-Thinking).
PAPER = {
    "qwen3_vl": dict(hidden_size=4096, num_layers=36, num_heads=32, num_kv_heads=8, head_dim=128,
                     intermediate_size=12288, vision_depth=27, vision_hidden_size=1152,
                     vision_heads=16, vision_intermediate_size=4304, patch_size=16),
    "glm4v": dict(hidden_size=4096, num_layers=40, num_heads=32, num_kv_heads=2, head_dim=128,
                  intermediate_size=13696, vision_depth=24, vision_hidden_size=1536,
                  vision_heads=12, vision_intermediate_size=13696, patch_size=14),
}
WIDTH_DIV, DEPTH_DIV = 8, 9


def model_config(arch: str, scale: str, vocab: int):
    """The `ModelConfig` of a random-init backbone at paper or CPU scale."""
    from vtc_lab.models import ModelConfig
    from vtc_lab.models.config import TinySpec

    d = dict(PAPER[arch])
    if scale == "cpu":
        for key in ("hidden_size", "intermediate_size", "vision_hidden_size", "vision_intermediate_size"):
            d[key] //= WIDTH_DIV
        for key in ("num_heads", "num_kv_heads", "vision_heads"):
            d[key] = max(1, d[key] // WIDTH_DIV)
        d["head_dim"] = d["hidden_size"] // d["num_heads"]
        for key in ("num_layers", "vision_depth"):
            d[key] = max(1, round(d[key] / DEPTH_DIV))
    if arch == "glm4v":
        d.pop("head_dim")  # GLM-4.1V: head_dim = hidden / heads
    spec = TinySpec(**d, vocab_size=vocab, max_position_embeddings=65536)
    name = f"{arch}_{scale}"
    return ModelConfig(name=name, arch=arch, tiny=spec)


def forcing_engine_class():
    import torch

    from vtc_lab.infer.engine import HFEngine

    class Force:
        """Row r must emit rows[r][t] at step t (never the end-of-turn token)."""

        def __init__(self, rows: list[list[int]]):
            self.rows, self.width = rows, None
            self.index = None

        def __call__(self, input_ids, scores):
            if self.width is None:
                self.width = input_ids.shape[1]
                self.index = torch.tensor(self.rows, device=scores.device)
            t = min(input_ids.shape[1] - self.width, len(self.rows[0]) - 1)
            out = torch.full_like(scores, float("-inf"))
            out.scatter_(1, self.index[:, t:t + 1], 0.0)
            return out

    class ForcingEngine(HFEngine):
        """HFEngine whose generations are the next `max_new_tokens` ids of a text stream."""

        def __init__(self, backbone, stream: list[int], **kwargs):
            super().__init__(backbone, **kwargs)
            self.stream, self.pos = stream, 0

        def logits_processors(self, requests, params, device):
            n, rows = params.max_new_tokens, len(requests)
            if self.pos + rows * n > len(self.stream):
                raise ValueError(f"forced text exhausted: {self.pos + rows * n} > "
                                 f"{len(self.stream)} tokens")
            targets = [self.stream[self.pos + r * n:self.pos + (r + 1) * n] for r in range(rows)]
            self.pos += rows * n
            return [Force(targets)]

        def rewind(self) -> None:
            self.pos = 0  # long runs reuse the text (pages are cached per engine, not across)

    return ForcingEngine


class PeakMemory:
    """Peak memory growth during a block: RSS sampled every 5 ms (CPU) or CUDA's allocator."""

    def __init__(self, device: str):
        self.device, self.peak, self._stop = device, 0, threading.Event()

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self):
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
            return self
        self.base = self._rss()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._rss() - self.base)

    def __exit__(self, *exc):
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.base
        else:
            self._stop.set()
            self.thread.join()
            self.peak = max(self.peak, self._rss() - self.base)


def measure(backbone, stream, mode: str, total: int, round_tokens: int, reuse: bool,
            device: str, batch: int = 1, static_cache: bool = False) -> dict:
    """One forced run of one loop; the latency split and the counters."""
    from vtc_lab.eval.benchmarks import Problem
    from vtc_lab.infer.config import LoopConfig
    from vtc_lab.infer.loop import LoopStats, run_loop
    from vtc_lab.render import RenderConfig

    engine = forcing_engine_class()(backbone, stream, reuse_vision=reuse, reuse_prefix=reuse,
                                    static_cache=static_cache)
    rounds, budget = (1, total) if mode == "text" else (total // round_tokens, round_tokens)
    if batch * total > len(stream):
        raise ValueError(f"--batch {batch} x T={total} needs {batch * total} forced tokens, the "
                         f"text has {len(stream)}")
    cfg = LoopConfig(mode=mode, max_rounds=rounds, max_new_tokens=budget, do_sample=False,
                     batch_size=batch)
    problems = [Problem(id=f"p{i}", question="Solve the problem; reason step by step.", gold="0",
                        benchmark="math500") for i in range(batch)]
    stats = LoopStats()
    with PeakMemory(device) as mem:
        recs = run_loop(engine, problems, cfg, RenderConfig(), None, progress=False, stats=stats)
    rec = recs[0]
    s = engine.stats
    render = sum(r.render_s for r in rec.rounds)
    parts = dict(render_s=render, preprocess_s=s.preprocess_s, vision_s=s.vision_s,
                 prefill_s=s.prefill_s, decode_s=s.decode_s)
    mem_text = sum(r.memory_text_tokens for r in rec.rounds[:-1])
    mem_vision = sum(r.memory_vision_tokens for r in rec.rounds[:-1])
    return dict(mode=mode, reuse=reuse, batch=batch, latency_s=stats.wall_s,
                requests_per_s=batch / stats.wall_s, **parts,
                other_s=stats.wall_s - sum(parts.values()), rounds=len(rec.rounds),
                generated_tokens=s.generated_tokens, prompt_tokens=s.prompt_tokens,
                prefill_tokens=s.prefill_tokens, reused_tokens=s.reused_tokens,
                images=s.images, images_encoded=s.images_encoded,
                context_peak_tokens=max(r.context_text_tokens + r.context_vision_tokens
                                        for r in rec.rounds),
                vision_tokens_last=rec.rounds[-1].context_vision_tokens,
                text_tokens_last=rec.rounds[-1].context_text_tokens,
                memory_text_tokens=mem_text, memory_vision_tokens=mem_vision,
                compression=mem_text / mem_vision if mem_vision else 0.0,
                kv_peak_bytes=stats.kv_cache_peak_bytes_batch, peak_mem_bytes=mem.peak)


def model_dims(backbone) -> dict:
    """What the cost model needs to know about a backbone (read off the built model)."""
    cfg = backbone.model.config
    text, vision = cfg.get_text_config(), cfg.vision_config
    params = sum(p.numel() for p in backbone.model.parameters())
    vis_params = sum(p.numel() for n, p in backbone.model.named_parameters() if "visual" in n)
    return dict(arch=backbone.arch, layers=text.num_hidden_layers, hidden=text.hidden_size,
                heads=text.num_attention_heads, kv_heads=text.num_key_value_heads,
                head_dim=getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads,
                intermediate=text.intermediate_size, vocab=text.vocab_size,
                vision_layers=vision.depth, vision_hidden=vision.hidden_size,
                vision_intermediate=vision.intermediate_size,
                patches_per_token=vision.spatial_merge_size ** 2,
                params=params, vision_params=vis_params,
                bytes_per_param=next(backbone.model.parameters()).element_size())


def log_point(args, point: dict) -> None:
    from vtc_lab.tracking import TrackingConfig, start_run

    tracking = TrackingConfig(mode=args.tracking, experiment="perf-loop-latency", log_config=False)
    name = f"{point['model']} T={point['total']} S={point['round']} reuse={point['reuse']}" + \
        (f" B={point['batch']}" if point.get("batch", 1) > 1 else "")
    with start_run(tracking, None, args.output_root, run_name=name) as run:
        run.log_params({"bench.model": point["model"], "bench.total_tokens": point["total"],
                        "bench.round_tokens": point["round"], "bench.reuse": point["reuse"],
                        "bench.batch": point.get("batch", 1),
                        "bench.scale": args.scale, "bench.device": args.device,
                        "bench.threads": args.threads})
        metrics = {"perf/speedup": point["speedup"]}
        for mode in ("text", "optical"):
            for key, value in point[mode].items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    metrics[f"perf/{mode}/{key}"] = value
        run.log_metrics(metrics)


def build(arch: str, args):
    """The random-init backbone, built directly on the device (an 8B model initialised on the
    CPU first would take minutes and twice the host memory)."""
    import torch

    from vtc_lab.models import load_backbone

    with torch.device(args.device):
        backbone = load_backbone(model_config(arch, args.scale, args.vocab))
    backbone.model.to(args.device).eval()
    return backbone


def throughput_point(backbone, stream, arch: str, total: int, round_tokens: int, single: dict,
                     args) -> dict:
    """Requests/s of each loop with as many requests as its batch-1 peak K/V fits in the budget."""
    budget = args.throughput_kv_mb * (1 << 20)
    out = dict(model=arch, total=total, round=round_tokens, kv_budget_bytes=budget)
    for mode in ("text", "optical"):
        per_request = single[mode]["kv_peak_bytes"]
        fit = max(1, min(args.max_batch, int(budget // per_request)))
        run = measure(backbone, stream, mode, total, total if mode == "text" else round_tokens,
                      mode == "optical", args.device, batch=fit, static_cache=args.static_cache)
        out[mode] = dict(concurrency=fit, kv_peak_bytes_per_request=per_request,
                         kv_peak_bytes_batch=run["kv_peak_bytes"], latency_s=run["latency_s"],
                         requests_per_s=run["requests_per_s"], decode_s=run["decode_s"])
    out["throughput_ratio"] = out["optical"]["requests_per_s"] / out["text"]["requests_per_s"]
    print(f"{arch} T={total} S={round_tokens} throughput at {args.throughput_kv_mb} MiB of K/V: "
          f"text {out['text']['requests_per_s']:.3f} req/s ({out['text']['concurrency']} at once) "
          f"optical {out['optical']['requests_per_s']:.3f} req/s ({out['optical']['concurrency']} "
          f"at once) ratio {out['throughput_ratio']:.2f}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="qwen3_vl,glm4v")
    parser.add_argument("--total", default="1024,2048,4096", help="total reasoning lengths T")
    parser.add_argument("--round", default="1024", help="round lengths S (T/S rounds)")
    parser.add_argument("--reuse", default="on,off", help="optical runs with reuse on and/or off")
    parser.add_argument("--batch", default="1", help="batch sizes (problems per generate call)")
    parser.add_argument("--scale", default="cpu", choices=["cpu", "paper"])
    parser.add_argument("--vocab", type=int, default=4096,
                        help="tiny BPE vocabulary (CPU scale; the real 152k-token vocab cannot "
                             "be rebuilt offline)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--static-cache", action="store_true",
                        help="HFEngine's static-cache mode (compiled decode step on a GPU)")
    parser.add_argument("--throughput-kv-mb", type=float, default=0.0,
                        help="also measure requests/s at this K/V budget (MiB); 0 = off")
    parser.add_argument("--max-batch", type=int, default=32,
                        help="most requests at once in the throughput mode")
    parser.add_argument("--quick", action="store_true", help="T=512,1024, S=256, qwen3_vl only")
    parser.add_argument("--json", default="vtc-runs/perf/loop_latency.json")
    parser.add_argument("--tracking", default="local", choices=["local", "off"])
    parser.add_argument("--output-root", default="vtc-runs")
    args = parser.parse_args()
    if args.quick:
        args.models, args.total, args.round = "qwen3_vl", "512,1024", "256"
    if args.throughput_kv_mb > 0 and ("1" not in args.batch.split(",") or "on" not in args.reuse):
        parser.error("--throughput-kv-mb needs batch 1 and reuse on among the runs (their peak "
                     "K/V per request sets how many requests fit)")

    import torch

    torch.set_num_threads(args.threads)
    from vtc_lab.infer.evaluate import load_problems

    totals = [int(x) for x in args.total.split(",")]
    rounds = [int(x) for x in args.round.split(",")]
    reuses = [x == "on" for x in args.reuse.split(",")]
    batches = [int(x) for x in args.batch.split(",")]
    solutions = "\n\n".join(p.meta.get("solution") or p.question for p in load_problems("math500", 500, 0))
    points, dims, throughputs = [], {}, []
    print(f"# {args.scale} scale, {args.device}, {args.threads} thread(s), torch {torch.__version__}, "
          f"load average {os.getloadavg()[0]:.1f} at start", flush=True)
    for arch in args.models.split(","):
        backbone = build(arch, args)
        dims[arch] = model_dims(backbone)
        stream = backbone.tokenizer(solutions, add_special_tokens=False)["input_ids"]
        banned = set(backbone.tokenizer.all_special_ids) | {
            backbone.tokenizer.convert_tokens_to_ids("</think>")}
        stream = [t for t in stream if t not in banned]
        measure(backbone, stream, "optical", 2 * min(rounds), min(rounds), True, args.device,
                static_cache=args.static_cache)  # warm-up (and compilation)
        print(f"## {arch}: {dims[arch]['params'] / 1e6:.1f} M parameters "
              f"({dims[arch]['vision_params'] / 1e6:.1f} M vision)", flush=True)
        for total in totals:
            singles = {}
            for batch in batches:
                text = measure(backbone, stream, "text", total, total, False, args.device, batch,
                               args.static_cache)
                for round_tokens in [s for s in rounds if s < total and total % s == 0]:
                    for reuse in reuses:
                        optical = measure(backbone, stream, "optical", total, round_tokens, reuse,
                                          args.device, batch, args.static_cache)
                        point = dict(model=arch, total=total, round=round_tokens, reuse=reuse,
                                     batch=batch, text=text, optical=optical,
                                     speedup=text["latency_s"] / optical["latency_s"],
                                     load=os.getloadavg()[0])
                        points.append(point)
                        if batch == 1 and reuse and round_tokens not in singles:
                            singles[round_tokens] = dict(text=text, optical=optical)
                        o = optical
                        print(f"{arch} T={total} S={round_tokens} B={batch} "
                              f"reuse={'on ' if reuse else 'off'} "
                              f"text {text['latency_s']:.2f}s optical {o['latency_s']:.2f}s "
                              f"(render {o['render_s']:.2f} prep {o['preprocess_s']:.2f} vision "
                              f"{o['vision_s']:.2f} prefill {o['prefill_s']:.2f} decode "
                              f"{o['decode_s']:.2f}) speedup {point['speedup']:.2f}x  "
                              f"ctx {text['context_peak_tokens']}/{o['context_peak_tokens']} "
                              f"compr {o['compression']:.2f} load {point['load']:.1f}", flush=True)
                        if args.tracking != "off":
                            log_point(args, point)
            if args.throughput_kv_mb > 0 and singles:
                round_tokens = min(singles)
                throughputs.append(throughput_point(backbone, stream, arch, total, round_tokens,
                                                    singles[round_tokens], args))
        del backbone
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"scale": args.scale, "device": args.device, "threads": args.threads,
                               "torch": torch.__version__, "static_cache": args.static_cache,
                               "models": dims, "points": points, "throughput": throughputs},
                              indent=1))
    print(f"# wrote {out}; load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
