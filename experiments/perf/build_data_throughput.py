"""Build-data throughput on the MATH500 fixture: samples/s with 1 and 2 worker processes, the
cost split (segmentation, token counting, rendering, PNG encoding, parquet writing), and peak
memory for two data sizes at the same shard size.

    python experiments/perf/build_data_throughput.py [--problems 120] [--max-tokens 96]

Prints one table; results and the command go to experiments/perf/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")

CHILD = """
import json, resource, sys, time
from vtc_lab.data.config import BuildDataConfig
from vtc_lab.data.build import build_dataset
from vtc_lab.data.config import DataConfig
from vtc_lab.segment import SegmentationConfig
from vtc_lab.tracking.config import TrackingConfig
root, limit, workers, max_tokens, src, per_shard = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], int(sys.argv[6])
kw = dict(limit=limit, problems_per_shard=per_shard, render_cache=False)
data = DataConfig(**kw) if src == "-" else DataConfig(source="openr1", path=src, **kw)
cfg = BuildDataConfig(data=data, tracking=TrackingConfig(mode="off"),
    segmentation=SegmentationConfig(max_tokens=max_tokens, min_tokens=16, max_segments=8, on_overflow="merge"),
    output_root=root, num_workers=workers, progress=False)
t = time.perf_counter()
m = build_dataset(cfg)
from pathlib import Path
print(json.dumps({"seconds": time.perf_counter() - t, "samples": m["data/samples"],
                  "ratio": m.get("data/compression_ratio"),
                  "dataset_bytes": sum(p.stat().st_size for p in Path(m["path"]).rglob("*.parquet")),
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


SOURCE = "-"
"""`-` = the packaged fixture; else an OpenR1-schema file (see --repeat)."""
PER_SHARD = 16
"""data.problems_per_shard of the builds (--shard-problems)."""


def run_build(limit: int, workers: int, max_tokens: int) -> dict:
    with tempfile.TemporaryDirectory() as root:
        out = subprocess.run([sys.executable, "-c", CHILD, root, str(limit), str(workers), str(max_tokens),
                              SOURCE, str(PER_SHARD)],
                             check=True, capture_output=True, text=True)
        return json.loads(out.stdout.strip().splitlines()[-1])


def cost_split(limit: int, max_tokens: int) -> dict[str, float]:
    """Seconds per stage inside one real single-process build (cProfile cumulative times)."""
    import cProfile
    import pstats

    from vtc_lab.data.config import BuildDataConfig
    from vtc_lab.data.build import build_dataset
    from vtc_lab.data.config import DataConfig
    from vtc_lab.segment import SegmentationConfig
    from vtc_lab.tracking.config import TrackingConfig

    stages = {  # (file suffix, function) -> stage
        ("segment/policies.py", "segment_text"): "segment",
        ("data/samples.py", "load_text_tokenizer"): "tokenizer load",
        ("render/renderer.py", "render_text"): "render",
        ("data/cache.py", "_png"): "png encode",
        ("parquet/core.py", "write_table"): "parquet write",
        ("data/sources.py", "iter_traces"): "read traces",
        ("data/stats.py", "plot_stats"): "stats plot",
    }
    with tempfile.TemporaryDirectory() as root:
        kw = dict(limit=limit, problems_per_shard=16, render_cache=False)
        data = DataConfig(**kw) if SOURCE == "-" else DataConfig(source="openr1", path=SOURCE, **kw)
        cfg = BuildDataConfig(
            data=data, tracking=TrackingConfig(mode="off"),
            segmentation=SegmentationConfig(max_tokens=max_tokens, min_tokens=16, max_segments=8,
                                            on_overflow="merge"),
            output_root=root, progress=False)
        # Fixed start-up costs (imports of transformers/matplotlib/pandas) are measured by the
        # end-to-end runs above; keep them out of the per-item split.
        import matplotlib.pyplot  # noqa: F401
        import pandas  # noqa: F401
        import transformers  # noqa: F401

        import vtc_lab.render  # noqa: F401
        prof = cProfile.Profile()
        t = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            prof.runcall(build_dataset, cfg)
        total = time.perf_counter() - t
    out = {"total": total}
    for (fname, _line, func), row in pstats.Stats(prof).stats.items():  # type: ignore[attr-defined]
        for (suffix, name), stage in stages.items():
            if func == name and fname.endswith(suffix):
                out[stage] = out.get(stage, 0.0) + row[3]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--problems", type=int, default=120)
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--repeat", type=int, default=1,
                    help="build from an OpenR1-schema file holding the fixture N times (new ids)")
    ap.add_argument("--workers", default="1,2", help="worker counts to compare, e.g. 1,2,4")
    ap.add_argument("--stitch", type=int, default=1,
                    help="long traces: each problem's reasoning is N consecutive MATH500 solutions "
                         "(with --max-tokens 512: many page-sized rounds, as in the paper)")
    ap.add_argument("--shard-problems", type=int, default=16,
                    help="data.problems_per_shard (the builder's default is 64)")
    ap.add_argument("--size-only", action="store_true",
                    help="only the end-to-end builds (time, samples, dataset bytes): no profile")
    args = ap.parse_args()
    global SOURCE, PER_SHARD
    PER_SHARD = args.shard_problems
    tmp = tempfile.TemporaryDirectory()
    if args.repeat > 1 or args.stitch > 1:
        sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the test fixture writer
        from tests.data.openr1_fixture import write_openr1_fixture
        from vtc_lab.data.sources import math500_fixture_rows

        base = list(math500_fixture_rows())
        if args.stitch > 1:
            sols = [r["solution"] for r in base]
            base = [{**r, "generations": ["<think>\n" + "\n\n".join(
                        sols[(i + j) % len(sols)] for j in range(args.stitch)) + "\n</think>\n\n"
                        f"The final answer is $\\boxed{{{r['answer']}}}$."]}
                    for i, r in enumerate(base)]
        rows = [{**r, "uuid": f"{r['uuid']}#{i}"} for i in range(args.repeat) for r in base]
        SOURCE = str(write_openr1_fixture(os.path.join(tmp.name, "fixture.jsonl"), rows))
    print(f"fixture: {args.problems} MATH500 problems (x{args.repeat} copies available), boundary policy, {args.max_tokens}-token rounds, "
          f"{PER_SHARD} problems per shard, "
          f"tiny qwen3_vl tokenizer, {os.cpu_count()} CPUs")
    for workers in [int(w) for w in args.workers.split(",")]:
        r = run_build(args.problems, workers, args.max_tokens)
        print(f"workers={workers}: {r['samples']} samples in {r['seconds']:.2f} s = "
              f"{r['samples'] / r['seconds']:.1f} samples/s (incl. process start-up), "
              f"ratio {r['ratio']}, peak RSS {r['maxrss_mb']:.0f} MB, "
              f"dataset {r['dataset_bytes'] / 1e6:.1f} MB (parquet files)")
    if args.size_only:
        print(f"load average during the run: {os.getloadavg()[0]:.2f}")
        return
    split = cost_split(args.problems, args.max_tokens)
    total = split.pop("total")
    split["other (row assembly, token counts of targets, shard bookkeeping)"] = total - sum(split.values())
    print(f"cost split (1 process, profiled, {total:.2f} s): " +
          ", ".join(f"{k} {v:.2f} s ({100 * v / total:.0f}%)" for k, v in split.items()))
    small = run_build(max(16, args.problems // 8), 1, args.max_tokens)
    big = run_build(args.problems, 1, args.max_tokens)
    print(f"peak RSS, 16 problems per shard: {max(16, args.problems // 8)} problems {small['maxrss_mb']:.0f} MB, "
          f"{args.problems} problems {big['maxrss_mb']:.0f} MB")
    print(f"load average during the run: {os.getloadavg()[0]:.2f} (2 cores shared with other users)")


if __name__ == "__main__":
    main()
