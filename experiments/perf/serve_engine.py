"""The OpenAI engine over `vtc-lab serve` against the in-process HF engine, same problems.

For each loop mode: the in-process engine at batch sizes B, then the OpenAI engine with B
requests in flight against one `vtc-lab serve` process (which batches what arrives, up to
`--max-batch`), then against two server processes. Greedy decoding, so every configuration must
produce the same records; the script checks that and prints it next to the timings.

    python experiments/perf/serve_engine.py --problems 8 --rounds 2 --new-tokens 64 \
        --modes optical,text --concurrency 1,4,8

Server processes and the eval process each use one torch thread.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def start_server(ckpt: Path, workdir: Path, max_batch: int) -> tuple[subprocess.Popen, str]:
    port_file = workdir / f"port-{time.monotonic_ns()}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vtc_lab.cli.main", "serve", "model=local", f"model.path={ckpt}",
         "port=0", f"port_file={port_file}", "threads=1", f"max_batch_size={max_batch}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not port_file.exists():
        if proc.poll() is not None:
            raise RuntimeError("vtc-lab serve exited during start-up")
        time.sleep(0.2)
    return proc, "http://" + port_file.read_text().strip() + "/v1"


def comparable(records) -> list:
    return [(r.problem_id, r.sample, r.output, [(x.generated_tokens, x.context_text_tokens,
                                                   x.context_vision_tokens) for x in r.rounds])
            for r in records]


def measure(engine, problems, mode: str, batch: int, args) -> dict:
    from vtc_lab.infer.config import LoopConfig
    from vtc_lab.infer.loop import LoopStats, run_loop
    from vtc_lab.render import RenderConfig

    cfg = LoopConfig(mode=mode, max_rounds=args.rounds, max_new_tokens=args.new_tokens,
                     do_sample=False, batch_size=batch, seed=0)
    stats = LoopStats()
    recs = run_loop(engine, problems, cfg, RenderConfig(), "sys", progress=False, stats=stats)
    rounds = [x for r in recs for x in r.rounds]
    tokens = sum(x.generated_tokens for x in rounds)
    return {"samples_per_s": len(recs) / stats.wall_s, "tokens_per_s": tokens / stats.wall_s,
            "round_latency_s": sum(x.generate_s for x in rounds) / len(rounds),
            "wall_s": stats.wall_s, "records": comparable(recs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--modes", default="optical,text")
    ap.add_argument("--concurrency", default="1,4,8")
    ap.add_argument("--max-batch", type=int, default=8, help="vtc-lab serve max_batch_size")
    ap.add_argument("--ckpt", type=Path, default=None, help="exported checkpoint (default: tiny)")
    args = ap.parse_args()

    import torch

    from vtc_lab.infer.engine import HFEngine
    from vtc_lab.infer.engine_config import EngineConfig
    from vtc_lab.infer.evaluate import load_problems
    from vtc_lab.infer.openai_engine import OpenAIEngine
    from vtc_lab.models import ModelConfig, load_backbone, save_backbone

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="serve-perf-"))
    ckpt = args.ckpt or save_backbone(load_backbone(ModelConfig()), work / "export")
    problems = list(load_problems("math500", limit=args.problems))
    modes = args.modes.split(",")
    batches = [int(b) for b in args.concurrency.split(",")]
    hf = HFEngine(load_backbone(ModelConfig(source="pretrained", path=str(ckpt), arch="auto")))

    rows: list[tuple[str, str, int, dict]] = []
    reference: dict[str, list] = {}
    for mode in modes:
        for b in batches:
            res = measure(hf, problems, mode, b, args)
            reference.setdefault(mode, res["records"])
            rows.append((mode, "in-process HF", b, res))
    servers = [start_server(ckpt, work, args.max_batch)]
    try:
        for n_servers in (1, 2):
            if n_servers == 2:
                servers.append(start_server(ckpt, work, args.max_batch))
            urls = [u for _, u in servers]
            for mode in modes:
                for b in (batches if n_servers == 1 else batches[-1:]):
                    engine = OpenAIEngine(EngineConfig(name="openai", base_urls=urls,
                                                       max_concurrency=b))
                    engine.check(modes)
                    res = measure(engine, problems, mode, b, args)
                    engine.close()
                    label = f"openai -> {n_servers} x vtc-lab serve"
                    rows.append((mode, label, b, res))
    finally:
        for proc, _ in servers:
            proc.terminate()
            proc.wait(timeout=30)

    print(f"\n{args.problems} MATH500 problems, greedy, {args.rounds} rounds x {args.new_tokens} "
          f"new tokens, vtc-lab serve max_batch_size={args.max_batch}\n")
    print("| loop | engine | in flight | samples/s | tokens/s | mean round latency (s) | wall (s) "
          "| records = in-process |")
    print("|---|---|---|---|---|---|---|---|")
    for mode, label, b, res in rows:
        same = "yes" if res["records"] == reference[mode] else "**no**"
        print(f"| {mode} | {label} | {b} | {res['samples_per_s']:.2f} | {res['tokens_per_s']:.1f} "
              f"| {res['round_latency_s']:.2f} | {res['wall_s']:.1f} | {same} |")


if __name__ == "__main__":
    main()
