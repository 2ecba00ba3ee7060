"""`engine=openai`: the loop's lockstep batches against per-sample scheduling, side by side.

A server with uneven per-request latency (tests/infer/fake_openai.py on 127.0.0.1: every
generation sleeps `--latency` plus a uniform jitter up to `--jitter`, deterministic per prompt;
the fake model ends a round with an answer one time in three) is driven twice per seed, the same
problems and settings:

- batched (`engine.per_sample=false`, the schedule before): batches of `--concurrency` samples,
  each round of a batch waits for its slowest request;
- per sample (`engine.per_sample=true`): `--concurrency` samples in flight, each sample's next
  round sent as soon as its previous one returns.

Sampling is on, so each seed draws other round counts (another workload). The script checks that
both schedules give the same records, and prints problems/s for each and their ratio, with the
mean and a 95 % t-interval over the seeds.

    python experiments/perf/openai_pipeline.py --problems 96 --concurrency 16 --seeds 0,1,2

The client and the fake server share this process (their threads share one GIL); the server's
sleeps stand in for GPU time, so the numbers measure scheduling, not a model.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def comparable(records) -> list:
    return [(r.problem_id, r.sample, r.status, r.output,
             [(x.text, x.generated_tokens, x.context_text_tokens, x.context_vision_tokens)
              for x in r.rounds]) for r in records]


def measure(url: str, problems, mode: str, seed: int, per_sample: bool, args) -> dict:
    from vtc_lab.infer.config import LoopConfig
    from vtc_lab.infer.engine_config import EngineConfig
    from vtc_lab.infer.loop import LoopStats, run_loop
    from vtc_lab.infer.openai_engine import OpenAIEngine
    from vtc_lab.render import RenderConfig

    engine = OpenAIEngine(EngineConfig(name="openai", base_urls=[url], per_sample=per_sample,
                                       max_concurrency=args.concurrency))
    engine.check([mode])
    cfg = LoopConfig(mode=mode, max_rounds=args.rounds, max_new_tokens=args.new_tokens,
                     do_sample=True, temperature=1.0, batch_size=args.concurrency, seed=seed)
    stats = LoopStats()
    try:
        records = run_loop(engine, problems, cfg, RenderConfig(), "sys", progress=False,
                           stats=stats)
    finally:
        engine.close()
    return {"problems_per_s": len(problems) / stats.wall_s, "wall_s": stats.wall_s,
            "requests": sum(len(r.rounds) for r in records), "records": comparable(records)}


def interval(values: list[float]) -> str:
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.2f}"
    half = T95[len(values) - 1] * statistics.stdev(values) / math.sqrt(len(values))
    return f"{mean:.2f} ± {half:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=96)
    parser.add_argument("--concurrency", type=int, default=16,
                        help="engine.max_concurrency, and loop.batch_size of the batched run")
    parser.add_argument("--rounds", type=int, default=4, help="loop.max_rounds")
    parser.add_argument("--new-tokens", type=int, default=32, help="loop.max_new_tokens")
    parser.add_argument("--latency", type=float, default=0.05, help="fixed seconds per request")
    parser.add_argument("--jitter", type=float, default=0.2, help="uniform extra seconds, max")
    parser.add_argument("--modes", default="none,text")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import logging

    logging.basicConfig(level=logging.WARNING)
    from tests.infer.fake_openai import FakeOpenAIServer
    from vtc_lab.eval.benchmarks import Problem

    problems = [Problem(id=f"p{i}", question=f"Problem {i}: what is {i} + {i + 1}?",
                        gold=str(2 * i + 1), benchmark="perf") for i in range(args.problems)]
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    with FakeOpenAIServer(latency_s=args.latency, jitter_s=args.jitter) as server:
        for mode in args.modes.split(","):
            for seed in seeds:
                # alternate which schedule runs first, so a drift in machine load favours neither
                order = (False, True) if seed % 2 == 0 else (True, False)
                runs = {p: measure(server.url, problems, mode, seed, p, args) for p in order}
                old, new = runs[False], runs[True]
                rows.append({"mode": mode, "seed": seed,
                             "batched_problems_per_s": old["problems_per_s"],
                             "per_sample_problems_per_s": new["problems_per_s"],
                             "speedup": new["problems_per_s"] / old["problems_per_s"],
                             "requests": new["requests"],
                             "same_records": old["records"] == new["records"]})
                print(f"{mode:<5} seed {seed}: batched {old['problems_per_s']:6.2f} problems/s "
                      f"({old['wall_s']:.1f} s), per sample {new['problems_per_s']:6.2f} "
                      f"problems/s ({new['wall_s']:.1f} s), x{rows[-1]['speedup']:.2f}, "
                      f"{new['requests']} requests, same records: {rows[-1]['same_records']}",
                      flush=True)
    print(f"\n{args.problems} problems, concurrency {args.concurrency}, latency {args.latency} s "
          f"+ U(0, {args.jitter}) s, max_rounds {args.rounds}, seeds {seeds} "
          "(mean ± 95% t-interval over seeds)")
    print("| mode | batched problems/s | per sample problems/s | speedup | same records |")
    print("|---|---|---|---|---|")
    for mode in args.modes.split(","):
        sel = [r for r in rows if r["mode"] == mode]
        print(f"| {mode} | {interval([r['batched_problems_per_s'] for r in sel])} | "
              f"{interval([r['per_sample_problems_per_s'] for r in sel])} | "
              f"x{interval([r['speedup'] for r in sel])} | "
              f"{all(r['same_records'] for r in sel)} |")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)},
                                         "rows": rows, "at": time.time()}, indent=2))
    if not all(r["same_records"] for r in rows):
        sys.exit("the two schedules gave different records")


if __name__ == "__main__":
    main()
